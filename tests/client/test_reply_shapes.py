"""Reply shapes: ours are redis-py's, for each protocol and ``legacy_responses``.

For commands whose replies RESP3 shapes differently from RESP2, our client's
reply (single command, and the same command in a pipeline) must equal the
reply of ``redis.asyncio.Redis(protocol=P, legacy_responses=L)`` on the same
data. redis-py's asyncio client cannot run under trio, so its answers are
computed on a loop of their own in a worker thread: every backend runs the
comparison, none is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
import pytest
import redis.asyncio

from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio.testing.servers import RedisCluster
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio

PROTOCOLS = pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
LEGACY = pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "unified"])

#: A call: what it sends, given a client or a pipeline (which queues it).
Call = Callable[[Any, str], Any]


def shape(value: Any) -> Any:
    """A reply with its scalars replaced by their types: for replies whose
    values change from one connection (or moment) to the next — ``CLIENT
    INFO``'s id and age, ``INFO``'s uptime — but whose shape must not."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(shape(item) for item in value)
    return type(value).__name__


def _keep(value: Any) -> Any:
    return value


def subcommands_sorted(table: Any) -> Any:
    """``COMMAND``'s table with each command's subcommands in name order:
    the server lists them in its hash table's order, which may change
    between two calls (its ``nondeterministic_output_order`` tip)."""
    if isinstance(table, dict):
        return {
            name: {**info, "subcommands": sorted(info.get("subcommands") or [], key=repr)}
            if isinstance(info, dict)
            else info
            for name, info in table.items()
        }
    return table


#: (name, call): ``k`` is the test's key, every key made from it (in braces,
#: one hash slot: the same calls run on a cluster).
DATA_CALLS: list[tuple[str, Call]] = [
    ("hgetall", lambda c, k: c.hgetall(f"{k}:h")),
    ("hrandfield withvalues", lambda c, k: c.hrandfield(f"{k}:h1", 1, withvalues=True)),
    ("hrandfield", lambda c, k: c.hrandfield(f"{k}:h1", 1)),
    ("zrange withscores", lambda c, k: c.zrange(f"{k}:z", 0, -1, withscores=True)),
    ("zrange", lambda c, k: c.zrange(f"{k}:z", 0, -1)),
    ("zrevrange withscores", lambda c, k: c.zrevrange(f"{k}:z", 0, -1, withscores=True)),
    ("zrangebyscore withscores", lambda c, k: c.zrangebyscore(f"{k}:z", 0, 9, withscores=True)),
    ("zscore", lambda c, k: c.zscore(f"{k}:z", "two")),
    ("zmscore", lambda c, k: c.zmscore(f"{k}:z", ["one", "nope"])),
    ("zincrby", lambda c, k: c.zincrby(f"{k}:z2", 0.5, "a")),
    ("zrandmember withscores", lambda c, k: c.zrandmember(f"{k}:z1", 1, withscores=True)),
    ("zscan", lambda c, k: c.zscan(f"{k}:z")),
    ("zunion withscores", lambda c, k: c.zunion([f"{k}:z", f"{k}:z1"], withscores=True)),
    ("zinter withscores", lambda c, k: c.zinter([f"{k}:z", f"{k}:z"], withscores=True)),
    ("zdiff withscores", lambda c, k: c.zdiff([f"{k}:z", f"{k}:z1"], withscores=True)),
    ("zpopmin", lambda c, k: c.zpopmin(f"{k}:zp")),
    ("zpopmax count", lambda c, k: c.zpopmax(f"{k}:zp", 2)),
    ("zmpop", lambda c, k: c.zmpop(1, [f"{k}:zm"], min=True)),
    ("smembers", lambda c, k: c.smembers(f"{k}:s")),
    ("sinter", lambda c, k: c.sinter([f"{k}:s", f"{k}:s"])),
    ("xrange", lambda c, k: c.xrange(f"{k}:x")),
    ("xrevrange", lambda c, k: c.xrevrange(f"{k}:x")),
    ("xread", lambda c, k: c.xread({f"{k}:x": "0"})),
    ("xreadgroup", lambda c, k: c.xreadgroup("g", "c1", {f"{k}:x": ">"})),
    ("xpending", lambda c, k: c.xpending(f"{k}:x", "g")),
    ("xinfo stream", lambda c, k: c.xinfo_stream(f"{k}:x")),
    ("lpos", lambda c, k: c.lpos(f"{k}:l", "b")),
    ("lpos count", lambda c, k: c.lpos(f"{k}:l", "b", count=0)),
    ("lcs idx", lambda c, k: c.lcs(f"{k}:s1", f"{k}:s2", idx=True, withmatchlen=True)),
    ("incrbyfloat", lambda c, k: c.incrbyfloat(f"{k}:f", 1.5)),
    ("geopos", lambda c, k: c.geopos(f"{k}:g", "here", "nowhere")),
    ("geodist", lambda c, k: c.geodist(f"{k}:g", "here", "there", unit="km")),
    ("geohash", lambda c, k: c.geohash(f"{k}:g", "here")),
    (
        "geosearch with all",
        lambda c, k: c.geosearch(
            f"{k}:g",
            member="here",
            radius=500,
            unit="km",
            withcoord=True,
            withdist=True,
            withhash=True,
            sort="ASC",
        ),
    ),
    (
        "georadius withdist",
        lambda c, k: c.georadius(f"{k}:g", 15, 37, 200, unit="km", withdist=True, sort="ASC"),
    ),
]

#: Server-wide commands (not keyed: a cluster would send them to any node).
SERVER_CALLS: list[tuple[str, Call, Callable[[Any], Any]]] = [
    ("config get", lambda c, k: c.config_get("databases"), _keep),
    ("client getname", lambda c, k: c.client_getname(), _keep),
    ("client info", lambda c, k: c.client_info(), shape),
    ("client list", lambda c, k: c.client_list(), lambda entries: shape(entries[:1])),
    ("client trackinginfo", lambda c, k: c.client_trackinginfo(), _keep),
    ("info server", lambda c, k: c.info("server"), shape),
    ("command", lambda c, k: c.command(), subcommands_sorted),
    ("command count", lambda c, k: c.command_count(), _keep),
    ("command getkeys", lambda c, k: c.command_getkeys("MSET", "a", "1", "b", "2"), _keep),
    ("command list", lambda c, k: c.command_list(category="hyperloglog"), _keep),
    ("acl getuser", lambda c, k: c.acl_getuser("alice"), _keep),
    ("acl whoami", lambda c, k: c.acl_whoami(), _keep),
    ("acl cat", lambda c, k: c.acl_cat("hyperloglog"), _keep),
    ("memory usage type", lambda c, k: c.memory_usage(f"{k}:h"), shape),
    ("echo", lambda c, k: c.echo("plain"), _keep),
]

#: Blocking commands, whose data is there already: each answers at once.
BLOCKING_CALLS: list[tuple[str, Call]] = [
    ("blpop", lambda c, k: c.blpop([f"{k}:bl"], timeout=1)),
    ("bzpopmin", lambda c, k: c.bzpopmin([f"{k}:bz"], timeout=1)),
    ("xread block", lambda c, k: c.xread({f"{k}:x": "0"}, block=100)),
]


async def seed(client: Any, k: str) -> None:
    suffixes = ["h", "h1", "z", "z1", "z2", "zp", "zm", "s", "x", "l", "s1", "s2", "f", "g"]
    await client.delete(*[f"{k}:{s}" for s in [*suffixes, "bl", "bz"]])
    await client.hset(f"{k}:h", mapping={"a": "1", "b": "2"})
    await client.hset(f"{k}:h1", mapping={"only": "1"})
    await client.zadd(f"{k}:z", {"one": 1, "two": 2.5})
    await client.zadd(f"{k}:z1", {"only": 3})
    await client.zadd(f"{k}:zp", {"a": 1, "b": 2, "c": 3.5})
    await client.zadd(f"{k}:zm", {"a": 1, "b": 2})
    await client.zadd(f"{k}:bz", {"a": 1})
    await client.sadd(f"{k}:s", "x", "y")
    await client.xadd(f"{k}:x", {"f": "v"}, id="1-1")
    await client.xadd(f"{k}:x", {"g": "w"}, id="2-1")
    await client.xgroup_create(f"{k}:x", "g", id="0")
    await client.rpush(f"{k}:l", "a", "b", "c", "b")
    await client.rpush(f"{k}:bl", "x")
    await client.set(f"{k}:s1", "ohmytext")
    await client.set(f"{k}:s2", "mynewtext")
    await client.geoadd(f"{k}:g", (13.361389, 38.115556, "here"))
    await client.geoadd(f"{k}:g", (15.087269, 37.502669, "there"))


async def one_by_one(client: Any, k: str, calls: list[tuple[str, Call]]) -> dict[str, Any]:
    await seed(client, k)
    return {name: await call(client, k) for name, call in calls}


async def in_a_pipeline(
    client: Any, k: str, calls: list[tuple[str, Call]], transaction: bool
) -> dict[str, Any]:
    await seed(client, k)
    pipe = client.pipeline(transaction=transaction)
    for _, call in calls:
        call(pipe, k)
    results = await pipe.execute()
    return dict(zip([name for name, _ in calls], results, strict=True))


def server_calls() -> list[tuple[str, Call]]:
    return [(name, call) for name, call, _ in SERVER_CALLS]


def normalised(answers: dict[str, Any]) -> dict[str, Any]:
    normalise = {name: how for name, _, how in SERVER_CALLS}
    return {name: normalise.get(name, _keep)(value) for name, value in answers.items()}


def redis_pys(
    make: Callable[[], Any], run: Callable[[Any], Awaitable[dict[str, Any]]]
) -> Awaitable[dict[str, Any]]:
    """What redis-py's asyncio client answers, on a loop of its own in a
    worker thread (so this runs under trio too)."""

    async def main() -> dict[str, Any]:
        theirs = make()
        try:
            return await run(theirs)
        finally:
            await theirs.aclose()

    return anyio.to_thread.run_sync(lambda: asyncio.run(main()))


async def matches(
    ours: Any,
    k: str,
    calls: list[tuple[str, Call]],
    expected: dict[str, Any],
    normalise: Callable[[dict[str, Any]], dict[str, Any]] = _keep,
) -> None:
    """Our replies to ``calls`` and ``BLOCKING_CALLS`` one by one, then to
    ``calls`` in a pipeline and in a transaction, are redis-py's: a
    pipeline's results are shaped as the single commands' replies."""
    assert normalise(await one_by_one(ours, k, calls + BLOCKING_CALLS)) == expected
    for transaction in (False, True):
        piped = normalise(await in_a_pipeline(ours, k, calls, transaction))
        assert piped == {name: expected[name] for name, _ in calls}, transaction


@PROTOCOLS
@LEGACY
async def test_single_commands_and_pipelines_reply_as_redis_py(
    real_server: RedisServer, key: str, protocol: int, legacy: bool
) -> None:
    calls = DATA_CALLS + server_calls()

    async def run_all(client: Any) -> dict[str, Any]:
        return normalised(await one_by_one(client, key, calls + BLOCKING_CALLS))

    expected = await redis_pys(
        lambda: redis.asyncio.Redis(
            host="127.0.0.1",
            port=real_server.port,
            protocol=protocol,
            legacy_responses=legacy,
            decode_responses=True,
            client_name="shapes-client",
        ),
        run_all,
    )
    async with open_redis_client(
        real_server.url,
        protocol=protocol,
        legacy_responses=legacy,
        client_name="shapes-client",
    ) as ours:
        assert ours.legacy_responses is legacy
        assert ours.get_connection_kwargs()["legacy_responses"] is legacy
        await matches(ours, key, calls, expected, normalised)


async def test_unified_replies_are_the_same_on_both_protocols(
    real_server: RedisServer, key: str
) -> None:
    """What ``legacy_responses=False`` is for: turning RESP3 on (as the
    local cache does) changes none of these shapes, while the legacy ones do."""
    answers: dict[tuple[int, bool], dict[str, Any]] = {}
    for protocol in (2, 3):
        for legacy in (True, False):
            async with open_redis_client(
                real_server.url, protocol=protocol, legacy_responses=legacy
            ) as client:
                answers[protocol, legacy] = await one_by_one(client, key, DATA_CALLS)
    assert answers[2, False] == answers[3, False]
    assert answers[2, True] != answers[3, True]
    differ = {n for n in answers[2, True] if answers[2, True][n] != answers[3, True][n]}
    assert {"zrange withscores", "zpopmin", "hrandfield withvalues", "xread"} <= differ


@LEGACY
async def test_the_local_cache_s_resp3_keeps_the_chosen_shapes(
    real_server: RedisServer, key: str, legacy: bool
) -> None:
    """The provider hands ``legacy_responses`` to ``cache.client``: with the
    local cache on (RESP3), unified replies are those of a RESP2 client,
    legacy ones those of redis-py under RESP3."""
    config = RedisConfig(url=real_server.url, local_cache=True, legacy_responses=legacy)
    async with open_redis_provider(config) as cache:
        client = cache.client
        assert (client.protocol, client.legacy_responses) == (3, legacy)
        got = await one_by_one(client, key, DATA_CALLS)
    async with open_redis_client(
        real_server.url, protocol=2 if not legacy else 3, legacy_responses=legacy
    ) as plain:
        assert got == await one_by_one(plain, key, DATA_CALLS)


@PROTOCOLS
@LEGACY
async def test_a_cluster_replies_as_redis_py_s_cluster_client(
    cluster: RedisCluster, key: str, protocol: int, legacy: bool
) -> None:
    k = "{" + key + "}"  # every key in one slot
    port = cluster.nodes[0].port

    async def run_all(client: Any) -> dict[str, Any]:
        return await one_by_one(client, k, DATA_CALLS + BLOCKING_CALLS)

    expected = await redis_pys(
        lambda: redis.asyncio.RedisCluster(
            host="127.0.0.1",
            port=port,
            protocol=protocol,
            legacy_responses=legacy,
            decode_responses=True,
        ),
        run_all,
    )
    async with open_redis_client(cluster.url, protocol=protocol, legacy_responses=legacy) as ours:
        await matches(ours, k, DATA_CALLS, expected)


@pytest.mark.parametrize("value", ["false", 0, None])
async def test_legacy_responses_must_be_a_bool(value: object) -> None:
    with pytest.raises(ValueError, match="legacy_responses must be True or False"):
        async with open_redis_client("redis://localhost", legacy_responses=value):  # type: ignore[arg-type]
            pass
