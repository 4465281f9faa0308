"""``Reporter``: the port's outcomes, told as ``CacheEvent``s and log lines.

Every operation ends in one event to the observer (a hit, a store, an error
naming the exception, a cancellation); the machinery behind them reports too
— an early refresh finishing, the cross-process lease lost or waited out,
the circuit breaker opening and closing (which is also logged, since an
outage matters with or without an observer). One object holds what those
reports need, so the port's operations say *what* happened and this says
*how* it is told. Events never carry the value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence

from .._net.errors import describe
from .events import CacheEvent, Observer, Operation, Status, notify
from .remember.single_flight import cancelled_from_outside

__all__ = ["Reporter"]

_log = logging.getLogger("beignet_redis_anyio")


class Reporter:
    """Events for ``observer`` (if any) and the breaker's log lines.

    ``event`` and ``error`` expect the caller to have checked that there is
    an observer: on the hot path that check is the only cost of reporting.
    """

    __slots__ = ("_breaker_cooldown", "_bypass", "observer")

    def __init__(self, observer: Observer | None, *, bypass: bool, breaker_cooldown: float) -> None:
        self.observer = observer
        self._bypass = bypass
        self._breaker_cooldown = breaker_cooldown

    def event(
        self,
        operation: Operation,
        key: str,
        status: Status,
        ttl_seconds: float | None,
        started: float,
        error: str | None = None,
        *,
        local: bool = False,
        stale: bool = False,
    ) -> None:
        """One operation's outcome, timed from ``started`` (``time.perf_counter``)."""
        assert self.observer is not None
        event = CacheEvent(
            operation=operation,
            key=key,
            status=status,
            ttl_seconds=ttl_seconds,
            duration_seconds=time.perf_counter() - started,
            error=error,
            local=local,
            stale=stale,
        )
        notify(self.observer, event)

    def error(
        self,
        operation: Operation,
        key: str,
        ttl_seconds: float | None,
        started: float,
        exc: BaseException,
    ) -> None:
        """An ``"error"`` event naming ``exc``."""
        self.event(operation, key, "error", ttl_seconds, started, describe(exc))

    def failed(
        self,
        operation: Operation,
        key: str,
        ttl_seconds: float | None,
        started: float,
        exc: BaseException,
    ) -> None:
        """An operation that did not complete: ``"cancelled"`` (its caller was)
        or ``"error"`` (anything else, a factory's stray cancellation
        exception included)."""
        if self.observer is None:
            return
        if cancelled_from_outside(exc):
            self.event(operation, key, "cancelled", ttl_seconds, started)
        else:
            self.error(operation, key, ttl_seconds, started, exc)

    def batch(
        self,
        operation: Operation,
        outcomes: Sequence[tuple[str, Status, str | None]],
        ttl_seconds: float | None,
        started: float,
        local: Collection[str] = (),
    ) -> None:
        """A batch's outcome: one event per ``(key, status, error)``, all with
        the batch's duration, size and each key's place in it; the keys in
        ``local`` were answered by the local cache."""
        assert self.observer is not None
        duration = time.perf_counter() - started
        size = len(outcomes)
        for index, (key, status, error) in enumerate(outcomes):
            event = CacheEvent(
                operation=operation,
                key=key,
                status=status,
                ttl_seconds=ttl_seconds,
                duration_seconds=duration,
                error=error,
                batch_size=size,
                batch_index=index,
                local=key in local,
            )
            notify(self.observer, event)

    def batch_failed(
        self,
        operation: Operation,
        keys: Sequence[str],
        ttl_seconds: float | None,
        started: float,
        exc: BaseException,
    ) -> None:
        """A batch that did not complete, as ``failed`` says, for every key."""
        if self.observer is None:
            return
        if cancelled_from_outside(exc):
            outcome: tuple[Status, str | None] = ("cancelled", None)
        else:
            outcome = ("error", describe(exc))
        self.batch(operation, [(key, *outcome) for key in keys], ttl_seconds, started)

    def breaker_changed(self, status: Status, reason: str | None) -> None:
        if status == "opened":
            _log.warning(
                "Redis circuit breaker opened: %s. For %gs every cache call %s; "
                "then one call probes Redis.",
                reason,
                self._breaker_cooldown,
                "bypasses Redis (factories run for every remember)"
                if self._bypass
                else "fails at once with CircuitOpenError",
            )
        else:
            _log.info("Redis circuit breaker closed: Redis answers again")
        if self.observer is not None:
            notify(
                self.observer,
                CacheEvent(operation="cache.breaker", key="", status=status, error=reason),
            )

    def lease_event(self, key: str, status: str, reason: str | None) -> None:
        if self.observer is not None:
            notify(
                self.observer,
                CacheEvent(operation="cache.lock", key=key, status=status, error=reason),  # type: ignore[arg-type]
            )
