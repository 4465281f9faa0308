"""``CachePort``: the five operations an application types against.

A ``typing.Protocol``, so an application can depend on the port's shape and
swap in another implementation in tests (an in-memory fake) without
inheriting from anything. ``RedisCachePort`` (``port.py``) is the Redis one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

__all__ = ["CachePort", "Factory"]

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
