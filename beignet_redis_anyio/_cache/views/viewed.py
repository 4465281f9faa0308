"""What the views need from the port beneath them.

The typed views, the decorator and namespaces are written against these
protocols, never against ``RedisCachePort``, so any port with the same shape
— ``testing.MemoryCachePort``, a namespace (itself a port), a user's own —
gets them by inheriting :class:`~._cache.conveniences.CacheConveniences`.

``ViewedPort`` is ``CachePort`` with ``remember``'s ``lock=`` and
``early_refresh=`` (``None``: the port's own default). The views pass those
two only when the caller sets one, so a plain five-operation port works too.

``GenerationPort`` is what a namespace adds: one atomic counter. The five
string operations cannot make one (a read then a write loses increments
between processes), so a port that offers namespaces implements
``_generation`` with its backend's own atomic increment — ``INCRBY`` on
Redis.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

__all__ = ["GenerationPort", "ViewedPort", "remember_on"]


class ViewedPort(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def has(self, key: str) -> bool: ...

    async def remember(
        self,
        key: str,
        factory: Callable[[], Awaitable[str]],
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> str: ...


@runtime_checkable
class GenerationPort(Protocol):
    async def _generation(self, key: str, increment: int) -> int | None:
        """Atomically add ``increment`` (0 reads) to the integer at ``key``
        (missing counts as 0; the key never expires) and return the result.

        ``None`` means the backend is unavailable and the port's failure
        policy says carry on without it (``bypass``): the namespace then
        behaves as an empty cache for that call. Under the ``raise`` policy
        the failure propagates. The key is checked like any other key and
        takes the port's key prefix.
        """
        ...


async def remember_on(
    port: ViewedPort,
    key: str,
    factory: Callable[[], Awaitable[str]],
    ttl_seconds: float | None,
    lock: bool | None,
    early_refresh: bool | None,
) -> str:
    """``port.remember``, passing ``lock``/``early_refresh`` only when one is set."""
    if lock is None and early_refresh is None:
        return await port.remember(key, factory, ttl_seconds=ttl_seconds)
    return await port.remember(
        key, factory, ttl_seconds=ttl_seconds, lock=lock, early_refresh=early_refresh
    )
