"""Blocking commands get connections of their own and never stall the shared one."""

from __future__ import annotations

import uuid

import anyio
import pytest
from redis.exceptions import TimeoutError

from beignet_redis_anyio import RedisClient, open_redis_client
from beignet_redis_anyio._routing import NOT_BLOCKING, blocking_wait
from servers import RedisServer, serve_script

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
        assert popped == [(f"{key}:q", "job")]


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
            assert await client.blpop([f"{key}:q"], timeout=1) == (f"{key}:q", "precious")


async def test_blocking_connections_are_bounded_and_reused(
    real_server: RedisServer, key: str
) -> None:
    async with open_redis_client(real_server.url, max_blocking_connections=2) as client:
        results: list[object] = []

        async def pop(index: int) -> None:
            results.append(await client.blpop([f"{key}:q{index}"], timeout=0.2))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for index in range(5):
                    tasks.start_soon(pop, index)
        assert results == [None] * 5
        clients = [c for c in await client.client_list() if c["name"] == "beignet-redis-anyio"]
        # The shared connection plus at most two dedicated ones, kept for reuse.
        assert len(clients) <= 3


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
        [[name, entries]] = got[0]  # type: ignore[misc]
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


# -- helpers: our connections as the server sees them ---------------------------


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
