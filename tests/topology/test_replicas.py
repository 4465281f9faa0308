"""Reading from replicas (``read_from``): where each command goes, proved by
the servers' own ``INFO commandstats``, and what happens when a replica
freezes or a failover moves the roles."""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup
from redis.crc import key_slot
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    MovedError,
    NoScriptError,
    ResponseError,
    TimeoutError,
)

from beignet_redis_anyio import ConfigError, RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._net.commands import COMMANDS, READ_ONLY, command_for
from beignet_redis_anyio._net.multiplexer import Multiplexer
from beignet_redis_anyio._net.settings import ConnectionSettings
from beignet_redis_anyio._net.transport import open_connection
from beignet_redis_anyio._net.wire import encode_command
from beignet_redis_anyio._topology import cluster as cluster_module
from beignet_redis_anyio._topology.cluster import ClusterRouter
from beignet_redis_anyio._topology.replicas import ReplicaHealth, ReplicaNodes
from beignet_redis_anyio._topology.sentinel import SentinelResolver
from beignet_redis_anyio._topology.urls import SentinelSettings, parse_topology
from helpers.backends import running_backend
from helpers.polling import until
from helpers.targets import (
    FLAVOURS,
    RedisCluster,
    RedisSentinels,
    command,
    serve_script,
    server_binary,
)

pytestmark = pytest.mark.anyio

CLUSTER_URL = "redis+cluster://127.0.0.1:7000"
SENTINEL_URL = "redis+sentinel://127.0.0.1:26379/mymaster"


def calls(port: int, name: str) -> int:
    """How many times the server at ``port`` ran ``name``, by its own count."""
    found = re.search(
        rf"cmdstat_{name.lower()}:calls=(\d+)".encode(), command(port, "INFO", "commandstats")
    )
    return int(found.group(1)) if found else 0


class Stats:
    """The servers' command counts now, to compare with later ones."""

    def __init__(self, ports: list[int]) -> None:
        self.seen = {port: command(port, "INFO", "commandstats") for port in ports}

    def risen(self, ports: list[int], name: str) -> int:
        """How many more ``name`` calls ``ports`` ran since."""
        total = 0
        for port in ports:
            found = re.search(rf"cmdstat_{name}:calls=(\d+)".encode(), self.seen[port])
            total += calls(port, name) - (int(found.group(1)) if found else 0)
        return total


async def _equal(reply: Any, expected: object) -> bool:
    return await reply == expected


def cluster_roles(cluster: RedisCluster) -> tuple[list[int], list[int]]:
    """The ports of the primaries and of the replicas, as they are now."""
    primaries = [node.port for node in cluster.primaries()]
    return primaries, [node.port for node in cluster.nodes if node.port not in primaries]


# -- the command table ---------------------------------------------------------


def test_read_only_commands_name_their_keys_and_writes_are_not_among_them() -> None:
    """A replica is chosen by the key's slot: every read-only command names
    its keys. Writes, scripts that may write, transactions, WATCH, blocking
    commands and pub/sub are never read-only."""
    for name in READ_ONLY:
        command = COMMANDS[name]
        assert command.read_only and command.first_key != 0, name
    for name in (
        "SET", "DEL", "INCR", "GETEX", "GETDEL", "EXPIRE", "EVAL", "EVALSHA", "FCALL",
        "MULTI", "EXEC", "WATCH", "BLPOP", "XREAD", "SUBSCRIBE", "PUBLISH", "TOUCH",
        "PFCOUNT", "SCAN", "KEYS", "SORT", "GEORADIUS",
    ):  # fmt: skip
        assert not command_for((name,)).read_only, name
    for name in ("GET", "MGET", "HGETALL", "EXISTS", "TTL", "PTTL", "HSCAN", "ZRANGE"):
        assert command_for((name,)).read_only, name
    for name in ("EVAL_RO", "EVALSHA_RO", "FCALL_RO"):
        assert command_for((name,)).read_only, name


def test_the_readonly_refusal_points_to_read_from() -> None:
    for name in ("READONLY", "READWRITE"):
        assert "read_from" in str(COMMANDS[name].refusal)


# -- configuration ---------------------------------------------------------------


def test_read_from_is_checked_before_any_io() -> None:
    assert RedisConfig(url=CLUSTER_URL).read_from == "primary"
    config = RedisConfig.from_env(
        {"REDIS_URL": SENTINEL_URL, "REDIS_READ_FROM": " Prefer_Replica "}
    )
    assert config.read_from == "prefer_replica"
    settings = config.connection_settings()
    assert getattr(settings, "read_from", None) == "prefer_replica"
    with pytest.raises(ConfigError, match="REDIS_READ_FROM"):
        RedisConfig(url=CLUSTER_URL, read_from="nearest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="REDIS_READ_FROM"):
        RedisConfig.from_env({"REDIS_URL": CLUSTER_URL, "REDIS_READ_FROM": "replica"})
    with pytest.raises(ConfigError, match="REDIS_CLIENT_AZ"):
        RedisConfig(url=CLUSTER_URL, read_from="az_affinity")
    zoned = RedisConfig.from_env(
        {"REDIS_URL": CLUSTER_URL, "REDIS_READ_FROM": "az_affinity", "REDIS_CLIENT_AZ": "eu-1a"}
    )
    assert (zoned.read_from, zoned.client_az) == ("az_affinity", "eu-1a")
    # A variable's value is stripped, as every variable's is; an argument is
    # taken as given, so a zone that could never equal a server's is refused.
    padded = RedisConfig.from_env(
        {"REDIS_URL": CLUSTER_URL, "REDIS_READ_FROM": "az_affinity", "REDIS_CLIENT_AZ": " eu-1a "}
    )
    assert padded.client_az == "eu-1a"
    for zone in (" eu-1a", "eu-1a\n", "eu\n1a", "eu-1a\x00"):
        with pytest.raises(ConfigError, match=r"REDIS_CLIENT_AZ.*no spaces around it"):
            RedisConfig(url=CLUSTER_URL, read_from="az_affinity", client_az=zone)
    assert RedisConfig(url=CLUSTER_URL, read_from="az_affinity", client_az="eu 1a").client_az == (
        "eu 1a"  # Valkey's availability-zone is any string: a space inside may match
    )
    with pytest.raises(ConfigError, match=r"REDIS_READ_FROM.*single server"):
        RedisConfig(url="redis://127.0.0.1:1", read_from="prefer_replica")
    with pytest.raises(ConfigError, match=r"REDIS_LOCAL_CACHE.*not offered together"):
        RedisConfig(url=CLUSTER_URL, read_from="prefer_replica", local_cache=True)


async def test_open_redis_client_checks_read_from_before_any_io() -> None:
    # Port 1 answers nothing: a ConnectionError would mean I/O was tried.
    with pytest.raises(ConfigError, match="read_from"):
        async with open_redis_client("redis+cluster://127.0.0.1:1", read_from="nearest"):
            pass
    with pytest.raises(ConfigError, match="client_az"):
        async with open_redis_client("redis+cluster://127.0.0.1:1", read_from="az_affinity"):
            pass
    with pytest.raises(ConfigError, match="single server"):
        async with open_redis_client("redis://127.0.0.1:1", read_from="prefer_replica"):
            pass
    with pytest.raises(ConfigError, match="not offered together"):
        async with open_redis_client(
            "redis+cluster://127.0.0.1:1", read_from="prefer_replica", local_cache=True
        ):
            pass
    with pytest.raises(ConfigError, match="read_from_replicas"):
        async with open_redis_client(
            "redis+cluster://127.0.0.1:1", read_from="primary", read_from_replicas=True
        ):
            pass
    # redis-py's keyword means prefer_replica.
    async with open_redis_client("redis+cluster://127.0.0.1:1", read_from_replicas=True) as client:
        assert getattr(client.settings, "read_from", None) == "prefer_replica"


# -- choosing a replica (no server) ------------------------------------------------


class _FakeConnection:
    def __init__(self) -> None:
        self.answers = False
        self.pings = 0

    def stalled(self, after: float, now: float | None = None) -> bool:
        return False

    async def request(self, payload: bytes, expected: int, decode: bool) -> list[Any]:
        self.pings += 1
        if not self.answers:
            raise ConnectionError("down")
        return ["PONG"]


def _health(
    tasks: TaskGroup,
    connections: Mapping[tuple[str, int], _FakeConnection],
    client_az: str | None = None,
) -> ReplicaHealth:
    """Health over scripted connections, one per address."""
    return ReplicaHealth(
        tasks,
        connections.__getitem__,  # type: ignore[arg-type]
        command_timeout=5.0,
        client_az=client_az,
    )


async def test_round_robin_skips_a_replica_until_its_probe_answers() -> None:
    a, b = ("a", 1), ("b", 1)
    connections = {a: _FakeConnection(), b: _FakeConnection()}
    async with anyio.create_task_group() as tasks:
        health = _health(tasks, connections)
        assert {health.pick([a, b]) for _ in range(4)} == {a, b}  # spread over both
        health.failed(a)
        assert [health.pick([a, b]) for _ in range(4)] == [b] * 4
        health.failed(b)
        assert health.pick([a, b]) is None  # none healthy: the primary answers
        with anyio.fail_after(10):
            await until(lambda: connections[a].pings >= 2)  # probed, still down
            connections[a].answers = True
            await until(lambda: not health.is_down(a))
        assert health.pick([a, b]) == a
        health.close()


async def test_a_replica_that_stalls_after_its_turns_were_worked_out_is_skipped() -> None:
    a, b = ("a", 1), ("b", 1)

    class Stalling(_FakeConnection):
        frozen = False

        def stalled(self, after: float, now: float | None = None) -> bool:
            return self.frozen

    connections = {a: Stalling(), b: Stalling()}
    async with anyio.create_task_group() as tasks:
        health = _health(tasks, connections)
        assert {health.pick((a, b)) for _ in range(4)} == {a, b}
        connections[a].frozen = True
        assert [health.pick((a, b)) for _ in range(4)] == [b] * 4
        assert health.is_down(a)
        assert health.choose((b,)) == (b, connections[b])
        health.close()


async def test_a_stalled_replica_after_close_is_not_read_and_does_not_spin() -> None:
    class Frozen(_FakeConnection):
        checks = 0

        def stalled(self, after: float, now: float | None = None) -> bool:
            self.checks += 1
            assert self.checks < 10, "choose() keeps trying the same stalled replica"
            return True

    connections = {("a", 1): Frozen()}
    async with anyio.create_task_group() as tasks:
        health = _health(tasks, connections)
        health.close()
        assert health.pick([("a", 1)]) is None
        assert not health.is_down(("a", 1))  # closed: no probe was started


class _Scripted:
    """A replica's connection that answers each request with ``reply``, or
    raises it; ``stalled``: whether it says it owes replies and is silent."""

    def __init__(self, reply: Any, stalled: bool | None = None) -> None:
        self.reply = reply
        self._stalled = isinstance(reply, TimeoutError) if stalled is None else stalled

    def stalled(self, after: float, now: float | None = None) -> bool:
        return self._stalled

    async def request(self, payload: bytes, expected: int, decode: bool) -> list[Any]:
        if type(self.reply) in (ConnectionError, TimeoutError):
            raise self.reply  # the connection's failures; error replies are values
        return [self.reply] * expected


class _ScriptedNode:
    def __init__(self, shared: _Scripted) -> None:
        self.shared = shared

    async def aclose(self) -> None:
        pass


def _readers(tasks: Any, connection: _Scripted) -> ReplicaNodes:
    """A client's replicas, of which ("r", 1) answers as ``connection`` does."""
    readers = ReplicaNodes(
        tasks,
        lambda host, port: None,
        decode=True,
        command_timeout=5.0,
        client_az=None,  # type: ignore[arg-type, return-value]
    )
    readers.nodes[("r", 1)] = _ScriptedNode(connection)  # type: ignore[assignment]
    return readers


@pytest.mark.parametrize(
    ("reply", "down", "topology_lost"),
    [
        (ConnectionError("reset"), True, True),
        (BusyLoadingError("LOADING Redis is loading the dataset in memory"), True, False),
        (ResponseError("MASTERDOWN Link with MASTER is down"), True, False),
        (MovedError("3999 127.0.0.1:6381"), False, True),
        (NoScriptError("NOSCRIPT No matching script"), False, False),
    ],
)
async def test_a_replica_that_cannot_serve_the_read_sends_it_to_the_primary(
    reply: Exception, down: bool, topology_lost: bool
) -> None:
    lost: list[bool] = []
    async with anyio.create_task_group() as tasks:
        readers = _readers(tasks, _Scripted(reply))
        replies = await readers.read([("r", 1)], [("GET", "k")], True, lambda: lost.append(True))
        assert replies is None  # the primary answers instead
        assert readers.health.is_down(("r", 1)) is down
        assert bool(lost) is topology_lost
        readers.health.close()


async def test_a_replica_that_answers_is_read() -> None:
    async with anyio.create_task_group() as tasks:
        readers = _readers(tasks, _Scripted("v"))
        assert await readers.read([("r", 1)], [("GET", "k")], True, list) == ["v"]  # type: ignore[arg-type]
        assert not readers.health.is_down(("r", 1))
        readers.health.close()


async def test_a_read_that_times_out_fails_and_puts_the_replica_down() -> None:
    async with anyio.create_task_group() as tasks:
        readers = _readers(tasks, _Scripted(TimeoutError("slow"), stalled=False))
        with pytest.raises(TimeoutError):
            await readers.read([("r", 1)], [("GET", "k")], True, list)  # type: ignore[arg-type]
        assert readers.health.is_down(("r", 1))
        readers.health.close()


async def test_a_silent_replica_is_skipped_without_a_read() -> None:
    """One that owes replies and says nothing is down at the next pick."""
    silent = _Scripted(TimeoutError("frozen"))
    async with anyio.create_task_group() as tasks:
        health = ReplicaHealth(tasks, lambda _: silent, command_timeout=5.0)  # type: ignore[arg-type, return-value]
        assert health.pick([("r", 1)]) is None and health.is_down(("r", 1))
        health.close()


async def test_stalled_means_owing_replies_and_saying_nothing() -> None:
    """The multiplexer's own view of a frozen server: a request it owes
    for longer than the bound, with nothing heard since."""
    never = anyio.Event()

    async def answer(request: list[bytes]) -> bytes:
        if request[0].upper() == b"GET":
            await never.wait()
        return b"+PONG\r\n"

    async with anyio.create_task_group() as tasks:
        port = await tasks.start(serve_script, answer)
        settings = ConnectionSettings(host="127.0.0.1", port=port, command_timeout=30.0)
        mux = Multiplexer(settings, tasks, decode=True)
        await mux.request(encode_command(("PING",)), 1, True)
        assert not mux.stalled(0.001)  # owes nothing

        async def owed() -> None:
            with pytest.raises(ConnectionError, match="closed"):
                await mux.request(encode_command(("GET", "k")), 1, True)

        tasks.start_soon(owed)
        with anyio.fail_after(10):
            await until(lambda: mux.stalled(0.05))
        # A caller that has just read the clock passes it: that is the time judged.
        assert mux.stalled(60, time.monotonic() + 120)
        assert not mux.stalled(0.05, time.monotonic() - 60)
        await mux.aclose()
        tasks.cancel_scope.cancel()


async def test_az_affinity_prefers_the_replicas_in_the_clients_zone() -> None:
    zones = {("a", 1): "eu-1b", ("b", 1): "eu-1a", ("c", 1): "eu-1a"}

    class Zoned(_FakeConnection):
        def __init__(self, zone: str) -> None:
            super().__init__()
            self.zone = zone

        async def request(self, payload: bytes, expected: int, decode: bool) -> list[Any]:
            return [f"# Server\r\navailability_zone:{self.zone}\r\n"]

    connections = {address: Zoned(zone) for address, zone in zones.items()}
    async with anyio.create_task_group() as tasks:
        health = _health(tasks, connections, client_az="eu-1a")
        for address in zones:
            health.met(address)
        # Picked before any zone is known: every replica takes turns.
        assert {health.pick(list(zones)) for _ in range(6)} <= set(zones)
        with anyio.fail_after(10):
            await until(lambda: all(health.zone(address) for address in zones))
        # Once known, the turns change: the zone's replicas only.
        assert {health.pick(list(zones)) for _ in range(6)} == {("b", 1), ("c", 1)}
        health.failed(("b", 1))
        health.failed(("c", 1))
        assert health.pick(list(zones)) == ("a", 1)  # then another zone's
        health.close()


async def test_a_zone_ask_that_fails_is_asked_again_and_an_error_reply_ends_it() -> None:
    """One failed ``INFO`` (a connection not up yet, a timeout under load)
    must not leave a replica "another zone" for good; an error reply (``INFO``
    not allowed) is an answer, and asking stops."""

    class Flaky(_FakeConnection):
        def __init__(self, replies: list[Any]) -> None:
            super().__init__()
            self.replies = replies
            self.asked = 0

        async def request(self, payload: bytes, expected: int, decode: bool) -> list[Any]:
            self.asked += 1
            reply = self.replies[min(self.asked, len(self.replies)) - 1]
            if isinstance(reply, ConnectionError):
                raise reply
            return [reply]

    zoned = Flaky([ConnectionError("not up yet"), "# Server\r\navailability_zone:eu-1a\r\n"])
    denied = Flaky([ResponseError("NOPERM this user has no permissions to run 'info'")])
    connections = {("a", 1): zoned, ("b", 1): denied}
    async with anyio.create_task_group() as tasks:
        health = _health(tasks, connections, client_az="eu-1a")
        for address in connections:
            health.met(address)
        with anyio.fail_after(10):
            await until(lambda: health.zone(("a", 1)) == "eu-1a")
        assert zoned.asked == 2
        await until(lambda: not health._asking)  # every ask has ended
        assert denied.asked == 1 and health.zone(("b", 1)) is None
        health.close()


async def test_forgetting_a_replica_stops_asking_its_zone() -> None:
    class Unreachable(_FakeConnection):
        asked = 0

        async def request(self, payload: bytes, expected: int, decode: bool) -> list[Any]:
            self.asked += 1
            raise ConnectionError("refused")

    connections = {("a", 1): Unreachable()}
    async with anyio.create_task_group() as tasks:
        health = _health(tasks, connections, client_az="eu-1a")
        health.met(("a", 1))
        with anyio.fail_after(10):
            await until(lambda: connections[("a", 1)].asked >= 2)  # asked again
        health.forget(("a", 1))
        with anyio.fail_after(10):
            await until(lambda: not health._asking)  # the asking ended
        health.close()


def test_cluster_shards_lists_only_online_replicas_and_slots_lists_them_after_the_primary() -> None:
    def node(port: int, role: str, health: str = "online") -> dict[str, Any]:
        return {"ip": "10.0.0.1", "port": port, "role": role, "health": health}

    shards = [
        {
            "slots": [0, 8191],
            "nodes": [node(1, "master"), node(2, "replica"), node(3, "replica", "loading")],
        },
        {"slots": [8192, 16383], "nodes": [node(4, "replica", "failed"), node(5, "master")]},
    ]
    slots = [
        [0, 8191, ["10.0.0.1", 1, "id1"], ["10.0.0.1", 2, "id2"], ["10.0.0.1", 3, "id3"]],
        [8192, 16383, ["10.0.0.1", 5, "id5"]],
    ]

    class Node:
        def __init__(self, shards_reply: Any) -> None:
            self.shards_reply = shards_reply

        async def request(self, payload: bytes, expected: int, decode: bool) -> list[Any]:
            return [self.shards_reply if b"SHARDS" in payload else slots]

    async def read(shards_reply: Any) -> Any:
        router = ClusterRouter(
            parse_topology(CLUSTER_URL, read_from="prefer_replica"), None, decode=True
        )  # type: ignore[arg-type]
        router.node = lambda address: Node(shards_reply)  # type: ignore[method-assign, assignment, return-value]
        return await router._read_topology(("10.0.0.1", 1))

    _, primaries, replicas = anyio.run(read, shards)
    assert primaries == [("10.0.0.1", 1), ("10.0.0.1", 5)]
    assert replicas == {("10.0.0.1", 1): (("10.0.0.1", 2),), ("10.0.0.1", 5): ()}
    _, primaries, replicas = anyio.run(read, ResponseError("unknown subcommand"))
    assert replicas == {
        ("10.0.0.1", 1): (("10.0.0.1", 2), ("10.0.0.1", 3)),
        ("10.0.0.1", 5): (),
    }


@pytest.fixture(autouse=True)
def _quick_rereads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-read the cluster's topology every 0.1 s rather than 5 s, so that a
    test waits less for a replica the cluster only now lists as online."""
    monkeypatch.setattr(cluster_module, "TOPOLOGY_MAX_AGE", 0.1)


async def replicas_listed(client: Any, key: str) -> None:
    """Until the client knows a replica of every primary (a fresh Redis 7.0
    cluster lists a replica that has had no write as ``loading``)."""

    async def listed() -> bool:
        await client.get(key)  # reads keep the topology fresh
        replicas = client._cluster.replicas
        return len(replicas) == 3 and all(replicas.values())

    with anyio.fail_after(20):
        await until(listed)


async def _timeouts_in_ten_reads(client: Any, key: str) -> int:
    """Ten reads of ``key`` (each must answer ``"v"``): how many timed out."""
    failures = 0
    for _ in range(10):
        try:
            assert await client.get(key) == "v"
        except TimeoutError:
            failures += 1
    return failures


# -- Redis Cluster -----------------------------------------------------------------


async def test_primary_never_opens_a_replica_connection(cluster: RedisCluster, key: str) -> None:
    _, replicas = cluster_roles(cluster)
    stats = Stats(replicas)
    async with open_redis_client(cluster.url) as client:
        for index in range(20):
            await client.set(f"{key}:{index}", index)
            assert await client.get(f"{key}:{index}") == str(index)
        assert client._cluster is not None and not client._cluster._replica_nodes
        await client.delete(*(f"{key}:{index}" for index in range(20)))
    assert stats.risen(replicas, "get") == 0


async def test_prefer_replica_reads_from_replicas_and_writes_to_primaries(
    cluster: RedisCluster, key: str
) -> None:
    primaries, replicas = cluster_roles(cluster)
    stats = Stats(primaries + replicas)
    keys = [f"{key}:{index}" for index in range(20)]  # spread over the primaries
    async with open_redis_client(cluster.url, read_from="prefer_replica") as client:
        for name in keys:
            await client.set(name, name)
        await replicas_listed(client, keys[0])
        stats = Stats(primaries + replicas)
        with anyio.fail_after(10):
            for name in keys:
                # A replica lags its primary: poll until it has the write.
                await until(lambda name=name: _equal(client.get(name), name))
            await until(lambda: _equal(client.mget(keys), keys))
            script = "return redis.call('GET', KEYS[1])"
            await until(lambda: _equal(client.eval_ro(script, 1, keys[0]), keys[0]))
        pipe = client.pipeline(transaction=False)  # its reads too
        for name in keys:
            pipe.strlen(name).set(f"{name}:copy", name)
        assert await pipe.execute() == [item for name in keys for item in (len(name), True)]
        assert client._cluster is not None
        assert sorted(client._cluster._replica_nodes) == sorted(
            ("127.0.0.1", port) for port in replicas
        )
        await client.delete(*keys, *(f"{name}:copy" for name in keys))
    assert stats.risen(replicas, "strlen") == len(keys)
    assert stats.risen(primaries, "strlen") == 0
    assert stats.risen(replicas, "get") >= len(keys)
    assert stats.risen(replicas, "mget") >= 1
    assert stats.risen(replicas, "eval_ro") >= 1
    assert stats.risen(primaries, "get") == 0
    assert stats.risen(primaries, "mget") == 0
    assert stats.risen(primaries, "eval_ro") == 0
    assert stats.risen(primaries, "set") >= len(keys)  # the pipeline's


async def test_writes_transactions_locks_and_the_lease_stay_on_primaries(
    cluster: RedisCluster, key: str
) -> None:
    primaries, replicas = cluster_roles(cluster)
    stats = Stats(primaries + replicas)
    config = RedisConfig(url=cluster.url, read_from="prefer_replica", remember_lock=True)
    async with open_redis_provider(config) as cache:
        computed = 0

        async def factory() -> str:
            nonlocal computed
            computed += 1
            return "made"

        # remember: read (a replica may answer), lease, compute, store.
        assert await cache.remember(key, factory, ttl_seconds=60) == "made"
        assert computed == 1
        owner = [port for port in primaries if b"made" in command(port, "GET", key)]
        assert len(owner) == 1  # stored on the key's primary
        remembered = stats
        stats = Stats(primaries + replicas)
        client = cache.client
        tag = f"{{{key}}}"
        pipe = client.pipeline(transaction=True)
        pipe.set(f"{tag}:a", "1").get(f"{tag}:a")
        assert await pipe.execute() == [True, "1"]

        async def bump(pipe: Any) -> None:
            value = await pipe.get(f"{tag}:a")  # under WATCH: on the primary
            pipe.multi()
            pipe.set(f"{tag}:a", int(value) + 1)

        await client.transaction(bump, f"{tag}:a")
        async with client.lock(f"{tag}:lock", timeout=10):
            pass
        assert await client.blpop([f"{tag}:list"], timeout=0.01) is None
        await client.dbsize()
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(f"{tag}:channel")
        assert await cache.delete(key)
        await client.delete(f"{tag}:a")
    # The GETs inside MULTI and under WATCH ran on primaries.
    assert stats.risen(replicas, "get") == 0
    assert stats.risen(primaries, "get") >= 2
    for name in ("blpop", "dbsize", "subscribe"):
        assert stats.risen(replicas, name) == 0, name
        assert stats.risen(primaries, name) >= 1, name
    # Replicas apply their primary's writes, scripts' as their effects: a
    # script or a WATCH counted on a replica would be one we sent it.
    for name in ("evalsha", "eval", "watch"):
        assert stats.risen(replicas, name) + remembered.risen(replicas, name) == 0, name
    assert stats.risen(primaries, "watch") >= 1
    scripts = [
        seen.risen(primaries, name) for seen in (remembered, stats) for name in ("evalsha", "eval")
    ]
    assert sum(scripts) >= 2  # the lease, the lock


@pytest.mark.parametrize("read_from", ["prefer_replica", "az_affinity"])
async def test_the_ports_reads_follow_read_from(
    cluster: RedisCluster, key: str, read_from: str
) -> None:
    """get, has and get_many read from replicas. (Under az_affinity, with no
    replica in the zone — Redis reports none, and this cluster sets none —
    every replica is another zone's, and read from.)"""
    primaries, replicas = cluster_roles(cluster)
    stats = Stats(primaries + replicas)
    config = RedisConfig(
        url=cluster.url,
        read_from=read_from,  # type: ignore[arg-type]
        client_az="zone-a",
        key_prefix=f"{key}:",
    )
    keys = [f"{index}" for index in range(10)]
    async with open_redis_provider(config) as cache:
        for name in keys:
            await cache.set(name, name, ttl_seconds=60)
        await replicas_listed(cache.client, key)
        stats = Stats(primaries + replicas)
        with anyio.fail_after(10):
            await until(lambda: _equal(cache.get_many(keys), dict(zip(keys, keys, strict=True))))
            for name in keys:
                await until(lambda name=name: _equal(cache.get(name), name))
                await until(lambda name=name: _equal(cache.has(name), True))
        for name in keys:
            await cache.delete(name)
    assert stats.risen(replicas, "get") + stats.risen(replicas, "mget") >= len(keys)
    assert stats.risen(replicas, "exists") >= len(keys)
    for name in ("get", "mget", "exists"):
        assert stats.risen(primaries, name) == 0, name


async def test_az_affinity_learns_valkeys_availability_zone(
    cluster: RedisCluster, key: str
) -> None:
    """Valkey 8 reports a node's availability_zone in INFO server: the
    client reads it from each replica it meets. Redis reports none."""
    _, replicas = cluster_roles(cluster)
    valkey = b"valkey" in command(replicas[0], "INFO", "server").lower()
    if valkey:
        for port in replicas:
            command(port, "CONFIG", "SET", "availability-zone", "zone-a")
    try:
        async with open_redis_client(
            cluster.url, read_from="az_affinity", client_az="zone-a"
        ) as client:
            await replicas_listed(client, key)
            assert client._cluster is not None and client._cluster._readers is not None
            health = client._cluster._readers.health

            async def met_one() -> bool:
                # Listed by a refresh after the last read, no replica may
                # have been read (nor met) yet.
                await client.get(key)
                return bool(client._cluster._replica_nodes)  # type: ignore[union-attr]

            with anyio.fail_after(10):
                await until(met_one)
            met = list(client._cluster._replica_nodes)
            assert met
            if valkey:
                with anyio.fail_after(10):
                    await until(lambda: all(health.zone(address) == "zone-a" for address in met))
            else:
                assert b"availability_zone" not in command(replicas[0], "INFO", "server")
    finally:
        if valkey:
            for port in replicas:
                command(port, "CONFIG", "SET", "availability-zone", "")


async def test_a_frozen_replica_costs_only_the_reads_in_flight(
    cluster: RedisCluster, key: str
) -> None:
    """SIGSTOP a replica: the read in flight to it times out, once; every
    later read of its slots goes to the primary, without waiting; thawed,
    the replica is read from again."""
    async with open_redis_client(
        cluster.url, read_from="prefer_replica", command_timeout=1.0
    ) as client:
        await client.set(key, "v")
        await replicas_listed(client, key)
        assert client._cluster is not None
        owner = await client._cluster.owner(key_slot(key.encode()))
        (replica_address,) = client._cluster.replicas[owner]
        replica = next(node for node in cluster.nodes if node.port == replica_address[1])
        stats = Stats([owner[1], replica.port])
        with anyio.fail_after(10):
            await until(lambda: _equal(client.get(key), "v"))
        assert stats.risen([replica.port], "get") >= 1
        stats = Stats([owner[1]])
        replica.freeze()
        try:
            assert await _timeouts_in_ten_reads(client, key) <= 1
            assert stats.risen([owner[1]], "get") >= 9
        finally:
            replica.thaw()
        stats = Stats([replica.port])

        async def read_from_the_replica() -> bool:
            assert await client.get(key) == "v"
            return stats.risen([replica.port], "get") > 0

        with anyio.fail_after(30):
            await until(read_from_the_replica)  # its probe answered: read again
        await client.delete(key)


@pytest.fixture(scope="module", params=FLAVOURS)
def two_replica_cluster(request: pytest.FixtureRequest) -> Iterator[RedisCluster]:
    """3 primaries, each with two replicas: what round robin and zones need."""
    topology = RedisCluster(replicas=2, binary=server_binary(request.param))
    yield topology
    topology.close()


async def test_two_replicas_share_the_reads_and_the_near_one_comes_first(
    two_replica_cluster: RedisCluster, key: str
) -> None:
    """prefer_replica takes a primary's replicas in turn. Under az_affinity
    (Valkey, whose nodes say their availability_zone) only the replica in
    the client's zone is read; frozen, it costs the read in flight, and the
    other zone's replica answers next — the primary at most once."""
    cluster = two_replica_cluster
    async with open_redis_client(cluster.url) as writer:
        await writer.set(key, "v")
    slot = str(key_slot(key.encode()))
    primary = next(
        node.port for node in cluster.primaries()
        if command(node.port, "CLUSTER", "COUNTKEYSINSLOT", slot)[1:2] != b"0"
    )  # fmt: skip
    replicas = [
        node for node in cluster.nodes
        if f"master_port:{primary}".encode() in command(node.port, "INFO", "replication")
    ]  # fmt: skip
    assert len(replicas) == 2
    with anyio.fail_after(20):  # both have the write (a replica's GET would be MOVED)
        await until(
            lambda: all(
                command(r.port, "CLUSTER", "COUNTKEYSINSLOT", slot)[1:2] != b"0" for r in replicas
            )
        )
    ports = [primary, *(r.port for r in replicas)]

    async with open_redis_client(cluster.url, read_from="prefer_replica") as client:
        with anyio.fail_after(20):

            async def both_listed() -> bool:
                await client.get(key)
                assert client._cluster is not None
                owner = await client._cluster.owner(key_slot(key.encode()))
                return len(client._cluster.replicas.get(owner, ())) == 2

            await until(both_listed)
        stats = Stats(ports)
        for _ in range(20):
            assert await client.get(key) == "v"
        shares = [stats.risen([r.port], "get") for r in replicas]
        assert sum(shares) == 20 and min(shares) >= 9, shares  # in turn
        assert stats.risen([primary], "get") == 0

    if b"valkey" not in command(primary, "INFO", "server").lower():
        return  # Redis has no zones: every replica is "another zone" (unit-tested)
    near, far = replicas
    command(near.port, "CONFIG", "SET", "availability-zone", "zone-a")
    command(far.port, "CONFIG", "SET", "availability-zone", "zone-b")
    try:
        async with open_redis_client(
            cluster.url, read_from="az_affinity", client_az="zone-a", command_timeout=1.0
        ) as client:
            assert client._cluster is not None and client._cluster._readers is not None
            health = client._cluster._readers.health
            addresses = [("127.0.0.1", near.port), ("127.0.0.1", far.port)]

            async def near_known() -> bool:
                # Only the near one's zone is sure to be asked: once it is
                # known, reads go to it alone, and the far one may never be
                # met (nor asked) until it is needed.
                await client.get(key)
                return health.zone(addresses[0]) == "zone-a"

            try:
                with anyio.fail_after(20):
                    await until(near_known)
            except builtins.TimeoutError:  # fail_after's, not redis-py's
                # What the client knew, for the next time this happens.
                owner = await client._cluster.owner(key_slot(key.encode()))
                raise AssertionError(
                    f"zones not learnt in 20 s: wanted {addresses}; listed "
                    f"{client._cluster.replicas.get(owner)}; zones {health._zones}; "
                    f"down {list(health._down)}; asking {list(health._asking)}"
                ) from None
            stats = Stats(ports)
            for _ in range(10):
                assert await client.get(key) == "v"
            assert stats.risen([near.port], "get") == 10
            assert stats.risen([far.port, primary], "get") == 0
            stats = Stats([far.port, primary])
            near.freeze()
            try:
                failures = await _timeouts_in_ten_reads(client, key)
                spread = (failures, stats.risen([far.port], "get"), stats.risen([primary], "get"))
                assert failures <= 1, spread
                # The other zone's replica takes the reads; one read caught
                # in the switch may still reach the primary.
                assert spread[1] >= 8 and spread[2] <= 1, spread
                # Met now, the far one was asked its zone too.
                with anyio.fail_after(10):
                    await until(lambda: health.zone(addresses[1]) == "zone-b")
            finally:
                near.thaw()
    finally:
        for node in replicas:
            command(node.port, "CONFIG", "SET", "availability-zone", "")


async def test_a_cluster_failover_is_followed(cluster: RedisCluster, key: str) -> None:
    """CLUSTER FAILOVER swaps a primary and its replica: once the client has
    re-read the topology (the old primary answers a write MOVED), reads of
    those slots go to the demoted primary, now the replica."""
    async with open_redis_client(cluster.url, read_from="prefer_replica") as client:
        await client.set(key, "before")
        await replicas_listed(client, key)
        assert client._cluster is not None
        old_primary = await client._cluster.owner(key_slot(key.encode()))
        (promoted,) = client._cluster.replicas[old_primary]
        with anyio.fail_after(30):
            await until(lambda: _equal(client.get(key), "before"))
            # A replica that is still syncing (an earlier test's failover)
            # ignores CLUSTER FAILOVER: wait until every replica has synced.
            await until(cluster._ready)
        # TAKEOVER: no vote, so no refusal for a shard another run of this
        # test failed over a moment ago (a node votes once per 2 node timeouts).
        assert command(promoted[1], "CLUSTER", "FAILOVER", "TAKEOVER").startswith(b"+OK")
        with anyio.fail_after(30):
            # The cluster's own clock: poll it.
            await until(lambda: b"role:master" in command(promoted[1], "INFO", "replication"))
            await until(lambda: _written(client, key, "after"))
            stats = Stats([old_primary[1]])

            async def read_from_the_old_primary() -> bool:
                try:
                    value = await client.get(key)
                except ConnectionError:
                    return False  # a connection caught in the switch
                return value == "after" and stats.risen([old_primary[1]], "get") > 0

            await until(read_from_the_old_primary)
        assert client._cluster.replicas[promoted] == (old_primary,)
        await client.delete(key)


async def _written(client: Any, key: str, value: str) -> bool:
    try:
        return bool(await client.set(key, value))
    except ConnectionError:
        return False  # caught in the switch: the next one goes to the new primary


# -- Sentinel ----------------------------------------------------------------------


async def test_prefer_replica_via_sentinel(sentinels: RedisSentinels, key: str) -> None:
    master = sentinels.master_port()
    replica = next(
        port for port in (sentinels.master.port, sentinels.replica.port) if port != master
    )
    stats = Stats([master, replica])
    async with open_redis_client(sentinels.url, read_from="prefer_replica") as client:
        await client.set(key, "v")
        with anyio.fail_after(10):
            await until(lambda: _equal(client.get(key), "v"))
            script = "return redis.call('GET', KEYS[1])"
            await until(lambda: _equal(client.eval_ro(script, 1, key), "v"))
        assert client._replica_reads is not None
        assert client._replica_reads.replicas == (("127.0.0.1", replica),)
        pipe = client.pipeline(transaction=False)
        pipe.strlen(key)
        assert await pipe.execute() == [1]  # a pipeline goes to the master
        await client.delete(key)
    assert stats.risen([master], "strlen") == 1 and stats.risen([replica], "strlen") == 0
    assert stats.risen([replica], "get") >= 1 and stats.risen([replica], "eval_ro") >= 1
    assert stats.risen([master], "get") == 0 and stats.risen([master], "eval_ro") == 0
    assert stats.risen([master], "set") == 1


async def test_sentinel_primary_never_opens_a_replica_connection(
    sentinels: RedisSentinels, key: str
) -> None:
    master = sentinels.master_port()
    replica = next(
        port for port in (sentinels.master.port, sentinels.replica.port) if port != master
    )
    stats = Stats([replica])
    async with open_redis_client(sentinels.url) as client:
        await client.set(key, "v")
        assert await client.get(key) == "v"
        assert client._replica_reads is None
        await client.delete(key)
    assert stats.risen([replica], "get") == 0


async def test_a_sentinel_failover_is_followed(own_sentinels: RedisSentinels, key: str) -> None:
    """After SENTINEL FAILOVER, the promoted replica is no longer read from
    as one, and reads go to the demoted master, now the replica, once the
    sentinels list it as synced. (That takes a sentinel's INFO round, about
    ten seconds: waited for on one backend and flavour only, to keep the
    suite short; the mechanism is the same on every backend.)"""
    old_master = own_sentinels.master_port()
    async with open_redis_client(own_sentinels.url, read_from="prefer_replica") as client:
        await client.set(key, "v")
        with anyio.fail_after(10):
            await until(lambda: _equal(client.get(key), "v"))
        assert client._replica_reads is not None
        (promoted,) = client._replica_reads.replicas
        assert command(
            own_sentinels.sentinel_ports[0], "SENTINEL", "FAILOVER", own_sentinels.name
        ).startswith(b"+OK")
        with anyio.fail_after(30):
            # The sentinels' own clock: poll it.
            await until(lambda: own_sentinels.master_port() == promoted[1])

            async def read(condition: Any) -> bool:
                try:
                    assert await client.get(key) == "v"
                except ConnectionError:
                    return False  # a connection caught in the switch
                return bool(condition())

            demoted = ("127.0.0.1", old_master)
            assert client._replica_reads is not None
            await until(lambda: read(lambda: promoted not in client._replica_reads.replicas))
            if (running_backend(), own_sentinels.flavour) != ("asyncio", "redis"):
                return
            await until(lambda: read(lambda: client._replica_reads.replicas == (demoted,)))
            stats = Stats([old_master, promoted[1]])
            await until(lambda: read(lambda: stats.risen([old_master], "get") > 0))
        assert stats.risen([promoted[1]], "get") == 0


async def test_a_sentinel_replica_connection_checks_the_role(sentinels: RedisSentinels) -> None:
    """A server the sentinels named as a replica may have been promoted
    since: its connection checks ROLE, and a master fails it."""
    settings = parse_topology(sentinels.url)
    assert isinstance(settings, SentinelSettings)
    master = sentinels.master_port()
    with pytest.raises(ConnectionError, match="not a replica"):
        await open_connection(settings.for_replica("127.0.0.1", master), decode=True)
    replica = next(
        port for port in (sentinels.master.port, sentinels.replica.port) if port != master
    )
    connection = await open_connection(settings.for_replica("127.0.0.1", replica), decode=True)
    await connection.aclose()


async def test_reading_from_replicas_rereads_the_topology_now_and_then(
    cluster: RedisCluster, key: str
) -> None:
    """No MOVED, no error: reads alone keep the topology fresh."""
    async with open_redis_client(cluster.url, read_from="prefer_replica") as client:
        await client.get(key)
        assert client._cluster is not None
        read = client._cluster._epoch

        async def read_again() -> bool:
            await client.get(key)
            return client._cluster._epoch > read

        with anyio.fail_after(10):
            await until(read_again)
    async with open_redis_client(cluster.url) as client:
        await client.get(key)
        assert client._cluster is not None
        read = client._cluster._epoch
        for _ in range(3):
            await anyio.sleep(0.15)  # past the (shortened) age: nothing re-reads
            await client.get(key)
        assert client._cluster._epoch == read


async def test_sentinel_replicas_skips_the_down_the_disconnected_and_the_unsynced() -> None:
    settings = parse_topology(SENTINEL_URL, read_from="prefer_replica")
    assert isinstance(settings, SentinelSettings)
    resolver = SentinelResolver(settings)

    def replica(port: int, flags: str = "slave", link: str = "ok") -> list[Any]:
        return ["ip", "10.0.0.2", "port", str(port), "flags", flags, "master-link-status", link]

    async def answer(question: str, what: str) -> Any:
        assert question == "REPLICAS"
        return [
            replica(1),
            replica(2, "s_down,slave"),
            replica(3, "slave,o_down"),
            replica(4, "slave,disconnected"),
            replica(5, link="err"),
            replica(6),
        ]

    resolver._first_answer = answer  # type: ignore[method-assign]
    assert await resolver.replicas() == [("10.0.0.2", 1), ("10.0.0.2", 6)]


async def test_a_replica_the_topology_no_longer_lists_is_closed_and_not_probed() -> None:
    from beignet_redis_anyio._topology.replicas import ReplicaNodes

    async with anyio.create_task_group() as tasks:
        readers = ReplicaNodes(
            tasks,
            lambda host, port: ConnectionSettings(host=host, port=port, connect_timeout=1.0),
            decode=True,
            command_timeout=1.0,
            client_az=None,
        )
        gone, kept = ("127.0.0.1", 1), ("127.0.0.1", 2)
        readers.node(gone)
        readers.node(kept)
        readers.health.failed(gone)  # port 1 refuses: probed until it answers
        assert readers.health.is_down(gone)
        readers.keep_only([kept])
        assert not readers.health.is_down(gone) and list(readers.nodes) == [kept]
        await readers.aclose()


def test_read_from_in_the_url_is_refused_naming_the_url_variable() -> None:
    with pytest.raises(ConfigError, match=r"^REDIS_URL: read_from= is not a URL option"):
        RedisConfig.from_env({"REDIS_URL": f"{CLUSTER_URL}?read_from=prefer_replica"})
