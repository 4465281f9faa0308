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
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any, cast

import anyio

from ..._net.numbers import in_range, is_number
from ..inputs import check_key, check_result
from .conveniences import TypedConveniences
from .viewed import GenerationPort, ViewedPort, remember_on

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

    async def _generation(self, key: str, increment: int) -> int | None:
        """A nested namespace's counter lives inside this one, so
        invalidating this namespace invalidates the nested ones too."""
        full = await self._key(key)
        return None if full is None else await self._counter._generation(full, increment)
