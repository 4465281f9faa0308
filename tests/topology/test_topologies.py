"""Redis Cluster and Sentinel: the same port, the same guarantees."""

from __future__ import annotations

import uuid

import anyio
import pytest
from redis.exceptions import ClusterCrossSlotError, ConnectionError

from beignet_redis_anyio import ConfigError, RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._topology.urls import ClusterSettings, SentinelSettings, parse_topology
from beignet_redis_anyio.testing.servers import RedisServer
from helpers.polling import until
from helpers.targets import RedisCluster, RedisSentinels, command

pytestmark = pytest.mark.anyio


# -- URLs ------------------------------------------------------------------


def test_cluster_url() -> None:
    settings = parse_topology("rediss+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert isinstance(settings, ClusterSettings)
    assert settings.seeds == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert settings.node.tls is not None and settings.node.password == "s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.redacted_url()


def test_sentinel_url() -> None:
    settings = parse_topology("redis+sentinel://:pw@s1,s2:26380/mymaster/3")
    assert isinstance(settings, SentinelSettings)
    assert settings.sentinels == (("s1", 26379), ("s2", 26380))
    assert (settings.service_name, settings.node.db) == ("mymaster", 3)
    assert settings.for_sentinel("s1", 26379).password is None  # sentinels get no AUTH
    assert settings.for_master("m", 6379).role_check


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "host"),
        ("redis+cluster://h:7000/2", "only database 0"),
        ("redis+cluster://h:x", "port"),
        ("redis+sentinel://s1:26379", "master's name"),
        ("redis+sentinel://s1/name/db", "integer"),
        ("redis+sentinel://s1/a/1/extra", "extra path"),
    ],
)
def test_malformed_topology_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RedisConfig(url=url)


def test_cluster_refuses_a_nonzero_db() -> None:
    with pytest.raises(ConfigError, match="REDIS_DB"):
        RedisConfig(url="redis+cluster://h:7000", db=2)


# -- Cluster ---------------------------------------------------------------


async def test_every_port_operation_on_the_cluster(cluster: RedisCluster) -> None:
    prefix = f"cl:{uuid.uuid4().hex[:6]}:"
    async with open_redis_provider(RedisConfig(url=cluster.url, key_prefix=prefix)) as cache:
        for index in range(60):
            await cache.set(f"k{index}", str(index), ttl_seconds=300)
        for index in range(60):
            assert await cache.get(f"k{index}") == str(index)
            assert await cache.has(f"k{index}")
        # Keys went to every primary.
        counts = [int(command(node.port, "DBSIZE").strip()[1:]) for node in cluster.primaries()]
        assert len(counts) == 3 and all(count > 0 for count in counts), counts
        for index in range(60):
            assert await cache.delete(f"k{index}") is True
        assert await cache.get("k0") is None


@pytest.mark.parametrize("lock", [False, True])
async def test_remember_single_flight_on_the_cluster(cluster: RedisCluster, lock: bool) -> None:
    key = f"cl:{uuid.uuid4().hex[:6]}"
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return "value"

    async with open_redis_provider(RedisConfig(url=cluster.url, remember_lock=lock)) as cache:
        results: list[str] = []

        async def ask() -> None:
            results.append(await cache.remember(key, factory, ttl_seconds=60, early_refresh=True))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for _ in range(100):
                    tasks.start_soon(ask)
        assert calls == 1 and results == ["value"] * 100
        await cache.delete(key)


async def test_subcommand_keys_route_to_the_keys_owner(cluster: RedisCluster) -> None:
    """OBJECT ENCODING key and MEMORY USAGE key name their key after the
    subcommand: they go straight to the key's primary. (Sent to the owner of
    the word "ENCODING", or to a random primary, they come back MOVED, and
    each MOVED costs a round trip and a re-read of the topology.)"""
    prefix = uuid.uuid4().hex[:8]
    async with open_redis_client(cluster.url) as client:
        keys = [f"{prefix}:{index}" for index in range(12)]  # spread over the primaries
        for key in keys:
            await client.set(key, "12345")
        assert client._cluster is not None
        topology_reads = client._cluster._epoch
        for key in keys:
            assert await client.object("encoding", key) == "int"
            usage = await client.memory_usage(key)
            assert isinstance(usage, int) and usage > 0
        assert client._cluster._epoch == topology_reads  # no MOVED: no re-read
        await client.delete(*keys)


async def test_multi_key_commands_split_or_fail_clearly(cluster: RedisCluster) -> None:
    tag = uuid.uuid4().hex[:6]
    keys = [f"mk:{tag}:{index}" for index in range(20)]  # spread over slots
    async with open_redis_client(cluster.url) as client:
        assert await client.mset({key: key for key in keys}) is True
        assert await client.mget(keys) == keys
        assert await client.exists(*keys) == 20
        with pytest.raises(ClusterCrossSlotError):
            await client.sunion(keys[0], keys[1], keys[2], keys[3])
        pipe = client.pipeline(transaction=True)
        pipe.get(keys[0]).get(keys[1]).get(keys[2])
        with pytest.raises(ClusterCrossSlotError):
            await pipe.execute()
        same_slot = client.pipeline(transaction=True)
        same_slot.set(f"{{{tag}}}:a", 1).incr(f"{{{tag}}}:a")
        assert await same_slot.execute() == [True, 2]
        plain = client.pipeline(transaction=False)
        for key in keys:
            plain.get(key)
        assert await plain.execute() == keys
        assert await client.delete(*keys, f"{{{tag}}}:a") == 21


async def test_cluster_failover_mid_run(cluster: RedisCluster) -> None:
    prefix = f"fo:{uuid.uuid4().hex[:6]}:"
    async with open_redis_provider(RedisConfig(url=cluster.url, key_prefix=prefix)) as cache:
        for index in range(30):
            await cache.set(f"k{index}", str(index))
        replicas: list[RedisServer] = []

        def a_synced_shard() -> bool:
            # Just after an earlier test's failover the old primary may still
            # call itself one, with no replica left: take a shard that has one.
            # A replica still syncing would refuse to take over, and its
            # primary would pause writes for the manual failover's whole
            # timeout: every one has synced first.
            if not cluster._ready():
                return False
            for primary in cluster.primaries():
                replicas[:] = [
                    node for node in cluster.nodes
                    if f"master_port:{primary.port}".encode()
                    in command(node.port, "INFO", "replication")
                ]  # fmt: skip
                if replicas:
                    return True
            return False

        with anyio.fail_after(30):
            await until(a_synced_shard)
        # TAKEOVER: no vote, which a node refuses for two node timeouts after
        # it voted for the same shard (another backend's run, a moment ago).
        assert command(replicas[0].port, "CLUSTER", "FAILOVER", "TAKEOVER").startswith(b"+OK")
        with anyio.fail_after(30):
            # The cluster's own clock: poll it.
            while b"role:master" not in command(replicas[0].port, "INFO", "replication"):  # noqa: ASYNC110
                await anyio.sleep(0.05)
            # Operations recover without re-entering the provider: MOVED
            # replies redirect us, and the topology is read again.
            for index in range(30):
                while True:
                    try:
                        assert await cache.get(f"k{index}") == str(index)
                        break
                    except ConnectionError:
                        continue  # a connection caught in the switch: next one works
            for index in range(30):
                await cache.set(f"k{index}", "after")
                assert await cache.delete(f"k{index}") is True


# -- Sentinel --------------------------------------------------------------


async def test_every_port_operation_via_sentinel(sentinels: RedisSentinels) -> None:
    async with open_redis_provider(RedisConfig(url=sentinels.url, key_prefix="st:")) as cache:
        await cache.set("k", "v", ttl_seconds=60)
        assert await cache.get("k") == "v"
        assert await cache.has("k")

        async def factory() -> str:
            return "computed"

        assert await cache.remember("r", factory, lock=True) == "computed"
        assert await cache.delete("k") and await cache.delete("r")
        master = await cache.client.node_settings()
        assert (master.host, master.port) == ("127.0.0.1", sentinels.master_port())
        assert master.role_check


async def test_an_unknown_master_name_fails_on_entry(sentinels: RedisSentinels) -> None:
    url = sentinels.url.rsplit("/", 1)[0] + "/no-such-master"
    with anyio.fail_after(10), pytest.raises(ConnectionError, match="no-such-master"):
        async with open_redis_provider(RedisConfig(url=url)):
            pass


async def test_sentinel_failover_mid_run(own_sentinels: RedisSentinels) -> None:
    async with open_redis_provider(RedisConfig(url=own_sentinels.url, key_prefix="sf:")) as cache:
        await cache.set("k", "before")
        old_master = own_sentinels.master_port()
        assert command(
            own_sentinels.sentinel_ports[0], "SENTINEL", "FAILOVER", own_sentinels.name
        ).startswith(b"+OK")
        errors = 0
        with anyio.fail_after(30):
            # The sentinels' own clock: poll it.
            while own_sentinels.master_port() == old_master:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            new_master = own_sentinels.master_port()
            # Sentinel switches asynchronously: for a moment the old master
            # still takes writes (any Sentinel client sees this window). The
            # port follows +switch-master on its own — no re-entering — and
            # commands caught in the switch fail fast with ConnectionError.
            attempt = 0
            while True:
                attempt += 1
                try:
                    await cache.set("k", f"after-{attempt}")
                except ConnectionError:
                    errors += 1
                else:
                    landed = command(new_master, "GET", "sf:k")
                    if f"after-{attempt}".encode() in landed:
                        break
                await anyio.sleep(0.05)
            assert await cache.get("k") == f"after-{attempt}"
            for index in range(20):
                await cache.set(f"n{index}", str(index))
                assert str(index).encode() in command(new_master, "GET", f"sf:n{index}")
        assert errors < 100


async def test_a_slot_migration_mid_run(cluster: RedisCluster) -> None:
    """ASK while the slot is migrating, MOVED once it has moved: the port
    keeps answering throughout."""
    from redis.crc import key_slot

    key = f"migrating:{uuid.uuid4().hex[:8]}"
    slot = key_slot(key.encode())
    with anyio.fail_after(30):
        # An earlier test's failover may still be settling: a node that is
        # about to become a replica would drop the migrated key on its resync.
        await until(cluster._ready)
    async with open_redis_provider(RedisConfig(url=cluster.url)) as cache:
        await cache.set(key, "moving")
        await cache.set("bystander", "stays")
        ids = {n.port: command(n.port, "CLUSTER", "MYID").split(b"\r\n")[1].decode()
               for n in cluster.primaries()}  # fmt: skip
        source = next(
            port
            for port in ids
            if command(port, "CLUSTER", "COUNTKEYSINSLOT", str(slot))[1:2] != b"0"
        )
        target = next(port for port in ids if port != source)
        command(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source])
        command(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target])
        moved = command(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", key)
        assert moved.startswith(b"+OK"), moved
        # The source now answers ASK for this key: followed once, with ASKING.
        assert await cache.get(key) == "moving"
        for port in ids:
            command(port, "CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])
        # Finished: the source answers MOVED; the topology is read again.
        assert await cache.get(key) == "moving"
        await cache.set(key, "moved")
        assert b"moved" in command(target, "GET", key)
        assert await cache.get("bystander") == "stays"
        await cache.delete(key)
        await cache.delete("bystander")


async def test_a_bytes_client_reads_the_cluster_topology(cluster: RedisCluster, key: str) -> None:
    """decode_responses=False is about the caller's replies; the cluster's
    own description is still read as text."""
    async with open_redis_client(cluster.url, decode_responses=False) as client:
        for index in range(20):
            await client.set(f"{key}:{index}", b"\xff")
        assert [await client.get(f"{key}:{index}") for index in range(20)] == [b"\xff"] * 20
