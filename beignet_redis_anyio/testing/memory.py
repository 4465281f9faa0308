"""``MemoryCachePort``: the cache port in this process, for tests with no server.

A unit test of code typed against ``CachePort`` wants the port's behaviour —
TTLs, ``remember``'s single-flight and its cancellation rules, the same
input checks and errors, the same events — without a Redis to start. This is
that, made with a plain ``MemoryCachePort()``: nothing to open, no task
group, no connection. The checks are the port's own (``_cache/inputs.py``),
the events come from the port's own ``Reporter``, and the shared behaviour
tests (``tests/contract/test_port_contract.py``) run against it and against
``RedisCachePort`` alike, so the two cannot drift.

Where it differs, and why:

* **Time** is ``clock()`` — ``time.monotonic`` unless given — so a test can
  move it (``clock=lambda: now[0]``) instead of sleeping. An expired key is a
  miss at once; it is dropped when next touched.
* **``remember`` hosts its computation in the first caller's task**
  (``testing/caller_flight.py``), since there is no task group to run it in.
  Everything single-flight promises holds, except that a first caller
  cancelled while others still wait leaves only when the computation ends.
* **``lock=``** is accepted and changes nothing: with one process,
  single-flight already makes one call.
* **``early_refresh=``** draws XFetch on the recorded compute time exactly as
  the Redis port does, but the refresh runs in the caller that drew it
  (there is no background to run it in): that caller still gets the value
  it found, after the refresh. A refresh that fails is reported as a
  ``cache.refresh``/``error`` event and the old value stays.
* **Batches** (``get_many``, ``set_many``, ``delete_many``,
  ``remember_many``) keep the Redis port's semantics — per-key outcomes,
  :class:`BatchError`, one ``factory_many`` call for the missing keys,
  single-flight per key shared with ``remember``, one event per key — but
  ``remember_many`` does not refresh early (``early_refresh=`` is accepted).
  A key joined from another caller's run that ends before this call reaches
  it is computed alone, by a ``factory_many`` call of its own.
* **``client``** raises ``AttributeError`` naming this class: there is no
  Redis behind it. A test that needs raw Redis commands wants the pytest
  plugin's ``cache`` fixture (an embedded or real server) instead.
* **No failures of its own:** nothing here can time out or go away, so there
  is no circuit breaker and no failure policy.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import anyio.lowlevel

from .._cache.batches import FactoryMany, answer, distinct_keys, mapping_items
from .._cache.events import Observer, Operation, Status
from .._cache.inputs import check_key, check_result, check_value, ttl_milliseconds
from .._cache.protocol import CachePort, Factory
from .._cache.remember.refresh import meta_value, refresh_due, reported_refresh
from .._cache.remember.single_flight import cancelled_from_outside
from .._cache.reporting import Reporter
from .._cache.views.namespace import CacheConveniences
from .._net.errors import describe
from .caller_flight import CallerFlights

if TYPE_CHECKING:
    from .._client.client import RedisClient

__all__ = ["MemoryCachePort"]


class _Entry(NamedTuple):
    value: str
    #: ``clock()`` time at which the value expires; ``None``: never.
    expires: float | None
    #: How long computing it took (``remember`` with early refresh), in seconds.
    delta: float | None


class MemoryCachePort(CacheConveniences, CachePort):
    """An in-process :class:`CachePort` with the Redis port's semantics.

    ``observer`` receives the same :class:`CacheEvent`\\ s as from
    ``open_redis_provider(observer=…)``. ``clock`` returns seconds on a
    monotonic scale (default ``time.monotonic``). ``key_prefix`` is prepended
    to every key, as ``RedisConfig.key_prefix`` is (visible only through
    :meth:`keys`). ``early_refresh`` and ``early_refresh_beta`` are the
    defaults of ``remember``'s ``early_refresh=``, as the provider's
    ``REDIS_EARLY_REFRESH``/``REDIS_EARLY_REFRESH_BETA`` are.

    It subclasses the ``CachePort`` protocol on purpose: ``isinstance(port,
    CachePort)`` then holds on every Python, although ``client`` raises.
    """

    def __init__(
        self,
        *,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
        key_prefix: str = "",
        early_refresh: bool = False,
        early_refresh_beta: float = 1.0,
    ) -> None:
        if not isinstance(key_prefix, str):
            raise TypeError(f"key_prefix must be a str, got {type(key_prefix).__name__}")
        self.key_prefix = key_prefix
        self.early_refresh = early_refresh
        self.early_refresh_beta = early_refresh_beta
        self._clock = clock
        self._observer = observer
        self._report = Reporter(observer, bypass=False, breaker_cooldown=0.0)
        self._entries: dict[str, _Entry] = {}
        self._flights: CallerFlights[str] = CallerFlights()

    def __repr__(self) -> str:
        return f"<MemoryCachePort {len(self._entries)} key(s)>"

    @property
    def client(self) -> RedisClient:
        """There is none: a ``MemoryCachePort`` has no Redis behind it.

        Raises ``AttributeError`` (so ``hasattr``/``getattr(…, default)``
        behave), saying what to use instead.
        """
        raise AttributeError(
            "MemoryCachePort has no Redis client: it keeps values in this process. "
            "A test that needs raw Redis commands (cache.client) should use the pytest "
            "plugin's `cache` fixture, which runs on an embedded or real server."
        )

    @property
    def in_flight(self) -> int:
        """Keys with a ``remember`` computation running now (per-key state held)."""
        return len(self._flights)

    def keys(self) -> list[str]:
        """Every key holding an unexpired value, with the key prefix: what a
        ``SCAN`` of the Redis port's server would show of it."""
        now = self._clock()
        return [k for k, e in self._entries.items() if e.expires is None or e.expires > now]

    def clear(self) -> None:
        """Forget every value (not the computations running now)."""
        self._entries.clear()

    # -- the five operations ------------------------------------------------

    async def get(self, key: str) -> str | None:
        """The value stored at ``key``, or ``None``.

        Raises ``TypeError``/``ValueError`` for a bad key, as the Redis port does; there is no
        Redis to be unreachable. Cancellation: nothing changes.
        """
        check_key(key)
        started = time.perf_counter()
        await self._checkpoint("cache.get", key, None, started)
        entry = self._live(self.key_prefix + key)
        value = None if entry is None else entry.value
        if self._observer is not None:
            self._report.event(
                "cache.get", key, "hit" if value is not None else "miss", None, started
            )
        return value

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl_seconds`` or never.

        Raises ``TypeError``/``ValueError`` for bad input, as the Redis port does. Cancellation:
        the write happens at once, before any checkpoint, or not at all.
        """
        check_key(key)
        check_value(key, value)
        ttl_ms = ttl_milliseconds(ttl_seconds)
        started = time.perf_counter()
        await self._checkpoint("cache.set", key, ttl_seconds, started)
        self._store(self.key_prefix + key, value, ttl_ms, None)
        if self._observer is not None:
            self._report.event("cache.set", key, "stored", ttl_seconds, started)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when there was something to remove.

        Raises ``TypeError``/``ValueError`` for a bad key. Cancellation: as :meth:`set`.
        """
        check_key(key)
        started = time.perf_counter()
        await self._checkpoint("cache.delete", key, None, started)
        full_key = self.key_prefix + key
        found = self._live(full_key) is not None
        self._entries.pop(full_key, None)
        self._reported("cache.delete", key, "deleted" if found else "not_found", started)
        return found

    async def has(self, key: str) -> bool:
        """True when ``key`` holds a value (an empty string counts).

        Raises ``TypeError``/``ValueError`` for a bad key. Cancellation: nothing changes.
        """
        check_key(key)
        started = time.perf_counter()
        await self._checkpoint("cache.has", key, None, started)
        found = self._live(self.key_prefix + key) is not None
        self._reported("cache.has", key, "hit" if found else "miss", started)
        return found

    async def remember(
        self,
        key: str,
        factory: Factory,
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> str:
        """The cached value; on a miss, ``await factory()``, store it, return it.

        The rules are ``RedisCachePort.remember``'s (see the module docstring
        for where hosting the computation in the first caller shows).
        ``lock`` is accepted for the protocol's sake and changes nothing.

        Raises as ``RedisCachePort.remember`` does for bad input and for a
        factory's failure (there is no Redis to be unreachable).
        Cancellation: cancelling a caller ends only its wait; the others
        still get the value (see the module docstring for the one place
        hosting the run in a caller shows).
        """
        check_key(key)
        if not callable(factory):
            raise TypeError(f"factory must be an async callable, got {type(factory).__name__}")
        ttl_ms = ttl_milliseconds(ttl_seconds)
        refresh = (self.early_refresh if early_refresh is None else early_refresh) and (
            ttl_ms is not None
        )
        full_key = self.key_prefix + key
        flights = self._flights
        flights.check_reentry(full_key)
        started = time.perf_counter()
        try:
            await anyio.lowlevel.checkpoint()
            # No await from the read to joining or starting a run: nothing can
            # store the key in between, so no second read is ever needed.
            entry = None if full_key in flights else self._live(full_key)
            if entry is not None:
                if refresh and self._refresh_due(entry):
                    await self._refresh(key, full_key, factory, ttl_ms)
                if self._observer is not None:
                    self._report.event("cache.remember", key, "hit", ttl_seconds, started)
                return entry.value
            value = await flights.run(
                full_key, lambda: self._compute(key, full_key, factory, ttl_ms, refresh)
            )
        except BaseException as exc:
            self._report.failed("cache.remember", key, ttl_seconds, started, exc)
            raise
        if self._observer is not None:
            self._report.event("cache.remember", key, "miss", ttl_seconds, started)
        return value

    # -- batches ------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Every key's value (``None`` when missing), in the order given,
        duplicates once.

        Raises ``TypeError`` for a single ``str`` instead of an iterable of
        keys, and as :meth:`get` does for a bad key. Cancellation: nothing changes.
        """
        wanted = distinct_keys(keys)
        if not wanted:
            return {}
        started = time.perf_counter()
        await self._batch_checkpoint("cache.get_many", wanted, None, started)
        values = {}
        for key in wanted:
            entry = self._live(self.key_prefix + key)
            values[key] = None if entry is None else entry.value
        self._batch_reported(
            "cache.get_many",
            [(key, "hit" if value is not None else "miss") for key, value in values.items()],
            None,
            started,
        )
        return values

    async def set_many(
        self, mapping: Mapping[str, str], *, ttl_seconds: float | None = None
    ) -> None:
        """``set`` for every item.

        Raises as :meth:`set` does, for any item, before anything is stored.
        Cancellation: every write happens at once, or none does.
        """
        items = mapping_items(mapping)
        for key, value in items:
            check_value(key, value)
        ttl_ms = ttl_milliseconds(ttl_seconds)
        if not items:
            return
        started = time.perf_counter()
        await self._batch_checkpoint("cache.set_many", [k for k, _ in items], ttl_seconds, started)
        for key, value in items:
            self._store(self.key_prefix + key, value, ttl_ms, None)
        self._batch_reported(
            "cache.set_many", [(key, "stored") for key, _ in items], ttl_seconds, started
        )

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; how many there were.

        Raises as :meth:`get_many` does. Cancellation: as :meth:`set_many`.
        """
        wanted = distinct_keys(keys)
        if not wanted:
            return 0
        started = time.perf_counter()
        await self._batch_checkpoint("cache.delete_many", wanted, None, started)
        statuses: list[tuple[str, Status]] = []
        for key in wanted:
            full_key = self.key_prefix + key
            found = self._live(full_key) is not None
            self._entries.pop(full_key, None)
            statuses.append((key, "deleted" if found else "not_found"))
        self._batch_reported("cache.delete_many", statuses, None, started)
        return sum(status == "deleted" for _, status in statuses)

    async def remember_many(
        self,
        keys: Iterable[str],
        factory_many: FactoryMany,
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> dict[str, str]:
        """Every key's cached value; the misses computed by one ``await
        factory_many(missing_keys)``, stored and returned. The rules are
        ``RedisCachePort.remember_many``'s (see the module docstring for the
        differences); ``lock`` and ``early_refresh`` change nothing.

        Raises as ``RedisCachePort.remember_many`` does: bad input before any
        factory call, :class:`BatchError` for keys that failed one by one.
        Cancellation: cancelling a caller ends only its waits, per key.
        """
        wanted = distinct_keys(keys)
        if not callable(factory_many):
            raise TypeError(
                f"factory_many must be an async callable, got {type(factory_many).__name__}"
            )
        ttl_ms = ttl_milliseconds(ttl_seconds)
        if not wanted:
            return {}
        names = {self.key_prefix + key: key for key in wanted}
        flights = self._flights
        for full in names:
            flights.check_reentry(full)
        started = time.perf_counter()
        await self._batch_checkpoint("cache.remember_many", wanted, ttl_seconds, started)
        outcomes: dict[str, Any] = {}
        hits: set[str] = set()
        joined: list[str] = []
        missing: list[str] = []
        for full in names:
            entry = None if full in flights else self._live(full)
            if entry is not None:
                outcomes[full] = entry.value
                hits.add(full)
            else:
                (joined if full in flights else missing).append(full)
        shared = _OneCall(lambda: factory_many([names[full] for full in missing]))

        def compute(full: str) -> Callable[[], Awaitable[str]]:
            call = shared if full in missing else _OneCall(lambda: factory_many([names[full]]))

            async def store() -> str:
                produced = await call.result()
                if not isinstance(produced, Mapping):
                    raise TypeError(
                        f"factory_many returned {type(produced).__name__}, not a dict of keys "
                        "to values; nothing was stored"
                    )
                if names[full] not in produced:
                    raise LookupError(
                        f"factory_many returned no value for {names[full]!r}; nothing was stored"
                    )
                value = check_result(names[full], produced[names[full]])
                self._store(full, value, ttl_ms, None)
                return value

            return store

        async def one(full: str) -> None:
            try:
                outcomes[full] = await flights.run(full, compute(full))
            except Exception as exc:
                outcomes[full] = exc
            except BaseException as exc:
                if cancelled_from_outside(exc):
                    raise
                outcomes[full] = exc  # KeyboardInterrupt and its kind: raised below

        try:
            async with anyio.create_task_group() as tasks:
                for full in joined + missing:
                    tasks.start_soon(one, full)
        except BaseException as exc:
            self._report.batch_failed("cache.remember_many", wanted, ttl_seconds, started, exc)
            raise
        in_order = [outcomes[full] for full in names]
        if self._observer is not None:
            self._report.batch(
                "cache.remember_many",
                [
                    (key, "error", describe(o))
                    if isinstance(o, BaseException)
                    else (key, "hit" if full in hits else "miss", None)
                    for (full, key), o in zip(names.items(), in_order, strict=True)
                ],
                ttl_seconds,
                started,
            )
        for outcome in in_order:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome
        return answer("remember_many", wanted, in_order)

    async def _batch_checkpoint(
        self, operation: Operation, keys: list[str], ttl_seconds: float | None, started: float
    ) -> None:
        """:meth:`_checkpoint` for a batch: a cancelled caller is reported
        ``cancelled`` for every key."""
        try:
            await anyio.lowlevel.checkpoint()
        except BaseException as exc:
            self._report.batch_failed(operation, keys, ttl_seconds, started, exc)
            raise

    def _batch_reported(
        self,
        operation: Operation,
        statuses: list[tuple[str, Status]],
        ttl_seconds: float | None,
        started: float,
    ) -> None:
        if self._observer is not None:
            self._report.batch(
                operation, [(key, status, None) for key, status in statuses], ttl_seconds, started
            )

    # -- remember's parts ---------------------------------------------------

    async def _compute(
        self, key: str, full_key: str, factory: Factory, ttl_ms: int | None, refresh: bool
    ) -> str:
        """Runs in the flight's task: produce the value and store it."""
        began = self._clock()
        value = check_result(key, await factory())
        self._store(full_key, value, ttl_ms, self._clock() - began if refresh else None)
        return value

    def _refresh_due(self, entry: _Entry) -> bool:
        """XFetch on the recorded compute time, as ``refresh.py`` draws it."""
        if entry.delta is None or entry.expires is None:
            return False
        remaining_ms = max(1, round((entry.expires - self._clock()) * 1000))
        return refresh_due(meta_value(entry.delta), remaining_ms, self.early_refresh_beta)

    async def _refresh(self, key: str, full_key: str, factory: Factory, ttl_ms: int | None) -> None:
        """Recompute a hit early, in this caller; a failure leaves the old value."""
        compute = reported_refresh(
            key, lambda: self._compute(key, full_key, factory, ttl_ms, True), self._report
        )
        try:
            await self._flights.run(full_key, compute)
        except BaseException as exc:
            if cancelled_from_outside(exc):
                raise
            # Reported as a cache.refresh error; this caller still has its hit.

    # -- plumbing -----------------------------------------------------------

    def _live(self, full_key: str) -> _Entry | None:
        entry = self._entries.get(full_key)
        if entry is not None and entry.expires is not None and entry.expires <= self._clock():
            del self._entries[full_key]
            return None
        return entry

    async def _generation(self, key: str, increment: int) -> int | None:
        """A namespace's generation counter, as ``INCRBY`` keeps it (for
        :meth:`namespace`): missing counts as 0, the key keeps its TTL."""
        check_key(key)
        await anyio.lowlevel.checkpoint()
        full_key = self.key_prefix + key
        entry = self._live(full_key)
        try:
            value = (int(entry.value) if entry is not None else 0) + increment
        except ValueError:
            raise ValueError(f"{key!r} holds a value that is not an integer") from None
        if increment:
            expires = entry.expires if entry is not None else None
            self._entries[full_key] = _Entry(str(value), expires, None)
        return value

    def _store(self, full_key: str, value: str, ttl_ms: int | None, delta: float | None) -> None:
        expires = None if ttl_ms is None else self._clock() + ttl_ms / 1000
        self._entries[full_key] = _Entry(value, expires, delta)

    async def _checkpoint(
        self, operation: Operation, key: str, ttl_seconds: float | None, started: float
    ) -> None:
        """Where the Redis port would wait for a reply: a cancelled caller
        stops here, having changed nothing, and is reported ``cancelled``."""
        try:
            await anyio.lowlevel.checkpoint()
        except BaseException as exc:
            self._report.failed(operation, key, ttl_seconds, started, exc)
            raise

    def _reported(self, operation: Operation, key: str, status: Status, started: float) -> None:
        if self._observer is not None:
            self._report.event(operation, key, status, None, started)


class _OneCall:
    """One ``factory_many`` call shared by the runs of the keys it computes:
    the first run to ask makes it, the others wait for it. If the run making
    it is cancelled (its last waiter left), the next one to ask makes it again."""

    def __init__(self, call: Callable[[], Awaitable[object]]) -> None:
        self._call = call
        self._done: anyio.Event | None = None
        self._outcome: tuple[bool, Any] | None = None

    async def result(self) -> Any:
        while self._outcome is None:
            if self._done is not None:
                await self._done.wait()
                continue
            done = self._done = anyio.Event()
            try:
                self._outcome = (True, await self._call())
            except BaseException as exc:
                if not cancelled_from_outside(exc):
                    self._outcome = (False, exc)
                raise
            finally:
                self._done = None
                done.set()
        ok, value = self._outcome
        if not ok:
            raise value
        return value
