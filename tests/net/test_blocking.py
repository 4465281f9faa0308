"""Blocking commands get connections of their own and never stall the shared one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from redis.exceptions import ConnectionError, TimeoutError

from beignet_redis_anyio import RedisClient, RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._net.commands import NOT_BLOCKING, blocking_wait
from helpers.targets import PROTOCOL, RedisCluster, RedisServer, expected_pop, serve_script

pytestmark = pytest.mark.anyio


async def test_blpop_does_not_stall_other_commands(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client:
        popped: list[object] = []
        started = anyio.Event()

        async def consumer() -> None:
            started.set()
            popped.append(await client.blpop([f"{key}:q"], timeout=0))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consumer)
                await started.wait()
                # The shared connection keeps answering while BLPOP blocks.
                for index in range(20):
                    assert await client.echo(str(index)) == str(index)
                await client.rpush(f"{key}:q", "job")
        assert popped == [expected_pop(f"{key}:q", "job")]


async def test_blocking_timeout_returns_none(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client:
        with anyio.fail_after(5):
            assert await client.blpop([f"{key}:empty"], timeout=0.1) is None
            assert await client.brpop([f"{key}:empty"], timeout=0.1) is None


async def test_cancelled_blpop_does_not_steal_a_later_value(
    real_server: RedisServer, key: str
) -> None:
    async with open_redis_client(real_server.url) as client:
        with anyio.move_on_after(0.1):
            await client.blpop([f"{key}:q"], timeout=0)
        # The cancelled BLPOP's connection is closed, so the server no longer
        # holds a block for it: this value stays in the list for the next reader.
        await client.rpush(f"{key}:q", "precious")
        with anyio.fail_after(5):
            assert await client.blpop([f"{key}:q"], timeout=1) == expected_pop(
                f"{key}:q", "precious"
            )


async def test_blocking_connections_are_bounded_and_reused(
    real_server: RedisServer, key: str
) -> None:
    name = f"bounded-{key.rpartition(':')[2]}"
    async with open_redis_client(
        real_server.url, max_blocking_connections=2, client_name=name
    ) as client:
        results: list[object] = []

        async def pop(index: int) -> None:
            results.append(await client.blpop([f"{key}:q{index}"], timeout=0.2))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for index in range(5):
                    tasks.start_soon(pop, index)
        assert results == [None] * 5
        clients = [c for c in await client.client_list() if c["name"] == name]
        # The shared connection plus at most two dedicated ones, kept for reuse.
        assert 2 <= len(clients) <= 3


async def test_xread_block_runs_on_a_dedicated_connection(server_url: str, key: str) -> None:
    stream = f"{key}:stream"
    async with open_redis_client(server_url) as client:
        got: list[object] = []
        started, arrived = anyio.Event(), anyio.Event()

        async def reader() -> None:
            started.set()
            got.append(await client.xread({stream: "$"}, block=5000))
            arrived.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(reader)
                await started.wait()
                assert await client.echo("not stalled") == "not stalled"
                # XREAD $ sees only entries added after it reached the
                # server, which we cannot observe: add until one is seen.
                while not arrived.is_set():
                    await client.xadd(stream, {"field": "value"})
                    with anyio.move_on_after(0.05):
                        await arrived.wait()
        # redis-py's shapes: [[stream, entries]]; under RESP3 {stream: [entries]}.
        reply: Any = got[0]
        if PROTOCOL == 3:
            [(name, [entries])] = reply.items()
        else:
            [[name, entries]] = reply
        assert name == stream
        assert entries[0][1] == {"field": "value"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("BLPOP", "a", "b", 2), 2.0),
        (("BLPOP", "a", 0), None),
        (("BLMPOP", 1.5, 1, "a", "LEFT"), 1.5),
        (("WAIT", 1, 250), 0.25),
        (("XREAD", "BLOCK", 100, "STREAMS", "s", "$"), 0.1),
        (("XREAD", "COUNT", 5, "STREAMS", "s", "0"), NOT_BLOCKING),
        (("XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "s", ">"), None),
    ],
)
def test_blocking_wait_reads_each_commands_timeout(
    args: tuple[object, ...], expected: float | None
) -> None:
    assert blocking_wait(str(args[0]), args) == expected


# -- closing ends blocking commands in flight ----------------------------------


def _unique_name() -> str:
    """A client name that tells this test's connections apart on the server."""
    return f"blk-{uuid.uuid4().hex[:12]}"


async def _ours(inspectors: list[RedisClient], name: str) -> list[dict[str, str]]:
    found = []
    for inspector in inspectors:
        found += [c for c in await inspector.client_list() if c["name"] == name]
    return found


async def _until_blocked(inspectors: list[RedisClient], name: str, count: int = 1) -> None:
    """Poll ``CLIENT LIST`` until the server shows ``count`` of ours blocked
    (the caller bounds this with ``fail_after``)."""
    # The server's state has no event to wait on: polling it is the only way.
    while sum("b" in c["flags"] for c in await _ours(inspectors, name)) < count:  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def _until_gone(inspectors: list[RedisClient], name: str) -> None:
    """Poll until the server has processed the close of every connection of ours."""
    while await _ours(inspectors, name):  # noqa: ASYNC110
        await anyio.sleep(0.01)


@asynccontextmanager
async def _closing_client(
    how: str, url: str, name: str, task_group: anyio.abc.TaskGroup, **settings: object
) -> AsyncIterator[RedisClient]:
    """A client closed on leaving this block, each way the README shows."""
    if how == "from_url":
        client = RedisClient.from_url(url, task_group=task_group, client_name=name, **settings)
        try:
            yield client
        finally:
            await client.aclose()
    elif how == "open_redis_client":
        async with open_redis_client(url, client_name=name, **settings) as client:
            yield client
    else:
        assert not settings
        async with open_redis_provider(RedisConfig(url=url, client_name=name)) as cache:
            yield cache.client


@pytest.mark.parametrize("how", ["from_url", "open_redis_client", "provider"])
async def test_closing_fails_a_blocked_command_and_frees_its_block(
    how: str, real_server: RedisServer, key: str
) -> None:
    name, queue = _unique_name(), f"{key}:q"
    errors: list[ConnectionError] = []
    async with open_redis_client(real_server.url) as inspector:
        with anyio.fail_after(10):
            # The blocked task lives in a task group the user owns, outside
            # the client's: closing must wake it with an error, not cancel it.
            async with anyio.create_task_group() as tasks:
                async with _closing_client(how, real_server.url, name, tasks) as client:

                    async def consumer() -> None:
                        try:
                            await client.blpop([queue], timeout=0)
                        except ConnectionError as exc:
                            errors.append(exc)

                    tasks.start_soon(consumer)
                    await _until_blocked([inspector], name)
                # Closed: later blocking commands fail at once.
                with pytest.raises(ConnectionError, match="client was closed"):
                    await client.blpop([queue], timeout=0)
            await _until_gone([inspector], name)
            # No connection of ours is left to swallow this value.
            await inspector.rpush(queue, "kept")
            assert await inspector.lrange(queue, 0, -1) == ["kept"]
    [error] = errors
    assert "client was closed" in str(error)


async def test_closing_frees_every_slot_for_a_command_waiting_its_turn(
    real_server: RedisServer, key: str
) -> None:
    name = _unique_name()
    errors: list[ConnectionError] = []
    async with open_redis_client(real_server.url) as inspector:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                client = RedisClient.from_url(
                    real_server.url, task_group=tasks, client_name=name, max_blocking_connections=1
                )

                async def consumer(queue: str, started: anyio.Event) -> None:
                    started.set()  # it then runs on, without a checkpoint, into BLPOP
                    try:
                        await client.blpop([queue], timeout=0)
                    except ConnectionError as exc:
                        errors.append(exc)

                first, second = anyio.Event(), anyio.Event()
                tasks.start_soon(consumer, f"{key}:a", first)
                await _until_blocked([inspector], name)
                # This one waits its turn for the only dedicated connection.
                tasks.start_soon(consumer, f"{key}:b", second)
                await second.wait()
                await client.aclose()
            await _until_gone([inspector], name)
    assert len(errors) == 2
    assert all("client was closed" in str(error) for error in errors)


async def test_closing_a_cluster_client_fails_blocked_commands_on_its_nodes(
    cluster: RedisCluster, key: str
) -> None:
    name, queue = _unique_name(), f"{key}:q"
    errors: list[ConnectionError] = []
    async with AsyncExitStack() as stack:
        inspectors = [
            await stack.enter_async_context(open_redis_client(f"redis://127.0.0.1:{node.port}"))
            for node in cluster.nodes
        ]
        with anyio.fail_after(20):
            async with (
                anyio.create_task_group() as tasks,
                open_redis_client(cluster.url, client_name=name) as client,
            ):

                async def consumer() -> None:
                    try:
                        await client.blpop([queue], timeout=0)
                    except ConnectionError as exc:
                        errors.append(exc)

                tasks.start_soon(consumer)
                await _until_blocked(inspectors, name)
            await _until_gone(inspectors, name)
    [error] = errors
    assert "client was closed" in str(error)


# -- one deadline bounds a blocking command, its wait and its connect ----------


async def test_a_timed_blocking_command_does_not_wait_past_its_deadline_for_a_turn(
    real_server: RedisServer, key: str
) -> None:
    name = _unique_name()
    async with open_redis_client(real_server.url) as inspector:
        with anyio.fail_after(10):
            async with (
                anyio.create_task_group() as tasks,
                open_redis_client(
                    real_server.url,
                    client_name=name,
                    max_blocking_connections=2,
                    command_timeout=0.2,
                ) as client,
            ):
                for index in range(2):
                    tasks.start_soon(client.blpop, [f"{key}:forever{index}"], 0)
                await _until_blocked([inspector], name, count=2)
                with pytest.raises(TimeoutError) as caught:
                    await client.blpop([f"{key}:other"], timeout=0.1)
                tasks.cancel_scope.cancel()
    message = str(caught.value)
    assert "all 2 dedicated connections" in message
    assert "max_blocking_connections" in message
    assert "REDIS_MAX_BLOCKING_CONNECTIONS" in message


async def test_connecting_a_dedicated_connection_counts_against_the_deadline(key: str) -> None:
    async def frozen(command: list[bytes]) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with anyio.create_task_group() as tasks:
        port = await tasks.start(serve_script, frozen)
        async with open_redis_client(
            f"redis://127.0.0.1:{port}", connect_timeout=60, command_timeout=0.2
        ) as client:
            with anyio.fail_after(10), pytest.raises(TimeoutError) as caught:
                await client.blpop([f"{key}:q"], timeout=0.1)
        tasks.cancel_scope.cancel()
    assert "Timeout connecting to" in str(caught.value)
    assert "deadline" in str(caught.value)


async def test_closing_wakes_a_blocking_command_that_is_still_connecting(key: str) -> None:
    handshaking = anyio.Event()

    async def frozen(command: list[bytes]) -> bytes:
        handshaking.set()  # our connection got this far, and no further
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    errors: list[ConnectionError] = []
    async with anyio.create_task_group() as server:
        port = await server.start(serve_script, frozen)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                client = RedisClient.from_url(
                    f"redis://127.0.0.1:{port}", task_group=tasks, connect_timeout=60
                )

                async def consumer() -> None:
                    try:
                        await client.blpop([f"{key}:q"], timeout=0)
                    except ConnectionError as exc:
                        errors.append(exc)

                tasks.start_soon(consumer)
                await handshaking.wait()
                await client.aclose()
        server.cancel_scope.cancel()
    [error] = errors
    assert "client was closed" in str(error)
