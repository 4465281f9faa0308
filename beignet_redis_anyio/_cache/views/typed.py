"""``TypedCache``: the five operations on objects, through a codec.

``cache.json`` and ``cache.with_codec(codec)`` are this view over the string
port. Values are stored under the same key names as the port's own, encoded
by the codec, so ``cache.get(key)`` shows what ``cache.json.set(key, …)``
wrote. Everything the port guarantees for ``remember`` holds here, because
the view is one call to the port's ``remember``: single-flight per key,
cancellation of one caller leaving the others be, the cross-process lease,
early refresh, fail-open ``bypass`` (the factory's value comes back decoded,
unstored), events (the port reports each operation under the key you gave).

**Negative caching.** ``None`` is a value like any other: a factory that
returns ``None`` has it stored (``null`` in JSON), and the next call is a
hit that returns ``None`` without running the factory. ``get(key,
default=…)`` returns ``default`` only when the key is missing.
``none_ttl_seconds`` keeps a ``None`` for less (or more) time than a value:
the caller whose factory produced it rewrites it with that TTL right after
the port stored it (a second ``SET`` of the same value). If that caller is
cancelled in between, or an early refresh (which has no caller) produced
the ``None``, it keeps the call's TTL.

**Decode failures** raise :class:`CacheDecodeError` naming the key and are
never a miss: ``remember`` on a key holding something the codec cannot read
raises instead of running the factory and overwriting another program's
data. (A value that is not even UTF-8 text raises the port's
``UnicodeDecodeError``, also a ``ValueError`` naming the key.)

Cancellation: each operation is the port's, so it is exactly as cancellable;
the ``none_ttl_seconds`` rewrite is a plain ``set`` and may be cancelled with
its caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, overload

from ..._exceptions import CacheDecodeError
from ..inputs import ttl_milliseconds
from .codecs import Codec
from .viewed import ViewedPort, remember_on

__all__ = ["TypedCache"]

T = TypeVar("T")
D = TypeVar("D")


class TypedCache(Generic[T]):
    """A view of a port whose values are objects, encoded by ``codec``."""

    __slots__ = ("_codec", "_dumps", "_loads", "_port")

    def __init__(self, port: ViewedPort, codec: Codec[T]) -> None:
        self._port = port
        self._codec = codec
        # Bound once: the hit path is a port call and one ``loads``.
        self._dumps = codec.dumps
        self._loads = codec.loads

    def __repr__(self) -> str:
        return f"<TypedCache {self._codec!r} over {self._port!r}>"

    @property
    def codec(self) -> Codec[T]:
        return self._codec

    @overload
    async def get(self, key: str) -> T | None: ...

    @overload
    async def get(self, key: str, default: D) -> T | D: ...

    async def get(self, key: str, default: object = None) -> object:
        """The decoded value at ``key`` — a stored ``None`` included — or
        ``default`` when the key is missing.

        Raises :class:`CacheDecodeError` (a ``ValueError``, with ``.key``)
        when the stored value is not the codec's, and what the port's ``get``
        raises. Cancellation: as the port's."""
        raw = await self._port.get(key)
        if raw is None:
            return default
        return self.decode(key, raw)

    async def set(self, key: str, value: T, *, ttl_seconds: float | None = None) -> None:
        """Encode ``value`` and store it; an object the codec cannot encode
        raises ``TypeError``/``ValueError`` naming the key, and nothing is sent.

        Raises what the port's ``set`` raises. Cancellation: as the port's.
        """
        await self._port.set(key, self.encode(key, value), ttl_seconds=ttl_seconds)

    async def delete(self, key: str) -> bool:
        """The port's ``delete``: True when there was something to remove.
        Raises and cancels as the port's does."""
        return await self._port.delete(key)

    async def has(self, key: str) -> bool:
        """True when ``key`` holds a value — a stored ``None`` counts.

        Raises and cancels as the port's ``has``.
        """
        return await self._port.has(key)

    async def remember(
        self,
        key: str,
        factory: Callable[[], Awaitable[T]],
        *,
        ttl_seconds: float | None = None,
        none_ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> T:
        """The decoded cached value; on a miss ``await factory()``, encode,
        store and return it (decoded, so a miss and a hit return the same
        thing: JSON's tuples come back as lists either way).

        ``none_ttl_seconds`` (default: ``ttl_seconds``) is how long a ``None``
        the factory returned stays cached. ``lock``/``early_refresh`` are the
        port's, passed through only when set.

        Raises :class:`CacheDecodeError` for a stored value the codec cannot
        decode (nothing is overwritten, the factory does not run), the
        codec's ``TypeError``/``ValueError`` for a value it cannot encode
        (nothing is stored; every waiter gets it), and what the port's
        ``remember`` raises. Cancellation: the port's ``remember``'s — one
        caller's cancellation ends only its own wait.
        """
        if none_ttl_seconds is not None:
            ttl_milliseconds(none_ttl_seconds)  # a bad TTL fails before the factory runs
        produced_none = False

        async def produce() -> str:
            nonlocal produced_none
            obj = await factory()
            encoded = self.encode(key, obj)
            produced_none = obj is None
            return encoded

        port = self._port
        if lock is None and early_refresh is None:  # the hit path: no extra call layer
            raw = await port.remember(key, produce, ttl_seconds=ttl_seconds)
        else:
            raw = await remember_on(port, key, produce, ttl_seconds, lock, early_refresh)
        if produced_none and none_ttl_seconds is not None and none_ttl_seconds != ttl_seconds:
            await port.set(key, raw, ttl_seconds=none_ttl_seconds)
        return self.decode(key, raw)

    def encode(self, key: str, obj: T) -> str:
        """``codec.dumps(obj)``, its failures naming ``key``."""
        try:
            data = self._dumps(obj)
        except (TypeError, ValueError) as exc:
            cls = TypeError if isinstance(exc, TypeError) else ValueError
            raise cls(f"cannot encode the value for {key!r}: {exc}; nothing was stored") from exc
        if not isinstance(data, str):
            raise TypeError(
                f"{self._codec!r}.dumps returned {type(data).__name__}, not str, for {key!r}; "
                "nothing was stored"
            )
        return data

    def decode(self, key: str, raw: str) -> T:
        """``codec.loads(raw)``; any failure is a :class:`CacheDecodeError`."""
        try:
            return self._loads(raw)
        except Exception as exc:
            raise CacheDecodeError(key, f"{type(exc).__name__}: {exc}") from exc
