"""``client.pubsub()``: redis-py's shapes, a reader that cancellation cannot
tear, and subscriptions that survive a reconnect."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from redis.crc import key_slot
from redis.exceptions import ConnectionError, DataError
from redis.typing import Subscription

from beignet_redis_anyio import RedisClient, open_redis_client
from beignet_redis_anyio._client.pubsub import PubSub
from helpers.targets import RedisCluster, RedisServer

pytestmark = pytest.mark.anyio


async def next_message(ps: PubSub, *, ignore: bool = False) -> dict[str, Any] | None:
    with anyio.fail_after(5):
        return await ps.get_message(ignore_subscribe_messages=ignore, timeout=None)


async def publish_when_back(client: RedisClient, channel: str, data: str) -> int:
    """PUBLISH, once the shared connection has noticed the restart (its
    first command after one may fail with ``ConnectionError``)."""
    with anyio.fail_after(10):
        while True:
            try:
                return int(await client.publish(channel, data))
            except ConnectionError:
                await anyio.sleep(0.05)


def shape(kind: str, channel: Any, data: Any, pattern: Any = None) -> dict[str, Any]:
    return {"type": kind, "pattern": pattern, "channel": channel, "data": data}


@pytest.mark.parametrize("decode", [True, False], ids=["str", "bytes"])
async def test_message_shapes_are_redis_pys(server_url: str, key: str, decode: bool) -> None:
    def name(text: str) -> Any:
        return text if decode else text.encode()

    async with (
        open_redis_client(server_url, decode_responses=decode) as client,
        client.pubsub() as ps,
    ):
        assert ps.subscribed is False
        await ps.subscribe(f"{key}:a")
        await ps.psubscribe(f"{key}:p*")
        assert ps.subscribed is True
        assert await next_message(ps) == shape("subscribe", name(f"{key}:a"), 1)
        assert await next_message(ps) == shape("psubscribe", name(f"{key}:p*"), 2)

        assert await client.publish(f"{key}:a", "hello") == 1
        assert await next_message(ps) == shape("message", name(f"{key}:a"), name("hello"))
        assert await client.publish(f"{key}:pq", "there") == 1
        assert await next_message(ps) == shape(
            "pmessage", name(f"{key}:pq"), name("there"), name(f"{key}:p*")
        )

        await ps.unsubscribe(f"{key}:a")
        await ps.punsubscribe()
        # Still subscribed until the confirmations are read (as redis-py).
        assert ps.subscribed is True
        assert await next_message(ps) == shape("unsubscribe", name(f"{key}:a"), 1)
        assert await next_message(ps) == shape("punsubscribe", name(f"{key}:p*"), 0)
        assert ps.subscribed is False
        assert ps.channels == {} and ps.patterns == {}
        assert await ps.get_message(timeout=0.0) is None


async def test_handlers_take_their_messages(server_url: str, key: str) -> None:
    seen: list[dict[str, Any]] = []

    async def async_handler(message: dict[str, Any]) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(message)

    async with (
        open_redis_client(server_url) as client,
        client.pubsub(ignore_subscribe_messages=True) as ps,
    ):
        await ps.subscribe(**{f"{key}:sync": seen.append})
        await ps.subscribe(Subscription(f"{key}:async", async_handler))
        await ps.subscribe(f"{key}:plain")
        # Confirmations are ignored; each get_message call returns None.
        for _ in range(3):
            assert await next_message(ps) is None
        await client.publish(f"{key}:sync", "1")
        await client.publish(f"{key}:async", "2")
        await client.publish(f"{key}:plain", "3")
        assert await next_message(ps) is None
        assert await next_message(ps) is None
        assert await next_message(ps) == shape("message", f"{key}:plain", "3")
    assert seen == [shape("message", f"{key}:sync", "1"), shape("message", f"{key}:async", "2")]


async def test_run_hands_messages_to_handlers_until_cancelled(server_url: str, key: str) -> None:
    got: list[Any] = []
    arrived = anyio.Event()

    def handler(message: dict[str, Any]) -> None:
        got.append(message["data"])
        if len(got) == 3:
            arrived.set()

    async with open_redis_client(server_url) as client, client.pubsub() as ps:
        await ps.subscribe(**{key: handler})
        assert (await next_message(ps) or {})["type"] == "subscribe"
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(ps.run)
                for data in ("a", "b", "c"):
                    await client.publish(key, data)
                await arrived.wait()
                tasks.cancel_scope.cancel()
        assert got == ["a", "b", "c"]
        # run() refuses a channel without a handler, as redis-py's does.
        await ps.subscribe(f"{key}:bare")
        with pytest.raises(Exception, match="no handler"):
            await ps.run()


async def test_listen_ends_when_nothing_is_subscribed(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client, client.pubsub() as ps:
        await ps.subscribe(key)
        kinds = []
        with anyio.fail_after(5):
            async for message in ps.listen():
                kinds.append(message["type"])
                if message["type"] == "subscribe":
                    await client.publish(key, "x")
                elif message["type"] == "message":
                    await ps.unsubscribe()
        assert kinds == ["subscribe", "message", "unsubscribe"]


async def test_a_cancelled_reader_loses_nothing(server_url: str, key: str) -> None:
    """Readers cancelled over and over while messages stream in: every
    message arrives once, in order, on the one connection."""
    count = 200
    async with (
        open_redis_client(server_url) as client,
        client.pubsub(ignore_subscribe_messages=True) as ps,
    ):
        await ps.subscribe(key)
        assert await next_message(ps) is None  # the confirmation
        # Cancelled mid-wait: nothing is taken, the subscription stays.
        with anyio.move_on_after(0.05) as scope:
            await ps.get_message(timeout=None)
        assert scope.cancelled_caught
        received: list[str] = []
        reading: anyio.CancelScope | None = None

        async def read() -> None:
            nonlocal reading
            while len(received) < count:
                with anyio.CancelScope() as reading:
                    message = await ps.get_message(timeout=None)
                    received.append(message["data"] if message else "?")

        async def publish_and_cancel() -> None:
            for index in range(count):
                await client.publish(key, str(index))
                # Cancel the reader as its message arrives: before it
                # wakes, as it wakes, or after it took the message.
                while not len(ps._inbox) and len(received) <= index:
                    await anyio.lowlevel.checkpoint()
                if reading is not None:
                    reading.cancel()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(read)
                tasks.start_soon(publish_and_cancel)
        assert received == [str(index) for index in range(count)]
        assert ps.connection is not None and ps.connection.is_connected
        assert ps.channels == {key: None}


async def test_restart_resubscribes(own_server: RedisServer, key: str) -> None:
    async with (
        open_redis_client(own_server.url, connect_timeout=1) as client,
        client.pubsub() as ps,
    ):
        await ps.subscribe(f"{key}:c")
        await ps.psubscribe(f"{key}:p*")
        await ps.ssubscribe(f"{key}:s")
        for _ in range(3):
            assert (await next_message(ps) or {})["type"].endswith("subscribe")

        own_server.stop()
        # The gap is reported once, where it happened …
        with anyio.fail_after(5), pytest.raises(ConnectionError, match="re-subscribe"):
            await ps.get_message(timeout=None)
        own_server.start()
        # … then the re-subscriptions are confirmed, and messages flow.
        kinds = {(await next_message(ps) or {})["type"] for _ in range(3)}
        assert kinds == {"subscribe", "psubscribe", "ssubscribe"}
        assert await publish_when_back(client, f"{key}:c", "back") == 1
        assert await next_message(ps) == shape("message", f"{key}:c", "back")
        assert await client.publish(f"{key}:pz", "too") == 1
        assert (await next_message(ps) or {})["data"] == "too"
        assert await client.spublish(f"{key}:s", "sharded") == 1
        assert await next_message(ps) == shape("smessage", f"{key}:s", "sharded")


async def test_get_sharded_message_reads_shard_channels(real_server: RedisServer, key: str) -> None:
    """redis-py 8.2's name for the same read, on every release we support."""
    async with open_redis_client(real_server.url) as client, client.pubsub() as ps:
        await ps.ssubscribe(f"{key}:s")
        assert (await ps.get_sharded_message(timeout=5) or {})["type"] == "ssubscribe"
        assert await client.spublish(f"{key}:s", "hello") == 1
        assert await ps.get_sharded_message(timeout=5) == shape("smessage", f"{key}:s", "hello")


async def test_an_unconfirmed_unsubscribe_is_not_undone_by_a_reconnect(
    own_server: RedisServer, key: str
) -> None:
    async with (
        open_redis_client(own_server.url) as client,
        client.pubsub() as ps,
    ):
        await ps.subscribe(f"{key}:keep", f"{key}:drop")
        for _ in range(2):
            assert (await next_message(ps) or {})["type"] == "subscribe"
        own_server.freeze()  # the unsubscribe cannot be confirmed …
        await ps.unsubscribe(f"{key}:drop")
        assert ps.connection is not None
        await ps.connection.disconnect()  # … on this connection
        own_server.thaw()
        # The new connection subscribes to what is left, and only that.
        assert await next_message(ps) == shape("subscribe", f"{key}:keep", 1)
        assert list(ps.channels) == [f"{key}:keep"]
        numsub = dict(await client.pubsub_numsub(f"{key}:keep", f"{key}:drop"))
        assert numsub == {f"{key}:keep": 1, f"{key}:drop": 0}


async def test_disconnect_reconnects_quietly(server_url: str, key: str) -> None:
    """A disconnect the subscriber asked for raises nothing (as redis-py's
    ``ps.connection.disconnect()``); the re-subscription is confirmed."""
    async with open_redis_client(server_url) as client, client.pubsub() as ps:
        await ps.subscribe(key)
        assert (await next_message(ps) or {})["type"] == "subscribe"
        assert ps.connection is not None
        await ps.connection.disconnect()
        assert not ps.connection.is_connected
        assert await next_message(ps) == shape("subscribe", key, 1)
        assert ps.connection.is_connected
        await client.publish(key, "again")
        assert await next_message(ps) == shape("message", key, "again")


async def test_fan_out_to_ten_subscribers(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client:
        subscribers = [client.pubsub(ignore_subscribe_messages=True) for _ in range(10)]
        try:
            for ps in subscribers:
                await ps.subscribe(key)
                assert await next_message(ps) is None
            assert await client.publish(key, "all") == 10
            for ps in subscribers:
                assert await next_message(ps) == shape("message", key, "all")
            assert dict(await client.pubsub_numsub(key)) == {key: 10}
            assert key in await client.pubsub_channels(f"{key}*")
        finally:
            for ps in subscribers:
                await ps.aclose()


async def test_concurrent_subscribers_on_one_pubsub(server_url: str, key: str) -> None:
    names = [f"{key}:{index}" for index in range(20)]
    async with open_redis_client(server_url) as client, client.pubsub() as ps:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for name in names:
                    tasks.start_soon(ps.subscribe, name)
        assert sorted(ps.channels) == sorted(names)
        confirmed = {(await next_message(ps) or {})["channel"] for _ in names}
        assert confirmed == set(names)
        # Only one connection was opened for all of them.
        assert dict(await client.pubsub_numsub(*names)) == dict.fromkeys(names, 1)


async def test_a_slow_subscriber_is_paused_not_dropped(real_server: RedisServer, key: str) -> None:
    async with (
        open_redis_client(real_server.url) as client,
        client.pubsub(ignore_subscribe_messages=True, max_buffered=3) as ps,
    ):
        await ps.subscribe(key)
        assert await next_message(ps) is None
        for index in range(50):
            await client.publish(key, str(index))
        await client.ping()  # the server has sent them all by now
        assert len(ps._inbox) <= 3  # the bound: the rest wait in socket buffers
        got = [(await next_message(ps) or {})["data"] for _ in range(50)]
        assert got == [str(index) for index in range(50)]


async def test_aclose_ends_the_reader_and_closes_the_connection(
    real_server: RedisServer, key: str
) -> None:
    name = f"ps-{uuid.uuid4().hex[:10]}"

    async def ours(client: RedisClient) -> int:
        return sum(1 for entry in await client.client_list() if entry["name"] == name)

    async def closed_to(client: RedisClient, expected: int) -> None:
        # Closed on our side, a connection is gone once the server notices, on
        # its next turn; under load it may answer CLIENT LIST first: wait, bounded.
        with anyio.fail_after(5):
            while await ours(client) != expected:  # noqa: ASYNC110 - server state
                await anyio.sleep(0.01)

    async with open_redis_client(real_server.url) as observer:
        async with open_redis_client(real_server.url, client_name=name) as client:
            await client.ping()
            assert await ours(observer) == 1  # the shared connection
            ps = client.pubsub()
            await ps.subscribe(key)
            await ps.ssubscribe(f"{key}:s")
            assert await ours(observer) == 2
            await ps.aclose()
            await closed_to(observer, 1)
            assert ps.connection is None and ps.subscribed is False
            with pytest.raises(RuntimeError, match="subscribe"):
                await ps.get_message()
            # A pubsub left open is closed with its client.
            await client.pubsub().subscribe(key)
            assert await ours(observer) == 2
        await closed_to(observer, 0)


async def test_before_subscribing_and_when_the_server_is_down(server_url: str) -> None:
    async with open_redis_client(server_url) as client, client.pubsub() as ps:
        with pytest.raises(RuntimeError, match="did you forget to call subscribe"):
            await ps.get_message()
    async with open_redis_client("redis://127.0.0.1:1", connect_timeout=1) as client:
        with pytest.raises(ConnectionError):
            await client.pubsub().subscribe("x")


async def test_ping_answers_as_a_pong_message(server_url: str, key: str) -> None:
    async with (
        open_redis_client(server_url) as client,
        client.pubsub(ignore_subscribe_messages=True) as ps,
    ):
        await ps.subscribe(key)
        await ps.ping("hi")
        assert await next_message(ps, ignore=True) is None  # the confirmation
        assert await next_message(ps) == shape("pong", None, "hi")


async def test_the_shared_connection_points_to_pubsub(server_url: str) -> None:
    async with open_redis_client(server_url) as client:
        for command in ("SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE"):
            with pytest.raises(DataError, match=r"client\.pubsub\(\)"):
                await client.execute_command(command, "x")


async def test_shard_channels_route_by_slot_on_a_cluster(cluster: RedisCluster) -> None:
    prefix = uuid.uuid4().hex[:8]
    async with open_redis_client(cluster.url) as client:
        assert client._cluster is not None
        # One shard channel on each primary.
        by_owner: dict[tuple[str, int], str] = {}
        for index in range(200):
            channel = f"{prefix}:{index}"
            owner = await client._cluster.owner(key_slot(channel.encode()))
            by_owner.setdefault(owner, channel)
        channels = list(by_owner.values())
        assert len(channels) == 3
        async with client.pubsub(ignore_subscribe_messages=True) as ps:
            await ps.ssubscribe(*channels)
            await ps.subscribe(f"{prefix}:plain")
            for _ in range(4):
                assert await next_message(ps) is None
            for channel in channels:
                assert await client.spublish(channel, f"to {channel}") == 1
            await client.publish(f"{prefix}:plain", "everywhere")
            messages = [await next_message(ps) or {} for _ in range(4)]
            got = {message["channel"]: message["data"] for message in messages}
            assert got == {
                **{channel: f"to {channel}" for channel in channels},
                f"{prefix}:plain": "everywhere",
            }
            await ps.sunsubscribe()
            await ps.unsubscribe()
            with anyio.fail_after(5):
                while ps.subscribed:
                    await ps.get_message(timeout=1)


async def test_a_killed_connection_is_reported_once_then_resubscribed(
    real_server: RedisServer, key: str
) -> None:
    name = f"ps-{uuid.uuid4().hex[:10]}"
    async with (
        open_redis_client(real_server.url) as observer,
        open_redis_client(real_server.url, client_name=name) as client,
        client.pubsub() as ps,
    ):
        await ps.subscribe(key)
        assert (await next_message(ps) or {})["type"] == "subscribe"
        (victim,) = [
            entry["id"]
            for entry in await observer.client_list()
            if entry["name"] == name and entry["cmd"] == "subscribe"
        ]
        await observer.client_kill_filter(_id=victim)
        with anyio.fail_after(5), pytest.raises(ConnectionError):
            await ps.get_message(timeout=None)
        assert await next_message(ps) == shape("subscribe", key, 1)
        assert await observer.publish(key, "after") == 1
        assert await next_message(ps) == shape("message", key, "after")


async def test_readers_sharing_one_pubsub_split_the_messages(server_url: str, key: str) -> None:
    async with (
        open_redis_client(server_url) as client,
        client.pubsub(ignore_subscribe_messages=True) as ps,
    ):
        await ps.subscribe(key)
        assert await next_message(ps) is None
        got: list[str] = []

        async def read() -> None:
            while len(got) < 20:
                message = await ps.get_message(timeout=0.05)
                if message is not None:
                    got.append(message["data"])

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for _ in range(3):
                    tasks.start_soon(read)
                for index in range(20):
                    await client.publish(key, str(index))
        assert sorted(got, key=int) == [str(index) for index in range(20)]


async def test_a_push_handler_takes_every_raw_frame(server_url: str, key: str) -> None:
    frames: list[Any] = []
    async with (
        open_redis_client(server_url) as client,
        client.pubsub(push_handler_func=frames.append) as ps,
    ):
        await ps.subscribe(key)
        assert await next_message(ps) is None
        await client.publish(key, "raw")
        assert await next_message(ps) is None
    assert frames == [["subscribe", key, 1], ["message", key, "raw"]]
