"""``CachePort``: what an application types against.

A ``typing.Protocol``, so an application can depend on the port's shape and
swap in another implementation in tests (``testing.MemoryCachePort``, or a
fake of its own) without inheriting from anything. ``RedisCachePort``
(``port.py``) is the Redis one. It is ``runtime_checkable``: ``isinstance``
checks that the members exist, not their signatures — mypy checks those.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .._client.client import RedisClient

__all__ = ["CachePort", "Factory"]

Factory = Callable[[], Awaitable[str]]


@runtime_checkable
class CachePort(Protocol):
    """What an application needs from a cache. Values are strings; encode
    structured data yourself (``json.dumps``) so the format is yours."""

    @property
    def client(self) -> RedisClient:
        """The raw Redis client, for what the port does not cover. An
        implementation with no Redis behind it raises ``AttributeError``."""
        ...

    async def get(self, key: str) -> str | None:
        """The value at ``key``, or ``None``.

        Raises what the backend raises when it cannot be reached (the Redis
        port: redis-py's ``ConnectionError``/``TimeoutError``).
        Cancellation: the read is abandoned and nothing changes.
        """
        ...

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None:
        """Store ``value`` at ``key``, for ``ttl_seconds`` or for ever.

        Raises ``TypeError``/``ValueError`` for bad input before any I/O, and
        what the backend raises. Cancellation: the write may or may not have
        been applied.
        """
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when it held a value.

        Raises as :meth:`set`. Cancellation: the delete may or may not have
        been applied.
        """
        ...

    async def has(self, key: str) -> bool:
        """True when ``key`` holds a value.

        Raises as :meth:`get`. Cancellation: as :meth:`get`.
        """
        ...

    async def remember(
        self,
        key: str,
        factory: Factory,
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> str:
        """The cached value; on a miss ``await factory()``, store it, return it.

        Raises what the factory raises (for every caller waiting on that
        run) and what the backend raises. Cancellation: cancelling one
        caller ends only its own wait; the others still get the value.
        """
        ...
