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
from functools import cached_property, partial
from typing import Any, ParamSpec, TypeVar, cast

from .codecs import JSON, Codec, JsonValue
from .decorator import CachedFunction, cached, tag_namespace
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
        tags: tuple[str, ...] = (),
    ) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
        """Cache an ``async def``'s results under ``key`` (a template over its
        parameters, or a callable taking its arguments), each under the
        current generation of its ``tags`` (templates too), which
        :meth:`invalidate_tag` bumps; see ``decorator.py``."""
        view: TypedCache[Any] = self.json if codec is None else self.with_codec(codec)
        return cached(
            view,
            key,
            ttl_seconds=ttl_seconds,
            none_ttl_seconds=none_ttl_seconds,
            lock=lock,
            early_refresh=early_refresh,
            tags=tags,
            tag_namespace=partial(tag_namespace, self) if hasattr(self, "namespace") else None,
        )

    async def invalidate_tag(self, tag: str) -> bool:
        """Make every ``@cached`` result carrying ``tag`` unreachable (one
        ``INCRBY``); False when Redis was unavailable under ``bypass``.

        Raises ``TypeError``/``ValueError`` for a tag that is not a non-empty
        ``str``, and what the port raises when Redis cannot be reached (under
        ``failure_policy="raise"``). Cancellation: the increment may or may
        not have been applied.
        """
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"a tag must be a non-empty str, got {tag!r}")
        invalidated: bool = await tag_namespace(self, tag).invalidate()
        return invalidated
