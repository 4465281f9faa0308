"""``cache.namespace(name)``: a group of keys invalidated at once.

Here too the mixin that offers it, ``CacheConveniences``: a namespace *is* a
port with every convenience, nested namespaces included, so the class that
makes namespaces and the namespace build on each other and share a module.

A namespace is a port (the five operations, and every convenience: ``ns.json``,
``ns.cached``, nested ``ns.namespace``) whose keys carry the namespace's
generation: ``key`` is stored at ``{name}#{generation}:{key}``, and the
generation is an integer at ``{name}#generation`` (missing counts as 0).
``await ns.invalidate()`` bumps it with one atomic increment (``INCRBY``),
so every key of the old generation becomes unreachable at once and expires
by its own TTL — nothing is scanned or deleted, and every operation touches
one key, so it works on a cluster as on one server (the generation key and
the data keys need not share a slot). A name may not contain ``#``; that
keeps every namespace's keys apart from every other's.

**Staleness.** Reading the generation on every operation would double the
round trips, so each process keeps it for ``generation_ttl_seconds``
(default 1 s). ``invalidate()`` updates the invalidating process at once;
another process may still read and write the old generation's keys for up
to ``generation_ttl_seconds`` after it. Use 0 to read it on every call.

The batch operations (``get_many``, ``set_many``, ``delete_many``,
``remember_many``) read the generation once for the whole batch and go to
the port's own, so a page of keys is still one round trip per node; a
:class:`BatchError` names the keys as you gave them.

Concurrent callers share one generation read. If that reader is cancelled,
a waiter takes over; nobody is stranded. When the backend is unavailable
and the port's failure policy is ``bypass``, the namespace keeps its last
known generation (its operations then go to the port, which bypasses);
with none known, it behaves as an empty cache for that call (``remember``
runs its factory, without single-flight). ``invalidate()`` returns False
then, as ``delete`` would: nothing was invalidated.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import cached_property
from typing import Any, cast

import anyio

from ..._exceptions import BatchError
from ..._net.numbers import in_range, is_number
from ..batches import answer, distinct_keys, mapping_items
from ..inputs import check_key, check_result
from .conveniences import TypedConveniences
from .viewed import GenerationPort, ViewedPort, batched, remember_on, remember_options

__all__ = ["CacheConveniences", "GenerationState", "Namespace"]

SEPARATOR = "#"


class GenerationState:
    """One namespace's generation as this process knows it, shared by every
    view of that namespace on the same port."""

    __slots__ = ("fresh_until", "reading", "value")

    def __init__(self) -> None:
        self.value: int | None = None
        self.fresh_until = float("-inf")
        self.reading: anyio.Event | None = None


class CacheConveniences(TypedConveniences):
    """Typed values, the ``@cached`` decorator and namespaces, over ``self``."""

    def namespace(self, name: str, *, generation_ttl_seconds: float = 1.0) -> Namespace:
        """A view whose keys ``await ns.invalidate()`` makes unreachable at
        once; see this module's docstring for the staleness window."""
        return Namespace(
            self,
            name,
            generation_ttl_seconds=generation_ttl_seconds,
            states=self._generation_states,
        )

    @cached_property
    def _generation_states(self) -> dict[str, GenerationState]:
        return {}


class Namespace(CacheConveniences):
    """The keys of ``port`` under ``name``'s current generation."""

    def __init__(
        self,
        port: Any,
        name: str,
        *,
        generation_ttl_seconds: float = 1.0,
        states: dict[str, GenerationState] | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a namespace name must be a str, got {type(name).__name__}")
        if not name or SEPARATOR in name:
            raise ValueError(f"a namespace name must be non-empty and without {SEPARATOR!r}")
        if not is_number(generation_ttl_seconds) or not in_range(generation_ttl_seconds, 0, 86_400):
            raise ValueError(
                "generation_ttl_seconds must be a number from 0 to 86400, "
                f"got {generation_ttl_seconds!r}"
            )
        if not isinstance(port, GenerationPort):
            raise TypeError(
                f"{type(port).__name__} has no atomic counter (_generation), so it "
                "cannot hold namespaces"
            )
        self.name = name
        self.generation_ttl_seconds = float(generation_ttl_seconds)
        self._port = cast(ViewedPort, port)
        self._counter: GenerationPort = port
        self._prefix = name + SEPARATOR
        self._generation_key = f"{name}{SEPARATOR}generation"
        # Shared by every view of this name on the same port, so one view's
        # invalidate() is seen at once by the others in this process.
        states = {} if states is None else states
        state = states.get(name)
        if state is None:
            state = states[name] = GenerationState()
        self._state = state

    def __repr__(self) -> str:
        return f"<Namespace {self.name!r} of {self._port!r}>"

    # -- the generation -----------------------------------------------------

    def fresh_generation(self) -> int | None:
        """The generation, if this process read it within
        ``generation_ttl_seconds``; else ``None`` (await :meth:`generation`).
        No I/O and no checkpoint: the hit path of a tagged call."""
        state = self._state
        if state.value is not None and time.monotonic() < state.fresh_until:
            return state.value
        return None

    async def generation(self) -> int | None:
        """The generation this process uses now (``None``: unknown, the
        backend is unavailable under ``bypass``).

        Raises what the port raises when Redis cannot be reached (under
        ``failure_policy="raise"``). Cancellation: concurrent callers share one read; a
        cancelled reader hands it to a waiter.
        """
        state = self._state
        while True:
            if state.value is not None and time.monotonic() < state.fresh_until:
                return state.value
            if state.reading is None:
                break
            await state.reading.wait()  # one read for all; if it is cancelled, retry
        done = state.reading = anyio.Event()
        try:
            asked = time.monotonic()
            value = await self._counter._generation(self._generation_key, 0)
            if value is not None:
                self._learned(value, asked)
        finally:
            state.reading = None
            done.set()
        return state.value

    async def invalidate(self) -> bool:
        """Make every key of this namespace unreachable (one ``INCRBY``).
        False when the backend was unavailable under ``bypass``.

        Raises what the port raises when Redis cannot be reached (under
        ``failure_policy="raise"``). Cancellation: the increment may or may not have been
        applied; this process reads the generation again on its next call.
        """
        asked = time.monotonic()
        value = await self._counter._generation(self._generation_key, 1)
        if value is None:
            return False
        self._learned(value, asked, bumped=True)
        return True

    def _learned(self, value: int, asked: float, *, bumped: bool = False) -> None:
        state = self._state
        # A read that raced our own bump must not take us back a generation.
        if bumped or state.value is None or value >= state.value:
            state.value = value
            state.fresh_until = asked + self.generation_ttl_seconds

    async def _key(self, key: str) -> str | None:
        check_key(key)
        generation = await self.generation()
        if generation is None:
            return None
        return f"{self._prefix}{generation}:{key}"

    # -- the five operations ------------------------------------------------

    async def get(self, key: str) -> str | None:
        """The port's ``get`` of ``key`` in the current generation.

        Raises what the port's ``get`` raises, and ``TypeError``/``ValueError``
        for a bad key before any I/O. Cancellation: as the port's; a caller
        cancelled while reading the generation hands that read to a waiter.
        """
        full = await self._key(key)
        return None if full is None else await self._port.get(full)

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None:
        """The port's ``set`` in the current generation; raises and cancels
        as it does. With no generation known while Redis is bypassed, the
        write is skipped."""
        full = await self._key(key)
        if full is not None:
            await self._port.set(full, value, ttl_seconds=ttl_seconds)

    async def delete(self, key: str) -> bool:
        """The port's ``delete`` in the current generation; raises and
        cancels as it does."""
        full = await self._key(key)
        return False if full is None else await self._port.delete(full)

    async def has(self, key: str) -> bool:
        """The port's ``has`` in the current generation; raises and cancels
        as it does."""
        full = await self._key(key)
        return False if full is None else await self._port.has(full)

    async def remember(
        self,
        key: str,
        factory: Callable[[], Awaitable[str]],
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> str:
        """The port's ``remember`` in the current generation, with all its
        guarantees: it raises and cancels as the port's does. With no
        generation known while Redis is bypassed, the factory runs alone
        (without single-flight) and its value is not stored."""
        full = await self._key(key)
        if full is None:
            return check_result(key, await factory())
        return await remember_on(self._port, full, factory, ttl_seconds, lock, early_refresh)

    # -- batches --------------------------------------------------------------

    async def _full_keys(self, keys: Iterable[str]) -> tuple[list[str], dict[str, str] | None]:
        """The keys as given (checked, once each), and each full key's name
        (``None``: no generation known while Redis is bypassed)."""
        wanted = distinct_keys(keys)
        generation = await self.generation() if wanted else 0
        if generation is None:
            return wanted, None
        return wanted, {f"{self._prefix}{generation}:{key}": key for key in wanted}

    async def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        """The port's ``get_many`` in the current generation; raises and
        cancels as it does. With no generation known while Redis is
        bypassed, every key is missing."""
        wanted, names = await self._full_keys(keys)
        if names is None or not wanted:
            return dict.fromkeys(wanted)
        try:
            got = await batched(self._port, "get_many").get_many(list(names))
        except BatchError as exc:
            raise _renamed(exc, names) from None
        return {names[full]: value for full, value in got.items()}

    async def set_many(
        self, mapping: Mapping[str, str], *, ttl_seconds: float | None = None
    ) -> None:
        """The port's ``set_many`` in the current generation; raises and
        cancels as it does. With no generation known while Redis is
        bypassed, nothing is written."""
        _, names = await self._full_keys(key for key, _ in mapping_items(mapping))
        if names is None or not names:
            return
        full = {full: mapping[key] for full, key in names.items()}
        try:
            await batched(self._port, "set_many").set_many(full, ttl_seconds=ttl_seconds)
        except BatchError as exc:
            raise _renamed(exc, names) from None

    async def delete_many(self, keys: Iterable[str]) -> int:
        """The port's ``delete_many`` in the current generation; raises and
        cancels as it does."""
        _, names = await self._full_keys(keys)
        if not names:
            return 0
        return await batched(self._port, "delete_many").delete_many(list(names))

    async def remember_many(
        self,
        keys: Iterable[str],
        factory_many: Callable[[list[str]], Awaitable[Mapping[str, str]]],
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> dict[str, str]:
        """The port's ``remember_many`` in the current generation, with all
        its guarantees; ``factory_many`` gets the missing keys as you gave
        them. Raises and cancels as the port's does. With no generation
        known while Redis is bypassed, ``factory_many`` runs for every key
        and nothing is stored."""
        if not callable(factory_many):
            raise TypeError(
                f"factory_many must be an async callable, got {type(factory_many).__name__}"
            )
        wanted, names = await self._full_keys(keys)
        if not wanted:
            return {}
        if names is None:
            produced = await factory_many(list(wanted))
            return answer("remember_many", wanted, [_checked(produced, key) for key in wanted])
        full_of = {key: full for full, key in names.items()}

        async def produce(missing: list[str]) -> Mapping[str, str]:
            produced = await factory_many([names[full] for full in missing])
            if not isinstance(produced, Mapping):
                return produced  # the port names the mistake
            return {full_of[key]: value for key, value in produced.items() if key in full_of}

        options = remember_options(lock, early_refresh)
        try:
            got = await batched(self._port, "remember_many").remember_many(
                list(names), produce, ttl_seconds=ttl_seconds, **options
            )
        except BatchError as exc:
            raise _renamed(exc, names) from None
        return {names[full]: value for full, value in got.items()}

    async def _generation(self, key: str, increment: int) -> int | None:
        """A nested namespace's counter lives inside this one, so
        invalidating this namespace invalidates the nested ones too."""
        full = await self._key(key)
        return None if full is None else await self._counter._generation(full, increment)


def _renamed(exc: BatchError, names: Mapping[str, str]) -> BatchError:
    """``exc`` (of the same class) with each full key named as the caller gave it."""
    return type(exc)(
        exc.operation,
        {names.get(full, full): value for full, value in exc.values.items()},
        {names.get(full, full): error for full, error in exc.errors.items()},
    )


def _checked(produced: object, key: str) -> Any:
    """``key``'s value from ``factory_many``'s mapping, or why there is none."""
    if not isinstance(produced, Mapping):
        return TypeError(
            f"factory_many returned {type(produced).__name__}, not a dict of keys to values"
        )
    if key not in produced:
        return LookupError(f"factory_many returned no value for {key!r}; nothing was stored")
    try:
        return check_result(key, produced[key])
    except (TypeError, ValueError) as exc:
        return exc
