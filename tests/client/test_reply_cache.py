"""The client's local cache: read-only commands' replies from memory, kept
right by the server's invalidations (``_client/reply_cache.py``)."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from redis import cache as redis_cache
from redis.cache import CacheConfig
from redis.exceptions import ResponseError

from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._client.reply_cache import ABSENT, ReplyCache, copy_reply
from beignet_redis_anyio._net.commands import CACHEABLE, COMMANDS
from beignet_redis_anyio._net.wire import encode_command
from helpers.targets import RedisCluster, RedisServer

pytestmark = pytest.mark.anyio


async def _calls(client: Any, command: str) -> int:
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command.lower()}", {}).get("calls", 0))


async def test_read_only_commands_reach_the_server_once(real_server: RedisServer, key: str) -> None:
    h, s, z, lst = f"{key}:h", f"{key}:s", f"{key}:z", f"{key}:l"
    async with (
        open_redis_client(real_server.url, local_cache=True) as client,
        open_redis_client(real_server.url) as other,
    ):
        await client.ping()  # connected: a read issued before that is not kept
        await other.hset(h, mapping={"a": "1", "b": "2"})
        await other.sadd(s, "x", "y")
        await other.zadd(z, {"m": 1.5, "n": 2.5})
        await other.rpush(lst, "p", "q")
        reads = {
            "hgetall": lambda: client.hgetall(h),
            "hget": lambda: client.hget(h, "a"),
            "smembers": lambda: client.smembers(s),
            "zrange": lambda: client.zrange(z, 0, -1, withscores=True),
            "zscore": lambda: client.zscore(z, "m"),
            "lrange": lambda: client.lrange(lst, 0, -1),
            "exists": lambda: client.exists(h, s),
        }
        first = {name: await read() for name, read in reads.items()}
        before = {name: await _calls(other, name) for name in reads}
        for _ in range(20):
            assert {name: await read() for name, read in reads.items()} == first
        assert {name: await _calls(other, name) for name in reads} == before
        assert first["hgetall"] == {"a": "1", "b": "2"} and first["smembers"] == {"x", "y"}
        # RESP3 (the local cache needs it): redis-py's shape for it, pairs as lists.
        assert first["zrange"] == [["m", 1.5], ["n", 2.5]] and first["exists"] == 2
        stats = client.local_stats
        assert stats is not None and stats.hits == 20 * len(reads)
        assert stats.misses == len(reads) and stats.entries == len(reads)


async def test_a_change_to_a_key_drops_every_reply_that_read_it(
    real_server: RedisServer, key: str
) -> None:
    h, other_key = f"{key}:h", f"{key}:o"
    async with (
        open_redis_client(real_server.url, local_cache=True) as client,
        open_redis_client(real_server.url) as writer,
    ):
        await client.ping()
        await writer.hset(h, "a", "1")
        await writer.set(other_key, "v")
        assert await client.hgetall(h) == {"a": "1"}
        assert await client.hget(h, "a") == "1"
        assert await client.exists(h, other_key) == 2
        assert await client.get(other_key) == "v"
        await writer.hset(h, "a", "2")
        assert await client.ping()  # the reader's one round trip
        assert await client.hgetall(h) == {"a": "2"}
        assert await client.hget(h, "a") == "2"
        assert await client.exists(h, other_key) == 2
        stats = client.local_stats
        # The GET of the untouched key is still held; the three that read h went.
        assert stats is not None and stats.invalidations == 1
        assert await client.get(other_key) == "v"
        assert client.local_stats is not None and client.local_stats.hits == 1


async def test_another_clients_writes_are_seen_after_one_round_trip(
    own_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:{n}" for n in range(8)]
    rng = random.Random(31)
    current: dict[str, dict[str, str]] = {name: {} for name in keys}
    async with (
        open_redis_client(own_server.url, local_cache=True) as client,
        open_redis_client(own_server.url) as writer,
    ):
        for round_ in range(200):
            chosen = rng.choice(keys)
            assert await client.hgetall(chosen) == current[chosen], round_
            assert await client.hlen(chosen) == len(current[chosen]), round_
            action = rng.random()
            if action < 0.2:
                await writer.delete(chosen)
                current[chosen] = {}
            elif action < 0.3:
                await writer.flushdb()
                current = {name: {} for name in keys}
            else:
                field = f"f{rng.randrange(3)}"
                await writer.hset(chosen, field, str(round_))
                current[chosen] = {**current[chosen], field: str(round_)}
            assert await client.ping()
            assert await client.hgetall(chosen) == current[chosen], round_
            assert await client.hlen(chosen) == len(current[chosen]), round_


async def test_own_writes_are_read_back_at_once(own_server: RedisServer, key: str) -> None:
    async with open_redis_client(own_server.url, local_cache=True) as client:
        assert await client.hgetall(key) == {}
        await client.hset(key, "a", "1")
        assert await client.hgetall(key) == {"a": "1"}  # no round trip in between
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(key, "b", "2")
            pipe.hdel(key, "a")
            await pipe.execute()
        assert await client.hgetall(key) == {"b": "2"}
        await client.flushdb()
        assert await client.hgetall(key) == {}
        await client.set(f"{key}:s", "x")
        assert await client.get(f"{key}:s") == "x"
        await client.execute_command("SWAPDB", 0, 0)
        assert await client.get(f"{key}:s") == "x"
        # A write to a key it does not name first: every key the table knows.
        assert await client.get(f"{key}:t") is None
        await client.rename(f"{key}:s", f"{key}:t")
        assert await client.get(f"{key}:t") == "x"
        assert await client.smembers(f"{key}:u") == set()
        await client.sadd(f"{key}:v", "m")
        await client.sunionstore(f"{key}:u", [f"{key}:v"])
        assert await client.smembers(f"{key}:u") == {"m"}


async def test_a_hit_hands_out_a_copy(real_server: RedisServer, key: str) -> None:
    async with open_redis_client(real_server.url, local_cache=True) as client:
        await client.rpush(key, "a", "b")
        got = await client.lrange(key, 0, -1)
        got.append("mine")
        again = await client.lrange(key, 0, -1)
        assert again == ["a", "b"]
        again.clear()
        assert await client.lrange(key, 0, -1) == ["a", "b"]
    nested = {"k": [1, {"x": {2}}]}
    copied = copy_reply(nested)
    assert copied == nested and copied is not nested
    assert copied["k"] is not nested["k"] and copied["k"][1]["x"] is not nested["k"][1]["x"]


async def test_time_chance_and_the_server_are_never_cached(
    real_server: RedisServer, key: str
) -> None:
    async with (
        open_redis_client(real_server.url, local_cache=True) as client,
        open_redis_client(real_server.url) as other,
    ):
        await other.set(key, "v", ex=100)
        await other.sadd(f"{key}:s", *range(20))
        for command in ("ttl", "pttl", "srandmember", "time", "dbsize", "randomkey"):
            before = await _calls(other, command)
            for _ in range(3):
                if command in ("ttl", "pttl"):
                    await getattr(client, command)(key)
                elif command == "srandmember":
                    await client.srandmember(f"{key}:s")
                else:
                    await getattr(client, command)()
            assert await _calls(other, command) == before + 3, command
    never = {"TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "SRANDMEMBER", "HRANDFIELD"}
    never |= {"ZRANDMEMBER", "RANDOMKEY", "SCAN", "OBJECT", "DEBUG", "TIME", "PFCOUNT"}
    never |= {"SORT_RO", "EVAL_RO", "FCALL_RO", "DUMP", "INFO", "MEMORY", "HSCAN"}
    assert never.isdisjoint(CACHEABLE)
    assert all(COMMANDS[name].cacheable for name in CACHEABLE)


async def test_an_error_reply_and_foreign_bytes_are_not_kept(
    real_server: RedisServer, key: str
) -> None:
    async with (
        open_redis_client(real_server.url, local_cache=True) as client,
        open_redis_client(real_server.url, decode_responses=False) as raw,
    ):
        await raw.set(key, b"\xff")
        await raw.rpush(f"{key}:l", b"x")
        for _ in range(2):
            with pytest.raises(UnicodeDecodeError):
                await client.get(key)
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await client.get(f"{key}:l")
        stats = client.local_stats
        assert stats is not None and stats.entries == 0 and stats.misses == 4
        assert await client.execute_command("GET", key, NEVER_DECODE=True) == b"\xff"


async def test_a_keyed_write_without_its_key_gets_the_servers_error(
    real_server: RedisServer, key: str
) -> None:
    """The reply cache drops a write's key once it is answered; a write sent
    with no key at all has nothing to drop, and its caller gets the server's
    refusal — not an error of the cache's own."""
    async with open_redis_client(real_server.url, local_cache=True) as client:
        await client.set(key, "v")
        assert await client.get(key) == "v"  # held now
        for name in ("GETEX", "INCR", "DEL", "MSET"):
            with pytest.raises(ResponseError, match="wrong number of arguments"):
                await client.execute_command(name)
        assert await client.get(key) == "v"
        await client.incr(f"{key}:n")
        assert await client.get(f"{key}:n") == "1"


async def test_a_reply_never_outlives_its_keys(real_server: RedisServer, key: str) -> None:
    async with (
        open_redis_client(real_server.url, local_cache=True) as client,
        open_redis_client(real_server.url) as other,
    ):
        await client.ping()
        await other.set(key, "v", px=300)
        assert await client.get(key) == "v"
        replies = client._replies
        assert replies is not None
        (entry,) = replies._entries.values()
        assert 0 < entry.expires - time.monotonic() <= 0.3  # the key's, not the 60 s local TTL


async def test_bounds_hold_and_bad_ones_are_refused(real_server: RedisServer, key: str) -> None:
    async with open_redis_client(
        real_server.url, local_cache=True, local_cache_max_entries=5, local_cache_max_bytes=10**6
    ) as client:
        await client.ping()
        for n in range(20):
            await client.get(f"{key}:{n}")
        stats = client.local_stats
        assert stats is not None and stats.entries == 5 and stats.evictions == 15
    for bad in ({"local_cache_max_entries": 0}, {"local_cache_ttl": float("nan")}):
        with pytest.raises(ValueError, match="local_cache"):
            async with open_redis_client(real_server.url, local_cache=True, **bad):
                pass
    with pytest.raises(ValueError, match="RESP3"):
        async with open_redis_client(real_server.url, local_cache=True, protocol=2):
            pass


@pytest.mark.filterwarnings("ignore:.*(cache_predicate|optin).*:UserWarning")
async def test_redis_pys_cache_config_maps_onto_it(real_server: RedisServer, key: str) -> None:
    async with open_redis_client(real_server.url, cache_config=CacheConfig(max_size=3)) as client:
        await client.ping()
        for n in range(5):
            await client.get(f"{key}:{n}")
        stats = client.local_stats
        assert stats is not None and stats.entries == 3
    odds: list[tuple[object, str]] = [
        ("max_size=3", "CacheConfig"),
        (CacheConfig(cache_class=dict), "cache_class"),
    ]
    if hasattr(redis_cache, "TrackingMode"):  # redis-py >= 8.2
        odds += [
            (CacheConfig(tracking_mode=redis_cache.TrackingMode.OPTIN), "tracking mode"),
            (CacheConfig(cache_predicate=lambda name, args: True), "cache_predicate"),
        ]
    for odd, word in odds:
        with pytest.raises(ValueError, match=word):
            async with open_redis_client(real_server.url, cache_config=odd):
                pass


async def test_the_provider_serves_cache_clients_reads_from_memory(
    real_server: RedisServer, key: str
) -> None:
    async with (
        open_redis_provider(RedisConfig(url=real_server.url, local_cache=True)) as cache,
        open_redis_client(real_server.url) as other,
    ):
        await other.hset(key, "a", "1")
        assert await cache.client.hgetall(key) == {"a": "1"}
        before = await _calls(other, "hgetall")
        assert await cache.client.hgetall(key) == {"a": "1"}
        assert await _calls(other, "hgetall") == before
        await other.hset(key, "a", "2")
        assert await cache.client.ping()
        assert await cache.client.hgetall(key) == {"a": "2"}
        # The port's own entries are kept apart, and both are right.
        await other.set(f"{key}:s", "x")
        assert await cache.get(f"{key}:s") == "x"
        assert await cache.client.get(f"{key}:s") == "x"


async def test_on_a_cluster_replies_of_one_slot_are_kept_and_cross_slot_reads_are_not(
    cluster: RedisCluster,
) -> None:
    tagged = ["{rc}:a", "{rc}:b"]
    async with (
        open_redis_client(cluster.url, local_cache=True) as client,
        open_redis_client(cluster.url) as other,
    ):
        await client.ping()
        await other.mset({tagged[0]: "1", tagged[1]: "2", "rc:x": "3", "rc:y": "4"})
        assert await client.mget(tagged) == ["1", "2"]
        assert await client.mget(tagged) == ["1", "2"]
        assert await client.mget(["rc:x", "rc:y"]) == ["3", "4"]  # split per slot
        assert await client.mget(["rc:x", "rc:y"]) == ["3", "4"]
        stats = client.local_stats
        assert stats is not None and stats.hits == 1 and stats.entries == 1
        await other.set(tagged[1], "new")
        router = client._cluster
        assert router is not None
        for address in router.primaries:  # one round trip on every node's connection
            await router.node(address).request(encode_command(("PING",)), 1, True)
        assert await client.mget(tagged) == ["1", "new"]


def test_the_ticket_rule_spoils_a_read_overtaken_by_an_invalidation() -> None:
    replies = ReplyCache(max_entries=10, max_bytes=10**6, ttl=60, cluster=False)
    ticket = replies.begin(["a", "b"])
    replies.invalidate("b")
    replies.finish(("MGET", "a", "b"), ["a", "b"], ticket, True, ["1", "2"], [-1, -1])
    assert replies.held(("MGET", "a", "b")) is ABSENT
    assert replies.stats().entries == 0
    ticket = replies.begin(["a"])
    replies.flush()
    replies.finish(("GET", "a"), ["a"], ticket, True, "1", [-1])
    assert replies.stats().entries == 0
    ticket = replies.begin(["a"])
    replies.finish(("GET", "a"), ["a"], ticket, True, "1", [-1])
    assert replies.stats().entries == 1
    assert not replies.reading and not replies._invalidated


def test_forgetting_slots_drops_only_their_replies_and_spoils_reads_in_flight() -> None:
    from redis.crc import key_slot

    replies = ReplyCache(max_entries=10, max_bytes=10**6, ttl=60, cluster=True)
    for name in ("a", "b"):
        ticket = replies.begin([name])
        replies.finish(("GET", name), [name], ticket, True, "v", [-1])
    in_flight = replies.begin(["c"])
    replies.forget_slots({key_slot(b"a")})
    assert replies.held(("GET", "a")) is ABSENT
    assert replies.held(("GET", "b")) == "v"
    replies.finish(("GET", "c"), ["c"], in_flight, True, "v", [-1])
    assert replies.held(("GET", "c")) is ABSENT


async def test_a_read_before_the_connection_opened_and_a_number_as_key_are_not_kept(
    own_server: RedisServer, key: str
) -> None:
    async with open_redis_client(own_server.url, local_cache=True) as client:
        assert await client.get(key) is None  # the very first command: it connects
        stats = client.local_stats
        assert stats is not None and stats.entries == 0
        assert await client.get(key) is None
        assert await client.get(12345) is None  # a number: not matched to invalidations
        stats = client.local_stats
        assert stats is not None and stats.entries == 1
        await client.flushall()
        stats = client.local_stats
        assert stats is not None and stats.entries == 0


# -- a process reads its own writes without waiting for the server's push ------


def _late_server() -> tuple[Any, dict[bytes, bytes]]:
    """A scripted RESP3 server that tracks nothing: it never sends an
    invalidation, as a real one may send it only after the writer's reply.
    So whatever the client reads back after its own write, it owes to
    dropping the replies itself once the write is answered."""
    data: dict[bytes, bytes] = {}

    async def answer(request: list[bytes]) -> bytes:
        name = request[0].upper()
        if name == b"HELLO":
            return b"%1\r\n+proto\r\n:3\r\n"
        if name in (b"SET", b"GETEX", b"APPEND") and len(request) > 2:
            data[request[1]] = request[2]
            return b"+OK\r\n"
        if name in (b"MSET",):
            for at in range(1, len(request) - 1, 2):
                data[request[at]] = request[at + 1]
            return b"+OK\r\n"
        if name in (b"FLUSHDB", b"FLUSHALL"):
            data.clear()
            return b"+OK\r\n"
        if name == b"GET":
            value = data.get(request[1])
            return b"_\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
        if name == b"PTTL":
            return b":-1\r\n" if request[1] in data else b":-2\r\n"
        return b"+OK\r\n"  # CLIENT TRACKING, CLIENT SETINFO, SELECT …

    return answer, data


@pytest.mark.parametrize(
    ("write", "args"),
    [
        pytest.param("SET", ("{k}", "new"), id="one-key"),
        pytest.param("MSET", ("other", "x", "{k}", "new"), id="keys"),
        pytest.param("FLUSHDB", (), id="flush"),
    ],
)
async def test_a_write_drops_its_keys_replies_once_answered(
    write: str, args: tuple[str, ...]
) -> None:
    import anyio

    from helpers.targets import serve_script

    answer, data = _late_server()
    key = "user:1"
    async with anyio.create_task_group() as server:
        port = await server.start(serve_script, answer)
        async with open_redis_client(f"redis://127.0.0.1:{port}", local_cache=True) as client:
            await client.ping()  # connected: a read issued before that is not kept
            data[key.encode()] = b"old"
            assert await client.get(key) == "old"
            assert await client.get(key) == "old"
            assert client.local_stats is not None and client.local_stats.hits == 1
            await client.execute_command(write, *(a.format(k=key) for a in args))
            expected = None if write == "FLUSHDB" else "new"
            assert await client.get(key) == expected  # read again, not the old reply
        server.cancel_scope.cancel()
