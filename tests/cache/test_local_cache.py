"""The local cache: hot keys from process memory, never stale after the
reader's next round trip (the consistency rule in ``_cache/local.py``)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from redis.exceptions import ConnectionError

from beignet_redis_anyio import (
    CacheEvent,
    ConfigError,
    RedisConfig,
    TrackingUnsupportedError,
    open_redis_client,
    open_redis_provider,
)
from beignet_redis_anyio._cache.local import ABSENT, LocalCache
from beignet_redis_anyio._cache.port import RedisCachePort
from helpers.targets import FakeServer, RedisServer

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _local(url: str, **options: Any) -> AsyncIterator[RedisCachePort]:
    async with open_redis_provider(RedisConfig(url=url, local_cache=True, **options)) as cache:
        yield cache


async def _gets(client: Any) -> int:
    """GETs the server has run so far (``INFO commandstats``)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def _round_trip(cache: RedisCachePort) -> None:
    """One round trip on the reader's connection: any command will do."""
    assert await cache.client.ping()


# -- the read path ------------------------------------------------------------


async def test_repeated_gets_reach_the_server_once(real_server: RedisServer, key: str) -> None:
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as other:
        await other.set(key, "v")
        before = await _gets(other)
        for _ in range(50):
            assert await cache.get(key) == "v"
        assert await _gets(other) == before + 1
        stats = cache.local_stats
        assert stats is not None
        assert (stats.hits, stats.misses, stats.entries) == (49, 1, 1)


async def test_a_missing_key_is_cached_as_missing_and_has_reads_locally(
    real_server: RedisServer, key: str
) -> None:
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as other:
        assert await cache.get(key) is None
        before = await _gets(other)
        assert await cache.get(key) is None
        assert await cache.has(key) is False
        assert await _gets(other) == before
        await other.set(key, "")
        await _round_trip(cache)
        assert await cache.get(key) == ""
        assert await cache.has(key) is True  # an empty string counts, locally too


async def test_remember_hits_locally_and_single_flight_still_holds(
    real_server: RedisServer, key: str
) -> None:
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.01)
        return "computed"

    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as other:
        async with anyio.create_task_group() as tasks:
            for _ in range(10):
                tasks.start_soon(cache.remember, key, factory)
        assert calls == 1
        assert await cache.remember(key, factory) == "computed"  # fills the local cache
        before = await _gets(other)
        for _ in range(5):
            assert await cache.remember(key, factory) == "computed"
        assert await _gets(other) == before
        assert calls == 1


async def test_the_cross_process_lease_still_computes_once_across_providers(
    real_server: RedisServer, key: str
) -> None:
    """Two providers (two processes, as far as Redis can tell) miss at once:
    one computes under the lease, the other waits for its value; then both
    hit from memory."""
    calls = 0
    started = anyio.Event()
    release = anyio.Event()

    async def factory() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "leased"

    async with (
        _local(real_server.url) as first,
        _local(real_server.url) as second,
        open_redis_client(real_server.url) as other,
    ):
        results: list[str] = []

        async def remember(cache: RedisCachePort) -> None:
            results.append(await cache.remember(key, factory, ttl_seconds=60, lock=True))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(remember, first)
                await started.wait()  # the first holds the lease
                tasks.start_soon(remember, second)
                # Its miss has begun (it waits on the lease); nothing to await for that.
                while second.in_flight == 0:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                release.set()
        assert (results, calls) == (["leased", "leased"], 1)
        # The follower's first read (a miss) was tracked, and the leader's
        # store invalidates it; the follower took the value from the lease's
        # notification meanwhile, so that push may still be on its way and
        # drop the entry later. One round trip each reads what is queued.
        for cache in (first, second):
            await _round_trip(cache)
        for cache in (first, second):
            assert await cache.remember(key, factory, ttl_seconds=60, lock=True) == "leased"
        before = await _gets(other)
        for cache in (first, second):
            assert await cache.remember(key, factory, ttl_seconds=60, lock=True) == "leased"
            assert await cache.get(key) == "leased"
        assert await _gets(other) == before
        assert calls == 1


async def test_events_tell_local_hits_from_remote_ones(real_server: RedisServer, key: str) -> None:
    events: list[CacheEvent] = []
    config = RedisConfig(url=real_server.url, local_cache=True)
    async with open_redis_provider(config, observer=events.append) as cache:
        await cache.set(key, "v")
        await cache.get(key)
        await cache.get(key)
        await cache.remember(key, _never)
    gets = [(e.operation, e.status, e.local) for e in events if e.operation != "cache.set"]
    assert gets == [
        ("cache.get", "hit", False),
        ("cache.get", "hit", True),
        ("cache.remember", "hit", True),
    ]


async def _never() -> str:
    raise AssertionError("not called on a hit")


# -- the consistency rule ------------------------------------------------------


async def test_another_clients_write_is_seen_after_one_round_trip(
    real_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:{n}" for n in range(20)]
    rng = random.Random(12)
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as writer:
        for round_ in range(200):
            chosen = rng.choice(keys)
            await cache.get(chosen)  # cached, present or missing
            await cache.get(chosen)
            if round_ % 7 == 0:
                await writer.delete(chosen)
                expected = None
            else:
                expected = f"v{round_}"
                await writer.set(chosen, expected)
            await _round_trip(cache)
            assert await cache.get(chosen) == expected, round_
        stats = cache.local_stats
        assert (
            stats is not None and stats.hits >= 200 and stats.invalidations > 150
        )  # DEL of a missing key changes nothing


async def test_own_writes_are_read_back_at_once(real_server: RedisServer, key: str) -> None:
    async with _local(real_server.url) as cache:
        await cache.set(key, "one")
        assert await cache.get(key) == "one"
        await cache.set(key, "two")
        assert await cache.get(key) == "two"
        assert await cache.delete(key) is True
        assert await cache.get(key) is None
        await cache.set_many({key: "three"})
        assert await cache.get(key) == "three"
        await cache.delete_many([key])
        assert await cache.get(key) is None


async def test_concurrent_readers_and_a_writer_converge(real_server: RedisServer, key: str) -> None:
    final = 300
    seen: list[int] = []
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as writer:
        await writer.set(key, "0")
        done = anyio.Event()

        async def reader() -> None:
            last = 0
            while not done.is_set():
                value = int(await cache.get(key) or 0)
                assert value >= last  # never back to an older value
                last = value
                await anyio.lowlevel.checkpoint()
            await _round_trip(cache)
            seen.append(int(await cache.get(key) or 0))

        async def write() -> None:
            for n in range(1, final + 1):
                await writer.set(key, str(n))
            done.set()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                for _ in range(20):
                    tasks.start_soon(reader)
                tasks.start_soon(write)
    assert seen == [final] * 20


async def test_client_kill_leaves_no_stale_entry(real_server: RedisServer, key: str) -> None:
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as other:
        await other.set(key, "old")
        assert await cache.get(key) == "old"
        reader_id = await cache.client.client_id()
        assert await other.client_kill_filter(_id=reader_id) == 1
        await other.set(key, "new")  # the invalidation has nowhere to go
        try:
            await _round_trip(cache)  # the reader learns its connection is gone
        except ConnectionError:
            pass  # or it had already, and this ran on a new one
        assert await cache.get(key) == "new"
        stats = cache.local_stats
        assert stats is not None and stats.flushes >= 1


async def test_a_server_restart_leaves_no_stale_entry(own_server: RedisServer, key: str) -> None:
    async with _local(own_server.url, connect_timeout=2) as cache:
        await cache.client.set(key, "old")
        assert await cache.get(key) == "old"
        with anyio.fail_after(30):
            own_server.restart()  # and its data is gone
            for _ in range(100):  # the reconnect's backoff may hold the first tries
                try:
                    await _round_trip(cache)
                    break
                except ConnectionError:
                    await anyio.sleep(0.05)
            assert await cache.get(key) is None


async def test_flushall_leaves_no_stale_entry(own_server: RedisServer, key: str) -> None:
    async with _local(own_server.url) as cache, open_redis_client(own_server.url) as other:
        await other.set(key, "old")
        assert await cache.get(key) == "old"
        await other.flushall()
        await _round_trip(cache)
        assert await cache.get(key) is None
        stats = cache.local_stats
        assert stats is not None and stats.flushes == 1


# -- lifetimes and bounds -----------------------------------------------------


async def test_an_entry_never_outlives_its_key(real_server: RedisServer, key: str) -> None:
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as other:
        await other.set(key, "brief", px=300)
        issued = time.monotonic()
        assert await cache.get(key) == "brief"
        entry = cache._local._entries[key]  # type: ignore[union-attr]
        assert entry.expires <= issued + 0.3 + 0.005  # PTTL counts whole milliseconds
        await anyio.sleep(max(0.0, entry.expires - time.monotonic()) + 0.01)
        # Expired locally, whether or not the server's invalidation came yet.
        assert cache._local.lookup(key) is ABSENT  # type: ignore[union-attr]
        assert await cache.get(key) is None


async def test_local_ttl_bounds_an_entry_without_expiry(real_server: RedisServer, key: str) -> None:
    async with (
        _local(real_server.url, local_cache_ttl=0.05) as cache,
        open_redis_client(real_server.url) as other,
    ):
        await other.set(key, "forever")
        assert await cache.get(key) == "forever"
        await anyio.sleep(0.06)
        before = await _gets(other)
        assert await cache.get(key) == "forever"
        assert await _gets(other) == before + 1


async def test_both_memory_bounds_hold(real_server: RedisServer, key: str) -> None:
    async with _local(real_server.url, local_cache_max_entries=10) as cache:
        for n in range(50):
            await cache.get(f"{key}:{n}")
        stats = cache.local_stats
        assert stats is not None and stats.entries == 10 and stats.evictions == 40
        # Least recently used out first: the last ten stay.
        assert set(cache._local._entries) == {f"{key}:{n}" for n in range(40, 50)}  # type: ignore[union-attr]
    limit = 20_000
    async with _local(real_server.url, local_cache_max_bytes=limit) as cache:
        await cache.client.set(f"{key}:big", "x" * 30_000)
        assert await cache.get(f"{key}:big") == "x" * 30_000  # too big to hold
        for n in range(100):
            await cache.client.set(f"{key}:{n}", "y" * 500)
            await cache.get(f"{key}:{n}")
        stats = cache.local_stats
        assert stats is not None and 0 < stats.bytes <= limit and stats.evictions > 0
        assert f"{key}:big" not in cache._local._entries  # type: ignore[union-attr]


# -- what cannot work fails on entry ---------------------------------------------


async def test_a_server_that_cannot_track_fails_on_entry(fake_server: FakeServer) -> None:
    with pytest.raises(TrackingUnsupportedError, match="local_cache needs Redis or Valkey 6"):
        async with _local(fake_server.url):
            pass


async def test_users_still_cannot_switch_tracking(real_server: RedisServer) -> None:
    async with _local(real_server.url) as cache:
        with pytest.raises(Exception, match="client-side caching"):
            await cache.client.execute_command("CLIENT", "TRACKING", "OFF")
        assert cache.local_stats is not None


def test_config_from_env_and_its_checks() -> None:
    config = RedisConfig.from_env(
        {
            "REDIS_URL": "redis://localhost",
            "REDIS_LOCAL_CACHE": "true",
            "REDIS_LOCAL_CACHE_MAX_ENTRIES": "5",
            "REDIS_LOCAL_CACHE_MAX_BYTES": "4096",
            "REDIS_LOCAL_CACHE_TTL": "1.5",
        }
    )
    assert (config.local_cache, config.local_cache_max_entries) == (True, 5)
    assert (config.local_cache_max_bytes, config.local_cache_ttl) == (4096, 1.5)
    assert config.connection_settings().protocol == 3  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="REDIS_LOCAL_CACHE needs RESP3"):
        RedisConfig(url="redis://localhost", local_cache=True, protocol=2)
    with pytest.raises(ConfigError, match="REDIS_LOCAL_CACHE_MAX_ENTRIES"):
        RedisConfig.from_env({"REDIS_URL": "redis://x", "REDIS_LOCAL_CACHE_MAX_ENTRIES": "0"})
    with pytest.raises(ConfigError, match="REDIS_LOCAL_CACHE_TTL"):
        RedisConfig(url="redis://localhost", local_cache_ttl=0)
    with pytest.raises(ConfigError, match="REDIS_LOCAL_CACHE must be true or false"):
        RedisConfig.from_env({"REDIS_URL": "redis://x", "REDIS_LOCAL_CACHE": "maybe"})


# -- the rule's bookkeeping, step by step ---------------------------------------


def _cache() -> LocalCache:
    return LocalCache(max_entries=100, max_bytes=1 << 20, ttl=60.0)


def test_a_read_overtaken_by_its_keys_invalidation_is_not_stored() -> None:
    local = _cache()
    ticket = local.begin("k")
    local.on_push(["invalidate", ["k"]])
    local.finish("k", ticket, True, "old", -1)
    assert local.lookup("k") is ABSENT
    # Another key's invalidation does not spoil it; a later read stores.
    ticket = local.begin("k")
    local.on_push(["invalidate", ["other"]])
    local.finish("k", ticket, True, "new", -1)
    assert local.lookup("k") == "new"


def test_a_flush_spoils_reads_in_flight_and_bookkeeping_ends_with_them() -> None:
    local = _cache()
    first, second = local.begin("k"), local.begin("k")
    local.reset()  # the connection was lost
    local.finish("k", first, True, "v", -1)
    later = local.begin("k")
    local.finish("k", second, True, "v", -1)
    assert local.lookup("k") is ABSENT
    local.finish("k", later, True, "v", -1)
    assert local.lookup("k") == "v"
    local.on_push(["invalidate", None])  # FLUSHALL
    assert local.lookup("k") is ABSENT
    assert (local._reading, local._invalidated) == ({}, {})
