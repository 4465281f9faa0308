"""The local cache on a Redis Cluster: each node's connection tracks the keys
read through it, and a topology change forgets only the slots it touched."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.crc import key_slot
from redis.exceptions import ConnectionError, MovedError

from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._cache.local import ABSENT, LocalCache
from beignet_redis_anyio._cache.port import RedisCachePort
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from beignet_redis_anyio._net.wire import encode_command
from helpers.targets import RedisCluster, command

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _local(cluster: RedisCluster) -> AsyncIterator[RedisCachePort]:
    config = RedisConfig(url=cluster.url, local_cache=True)
    async with open_redis_provider(config) as cache:
        yield cache


def _owners(cluster: RedisCluster) -> dict[int, int]:
    """Slot -> the port of the primary that owns it, as the cluster says."""
    owners: dict[int, int] = {}
    for node in cluster.primaries():
        for line in command(node.port, "CLUSTER", "NODES").decode().splitlines():
            fields = line.split()  # (the reply's first line is its RESP length)
            if len(fields) < 8 or "myself" not in fields[2]:
                continue
            for part in fields[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated or imported
                start, _, end = part.partition("-")
                for slot in range(int(start), int(end or start) + 1):
                    owners[slot] = node.port
    return owners


def _key_on(port: int, owners: dict[int, int], avoid: frozenset[int] = frozenset()) -> str:
    """A fresh key whose slot ``port`` owns (and is in none of ``avoid``)."""
    while True:
        key = f"lcc:{uuid.uuid4().hex[:10]}"
        slot = key_slot(key.encode())
        if owners.get(slot) == port and slot not in avoid:
            return key


def _gets(port: int) -> int:
    """GETs the node at ``port`` has run so far."""
    for line in command(port, "INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_get:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def _round_trips(cache: RedisCachePort) -> None:
    """One round trip on every node's connection of the reader."""
    router = cache.client._cluster
    assert router is not None
    for address in router.primaries:
        try:
            await router.node(address).request(encode_command(("PING",)), 1, True)
        except ConnectionError:
            # It had learnt its connection was gone; this one reconnects.
            await router.node(address).request(encode_command(("PING",)), 1, True)


async def test_hot_keys_on_every_node_are_read_once_and_writes_are_seen(
    cluster: RedisCluster,
) -> None:
    owners = _owners(cluster)
    ports = sorted(set(owners.values()))
    keys = [_key_on(port, owners) for port in ports]
    async with _local(cluster) as cache, open_redis_client(cluster.url) as other:
        for key in keys:
            await other.set(key, "old")
        before = {port: _gets(port) for port in ports}
        for _ in range(20):
            for key in keys:
                assert await cache.get(key) == "old"
        assert {port: _gets(port) - before[port] for port in ports} == dict.fromkeys(ports, 1)
        for key in keys:
            await other.set(key, "new")
        await _round_trips(cache)
        assert [await cache.get(key) for key in keys] == ["new"] * len(keys)
        await other.delete(*keys)


async def test_get_many_and_early_refresh_hits_come_from_memory_on_every_node(
    cluster: RedisCluster,
) -> None:
    owners = _owners(cluster)
    ports = sorted(set(owners.values()))
    keys = [_key_on(port, owners) for port in ports for _ in range(3)]
    refreshed = keys[0]

    async def never() -> str:
        raise AssertionError("a hit that is not due computes nothing")

    config = RedisConfig(url=cluster.url, local_cache=True, early_refresh=True)
    async with open_redis_provider(config) as cache, open_redis_client(cluster.url) as other:
        for key in keys:
            await other.set(key, f"v:{key}", ex=3600)
        await other.set(sidecar_key(refreshed, "meta"), "0.001", ex=3600)
        expected = {key: f"v:{key}" for key in keys}
        assert await cache.get_many(keys) == expected  # read on every node
        assert await cache.remember(refreshed, never, ttl_seconds=3600) == expected[refreshed]
        before = {port: _gets(port) for port in ports}
        for _ in range(10):
            assert await cache.get_many(keys) == expected
            assert await cache.remember(refreshed, never, ttl_seconds=3600) == expected[refreshed]
        assert {port: _gets(port) - before[port] for port in ports} == dict.fromkeys(ports, 0)
        for key in keys:
            await other.set(key, "new", ex=3600)
        await _round_trips(cache)
        assert await cache.get_many(keys) == dict.fromkeys(keys, "new")
        assert await cache.remember(refreshed, never, ttl_seconds=3600) == "new"
        await other.delete(*keys)


async def test_a_missing_key_is_not_cached_as_missing(cluster: RedisCluster) -> None:
    """Its slot could move to a node that never heard we read it."""
    owners = _owners(cluster)
    port = next(iter(owners.values()))
    key = _key_on(port, owners)
    async with _local(cluster) as cache:
        before = _gets(port)
        assert await cache.get(key) is None
        assert await cache.get(key) is None
        assert _gets(port) == before + 2
        stats = cache.local_stats
        assert stats is not None and stats.entries == 0


async def test_a_killed_node_connection_forgets_only_that_nodes_slots(
    cluster: RedisCluster,
) -> None:
    owners = _owners(cluster)
    victim, bystander = sorted(set(owners.values()))[:2]
    doomed, kept = _key_on(victim, owners), _key_on(bystander, owners)
    async with _local(cluster) as cache, open_redis_client(cluster.url) as other:
        await other.set(doomed, "old")
        await other.set(kept, "kept")
        assert await cache.get(doomed) == "old"
        assert await cache.get(kept) == "kept"
        reader = await cache.client._cluster.node(("127.0.0.1", victim)).request(  # type: ignore[union-attr]
            encode_command(("CLIENT", "ID")), 1, True
        )
        assert command(victim, "CLIENT", "KILL", "ID", str(reader[0])).startswith(b":1")
        await other.set(doomed, "new")  # its invalidation has nowhere to go
        await _round_trips(cache)
        before = _gets(bystander)
        assert await cache.get(doomed) == "new"
        assert await cache.get(kept) == "kept"
        assert _gets(bystander) == before  # still served from memory
        await other.delete(doomed, kept)


async def test_a_slot_migration_leaves_no_stale_entry_and_forgets_only_that_slot(
    cluster: RedisCluster,
) -> None:
    owners = _owners(cluster)
    source, target = sorted(set(owners.values()))[:2]
    moving = _key_on(source, owners)
    slot = key_slot(moving.encode())
    staying = _key_on(source, owners, avoid=frozenset({slot}))  # same node, another slot
    ids = {
        node.port: command(node.port, "CLUSTER", "MYID").split(b"\r\n")[1].decode()
        for node in cluster.primaries()
    }
    async with _local(cluster) as cache, open_redis_client(cluster.url) as other:
        await other.set(moving, "old")
        await other.set(staying, "stays")
        assert await cache.get(moving) == "old"
        assert await cache.get(staying) == "stays"
        command(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source])
        command(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target])
        migrate = ("MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", moving)
        moved = command(source, *migrate)
        assert moved.startswith(b"+OK"), moved
        # Mid-migration, the source answers ASK: served, never cached from there.
        await _round_trips(cache)
        assert await cache.get(moving) == "old"
        for port in ids:
            command(port, "CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])
        await other.set(moving, "new")  # on the new owner
        await _round_trips(cache)
        assert await cache.get(moving) == "new"  # MOVED: the slot is forgotten
        # The MOVED marked the topology stale: re-read now, since any change
        # it finds (elsewhere, if the cluster is still settling) would spoil
        # the reads in flight, and the counts below want a settled one.
        router = cache.client._cluster
        assert router is not None
        await router.refresh()
        assert await cache.get(moving) == "new"  # read from, and tracked by, its new owner
        before = _gets(target)
        assert await cache.get(moving) == "new"
        assert _gets(target) == before  # from memory
        await other.set(moving, "newer")
        await _round_trips(cache)
        assert await cache.get(moving) == "newer"
        before = _gets(source)
        assert await cache.get(staying) == "stays"
        assert _gets(source) == before  # another slot: not forgotten
        await other.delete(moving, staying)


async def test_a_moved_reply_forgets_its_slot_only(cluster: RedisCluster) -> None:
    """The router tells the cache of every owner it learns from a MOVED —
    even one seen on a connection it does not route (a pipeline's)."""
    owners = _owners(cluster)
    first, second = sorted(set(owners.values()))[:2]
    moved, kept = _key_on(first, owners), _key_on(first, owners)
    while key_slot(kept.encode()) == key_slot(moved.encode()):
        kept = _key_on(first, owners)
    async with _local(cluster) as cache, open_redis_client(cluster.url) as other:
        await other.set(moved, "v")
        await other.set(kept, "k")
        assert (await cache.get(moved), await cache.get(kept)) == ("v", "k")
        router = cache.client._cluster
        assert router is not None
        slot = key_slot(moved.encode())
        router.redirected(MovedError(f"{slot} 127.0.0.1:{second}"))
        before = _gets(first)
        assert await cache.get(kept) == "k"
        assert _gets(first) == before  # another slot: still from memory
        assert await cache.get(moved) == "v"  # asked again (and MOVED back)
        assert _gets(first) == before + 1
        await other.delete(moved, kept)


def test_forgetting_slots_spoils_reads_in_flight_and_keeps_other_slots() -> None:
    local = LocalCache(max_entries=100, max_bytes=1 << 20, ttl=60, cluster=True)
    a, b = "{a}k", "{b}k"
    for key in (a, b):
        local.finish(key, local.begin(key), True, "v", -1)
    in_flight = local.begin("{c}k")
    local.forget_slots({key_slot(b"a")})
    assert local.lookup(b) == "v"
    assert local.lookup(a) is ABSENT
    local.finish("{c}k", in_flight, True, "v", -1)  # read before the change
    assert local.lookup("{c}k") is ABSENT
    assert local.stats().flushes == 1


async def test_many_readers_and_a_writer_converge_across_nodes(cluster: RedisCluster) -> None:
    keys = [f"lcc:{uuid.uuid4().hex[:10]}" for _ in range(30)]  # on every node
    last: dict[str, str] = {}
    async with _local(cluster) as cache, open_redis_client(cluster.url) as other:
        for key in keys:
            await other.set(key, "0")

        async def reader(seed: int) -> None:
            for index in range(100):
                await cache.get(keys[(seed + index) % len(keys)])

        async def writer() -> None:
            for round_ in range(1, 6):
                for key in keys:
                    await other.set(key, str(round_))
                    last[key] = str(round_)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for seed in range(200):
                    tasks.start_soon(reader, seed)
                tasks.start_soon(writer)
        await _round_trips(cache)
        assert {key: await cache.get(key) for key in keys} == last
        await other.delete(*keys)
