"""The local cache, attacked: failover, early refresh, and what a hostile
world does to it (values that are not text, other types, cancelled reads,
a crowd of readers, killed connections, outages, absurd settings).

Each test asserts the consistency rule (the module docstring of
``beignet_redis_anyio._cache.local`` states it) or
a bound of the local cache's, where ``test_local_cache.py`` does not already.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from redis.exceptions import ConnectionError, ResponseError

from beignet_redis_anyio import (
    ConfigError,
    RedisCachePort,
    RedisConfig,
    open_redis_client,
    open_redis_provider,
)
from beignet_redis_anyio._cache.local import LocalCache
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from helpers.observing import Observed
from helpers.targets import RedisSentinels, RedisServer, command

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _local(url: str, **options: Any) -> AsyncIterator[RedisCachePort]:
    async with open_redis_provider(RedisConfig(url=url, local_cache=True, **options)) as cache:
        yield cache


def _tracker(cache: RedisCachePort) -> LocalCache:
    local = cache._local
    assert local is not None
    return local


def _flushes(cache: RedisCachePort) -> int:
    return _tracker(cache).flushes


async def _gets(client: Any) -> int:
    """GETs the server has run so far (``INFO commandstats``)."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def _round_trip(cache: RedisCachePort) -> None:
    """One round trip on the reader's connection."""
    assert await cache.client.ping()


async def _round_trip_again(cache: RedisCachePort, deadline: float = 10.0) -> None:
    """A round trip that succeeds, once the reader has reconnected (the
    reconnect happens in the background; nothing to await but a command)."""
    with anyio.fail_after(deadline):
        while True:
            try:
                await _round_trip(cache)
                return
            except ConnectionError:
                await anyio.sleep(0.02)  # the reconnect's backoff


async def _written_then_read(
    cache: RedisCachePort, other: Any, key: str, written: str | bytes, expected: str
) -> None:
    """Another client writes; after one round trip the reader sees it."""
    await other.set(key, written)
    await _round_trip(cache)
    assert await cache.get(key) == expected


async def _until_lost(cache: RedisCachePort) -> None:
    """Round trips until one fails: the reader has seen its connection go."""
    while True:
        await _round_trip(cache)


# -- 1. a Sentinel failover flushes ---------------------------------------------


async def test_a_sentinel_failover_leaves_no_stale_entry(
    own_sentinels: RedisSentinels, key: str
) -> None:
    async with (
        _local(own_sentinels.url, connect_timeout=2) as cache,
        open_redis_client(own_sentinels.master.url) as old_master,
    ):
        await cache.set(key, "old")
        assert await cache.get(key) == "old"
        before = await _gets(old_master)
        assert await cache.get(key) == "old"  # held locally: the server saw no GET
        assert await _gets(old_master) == before
        flushes = _flushes(cache)

        old_port = own_sentinels.master_port()
        failover = command(
            own_sentinels.sentinel_ports[0], "SENTINEL", "FAILOVER", own_sentinels.name
        )
        assert failover.startswith(b"+OK")
        with anyio.fail_after(30):
            while own_sentinels.master_port() == old_port:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # the sentinels' own clock: poll it
            new_port = own_sentinels.master_port()
            # Another client writes on the new master (once it takes writes).
            while not command(new_port, "SET", key, "new").startswith(b"+OK"):  # noqa: ASYNC110
                await anyio.sleep(0.05)  # -READONLY until it is promoted: nothing to await
            # The reader: once a round trip of its lands on the new master,
            # the old value is gone for good.
            on_new_master = False
            while not on_new_master:
                try:
                    port = int((await cache.client.config_get("port"))["port"])
                    value = await cache.get(key)
                except ConnectionError:
                    await anyio.sleep(0.02)  # caught in the switch; reconnecting
                    continue
                on_new_master = port == new_port
                assert (value == "new") if on_new_master else (value in ("old", "new"))
            for _ in range(20):
                await _round_trip(cache)
                assert await cache.get(key) == "new"
        assert _flushes(cache) > flushes


# -- 2. early refresh with the local cache --------------------------------------


async def test_an_early_refresh_is_read_back_not_the_local_copy(
    real_server: RedisServer, key: str
) -> None:
    observe = Observed()
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        return f"refreshed-{calls}"

    config = RedisConfig(url=real_server.url, local_cache=True)
    async with (
        open_redis_provider(config, observer=observe) as cache,
        open_redis_client(real_server.url) as other,
    ):
        await cache.set(key, "old", ttl_seconds=60)
        # Held locally, by get and by remember without early refresh.
        assert await cache.get(key) == "old"
        assert await cache.remember(key, factory, ttl_seconds=60) == "old"
        before = await _gets(other)
        assert await cache.get(key) == "old"
        assert await _gets(other) == before
        # As if computing it last took far longer than the TTL left: this hit
        # starts a background refresh (short of a one-in-ten-million draw).
        await other.set(sidecar_key(key, "meta"), "1e12", px=60_000)
        with anyio.fail_after(10):
            assert await cache.remember(key, factory, ttl_seconds=60, early_refresh=True) == "old"
            await observe.refreshed.wait()
        assert calls == 1
        assert await cache.get(key) == "refreshed-1"
        assert await cache.remember(key, factory, ttl_seconds=60) == "refreshed-1"
        assert await cache.remember(key, factory, ttl_seconds=60, early_refresh=True) in (
            "refreshed-1",
            "refreshed-2",  # the new sidecar's delta is tiny: a refresh is a near-impossible draw
        )
        assert await other.get(key) == await cache.get(key)


async def test_another_process_refreshing_early_is_seen_after_one_round_trip(
    real_server: RedisServer, key: str
) -> None:
    observe = Observed()

    async def factory() -> str:
        return "from-elsewhere"

    config = RedisConfig(url=real_server.url)
    async with (
        _local(real_server.url) as reader,
        open_redis_provider(config, observer=observe) as elsewhere,
    ):
        await elsewhere.set(key, "old", ttl_seconds=60)
        assert await reader.get(key) == "old"
        await elsewhere.client.set(sidecar_key(key, "meta"), "1e12", px=60_000)
        with anyio.fail_after(10):
            assert await elsewhere.remember(key, factory, ttl_seconds=60, early_refresh=True)
            await observe.refreshed.wait()
        await _round_trip(reader)
        assert await reader.get(key) == "from-elsewhere"


# -- 3. hostile ------------------------------------------------------------------


async def test_a_value_that_is_not_text_fails_as_without_the_local_cache(
    real_server: RedisServer, key: str
) -> None:
    async with _beside_plain(real_server.url) as (cache, plain, other):
        await other.set(key, b"\xff\xfe not text")
        await _fails_alike(cache, plain, key, UnicodeDecodeError)
        with pytest.raises(UnicodeDecodeError):
            await cache.remember(key, _never)
        local = _tracker(cache)
        assert key not in local._entries and local._reading == {}
        assert await cache.has(key) is True
        await _written_then_read(cache, other, key, b"text again", "text again")


@asynccontextmanager
async def _beside_plain(url: str) -> AsyncIterator[tuple[RedisCachePort, RedisCachePort, Any]]:
    """A port with the local cache, one without, and a bytes client to write
    what a port would refuse to."""
    async with (
        _local(url) as cache,
        open_redis_provider(RedisConfig(url=url)) as plain,
        open_redis_client(url, decode_responses=False) as other,
    ):
        yield cache, plain, other


async def _fails_alike(
    cache: RedisCachePort,
    plain: RedisCachePort,
    key: str,
    error: type[Exception],
    match: str | None = None,
) -> None:
    """``get`` fails as it does without the local cache, every time: nothing
    was held from the failed read, and its bookkeeping is gone."""
    with pytest.raises(error, match=match) as without:
        await plain.get(key)
    for _ in range(3):
        with pytest.raises(error) as with_local:
            await cache.get(key)
        assert str(with_local.value) == str(without.value)
    local = _tracker(cache)
    assert key not in local._entries and local._reading == {}


async def _never() -> str:
    raise AssertionError("not called: the key holds a value")


async def test_a_key_name_that_is_not_text_invalidates_harmlessly(
    real_server: RedisServer, key: str
) -> None:
    """A read through the escape hatch is tracked too: the invalidation for a
    key name that is not UTF-8 must not break the shared connection."""
    raw = key.encode() + b":\xff\xfe"
    async with (
        _local(real_server.url) as cache,
        open_redis_client(real_server.url, decode_responses=False) as other,
    ):
        await other.set(raw, b"one")
        await other.set(key, b"kept")
        assert await cache.get(key) == "kept"
        assert await cache.client.execute_command("STRLEN", raw) == 3
        assert await cache.client.get(raw) is not None  # tracked on the shared connection
        flushes = _flushes(cache)
        await other.set(raw, b"two")
        await _round_trip(cache)
        assert await cache.get(key) == "kept"
        assert _flushes(cache) == flushes  # the link did not fail over it
        await _written_then_read(cache, other, key, b"changed", "changed")


async def test_a_key_name_that_is_not_text_does_not_shift_replies(
    real_server: RedisServer, key: str
) -> None:
    """The same push, landing just before two reads: each read gets its own
    key's value (not the decode error meant for nobody, not its neighbour's)."""
    raw = key.encode() + b":\xff\xfe"
    async with (
        _local(real_server.url) as cache,
        open_redis_client(real_server.url, decode_responses=False) as other,
    ):
        await other.mset({raw: b"one", f"{key}:a": b"A", f"{key}:b": b"B"})
        assert await cache.client.execute_command("STRLEN", raw) == 3  # tracked
        await other.set(raw, b"two")  # its invalidation now waits on the reader's socket
        results: dict[str, object] = {}

        async def read(name: str) -> None:
            try:
                results[name] = await cache.get(f"{key}:{name}")
            except Exception as exc:  # what goes wrong is the finding
                results[name] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(read, "a")
                tasks.start_soon(read, "b")
        assert results == {"a": "A", "b": "B"}


async def test_a_value_over_max_bytes_is_served_every_time_never_held(
    real_server: RedisServer, key: str
) -> None:
    limit = 4096
    async with (
        _local(real_server.url, local_cache_max_bytes=limit) as cache,
        open_redis_client(real_server.url) as other,
    ):
        await other.set(f"{key}:small", "s")
        assert await cache.get(f"{key}:small") == "s"
        held = cache.local_stats
        assert held is not None and held.entries == 1
        await other.set(key, "small first")
        assert await cache.get(key) == "small first"
        await other.set(key, "b" * limit)  # the same key grows past the bound
        await _round_trip(cache)
        before = await _gets(other)
        for _ in range(3):
            assert await cache.get(key) == "b" * limit
        assert await _gets(other) == before + 3
        stats = cache.local_stats
        assert stats is not None and stats.entries == 1 and stats.bytes <= limit
        assert key not in _tracker(cache)._entries
        assert await cache.get(f"{key}:small") == "s"  # what fits stayed


async def test_a_key_of_another_type_fails_as_without_the_local_cache(
    real_server: RedisServer, key: str
) -> None:
    async with _beside_plain(real_server.url) as (cache, plain, other):
        await other.hset(key, "field", "value")
        await _fails_alike(cache, plain, key, ResponseError, "WRONGTYPE")
        await other.delete(key)
        await _written_then_read(cache, other, key, "a string now", "a string now")


async def test_a_cancelled_tracked_read_stores_nothing(own_server: RedisServer, key: str) -> None:
    async with (
        _local(own_server.url) as cache,
        open_redis_client(own_server.url) as other,
    ):
        await other.set(key, "old")
        await _round_trip(cache)  # connected
        local = _tracker(cache)
        with anyio.fail_after(10):
            own_server.freeze()
            try:
                async with anyio.create_task_group() as tasks:
                    scope = anyio.CancelScope()

                    async def read() -> None:
                        with scope:
                            await cache.get(key)
                        assert scope.cancelled_caught

                    tasks.start_soon(read)
                    await anyio.wait_all_tasks_blocked()
                    assert key in local._reading  # in flight, the server frozen
                    scope.cancel()
                assert local._reading == {}
            finally:
                own_server.thaw()
            # The cancelled read's reply arrives now, and must be dropped.
            await _round_trip(cache)
            assert key not in local._entries and local._reading == {}
            before = await _gets(other)
            assert await cache.get(key) == "old"
            assert await _gets(other) == before + 1  # read afresh, then held
            await _written_then_read(cache, other, key, "new", "new")


async def test_a_thousand_readers_and_a_writer_end_on_the_last_writes(
    real_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:{n}" for n in range(50)]
    last: dict[str, str | None] = dict.fromkeys(keys)
    rng = random.Random(7)
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as writer:
        done = anyio.Event()
        # Connected before the crowd starts: a connect's deadline is wall
        # time, and a thousand busy tasks on 2 cores can outlast it.
        await writer.ping()

        async def reader(seed: int) -> None:
            mine = random.Random(seed)
            seen: dict[str, int] = {}
            while not done.is_set():
                chosen = mine.choice(keys)
                value = await cache.get(chosen)
                version = -1 if value is None else int(value)
                assert version >= seen.get(chosen, -1), chosen  # never back to older
                seen[chosen] = version
                await anyio.lowlevel.checkpoint()  # a local hit does not yield, by design

        async def write() -> None:
            for version in range(600):
                chosen = rng.choice(keys)
                await writer.set(chosen, str(version))
                last[chosen] = str(version)
            done.set()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for seed in range(1000):
                    tasks.start_soon(reader, seed)
                tasks.start_soon(write)
        await _round_trip(cache)
        assert {k: await cache.get(k) for k in keys} == last
        stats = cache.local_stats
        assert stats is not None and stats.hits > stats.misses  # it did cache
        assert _tracker(cache)._reading == {}


async def test_client_kill_during_a_burst_of_reads(real_server: RedisServer, key: str) -> None:
    keys = [f"{key}:{n}" for n in range(50)]
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as other:
        await other.mset(dict.fromkeys(keys, "0"))
        local = _tracker(cache)
        reader_id = await cache.client.client_id()
        flushes = local.flushes
        stop = anyio.Event()
        killed_in_flight = 0
        failed = 0

        async def reader() -> None:
            nonlocal failed
            while not stop.is_set():
                for chosen in keys:
                    try:
                        await cache.get(chosen)
                    except ConnectionError:
                        failed += 1
                        await anyio.sleep(0.01)

        async def churn() -> None:
            nonlocal killed_in_flight
            for version in range(1, 400):
                await other.mset(dict.fromkeys(keys, str(version)))  # every key, every time
                if not killed_in_flight and version >= 20 and local._reading:
                    killed_in_flight = len(local._reading)
                    assert await other.client_kill_filter(_id=reader_id) == 1
            stop.set()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for _ in range(100):
                    tasks.start_soon(reader)
                tasks.start_soon(churn)
        assert killed_in_flight > 0  # the kill did land mid-burst
        await other.mset(dict.fromkeys(keys, "final"))
        await _round_trip_again(cache)
        assert [await cache.get(k) for k in keys] == ["final"] * 50
        assert local._reading == {} and local.flushes > flushes


async def test_bypass_with_the_server_stopped_caches_nothing_from_the_outage(
    own_server: RedisServer, key: str
) -> None:
    async with _local(
        own_server.url,
        failure_policy="bypass",
        breaker_threshold=1,
        breaker_cooldown_seconds=0.05,
        connect_timeout=1,
    ) as cache:
        await cache.set(key, "old")
        assert await cache.get(key) == "old"
        own_server.stop()
        with anyio.fail_after(20):
            with pytest.raises(ConnectionError):  # the reader learns its server is gone
                await _until_lost(cache)
            for _ in range(5):
                assert await cache.get(key) is None  # bypassed; not the old value
                assert await cache.has(key) is False
            local = _tracker(cache)
            assert key not in local._entries and local._reading == {}
            own_server.start()  # empty: nothing is saved
            async with open_redis_client(own_server.url) as other:
                await other.set(key, "new")
                while (value := await cache.get(key)) != "new":
                    assert value is None  # still bypassing (breaker cooling down)
                    await anyio.sleep(0.02)
                await _written_then_read(cache, other, key, "newer", "newer")


async def test_a_server_dropping_keys_from_its_tracking_table_invalidates_them(
    own_server: RedisServer, key: str
) -> None:
    """The server tracks at most ``tracking-table-max-keys`` keys; it forgets
    older ones by sending their invalidation, so nothing goes stale."""
    keys = [f"{key}:{n}" for n in range(40)]
    async with _local(own_server.url) as cache, open_redis_client(own_server.url) as other:
        await other.config_set("tracking-table-max-keys", 5)
        await other.mset(dict.fromkeys(keys, "old"))
        for chosen in keys:
            assert await cache.get(chosen) == "old"
        await _round_trip(cache)
        stats = cache.local_stats
        assert stats is not None and stats.entries <= 6 and stats.invalidations >= 34
        await other.mset(dict.fromkeys(keys, "new"))
        await _round_trip(cache)
        assert [await cache.get(k) for k in keys] == ["new"] * 40


@pytest.mark.xfail(
    strict=True,
    reason="server limitation: Redis 7.0 and Valkey 8.1 send no invalidation on SWAPDB, "
    "so a reader's entries for the swapped database go stale until local_cache_ttl",
)
async def test_swapdb_by_another_client_leaves_no_stale_entry(
    own_server: RedisServer, key: str
) -> None:
    async with (
        _local(own_server.url) as cache,
        open_redis_client(own_server.url) as other,
        open_redis_client(own_server.url, db=1) as other_db,
    ):
        await other.set(key, "db0")
        await other_db.set(key, "db1")
        assert await cache.get(key) == "db0"
        await other.swapdb(0, 1)
        await _round_trip(cache)
        assert await cache.get(key) == "db1"


async def test_debug_reload_by_another_client_leaves_no_stale_entry(
    own_server: RedisServer, key: str
) -> None:
    """The dataset replaced wholesale (as a replica's full sync does)."""
    async with _local(own_server.url) as cache, open_redis_client(own_server.url) as other:
        await other.set(key, "saved")
        assert await other.execute_command("SAVE")
        await other.set(key, "after the save")
        assert await cache.get(key) == "after the save"
        # NOSAVE: load the file as it is, which holds the older value.
        assert await other.execute_command("DEBUG", "RELOAD", "NOSAVE")
        await _round_trip_again(cache)
        assert await cache.get(key) == "saved"


@pytest.mark.parametrize(
    "knobs",
    [
        {"local_cache_max_entries": 0},
        {"local_cache_max_entries": -1},
        {"local_cache_max_entries": True},
        {"local_cache_max_entries": 1.5},
        {"local_cache_max_entries": "10"},
        {"local_cache_max_bytes": -1},
        {"local_cache_max_bytes": 0},
        {"local_cache_max_bytes": float("inf")},
        {"local_cache_ttl": 0},
        {"local_cache_ttl": -1.0},
        {"local_cache_ttl": 1e9},
        {"local_cache_ttl": 10**400},
        {"local_cache_ttl": float("inf")},
        {"local_cache_ttl": float("nan")},
        {"local_cache_ttl": "60"},
        {"local_cache_ttl": True},
    ],
    ids=repr,
)
async def test_absurd_knobs_fail_before_any_io(knobs: dict[str, Any]) -> None:
    # Port 1 on loopback: nothing listens, and no connection is attempted.
    with pytest.raises(ConfigError, match="REDIS_LOCAL_CACHE_"):
        async with open_redis_provider(
            RedisConfig(url="redis://127.0.0.1:1", local_cache=True, **knobs)
        ):
            pass


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("REDIS_LOCAL_CACHE_MAX_ENTRIES", "-5"),
        ("REDIS_LOCAL_CACHE_MAX_ENTRIES", "1e3"),
        ("REDIS_LOCAL_CACHE_MAX_BYTES", "0"),
        ("REDIS_LOCAL_CACHE_MAX_BYTES", "lots"),
        ("REDIS_LOCAL_CACHE_TTL", "0"),
        ("REDIS_LOCAL_CACHE_TTL", "1e9"),
        ("REDIS_LOCAL_CACHE_TTL", "inf"),
        ("REDIS_LOCAL_CACHE_TTL", "nan"),
    ],
)
def test_absurd_knobs_from_the_environment(variable: str, text: str) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:1", "REDIS_LOCAL_CACHE": "true", variable: text}
    with pytest.raises(ConfigError, match=variable):
        RedisConfig.from_env(env)


@pytest.mark.parametrize("early_refresh", [False, True], ids=["plain", "early_refresh"])
async def test_remember_does_not_join_a_read_its_round_trip_has_outdated(
    real_server: RedisServer, key: str, monkeypatch: pytest.MonkeyPatch, early_refresh: bool
) -> None:
    """A ``remember`` that finds another caller's read of its key in flight
    waits for it rather than read again; but that read may have been sent
    before a write this caller's round trip has seen acknowledged. Its reply
    (parsed, its caller not yet resumed) must not be handed on."""
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as other:
        await other.set(key, "old")
        client = cache.client
        replied, release = anyio.Event(), anyio.Event()
        send_many = client._send_many

        async def held_back(commands: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
            replies = await send_many(commands, transaction)
            if commands[0] == ("GET", key) and not replied.is_set():
                replied.set()
                await release.wait()  # as if the scheduler ran the others first
            return replies

        monkeypatch.setattr(client, "_send_many", held_back)
        got: dict[str, str] = {}

        async def remember(name: str) -> None:
            got[name] = await cache.remember(
                key, _never, ttl_seconds=60, early_refresh=early_refresh
            )

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(remember, "first")
                await replied.wait()  # its GET answered "old"
                await other.set(key, "new")  # acknowledged
                await _round_trip(cache)  # the invalidation is in
                tasks.start_soon(remember, "second")
                await anyio.wait_all_tasks_blocked()
                release.set()
        assert got == {"first": "old", "second": "new"}  # first's call began before the write
        assert await cache.remember(key, _never, ttl_seconds=60) == "new"


async def test_remember_still_shares_a_read_nothing_overtook(
    real_server: RedisServer, key: str
) -> None:
    """The other side of the test above: with the local cache on, a hundred
    callers on a cold key still send one read, when no write overtakes it."""
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as other:
        await other.set(key, "cached")
        before = await _gets(other)
        got: list[str] = []

        async def remember() -> None:
            got.append(await cache.remember(key, _never, ttl_seconds=60))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for _ in range(100):
                    tasks.start_soon(remember)
        assert got == ["cached"] * 100
        assert await _gets(other) == before + 1
