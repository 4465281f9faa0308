"""The cache port: five operations an application types against.

``CachePort`` is the protocol (swap in any implementation in tests);
``RedisCachePort`` is the Redis one. Inputs are checked before any I/O, so a
bad call fails with a clear ``TypeError``/``ValueError`` and writes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import anyio
from anyio.abc import TaskGroup

from ._client import RedisClient
from ._events import CacheEvent, Observer, Operation, Status, notify
from ._single_flight import SingleFlight

__all__ = ["CachePort", "RedisCachePort"]

Factory = Callable[[], Awaitable[str]]


@runtime_checkable
class CachePort(Protocol):
    """What an application needs from a cache. Values are strings; encode
    structured data yourself (``json.dumps``) so the format is yours."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def has(self, key: str) -> bool: ...

    async def remember(
        self, key: str, factory: Factory, *, ttl_seconds: float | None = None
    ) -> str: ...


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"a cache key must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError("a cache key must not be empty")


def _check_value(value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(
            f"a cached value must be a str, got {type(value).__name__} "
            "(encode it first, e.g. with json.dumps)"
        )


def _ttl_milliseconds(ttl_seconds: object) -> int | None:
    """``None`` (no expiry) or the TTL in whole milliseconds (at least 1)."""
    if ttl_seconds is None:
        return None
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, (int, float)):
        raise TypeError(f"ttl_seconds must be a number, got {type(ttl_seconds).__name__}")
    if not math.isfinite(ttl_seconds) or ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be a positive, finite number, got {ttl_seconds!r}")
    return max(1, round(ttl_seconds * 1000))


class RedisCachePort:
    """The Redis-backed :class:`CachePort`, made by :func:`open_redis_provider`.

    ``client`` is the escape hatch: the full :class:`RedisClient`, on the same
    connection, for anything the five operations do not cover
    (``await cache.client.incr("counter")``). It does not apply
    ``key_prefix``.
    """

    def __init__(
        self,
        client: RedisClient,
        task_group: TaskGroup,
        *,
        key_prefix: str = "",
        observer: Observer | None = None,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self._observer = observer
        self._flights: SingleFlight[str] = SingleFlight(task_group)
        self._execute = client.execute_command

    def __repr__(self) -> str:
        return f"<RedisCachePort {self.client.settings.redacted_url()}>"

    @property
    def in_flight(self) -> int:
        """Keys with a ``remember`` computation running now (per-key state held)."""
        return len(self._flights)

    async def get(self, key: str) -> str | None:
        """The value stored at ``key``, or ``None``."""
        _check_key(key)
        started = time.perf_counter()
        try:
            value: str | None = await self._execute("GET", self.key_prefix + key)
        except BaseException as exc:
            self._failed("cache.get", key, None, started, exc)
            raise
        if self._observer is not None:
            self._emit("cache.get", key, "hit" if value is not None else "miss", None, started)
        return value

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl_seconds`` (fractions
        keep millisecond precision) or never."""
        _check_key(key)
        _check_value(value)
        ttl_ms = _ttl_milliseconds(ttl_seconds)
        started = time.perf_counter()
        try:
            await self._store(self.key_prefix + key, value, ttl_ms)
        except BaseException as exc:
            self._failed("cache.set", key, ttl_seconds, started, exc)
            raise
        if self._observer is not None:
            self._emit("cache.set", key, "stored", ttl_seconds, started)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when there was something to remove."""
        return await self._count("cache.delete", "DEL", key, "deleted", "not_found")

    async def has(self, key: str) -> bool:
        """True when ``key`` holds a value (an empty string counts)."""
        return await self._count("cache.has", "EXISTS", key, "hit", "miss")

    async def _count(
        self, operation: Operation, command: str, key: str, yes: Status, no: Status
    ) -> bool:
        """A one-key command that answers with a count: DEL, EXISTS."""
        _check_key(key)
        started = time.perf_counter()
        try:
            answer = bool(await self._execute(command, self.key_prefix + key))
        except BaseException as exc:
            self._failed(operation, key, None, started, exc)
            raise
        if self._observer is not None:
            self._emit(operation, key, yes if answer else no, None, started)
        return answer

    async def remember(
        self, key: str, factory: Factory, *, ttl_seconds: float | None = None
    ) -> str:
        """The cached value; on a miss, ``await factory()``, store it, return it.

        Concurrent misses on one key share one ``factory()`` run (see the
        README's single-flight guarantees). The factory must return ``str``;
        anything else raises ``TypeError`` and nothing is stored.
        """
        _check_key(key)
        if not callable(factory):
            raise TypeError(f"factory must be an async callable, got {type(factory).__name__}")
        ttl_ms = _ttl_milliseconds(ttl_seconds)
        full_key = self.key_prefix + key
        flights = self._flights
        flights.check_reentry(full_key)
        started = time.perf_counter()
        try:
            if full_key not in flights:
                completed_before = flights.completed
                cached: str | None = await self._execute("GET", full_key)
                if cached is None and flights.completed != completed_before:
                    # A run ended while we read; it may have stored our key.
                    cached = await self._execute("GET", full_key)
                if cached is not None:
                    if self._observer is not None:
                        self._emit("cache.remember", key, "hit", ttl_seconds, started)
                    return cached

            async def compute() -> str:
                value = await factory()
                if not isinstance(value, str):
                    raise TypeError(
                        f"the factory for {key!r} returned {type(value).__name__}, not str; "
                        "nothing was stored"
                    )
                await self._store(full_key, value, ttl_ms)
                return value

            value = await flights.run(full_key, compute)
        except BaseException as exc:
            self._failed("cache.remember", key, ttl_seconds, started, exc)
            raise
        if self._observer is not None:
            self._emit("cache.remember", key, "miss", ttl_seconds, started)
        return value

    async def _store(self, full_key: str, value: str, ttl_ms: int | None) -> None:
        if ttl_ms is None:
            await self._execute("SET", full_key, value)
        else:
            await self._execute("SET", full_key, value, "PX", ttl_ms)

    def _emit(
        self,
        operation: Operation,
        key: str,
        status: Status,
        ttl_seconds: float | None,
        started: float,
        error: str | None = None,
    ) -> None:
        assert self._observer is not None
        event = CacheEvent(
            operation=operation,
            key=key,
            status=status,
            ttl_seconds=ttl_seconds,
            duration_seconds=time.perf_counter() - started,
            error=error,
        )
        notify(self._observer, event)

    def _failed(
        self,
        operation: Operation,
        key: str,
        ttl_seconds: float | None,
        started: float,
        exc: BaseException,
    ) -> None:
        if self._observer is None:
            return
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            self._emit(operation, key, "cancelled", ttl_seconds, started)
        else:
            self._emit(operation, key, "error", ttl_seconds, started, _describe(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
