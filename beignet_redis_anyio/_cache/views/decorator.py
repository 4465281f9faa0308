"""``@cache.cached(...)``: an ``async def`` whose results go through ``remember``.

The key comes from the call's arguments: a template filled from
``inspect.signature(f).bind(*args, **kwargs)`` with defaults applied
(``"user:{user_id}:profile"``, ``str.format_map``, so ``{user.id}`` and
format specs work), or a ``key=`` callable taking the function's own
arguments. A template naming no parameter of the function fails at
decoration time, not on the first call.

Values go through a typed view (JSON unless ``codec=``), so the function may
return any JSON value, ``None`` included (negative caching). The call *is*
``view.remember(key, lambda: f(*args, **kwargs), …)``: single-flight,
cancellation, the lease, early refresh, ``bypass`` and events are the
port's, unchanged.

The wrapper is a real ``async def`` (``functools.wraps``), so frameworks
that inspect coroutine functions (FastAPI's ``Depends``) see one, with the
original signature. It carries ``f.key(*args, **kwargs) -> str`` — the key
as the view it was made from sees it (before any provider key prefix; for
``ns.cached`` before the namespace's generation) — and ``await
f.invalidate(*args, **kwargs) -> bool`` (delete that key). Decorate
functions, not methods: the wrapper does not bind ``self`` (use ``key=``
with a plain function that takes the object).

**Tags.** ``tags=("products", "shop:{shop_id}")`` (templates, like the key)
puts each result under the current generation of each of its tags: the
stored key is ``{key}#tags:{tag}={generation},…``, and ``await
cache.invalidate_tag(tag)`` bumps that tag's generation (one ``INCRBY``),
so every result carrying the tag becomes unreachable at once and expires by
its own TTL — nothing is scanned. A tag's generation is a namespace's
(``tag:{tag}``), kept by each process for one second as namespaces keep
theirs: a call costs no extra round trip while its tags' generations are
fresh, one ``INCRBY 0`` per stale tag otherwise (concurrent callers share
it), and another process sees an invalidation within that second. While
Redis is bypassed and a tag's generation is unknown, the function runs
uncached. ``f.invalidate(...)`` deletes the result under the tags' current
generations; ``f.key(...)`` is the key before the tags.
"""

from __future__ import annotations

import functools
import inspect
import re
import string
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from .typed import TypedCache

#: A namespace (``namespace.py``, which imports this module through the
#: conveniences: named here only by what the tags use of it).
Namespace = Any

__all__ = ["CachedFunction", "cached", "tag_namespace"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class CachedFunction(Protocol[P, R_co]):
    """What ``@cache.cached(...)`` returns: the function, plus its key and
    its invalidation."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, bool]: ...


def cached(
    view: TypedCache[Any],
    key: str | Callable[..., str],
    *,
    ttl_seconds: float | None = None,
    none_ttl_seconds: float | None = None,
    lock: bool | None = None,
    early_refresh: bool | None = None,
    tags: tuple[str, ...] = (),
    tag_namespace: Callable[[str], Namespace] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
    """The decorator ``cache.cached(...)`` returns, over ``view``;
    ``tag_namespace(tag)`` is the namespace holding a tag's generation."""
    if not (isinstance(key, str) or callable(key)):
        raise TypeError(f"key must be a str template or a callable, got {type(key).__name__}")
    if isinstance(tags, str) or not all(isinstance(tag, str) and tag for tag in tags):
        raise TypeError("tags must be a tuple of non-empty str templates, not a single str")
    if any("#" in tag for tag in tags):
        raise ValueError(f"a tag may not contain '#' (it separates a key from its tags): {tags!r}")
    if tags and tag_namespace is None:
        raise TypeError(f"{view!r} cannot hold tags: it offers no namespaces")

    def decorate(func: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"@cached decorates an async def, got {func!r}")
        key_of: Callable[..., str] = _template(func, key) if isinstance(key, str) else key
        remember = view.remember
        if tags:
            base_key, tag_of = key_of, [_template(func, tag) for tag in tags]
            make_namespace = cast(Callable[[str], Namespace], tag_namespace)
            # A tag's namespace object, made once: making one checks its name
            # and finds its state, which would dominate a hit. Bounded, since
            # templated tags are as many as their arguments' values.
            namespaces: dict[str, Namespace] = {}

            def namespace(tag: str) -> Namespace:
                found = namespaces.get(tag)
                if found is None:
                    if len(namespaces) >= _TAG_NAMESPACES:
                        namespaces.clear()
                    found = namespaces[tag] = make_namespace(tag)
                return found

            async def stored_key(*args: Any, **kwargs: Any) -> str | None:
                parts = []
                for tag in dict.fromkeys(make(*args, **kwargs) for make in tag_of):
                    held = namespace(tag)
                    generation = held.fresh_generation()
                    if generation is None:
                        generation = await held.generation()
                    if generation is None:
                        return None  # bypassed, generation unknown: run uncached
                    parts.append(f"{tag}={generation}")
                return f"{base_key(*args, **kwargs)}#tags:{','.join(parts)}"

            @functools.wraps(func)
            async def tagged(*args: P.args, **kwargs: P.kwargs) -> R:
                full = await stored_key(*args, **kwargs)
                if full is None:
                    return await func(*args, **kwargs)
                return cast(
                    R,
                    await remember(
                        full,
                        functools.partial(func, *args, **kwargs),
                        ttl_seconds=ttl_seconds,
                        none_ttl_seconds=none_ttl_seconds,
                        lock=lock,
                        early_refresh=early_refresh,
                    ),
                )

            async def invalidate_tagged(*args: P.args, **kwargs: P.kwargs) -> bool:
                full = await stored_key(*args, **kwargs)
                return False if full is None else await view.delete(full)

            tagged.key = key_of  # type: ignore[attr-defined]
            tagged.invalidate = invalidate_tagged  # type: ignore[attr-defined]
            return cast(CachedFunction[P, R], tagged)

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return cast(
                R,
                await remember(
                    key_of(*args, **kwargs),
                    functools.partial(func, *args, **kwargs),
                    ttl_seconds=ttl_seconds,
                    none_ttl_seconds=none_ttl_seconds,
                    lock=lock,
                    early_refresh=early_refresh,
                ),
            )

        async def invalidate(*args: P.args, **kwargs: P.kwargs) -> bool:
            return await view.delete(key_of(*args, **kwargs))

        wrapper.key = key_of  # type: ignore[attr-defined]
        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        return cast(CachedFunction[P, R], wrapper)

    return decorate


#: Tag namespaces one decorated function keeps made (see ``cached``).
_TAG_NAMESPACES = 4096

_FIELD_ROOT = re.compile(r"[^.\[]*")


def _template(func: Callable[..., object], template: str) -> Callable[..., str]:
    """A key builder for ``template`` over ``func``'s parameters."""
    signature = inspect.signature(func)
    fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    for field in fields:
        root = _FIELD_ROOT.match(field).group()  # type: ignore[union-attr]
        if root not in signature.parameters:
            raise ValueError(
                f"the key template {template!r} names {{{field}}}, which is not a "
                f"parameter of {func.__qualname__}{signature}"
            )
    if not fields:
        return lambda *args, **kwargs: template

    bind = signature.bind

    def bound(*args: object, **kwargs: object) -> dict[str, object]:
        arguments = bind(*args, **kwargs)  # a call the function would refuse raises here
        arguments.apply_defaults()
        return arguments.arguments

    parameters = signature.parameters.values()
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
        return lambda *args, **kwargs: template.format_map(bound(*args, **kwargs))

    # The common shape (plain parameters, some with defaults): the same
    # arguments as bind() without its cost (a few µs, a tenth of a cache
    # hit); anything unusual goes through bind(), which raises as the call would.
    names = tuple(p.name for p in parameters)
    known = frozenset(names)
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
    count = len(names)

    def build(*args: object, **kwargs: object) -> str:
        arguments = {**defaults, **dict(zip(names, args, strict=False)), **kwargs}
        if (
            len(args) > count
            or len(arguments) != count
            or not known.issuperset(kwargs)
            or not kwargs.keys().isdisjoint(names[: len(args)])
        ):
            arguments = bound(*args, **kwargs)
        return template.format_map(arguments)

    return build


def tag_namespace(port: Any, tag: str) -> Namespace:
    """The namespace that holds ``tag``'s generation on ``port``."""
    return port.namespace(f"tag:{tag}")
