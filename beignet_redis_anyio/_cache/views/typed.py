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

**Batches** (``get_many``, ``set_many``, ``delete_many``, ``remember_many``)
are the port's own, one round trip per node, with the values encoded and
decoded here. A value that fails to decode fails its key alone, in the
:class:`BatchError` the port raises for per-key failures; a value that fails
to encode in ``set_many`` fails the call before anything is sent, as ``set``
does, and in ``remember_many`` fails its key alone (nothing is stored for it).

Cancellation: each operation is the port's, so it is exactly as cancellable;
the ``none_ttl_seconds`` rewrite is a plain ``set`` and may be cancelled with
its caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar, overload

from ..._exceptions import BatchError, CacheDecodeError
from ..batches import answer, distinct_keys, mapping_items
from ..inputs import ttl_milliseconds
from .codecs import Codec
from .viewed import ViewedPort, batched, remember_on, remember_options

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

    # -- batches ----------------------------------------------------------

    @overload
    async def get_many(self, keys: Iterable[str]) -> dict[str, T | None]: ...

    @overload
    async def get_many(self, keys: Iterable[str], default: D) -> dict[str, T | D]: ...

    async def get_many(self, keys: Iterable[str], default: object = None) -> dict[str, Any]:
        """Every key's decoded value (``default`` when missing), in the order
        given, duplicates once: the port's ``get_many``.

        Raises :class:`BatchError` when some values cannot be decoded (the
        others are in ``values``), and what the port's ``get_many`` raises.
        Cancellation: as the port's."""
        wanted = distinct_keys(keys)
        try:
            raw: Mapping[str, Any] = await batched(self._port, "get_many").get_many(wanted)
        except BatchError as exc:
            raw = _outcomes(exc)
        return self._decoded_all("get_many", wanted, raw, default)

    async def set_many(self, mapping: Mapping[str, T], *, ttl_seconds: float | None = None) -> None:
        """Encode every value and store them all, one write per node.

        Raises ``TypeError``/``ValueError`` naming the key for a value the
        codec cannot encode, before anything is sent, and what the port's
        ``set_many`` raises. Cancellation: as the port's."""
        encoded = {key: self.encode(key, obj) for key, obj in mapping_items(mapping)}
        await batched(self._port, "set_many").set_many(encoded, ttl_seconds=ttl_seconds)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """The port's ``delete_many``: how many keys there were. Raises and
        cancels as the port's does."""
        return await batched(self._port, "delete_many").delete_many(keys)

    async def remember_many(
        self,
        keys: Iterable[str],
        factory_many: Callable[[list[str]], Awaitable[Mapping[str, T]]],
        *,
        ttl_seconds: float | None = None,
        none_ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> dict[str, T]:
        """Every key's decoded cached value; the misses computed by one
        ``await factory_many(missing_keys)`` (a mapping of those keys to
        objects), encoded, stored and returned decoded. ``none_ttl_seconds``
        is as for :meth:`remember`, per key.

        Raises :class:`BatchError` for per-key failures (the factory left a
        key out, a value the codec cannot encode or a stored one it cannot
        decode), and what the port's ``remember_many`` raises. Cancellation:
        the port's, per key."""
        wanted = distinct_keys(keys)
        port = batched(self._port, "remember_many")
        if none_ttl_seconds is not None:
            ttl_milliseconds(none_ttl_seconds)  # a bad TTL fails before the factory runs
        unencodable: dict[str, Exception] = {}
        produced_none: list[str] = []

        async def produce(missing: list[str]) -> dict[str, str]:
            objects = await factory_many(missing)
            if not isinstance(objects, Mapping):
                return objects  # the port names the mistake
            encoded = {}
            for key, obj in objects.items():
                try:
                    encoded[key] = self.encode(key, obj)
                except (TypeError, ValueError) as exc:
                    unencodable[key] = exc  # left out: the port fails the key alone
                    continue
                if obj is None:
                    produced_none.append(key)
            return encoded

        options = remember_options(lock, early_refresh)
        try:
            raw: dict[str, Any] = await port.remember_many(
                wanted, produce, ttl_seconds=ttl_seconds, **options
            )
        except BatchError as exc:
            raw = _outcomes(exc)
        for key in unencodable.keys() & raw.keys():
            raw[key] = unencodable[key]  # the codec's error, not "no value for"
        rewrite = {k: raw[k] for k in produced_none if isinstance(raw.get(k), str)}
        if rewrite and none_ttl_seconds is not None and none_ttl_seconds != ttl_seconds:
            await batched(self._port, "set_many").set_many(rewrite, ttl_seconds=none_ttl_seconds)
        return self._decoded_all("remember_many", wanted, raw, None)

    def _decoded_all(
        self, operation: str, keys: list[str], raw: Mapping[str, Any], default: object
    ) -> dict[str, Any]:
        """Each key decoded (``default`` for ``None``, errors kept), as :func:`answer` says."""
        outcomes: list[Any] = []
        for key in keys:
            value = raw[key]
            if value is None:
                outcomes.append(default)
            elif isinstance(value, BaseException):
                outcomes.append(value)
            else:
                try:
                    outcomes.append(self.decode(key, value))
                except CacheDecodeError as exc:
                    outcomes.append(exc)
        return answer(operation, keys, outcomes)

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


def _outcomes(exc: BatchError) -> dict[str, Any]:
    """Every key's outcome from a port's per-key :class:`BatchError`, to
    decode the keys that succeeded; an outage is raised as it came."""
    if type(exc) is not BatchError:
        raise exc  # BatchUnavailableError: the app's outage handler takes it as is
    return {**exc.values, **exc.errors}
