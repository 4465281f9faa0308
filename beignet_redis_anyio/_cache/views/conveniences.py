"""``CacheConveniences``: ``json``, ``with_codec``, ``cached``, ``namespace``.

A mixin for any port with the five string operations (see ``viewed.py``):
``RedisCachePort`` inherits it, so does ``testing.MemoryCachePort``, and so
does ``Namespace`` — the same code gives every port the same conveniences.
It keeps its state in the instance's ``__dict__`` (the ``json`` view, the
namespaces' generations), so a port using it must not define ``__slots__``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .codecs import JSON, Codec, JsonValue
from .decorator import CachedFunction, cached
from .typed import TypedCache
from .viewed import ViewedPort

if TYPE_CHECKING:
    from .namespace import GenerationState, Namespace

__all__ = ["CacheConveniences"]

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class CacheConveniences:
    """Typed values, the ``@cached`` decorator and namespaces, over ``self``."""

    @cached_property
    def json(self) -> TypedCache[JsonValue]:
        """The five operations on JSON values (``None`` included), encoded
        compactly and deterministically under the same key names."""
        return TypedCache(cast(ViewedPort, self), JSON)

    def with_codec(self, codec: Codec[T]) -> TypedCache[T]:
        """The five operations on whatever ``codec`` (``dumps``/``loads``) encodes."""
        return TypedCache(cast(ViewedPort, self), codec)

    def cached(
        self,
        key: str | Callable[..., str],
        *,
        ttl_seconds: float | None = None,
        none_ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
        codec: Codec[Any] | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
        """Cache an ``async def``'s results under ``key`` (a template over its
        parameters, or a callable taking its arguments); see ``decorator.py``."""
        view: TypedCache[Any] = self.json if codec is None else self.with_codec(codec)
        return cached(
            view,
            key,
            ttl_seconds=ttl_seconds,
            none_ttl_seconds=none_ttl_seconds,
            lock=lock,
            early_refresh=early_refresh,
        )

    def namespace(self, name: str, *, generation_ttl_seconds: float = 1.0) -> Namespace:
        """A view whose keys ``await ns.invalidate()`` makes unreachable at
        once; see ``namespace.py`` for the staleness window."""
        # Imported here: Namespace is itself a CacheConveniences.
        from .namespace import Namespace

        return Namespace(
            self,
            name,
            generation_ttl_seconds=generation_ttl_seconds,
            states=self._generation_states,
        )

    @cached_property
    def _generation_states(self) -> dict[str, GenerationState]:
        return {}
