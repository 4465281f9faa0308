"""WATCH, transactions and pipelines that behave like redis-py's.

Real servers (and fakeredis where it supports the commands), asyncio and trio.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from redis.asyncio.client import Pipeline as RedisPyPipeline
from redis.exceptions import (
    CrossSlotTransactionError,
    DataError,
    RedisError,
    ResponseError,
    TimeoutError,
    WatchError,
)

from beignet_redis_anyio import open_redis_client
from beignet_redis_anyio._client.client import RedisClient
from beignet_redis_anyio._client.pipeline import Pipeline, annotate_exception
from beignet_redis_anyio._net.dedicated import DedicatedConnections, HeldConnection
from helpers.targets import RedisCluster, RedisServer

pytestmark = pytest.mark.anyio

MULTIPLY = "return tonumber(redis.call('GET', KEYS[1])) * tonumber(ARGV[1])"


def _dedicated(client: RedisClient) -> DedicatedConnections:
    assert client._node is not None
    return client._node.dedicated


def _all_returned(pool: DedicatedConnections) -> bool:
    """Nothing held or in flight: every turn is free again."""
    return not pool._busy and pool._limit.value == pool._settings.max_blocking_connections


# -- WATCH ------------------------------------------------------------------


async def test_watch_reads_at_once_then_multi_buffers(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client:
        await client.set(key, "1")
        async with client.pipeline() as pipe:
            assert await pipe.watch(key) is True
            assert pipe.watching
            # Immediate mode: the command runs now and returns its result.
            assert await pipe.get(key) == "1"
            assert await pipe.immediate_execute_command("GET", key) == "1"
            pipe.multi()
            assert pipe.set(key, "2") is pipe
            assert len(pipe) == 1
            assert await pipe.execute() == [True]
            assert not pipe.watching
        assert await client.get(key) == "2"
        assert _all_returned(_dedicated(client))


async def test_a_change_by_another_client_fails_exec_with_watch_error(
    server_url: str, key: str
) -> None:
    async with open_redis_client(server_url) as client, open_redis_client(server_url) as other:
        await client.set(key, "0")
        async with client.pipeline() as pipe:
            await pipe.watch(key)
            value = int(await pipe.get(key))
            await other.set(key, "changed")
            pipe.multi()
            pipe.set(key, value + 1)
            with pytest.raises(WatchError, match=r"^Watched variable changed\.$"):
                await pipe.execute()
            assert not pipe.watching
            assert len(pipe) == 0
        assert await client.get(key) == "changed"
        assert _all_returned(_dedicated(client))


async def test_unwatch_and_reset(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client, open_redis_client(server_url) as other:
        await client.set(key, "1")
        pipe = client.pipeline(transaction=True)
        await pipe.watch(key)
        await other.set(key, "2")
        assert await pipe.unwatch() is True
        assert not pipe.watching
        pipe.get(key)
        assert await pipe.execute() == ["2"]  # not failed: nothing watched any more
        await pipe.watch(key)
        await pipe.reset()
        assert not pipe.watching
        await pipe.watch(key)
        await pipe.aclose()
        assert not pipe.watching
        # Returned clean (an UNWATCH was answered): reused for the next watch,
        # which a change made before it does not fail.
        pool = _dedicated(client)
        assert _all_returned(pool) and len(pool._idle) == 1
        await other.set(key, "3")
        async with client.pipeline() as fresh:
            await fresh.watch(key)
            fresh.multi()
            fresh.get(key)
            assert await fresh.execute() == ["3"]


async def test_watch_never_runs_on_the_shared_connection(server_url: str, key: str) -> None:
    """While a pipeline watches ``key``, the client's shared connection runs
    a transaction writing ``key``: if WATCH were on the shared connection
    that transaction would be aborted by it."""
    async with open_redis_client(server_url) as client:
        await client.set(key, "0")
        async with client.pipeline() as pipe:
            await pipe.watch(key)
            shared = client.pipeline(transaction=True)
            shared.incr(key)
            assert await shared.execute() == [1]
            info = str(await client.execute_command("CLIENT", "INFO")).split()
            if any(field.startswith("watch=") for field in info):  # Valkey, Redis >= 7.4
                assert "watch=0" in info
            pipe.multi()
            pipe.incr(key)
            with pytest.raises(WatchError):
                await pipe.execute()
        assert await client.get(key) == "1"


async def test_transaction_and_watch_commands_alone_point_at_the_pipeline(server_url: str) -> None:
    async with open_redis_client(server_url) as client:
        for command in (("WATCH", "k"), ("UNWATCH",), ("MULTI",), ("EXEC",), ("DISCARD",)):
            with pytest.raises(DataError, match=r"transaction\(func"):
                await client.execute_command(*command)
        pipe = client.pipeline()
        for command in (("MULTI",), ("EXEC",), ("UNWATCH",)):
            with pytest.raises(DataError, match="sent by the pipeline itself"):
                pipe.execute_command(*command)
        await pipe.watch("k")
        with pytest.raises(DataError, match=r"pipe\.multi\(\)"):
            await pipe.execute_command("MULTI")
        with pytest.raises(DataError, match="shared connection"):
            await pipe.execute_command("SELECT", 1)
        await pipe.reset()
        pipe.multi()
        with pytest.raises(RedisError, match="nested"):
            pipe.multi()


async def test_watch_after_multi_is_refused(server_url: str) -> None:
    async with open_redis_client(server_url) as client, client.pipeline() as pipe:
        pipe.multi()
        with pytest.raises(RedisError, match="WATCH after a MULTI"):
            await pipe.watch("k")


async def test_a_watching_pipeline_waits_for_a_turn_within_the_command_timeout(
    real_server: RedisServer, key: str
) -> None:
    async with open_redis_client(
        real_server.url, max_blocking_connections=1, command_timeout=0.2
    ) as client:
        async with client.pipeline() as first:
            await first.watch(key)
            second = client.pipeline()
            with pytest.raises(TimeoutError, match="all 1 dedicated connections"):
                await second.watch(key)
            assert not second.watching
        # The first let go: the turn is free again.
        async with client.pipeline() as third:
            await third.watch(key)
        assert _all_returned(_dedicated(client))


# -- transaction() ------------------------------------------------------------


async def test_two_tasks_racing_transaction_both_finish_and_retry(
    server_url: str, key: str
) -> None:
    rounds = 5
    a_read, b_done = anyio.Event(), anyio.Event()
    calls = {"a": 0, "b": 0}

    async def increment(pipe: Pipeline, who: str) -> None:
        calls[who] += 1
        value = int(await pipe.get(key) or 0)
        if who == "a" and calls["a"] == 1:
            # Make the race certain: B commits between A's read and A's EXEC.
            a_read.set()
            await b_done.wait()
        pipe.multi()
        pipe.set(key, value + 1)

    async def run(client: RedisClient, who: str) -> None:
        for index in range(rounds):
            await client.transaction(lambda pipe: increment(pipe, who), key)
            if who == "b" and index == 0:
                b_done.set()

    async with open_redis_client(server_url) as a, open_redis_client(server_url) as b:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run, a, "a")
            await a_read.wait()
            tasks.start_soon(run, b, "b")
        assert await a.get(key) == str(2 * rounds)
        assert calls["a"] > rounds  # A's first round saw WatchError and ran again
        assert _all_returned(_dedicated(a)) and _all_returned(_dedicated(b))


async def test_transaction_takes_sync_functions_and_returns_their_value(
    server_url: str, key: str
) -> None:
    async with open_redis_client(server_url) as client:

        def write(pipe: Pipeline) -> str:
            pipe.multi()
            pipe.set(key, "v")
            return "from func"

        assert await client.transaction(write, key) == [True]
        assert await client.transaction(write, key, value_from_callable=True) == "from func"
        assert await client.transaction(write, key, watch_delay=0.001) == [True]


@pytest.mark.parametrize("where", ["checkout", "watched", "read", "exec"])
async def test_a_cancelled_transaction_leaves_no_watch_behind(
    real_server: RedisServer, key: str, where: str
) -> None:
    """Cancelled at each await of transaction(), the held connection is
    closed or returned clean: a later transaction on the same pool is not
    failed by a change to the key the cancelled one watched."""
    async with open_redis_client(real_server.url, max_blocking_connections=1) as client:
        await client.set(key, "0")
        with anyio.CancelScope() as scope:

            async def func(pipe: Pipeline) -> None:
                if where == "watched":
                    scope.cancel()
                    await anyio.sleep_forever()
                if where == "read":
                    scope.cancel()  # the GET below is the await that is cancelled
                await pipe.get(key)
                pipe.multi()
                pipe.set(key, "1")
                if where == "exec":
                    scope.cancel()  # execute()'s MULTI … EXEC is

            if where == "checkout":
                scope.cancel()
            await client.transaction(func, key)
        assert scope.cancelled_caught
        pool = _dedicated(client)
        assert _all_returned(pool)
        await client.set(key, "changed")  # would fail a leaked WATCH on a reused connection
        other = f"{key}:other"
        async with client.pipeline() as pipe:
            await pipe.watch(other)
            pipe.multi()
            pipe.set(other, "ok")
            assert await pipe.execute() == [True]
        assert await client.get(key) == "changed"


async def test_closing_the_client_fails_a_watching_pipeline(real_server: RedisServer) -> None:
    async with open_redis_client(real_server.url) as client:
        pipe = client.pipeline()
        await pipe.watch("k")
    with pytest.raises(RedisError):
        await pipe.get("k")
    assert not pipe.watching


# -- pipelines as redis-py's ------------------------------------------------------


async def test_pipeline_basics_as_redis_py(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client:
        pipe = await client.pipeline()
        assert isinstance(pipe, Pipeline)
        assert pipe and len(pipe) == 0
        assert await pipe.set(key, "a") is pipe  # awaiting a queued command gives the pipe
        assert len(pipe) == 1
        await pipe.reset()
        assert len(pipe) == 0
        async with client.pipeline() as pipe:
            pipe.set(key, "b")
        assert len(pipe) == 0  # reset on exit, nothing sent
        assert await client.get(key) is None


async def test_error_annotation_is_redis_py_s(server_url: str, key: str) -> None:
    async with open_redis_client(server_url, decode_responses=False) as client:
        await client.set(f"{key}c", "a")
        pipe = client.pipeline()
        pipe.set(f"{key}a", 1).set(f"{key}b", 2).lpush(f"{key}c", 3).set(f"{key}d", 4)
        with pytest.raises(ResponseError) as caught:
            await pipe.execute()
        message = str(caught.value)
        assert message.startswith(f"Command # 3 (LPUSH {key}c 3) of pipeline caused error: ")
        # Exactly what redis-py's own pipeline makes of the same server error.
        with pytest.raises(ResponseError) as alone:
            await client.lpush(f"{key}c", 3)
        theirs = alone.value
        RedisPyPipeline.annotate_exception(None, theirs, 3, ("LPUSH", f"{key}c", 3))  # type: ignore[arg-type]
        assert str(theirs) == message
        pipe = client.pipeline(transaction=True)
        pipe.set(f"{key}a", 1).zrem(f"{key}b").set(f"{key}b", 2)
        with pytest.raises(ResponseError, match=rf"^Command # 2 \(ZREM {key}b\) of pipeline"):
            await pipe.execute()


def test_annotation_truncates_and_decodes_as_redis_py() -> None:
    for args in (
        ("HSET", "a" * 50, "field_a", "a" * 20, "field_b", "b" * 20),
        (b"LLEN", chr(3456).encode() + b"abcd"),
        ("SET", "k", 3.5),
    ):
        ours, theirs = ResponseError("boom"), ResponseError("boom")
        annotate_exception(ours, 1, args)
        RedisPyPipeline.annotate_exception(None, theirs, 1, args)  # type: ignore[arg-type]
        assert ours.args == theirs.args


@pytest.mark.parametrize(
    "args",
    [
        ("AUTH", "hunter2"),
        ("AUTH", "alice", "hunter2"),
        ("HELLO", 3, "AUTH", "alice", "hunter2"),
        ("MIGRATE", "h", 6379, "k", 0, 10, "AUTH", "hunter2"),
        ("MIGRATE", "h", 6379, "k", 0, 10, "COPY", "AUTH2", "alice", "hunter2"),
        ("ACL SETUSER", "alice", "on", ">hunter2"),
        ("ACL", "SETUSER", "alice", "on", ">hunter2"),
        ("CONFIG SET", "requirepass", "hunter2"),
        ("CONFIG", "SET", "maxmemory", "1mb", "masterauth", "hunter2"),
        ("SENTINEL", "SET", "mymaster", "auth-pass", "hunter2"),
    ],
)
def test_annotation_never_shows_a_credential(args: tuple[Any, ...]) -> None:
    error = annotate_exception(ResponseError("ERR nope"), 1, args)
    assert "hunter2" not in str(error)
    assert "<REDACTED>" in str(error)
    assert str(error).startswith(f"Command # 1 ({str(args[0]).split()[0]}")


async def test_a_credential_in_a_pipeline_error_is_redacted(
    real_server: RedisServer, key: str
) -> None:
    async with open_redis_client(real_server.url) as client:
        pipe = client.pipeline()
        pipe.acl_setuser(f"u{key}", enabled=True, passwords=["+hunter2"], commands=["+nosuch"])
        with pytest.raises(ResponseError) as caught:
            await pipe.execute()
        assert "hunter2" not in str(caught.value)
        assert str(caught.value).startswith("Command # 1 (ACL SETUSER <REDACTED>) of pipeline")


async def test_raise_on_error_false_puts_errors_in_the_results(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client:
        await client.set(f"{key}c", "a")
        for transaction in (False, True):
            pipe = client.pipeline(transaction=transaction)
            pipe.set(f"{key}a", 1).lpush(f"{key}c", 3).set(f"{key}d", 4).mget([])
            first, error, last, empty = await pipe.execute(raise_on_error=False)
            assert (first, last, empty) == (True, True, [])
            assert isinstance(error, ResponseError)
            assert not str(error).startswith("Command #")  # not raised: not annotated
            assert await client.get(f"{key}d") == "4"


async def test_discard_as_redis_py(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client:
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(key, "someval")
            await pipe.discard()
            with pytest.raises(ResponseError):
                await pipe.execute()
            pipe.set(f"{key}:foo", "bar")
            assert await pipe.execute() == [True]
        assert await client.get(f"{key}:foo") == "bar"


async def test_non_transaction_pipeline_watch(server_url: str, key: str) -> None:
    async with open_redis_client(server_url) as client, open_redis_client(server_url) as other:
        await client.set(key, 0)
        async with client.pipeline(transaction=False) as pipe:
            await pipe.watch(key)
            value = await pipe.get(key)
            await other.set(key, "bad")
            pipe.multi()
            pipe.set(key, int(value) + 1)
            with pytest.raises(WatchError):
                await pipe.execute()
        assert await client.get(key) == "bad"


# -- scripts ------------------------------------------------------------------


async def test_script_objects_in_a_pipeline_survive_script_flush(
    real_server: RedisServer, key: str
) -> None:
    async with open_redis_client(real_server.url) as client:
        multiply = client.register_script(MULTIPLY)
        sha = multiply.sha
        for _ in range(2):
            await client.script_flush()
            pipe = client.pipeline()
            pipe.set(key, 2).get(key)
            assert await multiply(keys=[key], args=[3], client=pipe) is pipe
            assert await client.script_exists(sha) == [False]
            assert await pipe.execute() == [True, "2", 6]
            assert await client.script_exists(sha) == [True]
        assert multiply.sha == sha
        await client.script_flush()
        assert await multiply(keys=[key], args=[4]) == 8  # on the client: NOSCRIPT, load, again


async def test_script_objects_while_watching(real_server: RedisServer, key: str) -> None:
    async with open_redis_client(real_server.url) as client:
        multiply = client.register_script(MULTIPLY)
        await client.script_flush()
        await client.set(key, 5)
        async with client.pipeline() as pipe:
            await pipe.watch(key)
            assert await multiply(keys=[key], args=[2], client=pipe) == 10  # at once
            await client.script_flush()
            pipe.multi()
            await multiply(keys=[key], args=[3], client=pipe)
            assert await pipe.execute() == [15]  # loaded on the held connection first


# -- cluster ------------------------------------------------------------------


async def test_cluster_watch_needs_one_slot(cluster: RedisCluster) -> None:
    tag = uuid.uuid4().hex[:6]
    async with open_redis_client(cluster.url) as client:
        pipe = client.pipeline()
        with pytest.raises(CrossSlotTransactionError, match="same slot"):
            await pipe.watch(f"a{tag}", f"b{tag}x", f"c{tag}yy")
        assert client._cluster is not None
        # Refused before anything was sent: no connection was taken.
        assert all(
            _all_returned(node.dedicated) and not node.dedicated._idle
            for node in client._cluster._nodes.values()
        )
        key = f"{{{tag}}}:n"
        await client.set(key, 1)

        async def double(pipe: Pipeline) -> None:
            value = int(await pipe.get(key))
            with pytest.raises(CrossSlotTransactionError):
                await pipe.get(f"elsewhere{tag}")
            pipe.multi()
            pipe.set(key, value * 2).get(f"{{{tag}}}:n")

        assert await client.transaction(double, key, f"{{{tag}}}:other") == [True, "2"]
        assert await client.delete(key) == 1


async def test_a_moved_reply_while_watching_is_a_watch_error(
    real_server: RedisServer, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a slot migration looks like to a watching pipeline (staged: a
    real one needs a resharding cluster): WatchError, so transaction()
    retries; the connection is not kept."""
    from redis.exceptions import MovedError

    async with open_redis_client(real_server.url) as client:
        pipe = client.pipeline()
        await pipe.watch(key)
        held = pipe._held
        assert held is not None

        async def moved(self: HeldConnection, *args: Any, **kwargs: Any) -> list[Any]:
            return [MovedError("3999 127.0.0.1:6381")]

        monkeypatch.setattr(HeldConnection, "request", moved)
        with pytest.raises(WatchError, match="Slot rebalancing"):
            await pipe.get(key)
        assert not pipe.watching and pipe._held is None
        pool = _dedicated(client)
        assert _all_returned(pool) and not pool._idle


async def test_a_lost_connection_while_watching_stays_a_connection_error(
    own_server: RedisServer, key: str
) -> None:
    from redis.exceptions import ConnectionError

    async with open_redis_client(own_server.url) as client:
        pipe = client.pipeline()
        await pipe.watch(key)
        own_server.stop()
        with pytest.raises(ConnectionError):
            await pipe.get(key)
        assert not pipe.watching
        assert _all_returned(_dedicated(client))
