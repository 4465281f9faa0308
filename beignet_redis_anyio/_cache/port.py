"""``RedisCachePort``: the five operations of ``CachePort``, on Redis.

Read top to bottom: the operations; ``remember``'s miss path (the shared
first read, the computation run by single-flight, with or without the
cross-process lease); then the plumbing every operation shares — one command
through the circuit breaker, the store, TTL jitter and the failure policy
(``bypass``). The parts with an idea of their own live beside it: input
checks (``inputs.py``), the shared first read (``shared_read.py``), early
refresh (``refresh.py``), events and log lines (``reporting.py``).

Inputs are checked before any I/O, so a bad call fails with a clear
``TypeError``/``ValueError`` and writes nothing. ``get`` and ``remember`` on a
hit are the hot paths: they add no call layers, and report only when an
observer is set.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any, NamedTuple

from anyio.abc import TaskGroup

from .._client.client import RedisClient
from .._net.errors import describe
from .._net.transport import CLOSE_TIMEOUT
from .batches import Batches, FactoryMany
from .breaker import UNAVAILABLE
from .config import RedisConfig
from .core import PortCore
from .events import Observer, Operation, Status
from .inputs import check_key, check_result, check_value, not_text, ttl_milliseconds
from .local import ABSENT, LocalCache, LocalStats
from .protocol import Factory
from .remember.lease import Lease
from .remember.ready import ReadyNotifications
from .remember.refresh import meta_delta, meta_key, meta_value, refresh_due, reported_refresh
from .remember.shared_read import SharedReads
from .remember.single_flight import SingleFlight
from .views.namespace import CacheConveniences

__all__ = ["RedisCachePort"]


class RedisCachePort(CacheConveniences):
    """The Redis-backed :class:`CachePort`, made by :func:`open_redis_provider`.

    ``client`` is the escape hatch: the full :class:`RedisClient`, on the same
    connection, for anything the five operations do not cover
    (``await cache.client.incr("counter")``). It does not apply
    ``key_prefix``.

    ``json``, ``with_codec``, ``cached`` and ``namespace`` come from
    :class:`CacheConveniences`, written over the five operations.
    """

    def __init__(
        self,
        client: RedisClient,
        task_group: TaskGroup,
        config: RedisConfig,
        *,
        observer: Observer | None = None,
        local: LocalCache | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.key_prefix = config.key_prefix
        self._task_group = task_group
        self._core = core = PortCore(client, task_group, config, observer, local)
        # The core's parts under the names the operations use: one attribute
        # lookup on the hot path, as before the batches shared them.
        self._local = core.local
        self._observer = core.observer
        self._flights = core.flights
        self._execute = core.execute
        self._bypass = core.bypass
        self._report = core.report
        self._breaker = core.breaker
        self._guarded = core.guarded
        self._jittered = core.jittered
        self._shared_reads = SharedReads(self._read_for_remember)
        self._lease = Lease(
            client,
            ReadyNotifications(client.pubsub, task_group),
            lease_seconds=config.lock_lease_seconds,
            wait_seconds=config.lock_wait_seconds,
            report=self._report.lease_event,
        )
        self._batches = Batches(core, SingleFlight(task_group), self._lease)

    def __repr__(self) -> str:
        return f"<RedisCachePort {self.client.settings.redacted_url()}>"

    async def aclose(self) -> None:
        """End every ``remember`` computation before the connection closes,
        so that their cleanup (a leader releasing its lease) still reaches
        Redis. Called by the provider on exit; shielded and bounded.

        Raises nothing of its own. Cancellation: shielded and bounded, so the provider's exit
        never hangs on it.
        """
        await self._flights.aclose(CLOSE_TIMEOUT)
        await self._batches.aclose(CLOSE_TIMEOUT)
        if self._local is not None:
            self._local.flush()

    @property
    def in_flight(self) -> int:
        """Keys with a ``remember`` computation running now (per-key state held)."""
        return len(self._flights)

    @property
    def local_stats(self) -> LocalStats | None:
        """The local cache's counters (a snapshot), or ``None`` when it is off."""
        return self._local.stats() if self._local is not None else None

    @property
    def breaker_state(self) -> str:
        """``"closed"`` (Redis in use), ``"open"`` (refused for a cooldown) or ``"half_open"``."""
        return self._breaker.state

    # -- the five operations ------------------------------------------------

    async def get(self, key: str) -> str | None:
        """The value stored at ``key``, or ``None``.

        Raises ``TypeError``/``ValueError`` for a key that is not a non-empty
        ``str`` (before any I/O); ``UnicodeDecodeError`` when the stored value
        is not text (another program's bytes), for this call alone; and, when
        Redis cannot be reached, redis-py's ``ConnectionError`` (or
        :class:`CircuitOpenError` while the breaker is open) or
        ``TimeoutError`` — unless ``failure_policy="bypass"``, which answers
        as if the key were missing.

        Cancellation: the read is abandoned; its reply, if it comes, is read
        and dropped, and the shared connection stays in step.
        """
        check_key(key)
        started = time.perf_counter()
        local = self._local
        try:
            if local is None:
                value: str | None = await self._guarded(self._execute, "GET", self.key_prefix + key)
            else:
                # A local hit does not yield to the scheduler, as a dict would not.
                value = local.lookup(self.key_prefix + key)
                if value is not ABSENT:
                    if self._observer is not None:
                        status: Status = "hit" if value is not None else "miss"
                        self._report.event("cache.get", key, status, None, started, local=True)
                    return value
                value, _ = await self._guarded(self._read_tracked, self.key_prefix + key)
        except BaseException as exc:
            held = self._stale(key, exc)
            if held is not ABSENT:
                self._served_stale("cache.get", key, held, None, started, exc)
                return held  # type: ignore[no-any-return]
            if self._bypassed("cache.get", key, None, started, exc):
                return None
            if isinstance(exc, UnicodeDecodeError):
                raise not_text(key, exc) from None
            raise
        if self._observer is not None:
            self._report.event(
                "cache.get", key, "hit" if value is not None else "miss", None, started
            )
        return value

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None:
        """Store ``value`` at ``key``, expiring after ``ttl_seconds`` (fractions
        keep millisecond precision) or never.

        Raises ``TypeError``/``ValueError`` before any I/O for a bad key, a
        value that is not ``str``, or a TTL that is not a positive number the
        server can hold; and, when Redis cannot be reached,
        ``ConnectionError``/``TimeoutError`` as :meth:`get` does, unless
        ``failure_policy="bypass"`` (then the write is skipped).

        Cancellation: if the caller is cancelled after the command left, the
        write may still be applied; its reply is read and dropped, and the
        shared connection stays in step. A scope cancelled before the call
        sends nothing.
        """
        check_key(key)
        check_value(key, value)
        ttl_ms = ttl_milliseconds(ttl_seconds)
        started = time.perf_counter()
        try:
            await self._store(self.key_prefix + key, value, ttl_ms, None)
        except BaseException as exc:
            if self._bypassed("cache.set", key, ttl_seconds, started, exc):
                return
            raise
        if self._observer is not None:
            self._report.event("cache.set", key, "stored", ttl_seconds, started)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when there was something to remove.

        Raises as :meth:`set` does for a bad key or an unreachable Redis
        (``bypass``: nothing is removed, and it returns False).

        Cancellation: if the caller is cancelled after the command left, the
        write may still be applied; its reply is read and dropped, and the
        shared connection stays in step. A scope cancelled before the call
        sends nothing.
        """
        local = self._local
        if local is None:
            return await self._count("cache.delete", "DEL", key, "deleted", "not_found")
        check_key(key)
        local.invalidate(self.key_prefix + key)
        try:
            return await self._count("cache.delete", "DEL", key, "deleted", "not_found")
        finally:
            local.invalidate(self.key_prefix + key)  # see _store

    async def has(self, key: str) -> bool:
        """True when ``key`` holds a value (an empty string counts).

        Raises as :meth:`get` does (``bypass``: False while Redis cannot be
        reached). Cancellation: as :meth:`get`.
        """
        local = self._local
        if local is not None and isinstance(key, str):
            held = local.lookup(self.key_prefix + key)
            if held is not ABSENT:
                check_key(key)
                if self._observer is not None:
                    status: Status = "hit" if held is not None else "miss"
                    self._report.event(
                        "cache.has", key, status, None, time.perf_counter(), local=True
                    )
                return held is not None
        return await self._count("cache.has", "EXISTS", key, "hit", "miss", stale=True)

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

        Concurrent misses on one key share one ``factory()`` run (see the
        single-flight guarantees in ``docs/remember.md``). The factory must return ``str``;
        anything else raises ``TypeError``, a ``str`` that cannot be encoded as
        UTF-8 (a lone surrogate) ``ValueError``, and nothing is stored. Any
        other exception the factory raises, ``BaseException`` included, fails
        the callers waiting on that run — as itself — and nobody else.

        ``lock`` and ``early_refresh`` override the provider's settings for
        this call: ``lock=True`` makes one *process* compute while others wait
        for its value; ``early_refresh=True`` (needs ``ttl_seconds``) lets a
        hit recompute the value in the background shortly before it expires.

        Raises ``TypeError``/``ValueError`` before any I/O or factory call for
        a bad key or TTL; ``RuntimeError`` when a factory awaits ``remember``
        of its own key (instead of a deadlock); ``UnicodeDecodeError`` when
        the stored value is not text (nothing is overwritten); and, when
        Redis cannot be reached, ``ConnectionError``/``TimeoutError`` as
        :meth:`get` does — with ``failure_policy="bypass"`` the factory runs
        and its value is returned, not stored.

        Cancellation: cancelling a caller, the first or any other, only ends
        that caller's wait; the factory runs in the provider's task group and
        the other callers still get its value. When the last waiting caller
        is gone, the run is cancelled, and nothing is stored.
        """
        check_key(key)
        if not callable(factory):
            raise TypeError(f"factory must be an async callable, got {type(factory).__name__}")
        ttl_ms = ttl_milliseconds(ttl_seconds)
        use_lock = self.config.remember_lock if lock is None else lock
        refresh = (self.config.early_refresh if early_refresh is None else early_refresh) and (
            ttl_ms is not None
        )
        full_key = self.key_prefix + key
        flights = self._flights
        flights.check_reentry(full_key)
        started = time.perf_counter()
        unavailable: BaseException | None = None
        try:
            local = self._local
            meta: Any = None
            remaining_ms = -1
            if local is None:
                held = ABSENT
            elif refresh:
                found = local.lookup_refreshable(full_key)
                held = ABSENT if found is ABSENT else found[0]
                if found is not ABSENT:
                    _, meta, remaining_ms = found
            else:
                held = local.lookup(full_key)
            if held is not ABSENT and held is not None and full_key not in flights:
                if refresh and refresh_due(meta, remaining_ms, self.config.early_refresh_beta):
                    # Decided from what was read with the entry, as a hit
                    # from Redis decides; the caller still gets this value.
                    plan = _Plan(key, full_key, factory, ttl_ms, use_lock, refresh)
                    self._flights.start_background(
                        full_key,
                        reported_refresh(
                            plan.key, partial(self._compute, plan, str(held)), self._report
                        ),
                    )
                if self._observer is not None:
                    self._report.event(
                        "cache.remember", key, "hit", ttl_seconds, started, local=True
                    )
                return str(held)
            plan = _Plan(key, full_key, factory, ttl_ms, use_lock, refresh)
            # Known missing (held is None): straight to the computation.
            if full_key not in flights and held is ABSENT:
                try:
                    cached = await self._shared_reads.read(full_key, plan)
                except UNAVAILABLE as exc:
                    if not self._bypass:
                        raise
                    held = self._stale(key, exc)
                    if held is not ABSENT and held is not None:
                        self._served_stale("cache.remember", key, held, ttl_seconds, started, exc)
                        return str(held)
                    unavailable, cached = exc, None
                if cached is not None:
                    if self._observer is not None:
                        self._report.event("cache.remember", key, "hit", ttl_seconds, started)
                    return cached
            value = await flights.run(full_key, partial(self._compute, plan))
        except BaseException as exc:
            self._report.failed("cache.remember", key, ttl_seconds, started, exc)
            if isinstance(exc, UnicodeDecodeError):
                raise not_text(key, exc) from None
            raise
        if self._observer is not None:
            if unavailable is not None:
                self._report.error("cache.remember", key, ttl_seconds, started, unavailable)
            else:
                self._report.event("cache.remember", key, "miss", ttl_seconds, started)
        return value

    # -- batches (batches.py) ----------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Every key's value (``None`` when missing), in the order given,
        duplicates once: one ``MGET`` per node (per slot on a cluster). A key
        holding another type reads as ``None``, as ``MGET`` has it. A value
        that is not text fails that key: :class:`BatchError` carries the others.

        Raises ``TypeError`` for a single ``str`` instead of an iterable of
        keys, and as :meth:`get` does for a bad key (before any I/O) or an
        unreachable Redis. Cancellation: as :meth:`get`.
        """
        return await self._batches.get_many(keys)

    async def set_many(
        self, mapping: Mapping[str, str], *, ttl_seconds: float | None = None
    ) -> None:
        """``set`` for every item, one write per node; a key the server
        refuses fails alone (:class:`BatchError`).

        Raises as :meth:`set` does, for any item, before any I/O.

        Cancellation: if the caller is cancelled after the command left, the
        write may still be applied; its reply is read and dropped, and the
        shared connection stays in step. A scope cancelled before the call
        sends nothing.
        """
        await self._batches.set_many(mapping, ttl_seconds)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; how many there were.

        Raises as :meth:`get_many` does.

        Cancellation: if the caller is cancelled after the command left, the
        write may still be applied; its reply is read and dropped, and the
        shared connection stays in step. A scope cancelled before the call
        sends nothing.
        """
        return await self._batches.delete_many(keys)

    async def remember_many(
        self,
        keys: Iterable[str],
        factory_many: FactoryMany,
        *,
        ttl_seconds: float | None = None,
        lock: bool | None = None,
        early_refresh: bool | None = None,
    ) -> dict[str, str]:
        """Every key's cached value; the misses computed by one
        ``await factory_many(missing_keys)`` (a dict of those keys to ``str``
        values), stored and returned.

        Single-flight holds per key, with ``remember`` too: a key another
        caller is computing is waited for, not recomputed. Keys fail one by
        one (the factory raised, left a key out, returned a non-``str``):
        nothing is stored for them and :class:`BatchError` carries the rest.

        ``lock=True`` (or the provider's ``remember_lock``) takes
        ``remember``'s cross-process lease per key: the misses whose lease
        this process wins go to one ``factory_many`` call; a key another
        process holds is waited for on its own channel and read once stored;
        a key whose leader failed, was cancelled or died (its lease expired
        without a value) is taken over and computed here, by a
        ``factory_many`` call of its own — and after ``lock_wait_seconds``
        computed here regardless, as ``remember`` does.

        Raises as :meth:`remember` does for bad input (before any I/O or
        factory call) and for an unreachable Redis, for the whole batch.
        Cancellation: as :meth:`remember`, per key: cancelling one caller
        ends only its wait, and the ``factory_many`` call is cancelled only
        when no caller waits for any key it computes.
        """
        return await self._batches.remember_many(
            keys, factory_many, ttl_seconds=ttl_seconds, lock=lock, early_refresh=early_refresh
        )

    # -- namespaces' generation counter (for CacheConveniences.namespace) ---

    async def _generation(self, key: str, increment: int) -> int | None:
        """``INCRBY`` (0 reads): atomic across processes, one key, so
        cluster-safe. ``None`` when Redis is unavailable under ``bypass``."""
        check_key(key)
        try:
            value = await self._guarded(self._execute, "INCRBY", self.key_prefix + key, increment)
        except UNAVAILABLE:
            if self._bypass:
                return None
            raise
        return int(value)

    # -- remember's parts ---------------------------------------------------

    async def _read_for_remember(self, plan: _Plan) -> tuple[str | None, bool]:
        """The value, and whether the callers that came while it was read may
        have it too (``SharedReads``): with the local cache, only if nothing
        put it in doubt meanwhile (``LocalCache.finish``) — one of them may
        have seen a newer write acknowledged since the read was sent."""
        flights = self._flights
        full_key = plan.full_key
        completed_before = flights.completed
        shareable = True
        if plan.refresh:
            cached, shareable = await self._read_with_expiry(plan)
        elif self._local is not None:
            cached, shareable = await self._guarded(self._read_tracked, full_key)
        else:
            cached = await self._guarded(self._execute, "GET", full_key)
        if cached is None and flights.completed != completed_before:
            # A run ended while we read; it may have stored our key.
            if self._local is not None:
                cached, shareable = await self._guarded(self._read_tracked, full_key)
            else:
                cached = await self._guarded(self._execute, "GET", full_key)
        return cached, shareable

    async def _read_tracked(self, full_key: str) -> tuple[str | None, bool]:
        """A read that fills the local cache: GET and PTTL in one write (the
        entry must not outlive the key), stored unless an invalidation or a
        flush arrived before the caller got the reply (``local.py``). With
        the value, whether nothing did (``LocalCache.finish``)."""
        local = self._local
        assert local is not None
        ticket = local.begin(full_key)  # before the read is queued
        answered = vouched = False
        value: Any = None
        remaining_ms: Any = None
        try:
            # The raw path a pipeline takes, without building one: replies
            # as they come (an error reply as its exception), no callbacks.
            value, remaining_ms = await self.client._send_many(
                [("GET", full_key), ("PTTL", full_key)], False
            )
            answered = not isinstance(value, BaseException)
        finally:
            vouched = local.finish(full_key, ticket, answered, value, remaining_ms)
        if isinstance(value, BaseException):
            raise value  # this key's own trouble (not text, WRONGTYPE)
        return None if value is None else str(value), vouched

    async def _read_with_expiry(self, plan: _Plan) -> tuple[str | None, bool]:
        """A hit that may start an early refresh (XFetch, ``refresh.py``).
        With the local cache, the value is kept with its metadata and
        remaining TTL, so later hits decide from memory. With the value,
        whether nothing put it in doubt (as :meth:`_read_tracked` says)."""
        full_key = plan.full_key
        local = self._local
        ticket = None if local is None else local.begin(full_key)  # before it is queued
        answered = False
        vouched = local is None
        value: Any = None
        remaining_ms: Any = None
        meta: Any = None
        try:
            value, remaining_ms, meta = await self._guarded(
                partial(
                    self.client._send_many,
                    [("GET", full_key), ("PTTL", full_key), ("GET", meta_key(full_key))],
                    False,
                )
            )
            answered = not isinstance(value, BaseException)
            if isinstance(meta, BaseException):
                meta = None  # metadata someone else wrote that we cannot read: no early refresh
        finally:
            if local is not None and ticket is not None:
                # Kept parsed: each local hit decides on it (refresh_due).
                delta = meta_delta(meta)
                vouched = local.finish(full_key, ticket, answered, value, remaining_ms, delta)
        if isinstance(value, Exception):
            raise value  # the value's own trouble (not text, WRONGTYPE): this caller's
        if value is None:
            return None, vouched
        if refresh_due(meta, remaining_ms, self.config.early_refresh_beta):
            self._flights.start_background(
                full_key,
                reported_refresh(plan.key, partial(self._compute, plan, str(value)), self._report),
            )
        return str(value), vouched

    async def _compute(self, plan: _Plan, refreshing: str | None = None) -> str:
        """Runs in the flight's task: produce the value and store it.
        ``refreshing``: the value an early refresh started from (``None``
        for a miss), which the lease's leader must not take for a value
        another process has just stored (``Lease.compute``)."""

        async def produce() -> tuple[str, float]:
            began = time.perf_counter()
            value = check_result(plan.key, await plan.factory())
            return value, time.perf_counter() - began

        async def store(value: str, delta: float) -> None:
            try:
                await self._store(
                    plan.full_key,
                    value,
                    self._jittered(plan.ttl_ms),
                    delta if plan.refresh else None,
                )
            except UNAVAILABLE:
                if not self._bypass:
                    raise  # with bypass the value is still good; Redis is not

        if plan.use_lock and not (self._bypass and self._breaker.state == "open"):
            try:
                return await self._lease.compute(
                    plan.key,
                    plan.full_key,
                    produce,
                    store,
                    self._jittered(plan.ttl_ms),
                    lambda delta: meta_value(delta) if plan.refresh else "",
                    refreshing,
                )
            except UNAVAILABLE as exc:
                if not self._bypass:
                    raise
                self._breaker.failed(exc)
        value, delta = await produce()
        await store(value, delta)
        return value

    # -- plumbing -----------------------------------------------------------

    async def _count(
        self,
        operation: Operation,
        command: str,
        key: str,
        yes: Status,
        no: Status,
        *,
        stale: bool = False,
    ) -> bool:
        """A one-key command that answers with a count: DEL, EXISTS (``stale``:
        a read, which ``stale_if_error`` may answer)."""
        check_key(key)
        started = time.perf_counter()
        try:
            answer = bool(await self._guarded(self._execute, command, self.key_prefix + key))
        except BaseException as exc:
            held: Any = self._stale(key, exc) if stale else ABSENT
            if held is not ABSENT:
                self._served_stale(operation, key, held, None, started, exc)
                return held is not None
            if self._bypassed(operation, key, None, started, exc):
                return False
            raise
        if self._observer is not None:
            self._report.event(operation, key, yes if answer else no, None, started)
        return answer

    async def _store(
        self, full_key: str, value: str, ttl_ms: int | None, delta: float | None
    ) -> None:
        local = self._local
        if local is None:
            await self._write(full_key, value, ttl_ms, delta)
            return
        # Dropped before the write (reads in flight must not store the old
        # value) and after it is answered (the server's own invalidation for
        # a writer comes after the reply: read-your-writes cannot wait).
        local.invalidate(full_key)
        try:
            await self._write(full_key, value, ttl_ms, delta)
        finally:
            local.invalidate(full_key)

    async def _write(
        self, full_key: str, value: str, ttl_ms: int | None, delta: float | None
    ) -> None:
        ttl = () if ttl_ms is None else ("PX", ttl_ms)
        if delta is None:
            await self._guarded(self._execute, "SET", full_key, value, *ttl)
            return
        # The recompute time goes beside the value, never inside it.
        pipe = self.client.pipeline(transaction=True)
        pipe.execute_command("SET", full_key, value, *ttl)
        pipe.execute_command("SET", meta_key(full_key), meta_value(delta), *ttl)
        await self._guarded(pipe.execute)

    def _stale(self, key: str, exc: BaseException) -> Any:
        """What ``local_cache_stale_if_error`` serves for ``key`` now that
        Redis could not answer (``exc``), or :data:`ABSENT`."""
        local = self._local
        if local is None or not local.stale_if_error or not isinstance(exc, UNAVAILABLE):
            return ABSENT
        return local.stale(self.key_prefix + key)

    def _served_stale(
        self,
        operation: Operation,
        key: str,
        held: str | None,
        ttl_seconds: float | None,
        started: float,
        exc: BaseException,
    ) -> None:
        if self._observer is not None:
            status: Status = "hit" if held is not None else "miss"
            self._report.event(
                operation, key, status, ttl_seconds, started, describe(exc), local=True, stale=True
            )

    def _bypassed(
        self,
        operation: Operation,
        key: str,
        ttl_seconds: float | None,
        started: float,
        exc: BaseException,
    ) -> bool:
        """Report ``exc``; True when the failure policy says to carry on without Redis."""
        self._report.failed(operation, key, ttl_seconds, started, exc)
        return self._bypass and isinstance(exc, UNAVAILABLE)


class _Plan(NamedTuple):
    """Everything a miss needs to compute and store one key's value."""

    key: str
    full_key: str
    factory: Factory
    ttl_ms: int | None
    use_lock: bool
    refresh: bool
