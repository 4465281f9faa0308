"""``remember_many(lock=True)``: the cross-process lease, per key, for a batch.

Each provider here stands for one process of a fleet (its own connections,
its own single-flight, its own subscriber), on Redis and Valkey, on a single
server and on a cluster; every test runs on each backend. The rules are
``remember``'s (``test_cross_process.py``), key by key: one process computes
each key, the others wait on that key's channel, a key whose leader failed,
was cancelled or died is taken over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from beignet_redis_anyio import (
    BatchError,
    CacheEvent,
    RedisCachePort,
    RedisConfig,
    open_redis_provider,
)
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from beignet_redis_anyio.testing import MemoryCachePort
from helpers.polling import until as _until
from helpers.targets import RedisCluster, RedisServer, command

pytestmark = pytest.mark.anyio

#: Long enough that a test passing within ``fail_after(10)`` cannot have
#: waited a lease out, nor given up waiting: the lease was handed over.
PATIENT = {"remember_lock": True, "lock_lease_seconds": 30.0, "lock_wait_seconds": 30.0}


class Loader:
    """A ``factory_many`` that records each call's keys and answers when
    released (``gate``), with ``make(keys)`` or each key's name upper-cased."""

    def __init__(
        self, gate: anyio.Event | None = None, make: Callable[[list[str]], Any] | None = None
    ) -> None:
        self.calls: list[list[str]] = []
        self.started = anyio.Event()
        self.cancelled = anyio.Event()
        self.gate = gate
        self.make = make

    async def __call__(self, keys: list[str]) -> Mapping[str, str]:
        self.calls.append(list(keys))
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        if self.make is not None:
            return self.make(keys)  # type: ignore[no-any-return]
        return {k: k.upper() for k in keys}

    @property
    def computed(self) -> list[str]:
        return [k for call in self.calls for k in call]


@asynccontextmanager
async def _fleet(
    url: str,
    count: int,
    observers: Iterable[Callable[[CacheEvent], None] | None] = (),
    **options: Any,
) -> AsyncIterator[list[RedisCachePort]]:
    """``count`` providers on ``url``, the lease on (``PATIENT`` unless told)."""
    config = RedisConfig(url=url, **{**PATIENT, **options})
    watchers = list(observers) + [None] * count
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(open_redis_provider(config, observer=watchers[i]))
            for i in range(count)
        ]


def _waiting(cache: RedisCachePort, keys: Iterable[str]) -> bool:
    """True while ``cache`` follows every one of ``keys`` (subscribed, read)."""
    return all(cache._lease._notifications.waiting(k) for k in keys)


async def _locks(cache: RedisCachePort, keys: Iterable[str]) -> list[str | None]:
    return [await cache.client.get(sidecar_key(k, "lock")) for k in keys]


async def _put(results: dict[str, Any], name: str, call: Awaitable[Any]) -> None:
    results[name] = await call


async def _race(url: str, key: str, within: float) -> None:
    """Two providers start at once on overlapping keys; the overlap is split
    between them by whoever's ``SET NX`` lands first. Each key must be
    computed by exactly one of them, each provider in one ``factory_many``
    call, and both must get every value, every lease given up after."""
    mine = [f"{key}:{i}" for i in range(0, 12)]
    theirs = [f"{key}:{i}" for i in range(4, 16)]
    gate = anyio.Event()
    loaders = [Loader(gate), Loader(gate)]
    results: dict[str, Any] = {}
    async with _fleet(url, 2) as (a, b):
        with anyio.fail_after(within):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_put, results, "a", a.remember_many(mine, loaders[0]))
                tasks.start_soon(_put, results, "b", b.remember_many(theirs, loaders[1]))
                # Each has keys nobody else wants, so each calls its factory;
                # then each follows the overlap's keys the other won.
                await _until(lambda: all(loader.started.is_set() for loader in loaders))
                await _until(
                    lambda: (
                        _waiting(a, set(mine) - set(loaders[0].computed))
                        and _waiting(b, set(theirs) - set(loaders[1].computed))
                    )
                )
                gate.set()
        assert await _locks(a, set(mine + theirs)) == [None] * 16  # all given up
    assert len(loaders[0].calls) == len(loaders[1].calls) == 1  # one call each
    computed = loaders[0].computed + loaders[1].computed
    assert sorted(computed) == sorted(set(mine + theirs))  # each key once, across both
    assert results["a"] == {k: k.upper() for k in mine}
    assert results["b"] == {k: k.upper() for k in theirs}


async def test_two_providers_racing_on_overlapping_keys_compute_each_key_once(
    real_server: RedisServer, key: str
) -> None:
    await _race(real_server.url, key, 10)


async def test_a_waiter_is_handed_the_leaders_values_and_computes_only_its_own(
    real_server: RedisServer, key: str
) -> None:
    led = [f"{key}:a", f"{key}:b"]
    free = f"{key}:free"
    gate = anyio.Event()
    leader, follower = Loader(gate), Loader()
    results: dict[str, Any] = {}
    async with _fleet(real_server.url, 2) as (a, b):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_put, results, "a", a.remember_many(led, leader))
                await leader.started.wait()
                tasks.start_soon(_put, results, "b", b.remember_many([*led, free], follower))
                tasks.start_soon(_put, results, "one", b.remember(led[0], _never, lock=True))
                await _until(lambda: _waiting(b, led) and follower.started.is_set())
                gate.set()
        heard = b._lease._notifications.messages_received
    assert leader.calls == [led]
    assert follower.calls == [[free]]  # the key nobody led, and only that one
    assert results["b"] == {led[0]: led[0].upper(), led[1]: led[1].upper(), free: free.upper()}
    assert results["one"] == led[0].upper()  # remember follows a batch's lease too
    assert heard == 2  # each value came on its key's own channel: no poll needed


async def test_a_batch_follows_a_remember_leader(real_server: RedisServer, key: str) -> None:
    gate = anyio.Event()
    started = anyio.Event()

    async def single() -> str:
        started.set()
        await gate.wait()
        return "from-remember"

    follower = Loader()
    results: dict[str, Any] = {}
    async with _fleet(real_server.url, 2) as (a, b):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_put, results, "a", a.remember(key, single))
                await started.wait()
                tasks.start_soon(_put, results, "b", b.remember_many([key], follower))
                await _until(lambda: _waiting(b, [key]))
                gate.set()
    assert results == {"a": "from-remember", "b": {key: "from-remember"}}
    assert follower.calls == []


@pytest.mark.parametrize("failure", ["left-out", "not-str", "raised"])
async def test_a_key_the_leaders_factory_fails_is_handed_over_at_once(
    real_server: RedisServer, key: str, failure: str
) -> None:
    """The leader's factory fails a key — leaves it out, returns no ``str``
    for it, or raises for all of them: that key's lease is given up at once, and the waiting process
    takes it over and computes it, long before the lease or its own wait
    (30 s) would run out. The keys that did succeed are stored and handed
    over as usual."""
    good, bad = f"{key}:good", f"{key}:bad"
    gate = anyio.Event()

    def make(keys: list[str]) -> dict[str, str]:
        if failure == "raised":
            raise RuntimeError("the database is gone")
        made: dict[str, Any] = {k: "from-a" for k in keys if k != bad}
        if failure == "not-str":
            made[bad] = 42
        return made

    leader, follower = Loader(gate, make), Loader(make=lambda keys: dict.fromkeys(keys, "from-b"))
    events: list[CacheEvent] = []
    results: dict[str, Any] = {}
    async with _fleet(real_server.url, 2, [None, events.append]) as (a, b):

        async def lead() -> None:
            with pytest.raises(BatchError) as caught:
                await a.remember_many([good, bad], leader)
            results["a"] = caught.value

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(lead)
                await leader.started.wait()
                tasks.start_soon(_put, results, "b", b.remember_many([good, bad], follower))
                await _until(lambda: _waiting(b, [good, bad]))
                gate.set()
        assert await _locks(a, [good, bad]) == [None, None]
        stored = {k: await a.client.get(k) for k in (good, bad)}
    assert results["a"].operation == "remember_many"
    if failure == "raised":
        assert results["a"].values == {}
        assert all(isinstance(e, RuntimeError) for e in results["a"].errors.values())
        assert sorted(follower.calls) == [[bad], [good]]  # each taken over on its own
        assert results["b"] == stored == {good: "from-b", bad: "from-b"}
    else:
        assert isinstance(results["a"], BatchError)
        assert results["a"].values == {good: "from-a"}
        expected = LookupError if failure == "left-out" else TypeError
        assert isinstance(results["a"].errors[bad], expected)
        assert follower.calls == [[bad]]
        assert results["b"] == stored == {good: "from-a", bad: "from-b"}
    assert not [e for e in events if e.status == "wait_expired"]  # B led; it did not give up


async def test_a_cancelled_leader_gives_its_leases_up_and_the_waiter_takes_over(
    real_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:{i}" for i in range(3)]
    leader = Loader(anyio.Event())  # never released
    follower = Loader()
    results: dict[str, Any] = {}
    async with _fleet(real_server.url, 2) as (a, b):
        scope = anyio.CancelScope()

        async def lead() -> None:
            with scope:
                await a.remember_many(keys, leader)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(lead)
                await leader.started.wait()
                held = await _locks(a, keys)
                assert None not in held
                tasks.start_soon(_put, results, "b", b.remember_many(keys, follower))
                await _until(lambda: _waiting(b, keys))
                scope.cancel()  # its only caller gone: the factory is cancelled
        assert leader.cancelled.is_set()
        assert await _locks(a, keys) == [None] * 3
        assert a.in_flight == 0
    assert sorted(follower.calls) == [[k] for k in keys]  # each key's lease came free alone
    assert results["b"] == {k: k.upper() for k in keys}


async def test_a_dead_leaders_keys_are_taken_over_once_its_leases_expire(
    real_server: RedisServer, key: str
) -> None:
    """A leader that died (killed, its connection gone) leaves leases that
    nobody renews or releases, and no value. They expire; the waiter's next
    poll takes each over. A key nobody held is computed at once."""
    dead = [f"{key}:dead:{i}" for i in range(2)]
    free = f"{key}:free"
    follower = Loader()
    async with _fleet(real_server.url, 1, lock_lease_seconds=0.5) as (b,):
        for k in dead:  # what a killed process leaves behind
            await b.client.set(sidecar_key(k, "lock"), "a-dead-process", px=500)
        with anyio.fail_after(10):
            started = anyio.current_time()
            got = await b.remember_many([*dead, free], follower)
            waited = anyio.current_time() - started
        assert await _locks(b, dead) == [None, None]
    assert got == {k: k.upper() for k in [*dead, free]}
    assert follower.calls[0] == [free]
    assert sorted(follower.calls[1:]) == [[k] for k in dead]
    assert waited < 5  # the lease (0.5 s) and a poll or two, not the lock wait (30 s)


async def test_a_waiter_past_its_wait_bound_computes_the_keys_itself(
    real_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:0", f"{key}:1"]
    gate = anyio.Event()
    leader, follower = Loader(gate), Loader(make=lambda ks: dict.fromkeys(ks, "own"))
    events: list[CacheEvent] = []
    async with (
        _fleet(real_server.url, 1) as (a,),
        _fleet(real_server.url, 1, [events.append], lock_wait_seconds=0.3) as (b,),
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(a.remember_many, keys, leader)
        await leader.started.wait()
        with anyio.fail_after(5):
            assert await b.remember_many(keys, follower) == dict.fromkeys(keys, "own")
        gate.set()
    assert sorted(follower.calls) == [[k] for k in keys]
    assert sorted(e.key for e in events if e.status == "wait_expired") == keys


async def test_a_long_factory_keeps_every_lease_of_the_batch_renewed(
    real_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:0", f"{key}:1", f"{key}:2"]
    gate = anyio.Event()
    leader, follower = Loader(gate), Loader()
    events: list[CacheEvent] = []
    results: dict[str, Any] = {}
    async with _fleet(real_server.url, 2, [events.append], lock_lease_seconds=0.3) as (a, b):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(a.remember_many, keys, leader)
                await leader.started.wait()
                tasks.start_soon(_put, results, "b", b.remember_many(keys, follower))
                await anyio.sleep(1.0)  # time passing (> 3 leases), not a synchronisation
                for k in keys:
                    assert await a.client.pttl(sidecar_key(k, "lock")) > 0
                gate.set()
    assert follower.calls == []
    assert results["b"] == {k: k.upper() for k in keys}
    assert not [e for e in events if e.status == "lease_lost"]


async def test_a_stolen_lease_is_reported_and_the_batch_still_answers(
    real_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:0", f"{key}:1"]
    gate, lost = anyio.Event(), anyio.Event()
    events: list[CacheEvent] = []

    def observe(event: CacheEvent) -> None:
        events.append(event)
        if event.status == "lease_lost":
            lost.set()

    leader = Loader(gate)
    results: dict[str, Any] = {}
    async with _fleet(real_server.url, 1, [observe], lock_lease_seconds=0.3) as (a,):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_put, results, "a", a.remember_many(keys, leader))
                await leader.started.wait()
                await a.client.set(sidecar_key(keys[1], "lock"), "someone-else", px=10_000)
                await lost.wait()  # the next renewal finds the token changed
                gate.set()
        assert results["a"] == await a.get_many(keys) == {k: k.upper() for k in keys}
        assert await a.client.get(sidecar_key(keys[1], "lock")) == "someone-else"  # not ours
    assert [(e.key, e.status) for e in events if e.operation == "cache.lock"] == [
        (keys[1], "lease_lost")
    ]


async def test_on_a_cluster_each_key_is_leased_on_its_own_node(
    cluster: RedisCluster, key: str
) -> None:
    """Keys in many slots: each lease lives in its key's slot (on the node
    that owns it), is taken and given up there; the waiter follows each key
    on its own shard."""
    keys = [f"{key}:{i}" for i in range(12)]
    gate = anyio.Event()
    leader, follower = Loader(gate), Loader()
    results: dict[str, Any] = {}
    async with _fleet(cluster.url, 2) as (a, b):
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_put, results, "a", a.remember_many(keys, leader))
                await leader.started.wait()
                assert None not in await _locks(a, keys)
                # Each lock is on the primary that owns its key's slot (the
                # others answer MOVED), and the batch spans several of them.
                owners = [
                    [n.port for n in cluster.nodes if command(n.port, "GET", lock)[:1] == b"$"]
                    for lock in (sidecar_key(k, "lock") for k in keys)
                ]
                tasks.start_soon(_put, results, "b", b.remember_many([*keys, f"{key}:x"], follower))
                await _until(lambda: _waiting(b, keys) and follower.started.is_set())
                gate.set()
        assert await _locks(a, keys) == [None] * 12
        assert b._lease._notifications.messages_received == 12
    assert all(len(ports) == 1 for ports in owners)
    assert len({ports[0] for ports in owners}) > 1
    assert leader.calls == [keys] and follower.calls == [[f"{key}:x"]]
    assert results["a"] == {k: k.upper() for k in keys}
    assert results["b"] == {k: k.upper() for k in [*keys, f"{key}:x"]}


async def test_on_a_cluster_racing_providers_compute_each_key_once(
    cluster: RedisCluster, key: str
) -> None:
    await _race(cluster.url, key, 20)


async def test_the_providers_lock_setting_applies_and_lock_false_overrides_it(
    server_url: str, key: str
) -> None:
    """``REDIS_REMEMBER_LOCK`` (``remember_lock``) makes ``remember_many``
    take the lease too; ``lock=False`` per call does not (on fakeredis too)."""
    async with open_redis_provider(RedisConfig(url=server_url, remember_lock=True)) as cache:

        async def leased(keys: list[str]) -> dict[str, str]:
            return {k: str(await cache.client.exists(sidecar_key(k, "lock"))) for k in keys}

        assert await cache.remember_many([f"{key}:a"], leased) == {f"{key}:a": "1"}
        assert await cache.remember_many([f"{key}:b"], leased, lock=False) == {f"{key}:b": "0"}
        assert await cache.client.exists(sidecar_key(f"{key}:a", "lock")) == 0


async def test_lock_true_per_call_takes_the_lease(server_url: str, key: str) -> None:
    async with open_redis_provider(RedisConfig(url=server_url)) as cache:

        async def leased(keys: list[str]) -> dict[str, str]:
            return {k: str(await cache.client.exists(sidecar_key(k, "lock"))) for k in keys}

        assert await cache.remember_many([key], leased, lock=True) == {key: "1"}
        assert await cache.remember_many([f"{key}:b"], leased) == {f"{key}:b": "0"}


async def test_the_memory_port_accepts_lock_and_computes_as_without_it() -> None:
    """One process: single-flight already makes one call, so ``lock=True``
    changes nothing on the test double, for ``remember_many`` as for
    ``remember``."""
    cache = MemoryCachePort()
    loader = Loader()
    assert await cache.remember_many(["a", "b"], loader, lock=True) == {"a": "A", "b": "B"}
    assert await cache.remember_many(["a", "b", "c"], loader, lock=True) == {
        "a": "A",
        "b": "B",
        "c": "C",
    }
    assert loader.calls == [["a", "b"], ["c"]]


async def _never() -> str:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")
