"""A circuit breaker in front of Redis: stop knocking on a door that is shut.

While Redis is down, every call would wait out a connect or command timeout.
After ``threshold`` consecutive failures the breaker *opens*: calls fail at
once with :class:`CircuitOpenError` (a ``ConnectionError``) for ``cooldown``
seconds. Then it lets calls through again (*half-open*); the first success
closes it, a failure opens it for another cooldown. So while Redis is down a
caller never waits longer than one timeout, and mostly not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from redis.exceptions import ConnectionError, TimeoutError

__all__ = ["UNAVAILABLE", "CircuitBreaker", "CircuitOpenError"]

#: Errors that mean "Redis is unavailable", as opposed to "you asked wrongly".
UNAVAILABLE = (ConnectionError, TimeoutError)


class CircuitOpenError(ConnectionError):
    """Redis failed repeatedly; calls are refused without trying until the cooldown ends."""


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int,
        cooldown: float,
        on_change: Callable[[Literal["opened", "closed"], str | None], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._on_change = on_change
        self._clock = clock
        self.state: Literal["closed", "open", "half_open"] = "closed"
        self._failures = 0
        self._reopen_at = 0.0

    def check(self) -> None:
        """Raise :class:`CircuitOpenError` while open; otherwise allow the call."""
        if self.state == "open":
            remaining = self._reopen_at - self._clock()
            if remaining > 0:
                raise CircuitOpenError(
                    f"Redis is unavailable ({self._failures} failures in a row); "
                    f"not trying again for {remaining:.1f}s"
                )
            self.state = "half_open"

    def succeeded(self) -> None:
        self._failures = 0
        if self.state != "closed":
            self.state = "closed"
            self._on_change("closed", None)

    def failed(self, error: BaseException) -> None:
        self._failures += 1
        if self.state == "half_open" or (
            self.state == "closed" and self._failures >= self.threshold
        ):
            self.state = "open"
            self._reopen_at = self._clock() + self.cooldown
            self._on_change("opened", f"{type(error).__name__}: {error}")
