"""``CacheSlot``: decorators and namespaces declared before any port exists.

A web app declares its cached functions where they are defined, at import
time, long before its lifespan opens the provider::

    cache = CacheSlot()

    @cache.cached(key="product:{product_id}", ttl_seconds=60)
    async def product(product_id: int) -> dict[str, Any]: ...

    # in the lifespan:
    async with open_redis_provider(config, bind=cache): ...

A slot is a port that forwards every operation to the port bound to it: the
provider binds its port while it is open and unbinds it on exit; a test
binds a ``MemoryCachePort`` with ``with slot.bound(port):``. Because the
forwarding is the slot's five operations and its batches, everything built
on the slot — ``slot.json``, ``slot.cached``, ``slot.namespace(name)`` —
works through whichever port is bound when it is *called*, with that port's
guarantees. Called while nothing is bound, an operation raises
``RuntimeError`` at once: it never waits for a provider to appear.

One port at a time: binding a second while one is bound raises
``RuntimeError`` (two providers sharing a slot is a mistake to hear about,
not a race to lose). Each bind and unbind forgets the namespaces'
generations this process knew, so a test's namespaces start clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from ..protocol import Factory
from .namespace import CacheConveniences
from .viewed import BatchedPort, GenerationPort, ViewedPort

if TYPE_CHECKING:
    from ..._client.client import RedisClient

__all__ = ["CacheSlot"]


class _Bindable(ViewedPort, BatchedPort, GenerationPort):
    """What a slot forwards to (``RedisCachePort``, ``MemoryCachePort``, …)."""


class CacheSlot(CacheConveniences):
    """A port that forwards to the port bound to it (see the module docstring)."""

    def __init__(self, name: str = "cache") -> None:
        self.name = name
        self._port: _Bindable | None = None

    def __repr__(self) -> str:
        state = "unbound" if self._port is None else f"bound to {self._port!r}"
        return f"<CacheSlot {self.name!r} {state}>"

    @property
    def is_bound(self) -> bool:
        return self._port is not None

    @property
    def port(self) -> Any:
        """The bound port; ``RuntimeError`` when none is."""
        return self._bound()

    @property
    def client(self) -> RedisClient:
        """The bound port's raw client (``RuntimeError`` when none is bound)."""
        return cast("RedisClient", self._bound().client)  # type: ignore[attr-defined]

    @contextmanager
    def bound(self, port: Any) -> Iterator[Any]:
        """Bind ``port`` for the ``with`` block, then unbind it, however the
        block ends. Raises ``RuntimeError`` if another port is bound and
        ``TypeError`` for an object that is not a port."""
        missing = [
            name
            for name in ("get", "set", "delete", "has", "remember", "get_many", "_generation")
            if not callable(getattr(port, name, None))
        ]
        if missing:
            raise TypeError(f"{port!r} is not a cache port: it has no {', '.join(missing)}")
        if self._port is not None:
            raise RuntimeError(
                f"{self!r} is already bound; a slot serves one port at a time "
                "(one provider, or one test's port)"
            )
        self._port = port
        self._forget_generations()
        try:
            yield port
        finally:
            self._port = None
            self._forget_generations()

    def _forget_generations(self) -> None:
        for state in self._generation_states.values():
            state.value = None
            state.fresh_until = float("-inf")

    def _bound(self) -> _Bindable:
        port = self._port
        if port is None:
            raise RuntimeError(
                f"{self!r}: no cache port is bound yet. Open the provider with "
                f"open_redis_provider(config, bind=slot) (in the app's lifespan), or in a "
                f"test use `with slot.bound(MemoryCachePort()):`"
            )
        return port

    # -- the operations, forwarded ------------------------------------------

    async def get(self, key: str) -> str | None:
        """The bound port's ``get``; raises and cancels as it does
        (``RuntimeError`` when none is bound)."""
        return await self._bound().get(key)

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None:
        """The bound port's ``set``; raises and cancels as it does."""
        await self._bound().set(key, value, ttl_seconds=ttl_seconds)

    async def delete(self, key: str) -> bool:
        """The bound port's ``delete``; raises and cancels as it does."""
        return await self._bound().delete(key)

    async def has(self, key: str) -> bool:
        """The bound port's ``has``; raises and cancels as it does."""
        return await self._bound().has(key)

    async def remember(
        self,
        key: str,
        factory: Factory,
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> str:
        """The bound port's ``remember``; raises and cancels as it does."""
        return await self._bound().remember(
            key, factory, ttl_seconds=ttl_seconds, lock=lock, early_refresh=early_refresh
        )

    async def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        """The bound port's ``get_many``; raises and cancels as it does."""
        return await self._bound().get_many(keys)

    async def set_many(
        self, mapping: Mapping[str, str], *, ttl_seconds: float | None = None
    ) -> None:
        """The bound port's ``set_many``; raises and cancels as it does."""
        await self._bound().set_many(mapping, ttl_seconds=ttl_seconds)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """The bound port's ``delete_many``; raises and cancels as it does."""
        return await self._bound().delete_many(keys)

    async def remember_many(
        self,
        keys: Iterable[str],
        factory_many: Callable[[list[str]], Any],
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> dict[str, str]:
        """The bound port's ``remember_many``; raises and cancels as it does."""
        return await self._bound().remember_many(
            keys, factory_many, ttl_seconds=ttl_seconds, lock=lock, early_refresh=early_refresh
        )

    async def _generation(self, key: str, increment: int) -> int | None:
        return await self._bound()._generation(key, increment)
