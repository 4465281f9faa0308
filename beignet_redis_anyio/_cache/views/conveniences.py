"""``TypedConveniences``: ``json``, ``with_codec`` and ``cached`` over a port.

A mixin for any port with the five string operations (see ``viewed.py``).
``namespace.py`` adds ``namespace()`` to make the full ``CacheConveniences``,
which ``RedisCachePort``, ``testing.MemoryCachePort`` and ``Namespace`` itself
inherit: the same code gives every port the same conveniences. It keeps its
state in the instance's ``__dict__`` (the ``json`` view, the namespaces'
generations), so a port using it must not define ``__slots__``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any, ParamSpec, TypeVar, cast

from .codecs import JSON, Codec, JsonValue
from .decorator import CachedFunction, cached
from .typed import TypedCache
from .viewed import ViewedPort

__all__ = ["TypedConveniences"]

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class TypedConveniences:
    """Typed values and the ``@cached`` decorator, over ``self``."""

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
