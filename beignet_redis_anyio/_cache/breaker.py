"""A circuit breaker in front of Redis: stop knocking on a door that is shut.

The connection already fails fast while it is reconnecting; the breaker adds
a pause for the port. After ``threshold`` consecutive failures it *opens*:
calls fail at once with :class:`CircuitOpenError` (a ``ConnectionError``) for
``cooldown`` seconds, or until the server is heard from again (the
connection reconnects in the background, and a frozen server's late replies
still arrive), whichever comes first. Then it is
*half-open*: exactly one call — the probe —
goes to Redis while every other call still fails at once. The probe's answer
closes the breaker (Redis answered, even with an error reply) or opens it for
another cooldown; a probe that is cancelled before an answer hands the turn
to the next call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from .._exceptions import CircuitOpenError

__all__ = ["UNAVAILABLE", "CircuitBreaker"]

#: Errors that mean "Redis is unavailable", as opposed to "you asked wrongly".
UNAVAILABLE = (ConnectionError, TimeoutError)
#: Errors that prove Redis answered: an error reply, a value we cannot decode.
_ANSWERED = (ResponseError, UnicodeDecodeError)


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int,
        cooldown: float,
        on_change: Callable[[Literal["opened", "closed"], str | None], None],
        clock: Callable[[], float] = time.monotonic,
        last_heard: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._on_change = on_change
        self._clock = clock
        self.state: Literal["closed", "open", "half_open"] = "closed"
        self._failures = 0
        self._reopen_at = 0.0
        self._probing = False
        self._last_heard = last_heard
        self._heard_when_opened = 0.0

    def check(self) -> None:
        """Allow the call, or raise :class:`CircuitOpenError` while open and
        while another call is the half-open probe."""
        if self.state == "closed":
            return
        if self.state == "open":
            remaining = self._reopen_at - self._clock()
            if remaining > 0 and self._last_heard() <= self._heard_when_opened:
                raise CircuitOpenError(
                    f"Redis is unavailable ({self._failures} failures in a row); "
                    f"not trying again for {remaining:.1f}s"
                )
            self.state = "half_open"
        if self._probing:
            raise CircuitOpenError(
                f"Redis is unavailable ({self._failures} failures in a row); "
                "another call is probing it"
            )
        self._probing = True

    def succeeded(self) -> None:
        self._failures = 0
        self._probing = False
        if self.state != "closed":
            self.state = "closed"
            self._on_change("closed", None)

    def failed(self, error: BaseException) -> None:
        self._failures += 1
        self._probing = False
        if self.state == "half_open" or (
            self.state == "closed" and self._failures >= self.threshold
        ):
            self.state = "open"
            self._reopen_at = self._clock() + self.cooldown
            self._heard_when_opened = self._last_heard()
            self._on_change("opened", f"{type(error).__name__}: {error}")

    def settle(self, error: BaseException) -> None:
        """A call ended with ``error``, which is no outage: an answer from
        Redis counts as a success; anything else (a cancellation, bad input
        caught before sending) says nothing, and frees the probe's turn."""
        if isinstance(error, _ANSWERED):
            self.succeeded()
        else:
            self._probing = False
