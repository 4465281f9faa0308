"""The lease's ready notifications at fleet scale: only the waiting processes
hear of a key, on the key's own (sharded) channel, on the key's own shard.

Each provider here stands for one process of a fleet (its own connections,
its own subscriber); the cross-process guarantees with real processes are in
``test_cross_process.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from beignet_redis_anyio import RedisCachePort, RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from beignet_redis_anyio._cache.remember.ready import ready_channel
from helpers.polling import until as _until
from helpers.targets import RedisCluster, RedisServer, command

pytestmark = pytest.mark.anyio


def _config(url: str) -> RedisConfig:
    return RedisConfig(url=url, remember_lock=True, lock_lease_seconds=10, lock_wait_seconds=30)


@asynccontextmanager
async def _providers(url: str, count: int) -> AsyncIterator[list[RedisCachePort]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(open_redis_provider(_config(url))) for _ in range(count)
        ]


async def _follow(
    leader: RedisCachePort,
    followers: Sequence[RedisCachePort],
    key: str,
    while_waiting: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """``leader`` computes ``key`` while every follower waits for it; what
    each follower got. ``while_waiting`` runs once all of them wait."""
    release = anyio.Event()
    got: list[str] = []

    async def slow() -> str:
        await release.wait()
        return f"value-of-{key}"

    async def follow(follower: RedisCachePort) -> None:
        got.append(await follower.remember(key, slow))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(leader.remember, key, slow)
            await _until(lambda: _exists(leader, sidecar_key(key, "lock")))  # it leads
            for follower in followers:
                tasks.start_soon(follow, follower)
            await _until(lambda: all(f._lease._notifications.waiting(key) for f in followers))
            if while_waiting is not None:
                await while_waiting()
            release.set()
    return got


async def _exists(cache: RedisCachePort, key: str) -> bool:
    return bool(await cache.client.exists(key))


async def _shard_subscribers(client_url: str, channel: str) -> int:
    async with open_redis_client(client_url) as client:
        reply = await client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


async def test_a_follower_is_handed_the_value_on_its_keys_channel_then_unsubscribes(
    real_server: RedisServer, key: str
) -> None:
    async with _providers(real_server.url, 2) as (leader, follower):
        notifications = follower._lease._notifications
        counted: list[int] = []

        async def count_subscribers() -> None:
            counted.append(await _shard_subscribers(real_server.url, ready_channel(key)))

        assert await _follow(leader, [follower], key, count_subscribers) == [f"value-of-{key}"]
        assert counted == [1]
        assert notifications.messages_received == 1  # the value came with it: no GET
        assert not notifications.waiting(key)

        async def unsubscribed() -> bool:
            return await _shard_subscribers(real_server.url, ready_channel(key)) == 0

        with anyio.fail_after(10):
            await _until(unsubscribed)  # the unsubscribe is on its way


async def test_the_notifications_work_on_fakeredis_too(server_url: str, key: str) -> None:
    async with _providers(server_url, 3) as (leader, *followers):
        assert await _follow(leader, followers, key) == [f"value-of-{key}"] * 2
        for follower in followers:
            assert not follower._lease._notifications.waiting(key)


async def test_a_provider_that_is_not_waiting_hears_nothing_of_keys_computed_elsewhere(
    real_server: RedisServer, key: str
) -> None:
    async with _providers(real_server.url, 2) as (leader, bystander):
        await _follow(leader, [bystander], f"{key}:once")  # it has a subscriber now
        notifications = bystander._lease._notifications
        heard = notifications.messages_received

        async def value() -> str:
            return "v"

        for index in range(50):
            assert await leader.remember(f"{key}:{index}", value) == "v"
        # One more follow, so that anything still in flight to it arrives first.
        await _follow(leader, [bystander], f"{key}:last")
        # The message it waited for, and none of the fifty.
        assert notifications.messages_received - heard == 1


def _output_bytes(server: RedisServer) -> int:
    info = command(server.port, "INFO", "stats").decode()
    match = re.search(r"total_net_output_bytes:(\d+)", info)
    assert match is not None
    return int(match.group(1))


async def test_twenty_waiting_providers_cost_the_server_no_more_per_key_than_one(
    own_server: RedisServer, key: str
) -> None:
    async def value() -> str:
        return "a value of some forty bytes, give or take"

    async def per_key(fleet: int) -> float:
        async with _providers(own_server.url, fleet + 1) as (leader, *followers):
            await _follow(leader, followers, f"{key}:{fleet}:warm")
            before = _output_bytes(own_server)
            for index in range(200):
                await leader.remember(f"{key}:{fleet}:{index}", value)
            return (_output_bytes(own_server) - before) / 200

    one, twenty = await per_key(1), await per_key(20)
    assert twenty <= 2 * one, (one, twenty)


async def test_on_a_cluster_the_notification_stays_on_the_keys_shard(
    cluster: RedisCluster, key: str
) -> None:
    def stats(node: RedisServer) -> dict[str, int]:
        text = command(node.port, "CLUSTER", "INFO").decode()
        return {
            name: int(number)
            for name, number in re.findall(r"(cluster_stats_messages_publish\w*):(\d+)", text)
        }

    channel = ready_channel(key)
    async with _providers(cluster.url, 2) as (leader, follower):
        owners: list[int] = []
        before: list[dict[str, int]] = []

        async def on_the_owner_only() -> None:
            counts = [
                int(command(n.port, "PUBSUB", "SHARDNUMSUB", channel).split(b"\r\n")[-2][1:])
                for n in cluster.nodes
            ]
            owners.extend(i for i, count in enumerate(counts) if count)
            before.extend(stats(node) for node in cluster.nodes)

        assert await _follow(leader, [follower], key, on_the_owner_only) == [f"value-of-{key}"]
        after = [stats(node) for node in cluster.nodes]
    assert len(owners) == 1  # subscribed on the primary that owns the slot
    assert follower._lease._notifications.messages_received == 1
    for node_before, node_after in zip(before, after, strict=True):
        # No classic publish went over the cluster bus to every node.
        assert node_after.get("cluster_stats_messages_publish_sent", 0) == node_before.get(
            "cluster_stats_messages_publish_sent", 0
        )


async def test_without_sharded_pub_sub_the_followers_fall_back_to_classic_channels(
    key: str,
) -> None:
    """A Redis 6 stand-in: a server that knows neither SSUBSCRIBE nor SPUBLISH."""
    server = RedisServer(
        "--rename-command", "SSUBSCRIBE", "beignet-gone-ssubscribe",
        "--rename-command", "SPUBLISH", "beignet-gone-spublish",
    )  # fmt: skip
    try:
        async with _providers(server.url, 2) as (leader, follower):
            # The first wait finds out (and polls); the second is told.
            assert await _follow(leader, [follower], f"{key}:1") == [f"value-of-{key}:1"]
            heard = follower._lease._notifications.messages_received
            assert await _follow(leader, [follower], f"{key}:2") == [f"value-of-{key}:2"]
            assert follower._lease._notifications.messages_received == heard + 1
    finally:
        server.close()
