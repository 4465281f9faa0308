"""What the views need from the port beneath them.

The typed views, the decorator and namespaces are written against these
protocols, never against ``RedisCachePort``, so any port with the same shape
— ``testing.MemoryCachePort``, a namespace (itself a port), a user's own —
gets them by inheriting :class:`~._cache.conveniences.CacheConveniences`.

``ViewedPort`` is ``CachePort`` with ``remember``'s ``lock=`` and
``early_refresh=`` (``None``: the port's own default). The views pass those
two only when the caller sets one, so a plain five-operation port works too.

``BatchedPort`` adds the four batch operations. The views offer theirs over
the port's own (one round trip per node, not one per key), so they need a
port that has them; a port without them raises ``TypeError`` naming the
operation when a view's batch operation is called.

``GenerationPort`` is what a namespace adds: one atomic counter. The five
string operations cannot make one (a read then a write loses increments
between processes), so a port that offers namespaces implements
``_generation`` with its backend's own atomic increment — ``INCRBY`` on
Redis.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "BatchedPort",
    "GenerationPort",
    "ViewedPort",
    "batched",
    "remember_on",
    "remember_options",
]


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
class BatchedPort(Protocol):
    async def get_many(self, keys: Iterable[str]) -> dict[str, str | None]: ...

    async def set_many(
        self, mapping: Mapping[str, str], *, ttl_seconds: float | None = None
    ) -> None: ...

    async def delete_many(self, keys: Iterable[str]) -> int: ...

    async def remember_many(
        self,
        keys: Iterable[str],
        factory_many: Callable[[list[str]], Awaitable[Mapping[str, str]]],
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> dict[str, str]: ...


def batched(port: Any, operation: str) -> BatchedPort:
    """``port``, checked to have the batch ``operation`` a view was asked for."""
    if not callable(getattr(port, operation, None)):
        raise TypeError(
            f"{port!r} has no {operation}: a view's batch operations go through the "
            "port's own (RedisCachePort, MemoryCachePort, a namespace or a CacheSlot have them)"
        )
    return port  # type: ignore[no-any-return]


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


def remember_options(lock: bool | None, early_refresh: bool | None) -> dict[str, Any]:
    """``lock``/``early_refresh`` as keyword arguments, each only when set."""
    options: dict[str, Any] = {}
    if lock is not None:
        options["lock"] = lock
    if early_refresh is not None:
        options["early_refresh"] = early_refresh
    return options
