"""Batches: many keys in one round trip per node, with ``remember``'s guarantees.

``get_many``, ``set_many``, ``delete_many`` and ``remember_many`` are the
port's batch operations; ``port.py`` forwards to :class:`Batches`, which uses
the port's own plumbing, its :class:`~.core.PortCore` (the breaker in
``guarded``, the failure policy, TTL jitter, the reporter, the single-flight
table).

How they talk to Redis. Every key is checked before any I/O; an empty batch
returns at once without I/O. The commands of one batch go in one write per
node: on a single server one ``MGET`` (or one pipeline), on a cluster one
command per slot, grouped by node by the client's non-transactional
pipeline. A command holds at most :data:`CHUNK` keys: the server runs one
command without serving anyone else, so 100,000 keys in one ``MGET`` would
stall every other client for the whole reply; chunks of 1,000 keep each
command to tens of microseconds of server time while all of them still go
in the same write (Redis reads a pipeline in 16 KB bites and serves other
clients in between).

Per key, not all or nothing. Keys in a batch succeed or fail one by one —
single-flight already decides each key's fate on its own (a key joined from
another caller's run fails or succeeds with that run). When any key fails,
the call raises :class:`BatchError`, which carries the values of the keys
that did succeed (stored, for ``set_many``/``remember_many``) and each
failed key's exception; nothing is stored for a failed key. An outage is
not a per-key failure: when Redis could not be reached for the keys that
failed, the call raises that ``ConnectionError``/``TimeoutError`` itself if
no key succeeded, and :class:`BatchUnavailableError` (a ``BatchError`` and a
``ConnectionError``) if some did — so an application's outage handler
catches a batch as it catches a single ``get``. A
``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt`` from a
factory) is raised as itself. Cancelling a caller cancels only its waiting.

``remember_many`` reads the keys nobody is computing (``GET`` per key, in a
pipeline — not ``MGET``, which reads a key of another type as missing and
would let us overwrite it; ``remember`` refuses such a key with
``WRONGTYPE``, and so does this), joins the runs already going for the keys
others compute, and starts one run per remaining key, all fed by *one*
``factory_many(missing_keys)`` call. That call is itself a flight (in a
single-flight table of its own) whose waiters are the keys' runs: it is
cancelled only when every key it computes has lost its last waiter, so one
caller's cancellation never cancels what another caller waits for.
Early refresh works per key.

``lock=True`` (or ``remember_lock``) adds the cross-process lease, per key
(``remember/lease_batch.py``): that call first takes the leases of the
keys it computes, in one write per node; the keys it wins go to its
``factory_many``, and each key another process holds leaves the call's
waiters at once and follows on its own channel, as ``remember`` does
(``Lease.follow``) — taken over when its leader fails, is cancelled or
dies. ``remember`` and ``remember_many`` share the same leases. Under
``bypass`` with Redis unreachable, the keys are computed without the
lease, as ``remember`` computes them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import anyio
from redis.crc import key_slot
from redis.exceptions import ResponseError

from .._exceptions import BatchError, BatchUnavailableError
from .._net.errors import describe
from .._net.redis_compat import NEVER_DECODE
from .breaker import UNAVAILABLE
from .core import PortCore
from .events import Status
from .inputs import check_key, check_result, check_value, not_text, ttl_milliseconds
from .remember.lease import Lease
from .remember.lease_batch import FOLLOW, BatchLease
from .remember.refresh import meta_key, meta_value, refresh_due, reported_refresh
from .remember.single_flight import SingleFlight

__all__ = ["CHUNK", "Batches", "FactoryMany", "answer", "distinct_keys", "mapping_items"]

#: Keys per command (see the module's docstring).
CHUNK = 1000

#: ``await factory_many(missing_keys)``: a value for each of the keys.
FactoryMany = Callable[[list[str]], Awaitable[Mapping[str, str]]]

#: A key's outcome in a batch: its value (``None``: missing) or its error.
_Outcome = Any


def distinct_keys(keys: Iterable[str]) -> list[str]:
    """The keys, each checked, duplicates dropped, in the order given."""
    if isinstance(keys, (str, bytes)):
        raise TypeError("keys must be an iterable of str keys, not a single str")
    listed = list(keys)
    for key in listed:
        if type(key) is not str or not key:  # the common case costs no call
            check_key(key)
    return list(dict.fromkeys(listed))


def mapping_items(mapping: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A ``set_many`` mapping's items, each key checked."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"set_many takes a mapping of keys to values, got {type(mapping)}")
    items = list(mapping.items())
    for key, _ in items:
        check_key(key)
    return items


class _Plan(NamedTuple):
    """What a ``remember_many`` miss needs: the factory, TTL, early refresh,
    the cross-process lease, each full key's name as the caller gave it, and
    the outage each key was answered without Redis through (``bypass``), to
    report it."""

    factory: FactoryMany
    ttl_ms: int | None
    refresh: bool
    lock: bool
    names: dict[str, str]
    bypassed: dict[str, BaseException]


class Batches:
    """The batch operations of one :class:`RedisCachePort`."""

    def __init__(
        self, core: PortCore, flights: SingleFlight[dict[str, _Outcome]], lease: Lease
    ) -> None:
        self._core = core
        #: One run per ``factory_many`` call, joined by the keys it computes.
        self._factory_runs = flights
        self._numbers = itertools.count()
        #: ``remember``'s lease, for the keys ``lock=True`` follows one by one.
        self._lease = lease
        self._batch_lease = BatchLease(
            lease, self._send, partial(self._send, guarded=False), bypass=core.bypass
        )

    async def aclose(self, within: float) -> None:
        """End the ``factory_many`` runs still going (their keys' runs have
        been ended first, so normally none is); shielded and bounded."""
        await self._factory_runs.aclose(within)

    # -- the operations -------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        core = self._core
        local = core.local
        prefix = core.key_prefix
        # The same keys again, all held: one lookup (``LocalCache.page``).
        # Only a list or tuple is a page's name: any other iterable is read
        # once, and a str must still be refused.
        given = None
        if local is not None and core.observer is None and type(keys) in (list, tuple):
            given = tuple(keys)
            try:
                page = local.page(prefix, given)
            except TypeError:  # an unhashable "key": distinct_keys says what is wrong
                page = given = None
            if page is not None:
                return page
        wanted = distinct_keys(keys)
        if not wanted:
            return {}
        started = time.perf_counter()
        held: dict[str, _Outcome] = {}
        if local is not None:
            held = local.held_many(prefix, wanted)
            if len(held) == len(wanted) and core.observer is None:
                # A hot page, all in memory: no error is possible, no await;
                # and ``held`` is in the order of ``wanted`` already.
                if given is not None:
                    local.keep_page(prefix, given, held)
                return held
        try:
            if local is None:
                read = await self._mget([prefix + key for key in wanted])
            else:
                read = {prefix + key: value for key, value in held.items()}
                if len(held) < len(wanted):
                    missing = [prefix + key for key in wanted if key not in held]
                    read.update(await self._get_tracked(missing))
        except BaseException as exc:
            core.report.batch_failed("cache.get_many", wanted, None, started, exc)
            if self._bypassed(exc):
                return dict.fromkeys(wanted)
            raise
        outcomes = [read[prefix + key] for key in wanted]
        if core.observer is not None:
            core.report.batch(
                "cache.get_many",
                [_status(key, o, "hit", "miss") for key, o in zip(wanted, outcomes, strict=True)],
                None,
                started,
                local=[key for key in wanted if key in held],
            )
        return answer("get_many", wanted, outcomes)

    async def set_many(self, mapping: Mapping[str, str], ttl_seconds: float | None) -> None:
        core = self._core
        items = mapping_items(mapping)
        for key, value in items:
            check_value(key, value)
        ttl = () if (ttl_ms := ttl_milliseconds(ttl_seconds)) is None else ("PX", ttl_ms)
        if not items:
            return
        keys = [key for key, _ in items]
        started = time.perf_counter()
        prefix = core.key_prefix
        try:
            replies = await self._send([("SET", prefix + key, value, *ttl) for key, value in items])
        except BaseException as exc:
            core.report.batch_failed("cache.set_many", keys, ttl_seconds, started, exc)
            if self._bypassed(exc):
                return
            raise
        outcomes = [
            reply if isinstance(reply, Exception) else value
            for (_, value), reply in zip(items, replies, strict=True)
        ]
        if core.observer is not None:
            core.report.batch(
                "cache.set_many",
                [
                    _status(key, o, "stored", "stored")
                    for key, o in zip(keys, outcomes, strict=True)
                ],
                ttl_seconds,
                started,
            )
        answer("set_many", keys, outcomes)

    async def delete_many(self, keys: Iterable[str]) -> int:
        core = self._core
        wanted = distinct_keys(keys)
        if not wanted:
            return 0
        started = time.perf_counter()
        full = [core.key_prefix + key for key in wanted]
        # With an observer each key's event says whether it was there, so
        # each key gets a DEL of its own (still one write per node); without
        # one, a DEL per chunk of a slot.
        per_key = core.observer is not None
        commands = [("DEL", k) for k in full] if per_key else self._chunked("DEL", full)
        try:
            replies = await self._send(commands)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        except BaseException as exc:
            core.report.batch_failed("cache.delete_many", wanted, None, started, exc)
            if self._bypassed(exc):
                return 0
            raise
        if per_key:
            core.report.batch(
                "cache.delete_many",
                [
                    (key, "deleted" if reply else "not_found", None)
                    for key, reply in zip(wanted, replies, strict=True)
                ],
                None,
                started,
            )
        return sum(int(reply) for reply in replies)

    async def remember_many(
        self,
        keys: Iterable[str],
        factory_many: FactoryMany,
        *,
        ttl_seconds: float | None,
        lock: bool | None,
        early_refresh: bool | None,
    ) -> dict[str, str]:
        core = self._core
        wanted = distinct_keys(keys)
        if not callable(factory_many):
            raise TypeError(
                f"factory_many must be an async callable, got {type(factory_many).__name__}"
            )
        ttl_ms = ttl_milliseconds(ttl_seconds)
        use_lock = core.config.remember_lock if lock is None else lock
        refresh = (core.config.early_refresh if early_refresh is None else early_refresh) and (
            ttl_ms is not None
        )
        if not wanted:
            return {}
        names = {core.key_prefix + key: key for key in wanted}
        plan = _Plan(factory_many, ttl_ms, refresh, use_lock, names, {})
        started = time.perf_counter()
        try:
            hits, outcomes = await self._remember(plan)
        except BaseException as exc:
            core.report.batch_failed("cache.remember_many", wanted, ttl_seconds, started, exc)
            raise
        by_key = {names[full]: outcome for full, outcome in outcomes.items()}
        in_order = [by_key[key] for key in wanted]
        if core.observer is not None:
            core.report.batch(
                "cache.remember_many",
                [
                    _status(key, o, "hit" if key in hits else "miss", "miss")
                    if (bypassed := plan.bypassed.get(core.key_prefix + key)) is None
                    # Answered without Redis: an error, as ``remember`` reports it.
                    else (key, "error", describe(bypassed))
                    for key, o in zip(wanted, in_order, strict=True)
                ],
                ttl_seconds,
                started,
            )
        for outcome in in_order:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # KeyboardInterrupt and its kind: as themselves
        return answer("remember_many", wanted, in_order)

    # -- remember_many's parts ------------------------------------------------

    async def _remember(self, plan: _Plan) -> tuple[set[str], dict[str, _Outcome]]:
        """Each full key's outcome, and the caller's names of those that were hits."""
        core = self._core
        flights = core.flights
        for full in plan.names:
            flights.check_reentry(full)
        outcomes: dict[str, _Outcome] = {}
        pending = list(plan.names)
        # A run that ends while we read may have stored a key we then missed;
        # read again what nobody computes (a few times at most: other keys'
        # runs ending must not keep us reading).
        for _ in range(3):
            completed_before = flights.completed
            unread = [full for full in pending if full not in flights]
            if not unread:
                break
            try:
                read = await self._read_for_remember(unread, plan)
            except UNAVAILABLE as exc:
                if not core.bypass:
                    raise
                plan.bypassed.update(dict.fromkeys(unread, exc))
                break  # bypass: every unread key is a miss
            outcomes.update((full, o) for full, o in read.items() if o is not None)
            pending = [full for full in pending if full not in outcomes]
            if flights.completed == completed_before:
                break
        hits = {plan.names[full] for full, o in outcomes.items() if not isinstance(o, Exception)}
        if pending:
            outcomes.update(await flights.run_many(pending, partial(self._start, plan)))
        return hits, outcomes

    async def _read_for_remember(self, keys: list[str], plan: _Plan) -> dict[str, _Outcome]:
        """``GET`` each key (with ``PTTL`` and its metadata for early
        refresh), one write per node; start the refreshes that are due."""
        commands: list[tuple[Any, ...]] = []
        for full in keys:
            commands.append(("GET", full))
            if plan.refresh:
                commands += [("PTTL", full), ("GET", meta_key(full))]
        replies = await self._send(commands)
        step = 3 if plan.refresh else 1
        read: dict[str, _Outcome] = {}
        due: list[str] = []
        for index, full in enumerate(keys):
            value = replies[index * step]
            if isinstance(value, UnicodeDecodeError):
                value = not_text(plan.names[full], value)
            read[full] = value
            if plan.refresh and isinstance(value, str):
                remaining, meta = replies[index * step + 1], replies[index * step + 2]
                if not isinstance(meta, Exception) and refresh_due(
                    meta, remaining, self._core.config.early_refresh_beta
                ):
                    due.append(full)
        flights = self._core.flights
        due = [full for full in due if full not in flights]
        if due:
            computes = self._start(plan, due, {full: str(read[full]) for full in due})
            for full in due:
                flights.start_background(
                    full, reported_refresh(plan.names[full], computes[full], self._core.report)
                )
        return read

    def _start(
        self, plan: _Plan, keys: list[str], refreshing: Mapping[str, str] | None = None
    ) -> dict[str, Callable[[], Awaitable[str]]]:
        """The computations of ``keys``' runs: each waits for one shared
        ``factory_many`` run and takes its own key's outcome from it.
        ``refreshing``: for an early refresh, the values it started from,
        which the lease's leader must not take for values another process
        has just stored (``lease_batch.py``).

        Under the lease, a key whose lease another process holds is told so
        as soon as the leases are taken: its run stops waiting for the
        shared run at once (cancelling its own wait: it is one waiter fewer)
        and follows on its own."""
        number = f"factory_many #{next(self._numbers)}"
        following: dict[str, anyio.CancelScope] = {full: anyio.CancelScope() for full in keys}

        def followed(fulls: list[str]) -> None:
            for full in fulls:
                following[full].cancel()

        produce: Callable[[], Awaitable[dict[str, _Outcome]]] = (
            partial(self._produce_leased, plan, keys, followed, refreshing)
            if plan.lock
            else partial(self._produce, plan, keys)
        )

        def for_key(full: str) -> Callable[[], Awaitable[str]]:
            async def compute() -> str:
                outcome: _Outcome = FOLLOW
                with following[full]:
                    outcome = (await self._factory_runs.run(number, produce))[full]
                if outcome is FOLLOW:
                    return await self._follow(
                        plan, full, None if refreshing is None else refreshing.get(full)
                    )
                if isinstance(outcome, BaseException):
                    raise outcome
                return str(outcome)

            return compute

        return {full: for_key(full) for full in keys}

    async def _produce_leased(
        self,
        plan: _Plan,
        keys: list[str],
        followed: Callable[[list[str]], None],
        refreshing: Mapping[str, str] | None = None,
    ) -> dict[str, _Outcome]:
        """``_produce`` under the cross-process lease (``lease_batch.py``):
        the keys this process wins go to one ``factory_many`` call, the keys
        another process holds come out as :data:`FOLLOW` (and ``followed``
        is told of them at once). Under ``bypass`` with Redis unreachable,
        without the lease — as ``remember`` does."""
        core = self._core
        core.flights.mark_computing(keys)  # remember(k) from inside: an error, not a hang
        told: list[str] = []

        def tell(fulls: list[str]) -> None:
            told.extend(fulls)
            followed(fulls)

        if not (core.bypass and core.breaker.state == "open"):
            try:
                led = await self._batch_lease.compute(
                    keys,
                    plan.names,
                    partial(self._call, plan),
                    tell,
                    partial(core.jittered, plan.ttl_ms),
                    partial(_meta, plan.refresh),
                    refreshing,
                )
            except UNAVAILABLE:
                if not core.bypass:
                    raise
            else:
                plan.bypassed.update(led.unstored)
                return {
                    full: not_text(plan.names[full], o) if isinstance(o, UnicodeDecodeError) else o
                    for full, o in led.outcomes.items()
                }
        # Unreachable under bypass (before the factory ran): without the
        # lease, the keys not already following another process on their own.
        rest = [full for full in keys if full not in told]
        outcomes = await self._produce(plan, rest) if rest else {}
        return {**outcomes, **dict.fromkeys(told, FOLLOW)}

    async def _follow(self, plan: _Plan, full: str, refreshing: str | None = None) -> str:
        """``full``'s value while another process holds its lease: as a
        ``remember`` follower (``Lease.follow``); a lease taken over, or a
        wait given up, is computed here by a ``factory_many`` call of its own."""
        core = self._core
        name = plan.names[full]

        async def produce() -> tuple[str, float]:
            outcomes, delta = await self._call(plan, [full])
            outcome = outcomes[full]
            if isinstance(outcome, BaseException):
                raise outcome
            return str(outcome), delta

        async def store(value: str, delta: float) -> None:
            try:
                (reply, *_) = await self._send(self._store_commands(plan, full, value, delta))
            except UNAVAILABLE as exc:
                if not core.bypass:
                    raise
                plan.bypassed[full] = exc  # with bypass the value is still good; Redis is not
                return
            if isinstance(reply, Exception):
                raise reply

        try:
            return await self._lease.follow(
                name,
                full,
                produce,
                store,
                core.jittered(plan.ttl_ms),
                partial(_meta, plan.refresh),
                refreshing,
            )
        except UNAVAILABLE as exc:
            if not core.bypass:
                raise
            core.breaker.failed(exc)  # the lease's own commands go around the breaker
        value, delta = await produce()
        await store(value, delta)
        return value

    async def _call(self, plan: _Plan, keys: list[str]) -> tuple[dict[str, _Outcome], float]:
        """One ``factory_many`` call for ``keys``: each key's checked value
        or its own error, and how long the call took. Raises what the
        factory raised, and ``TypeError`` for a result that is no mapping."""
        names = [plan.names[full] for full in keys]
        began = time.perf_counter()
        produced = await plan.factory(list(names))
        delta = time.perf_counter() - began
        if not isinstance(produced, Mapping):
            raise TypeError(
                f"factory_many returned {type(produced).__name__}, not a dict of keys to "
                "values; nothing was stored"
            )
        outcomes: dict[str, _Outcome] = {}
        for full, name in zip(keys, names, strict=True):
            if name not in produced:
                outcomes[full] = LookupError(
                    f"factory_many returned no value for {name!r}; nothing was stored"
                )
                continue
            try:
                outcomes[full] = check_result(name, produced[name])
            except (TypeError, ValueError) as exc:
                outcomes[full] = exc
        return outcomes, delta

    def _store_commands(
        self, plan: _Plan, full: str, value: str, delta: float
    ) -> list[tuple[Any, ...]]:
        """The writes that store ``value`` at ``full`` without the lease."""
        ttl_ms = self._core.jittered(plan.ttl_ms)
        ttl = () if ttl_ms is None else ("PX", ttl_ms)
        # The recompute time goes beside the value, never inside it (not
        # atomically with it, as ``remember`` does in a transaction: a
        # transaction cannot span a cluster's slots; a value stored
        # without its metadata is only a value that will not refresh early).
        commands: list[tuple[Any, ...]] = [("SET", full, value, *ttl)]
        if plan.refresh:
            commands.append(("SET", meta_key(full), meta_value(delta), *ttl))
        return commands

    async def _produce(self, plan: _Plan, keys: list[str]) -> dict[str, _Outcome]:
        """One ``factory_many`` call for ``keys``: check each value, store the
        good ones (one write per node), and say what became of each key."""
        core = self._core
        core.flights.mark_computing(keys)  # remember(k) from inside: an error, not a hang
        outcomes, delta = await self._call(plan, keys)
        stores = [
            (full, self._store_commands(plan, full, value, delta))
            for full, value in outcomes.items()
            if not isinstance(value, BaseException)
        ]
        if stores:
            try:
                replies = iter(await self._send([c for _, commands in stores for c in commands]))
            except UNAVAILABLE as exc:
                if not core.bypass:
                    raise
                plan.bypassed.update((full, exc) for full, _ in stores)
                return outcomes  # with bypass the values are still good; Redis is not
            for full, commands in stores:
                # The value's SET decides; its metadata's is best effort.
                value_reply, *_ = itertools.islice(replies, len(commands))
                if isinstance(value_reply, Exception):
                    outcomes[full] = value_reply
        return outcomes

    # -- plumbing ---------------------------------------------------------------

    async def _mget(self, keys: list[str]) -> dict[str, _Outcome]:
        """Each key's value, ``None`` or error (not text: that key's alone)."""
        commands = self._chunked("MGET", keys)
        replies = await self._send(commands)
        read: dict[str, _Outcome] = {}
        for command, reply in zip(commands, replies, strict=True):
            chunk = command[1:]
            if isinstance(reply, UnicodeDecodeError):
                # One value is not text: read this chunk again as bytes and
                # decode each, so only that key fails.
                raw = await self._core.guarded(
                    partial(self._core.execute, *command, **{NEVER_DECODE: True})
                )
                for full, value in zip(chunk, raw, strict=True):
                    read[full] = self._decoded(full, value)
            elif isinstance(reply, Exception):
                read.update(dict.fromkeys(chunk, reply))
            else:
                read.update(zip(chunk, reply, strict=True))
        return read

    async def _get_tracked(self, fulls: list[str]) -> dict[str, _Outcome]:
        """The keys the local cache does not hold, read in one write — a
        ``GET`` and a ``PTTL`` per key, as the port's own tracked read — and
        each stored under its own ticket, taken before the write is queued
        (``local.py``): a key invalidated while the write was out is
        returned but not kept."""
        core = self._core
        local = core.local
        assert local is not None
        tickets = [local.begin(full) for full in fulls]
        commands = [command for full in fulls for command in (("GET", full), ("PTTL", full))]
        replies: list[Any] | None = None
        try:
            replies = await core.guarded(partial(core.client._send_many, commands, False))
        finally:
            for index, (full, ticket) in enumerate(zip(fulls, tickets, strict=True)):
                if replies is None:
                    local.finish(full, ticket, False, None, None)
                else:
                    value, remaining_ms = replies[2 * index], replies[2 * index + 1]
                    answered = not isinstance(value, BaseException)
                    local.finish(full, ticket, answered, value, remaining_ms)
        read: dict[str, _Outcome] = {}
        for index, full in enumerate(fulls):
            value = replies[2 * index]
            if isinstance(value, UnicodeDecodeError):
                read[full] = not_text(full[len(core.key_prefix) :], value)
            elif isinstance(value, ResponseError) and str(value).startswith("WRONGTYPE"):
                read[full] = None  # another type reads as missing, as MGET has it
            else:
                read[full] = value
        return read

    def _decoded(self, full: str, value: bytes | None) -> _Outcome:
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return not_text(full[len(self._core.key_prefix) :], exc)

    def _chunked(self, command: str, keys: list[str]) -> list[tuple[Any, ...]]:
        """``command`` over ``keys``: one per cluster slot (one on a single
        server), each of at most :data:`CHUNK` keys."""
        if not self._core.client.routes_by_slot:
            groups: Iterable[list[str]] = [keys]
        else:
            by_slot: dict[int, list[str]] = {}
            for key in keys:
                by_slot.setdefault(key_slot(key.encode("utf-8", "surrogatepass")), []).append(key)
            groups = by_slot.values()
        return [
            (command, *group[start : start + CHUNK])
            for group in groups
            for start in range(0, len(group), CHUNK)
        ]

    async def _send(self, commands: Sequence[tuple[Any, ...]], guarded: bool = True) -> list[Any]:
        """``commands``' replies, error replies as values; one write per node,
        through the breaker (unless not ``guarded``: the lease's releases,
        cleanup that must reach Redis even while the breaker is open, and
        that says nothing of Redis's health). A lost connection or timeout
        raises."""
        core = self._core
        local = core.local
        if local is None:
            return await self._send_now(commands, guarded)
        # Writes drop their keys' local entries before and after, as the
        # port's own set and delete do (see RedisCachePort._store).
        written = [key for command in commands for key in _written(command)]
        for key in written:
            local.invalidate(key)
        try:
            return await self._send_now(commands, guarded)
        finally:
            for key in written:
                local.invalidate(key)

    async def _send_now(self, commands: Sequence[tuple[Any, ...]], guarded: bool) -> list[Any]:
        core = self._core
        if len(commands) == 1:
            try:
                if not guarded:
                    return [await core.execute(*commands[0])]
                return [await core.guarded(core.execute, *commands[0])]
            except UNAVAILABLE:
                raise
            except Exception as exc:  # an error reply, a value that is not text
                return [exc]
        pipe = core.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        execute = partial(pipe.execute, raise_on_error=False)
        replies: list[Any] = await (core.guarded(execute) if guarded else execute())
        return replies

    def _bypassed(self, exc: BaseException) -> bool:
        """True when the failure policy says to carry on without Redis."""
        return self._core.bypass and isinstance(exc, UNAVAILABLE)


def _written(command: tuple[Any, ...]) -> tuple[Any, ...]:
    """The keys ``command`` writes: a ``SET``'s, a ``DEL``'s, a lease
    script's (``STORE_AND_RELEASE`` stores the value; the others touch only
    a lock, which the local cache never holds)."""
    if command[0] == "SET":
        return command[1:2]
    if command[0] == "DEL":
        return command[1:]
    if command[0] in ("EVALSHA", "EVAL"):
        return command[3 : 3 + int(command[2])]
    return ()


def _meta(refresh: bool, delta: float) -> str:
    """The metadata the lease stores beside a value ('': none)."""
    return meta_value(delta) if refresh else ""


def _status(key: str, outcome: _Outcome, yes: Status, no: Status) -> tuple[str, Status, str | None]:
    """A key's event: ``yes`` for a value, ``no`` for ``None``, or its error."""
    if isinstance(outcome, BaseException):
        return key, "error", describe(outcome)
    return key, yes if outcome is not None else no, None


def answer(operation: str, keys: list[str], outcomes: list[_Outcome]) -> dict[str, Any]:
    """The keys' values in order; or, if any key failed, what the caller
    catches: the outage itself when Redis was unreachable for every key that
    failed and none succeeded, a :class:`BatchUnavailableError` when some
    keys succeeded before the outage, else a :class:`BatchError`."""
    errors = {k: o for k, o in zip(keys, outcomes, strict=True) if isinstance(o, Exception)}
    values = {k: o for k, o in zip(keys, outcomes, strict=True) if not isinstance(o, BaseException)}
    if not errors:
        return values
    outages = [error for error in errors.values() if isinstance(error, UNAVAILABLE)]
    if outages:
        if not values and len(outages) == len(errors):
            raise outages[0]
        raise BatchUnavailableError(operation, values, errors)
    raise BatchError(operation, values, errors)
