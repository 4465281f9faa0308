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

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def has(self, key: str) -> bool: ...

    async def remember(
        self,
        key: str,
        factory: Factory,
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> str: ...
