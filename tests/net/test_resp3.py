"""RESP3: ``protocol=3`` speaks it on every connection, shapes replies as
redis-py does under RESP3, and keeps push frames away from callers' replies.

(The whole suite also runs under RESP3: ``BEIGNET_TEST_PROTOCOL=3``.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import pytest
import redis.asyncio
from redis.exceptions import AuthenticationError, ConnectionError

from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._net.multiplexer import Multiplexer
from beignet_redis_anyio._net.settings import ConnectionSettings
from beignet_redis_anyio._net.wire import encode_command
from helpers.backends import asyncio_backends
from helpers.targets import RedisServer, serve_script

pytestmark = pytest.mark.anyio

_PUSH = b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\nnews\r\n"
_HELLO_REPLY = b"%1\r\n+proto\r\n:3\r\n"


async def test_protocol_3_speaks_resp3_on_the_connection(server_url: str, key: str) -> None:
    async with open_redis_client(server_url, protocol=3) as client:
        assert client.protocol == 3
        assert client.get_connection_kwargs()["protocol"] == 3
        await client.hset(key, mapping={"a": "1"})
        assert await client.hgetall(key) == {"a": "1"}
    async with open_redis_client(f"{server_url}?protocol=3") as client:
        assert client.protocol == 3


async def test_the_server_sees_resp3_connections(real_server: RedisServer, key: str) -> None:
    name = f"resp3-{key.rpartition(':')[2]}"
    async with open_redis_client(real_server.url, protocol=3, client_name=name) as client:
        await client.ping()
        [ours] = [c for c in await client.client_list() if c["name"] == name]
        assert ours["resp"] == "3"
    async with open_redis_client(real_server.url, protocol=2, client_name=name) as client:
        await client.ping()
        [ours] = [c for c in await client.client_list() if c["name"] == name]
        assert ours["resp"] == "2"


async def test_hello_authenticates_a_user_and_names_the_connection(
    real_server: RedisServer,
) -> None:
    url = real_server.url.replace("redis://", "redis://alice:wonderland@")
    async with open_redis_client(url, protocol=3, client_name="via-hello") as client:
        assert await client.acl_whoami() == "alice"
        assert await client.client_getname() == "via-hello"


async def test_hello_with_a_wrong_password_is_an_authentication_error(
    password_server: RedisServer,
) -> None:
    url = password_server.url.replace("s3cr3t-p@ss", "not-it")
    async with open_redis_client(url, protocol=3) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.ping()
    assert "not-it" not in str(caught.value)
    async with open_redis_client(password_server.url, protocol=3) as client:
        assert await client.ping() is True


async def test_a_server_without_hello_is_a_clear_error() -> None:
    async def old_server(command: list[bytes]) -> bytes:
        return b"-ERR unknown command 'HELLO'\r\n"

    async with anyio.create_task_group() as server:
        port = await server.start(serve_script, old_server)
        async with open_redis_client(f"redis://127.0.0.1:{port}", protocol=3) as client:
            with pytest.raises(ConnectionError, match=r"does not speak RESP3.*protocol=2"):
                await client.ping()
        server.cancel_scope.cancel()


async def _type_of(reply: Awaitable[Any]) -> str:
    return type(await reply).__name__


@pytest.mark.parametrize("anyio_backend", asyncio_backends())  # redis-py's client is asyncio's
@pytest.mark.parametrize("protocol", [2, 3])
async def test_replies_have_the_shapes_redis_py_gives(
    real_server: RedisServer, key: str, protocol: int
) -> None:
    """Commands whose replies RESP3 shapes differently, answered by ours and by
    redis-py's own client on the same data, under the same protocol."""
    calls: list[tuple[str, Callable[[Any], Any]]] = [
        ("hgetall", lambda c: c.hgetall(f"{key}:h")),
        ("zrange withscores", lambda c: c.zrange(f"{key}:z", 0, -1, withscores=True)),
        ("zscore", lambda c: c.zscore(f"{key}:z", "one")),
        ("zpopmin", lambda c: c.zrange(f"{key}:z", 0, 0, withscores=True)),
        ("zrandmember", lambda c: c.zrandmember(f"{key}:z1", 1, withscores=True)),
        ("smembers", lambda c: c.smembers(f"{key}:s")),
        ("hrandfield", lambda c: c.hrandfield(f"{key}:h1", 1, withvalues=True)),
        ("xrange", lambda c: c.xrange(f"{key}:x")),
        ("xread", lambda c: c.xread({f"{key}:x": "0"})),
        ("xinfo", lambda c: c.xinfo_stream(f"{key}:x")),
        ("config get", lambda c: c.config_get("maxmemory")),
        ("lpos", lambda c: c.lpos(f"{key}:l", "b")),
        ("blpop", lambda c: c.blpop([f"{key}:l"], timeout=1)),
        ("incrbyfloat", lambda c: c.incrbyfloat(f"{key}:f", 1.5)),
        ("geopos", lambda c: c.geopos(f"{key}:g", "here")),
        # A key's size in bytes follows the allocator's state, which other
        # tests on the same server move: its type is the reply's shape.
        ("memory usage", lambda c: _type_of(c.memory_usage(f"{key}:h"))),
        ("acl getuser", lambda c: c.acl_getuser("alice")),
        ("command docs", lambda c: c.command_getkeys("GET", "k")),
    ]

    async def seed(client: Any) -> None:
        await client.delete(
            *[f"{key}:{s}" for s in ("h", "h1", "z", "z1", "s", "x", "l", "f", "g")]
        )
        await client.hset(f"{key}:h", mapping={"a": "1", "b": "2"})
        await client.hset(f"{key}:h1", mapping={"only": "1"})
        await client.zadd(f"{key}:z", {"one": 1, "two": 2.5})
        await client.zadd(f"{key}:z1", {"only": 3})
        await client.sadd(f"{key}:s", "x", "y")
        await client.xadd(f"{key}:x", {"f": "v"}, id="1-1")
        await client.rpush(f"{key}:l", "a", "b", "c")
        await client.geoadd(f"{key}:g", (13.361389, 38.115556, "here"))

    async def answers(client: Any) -> dict[str, Any]:
        await seed(client)
        return {name: await call(client) for name, call in calls}

    theirs = redis.asyncio.Redis(port=real_server.port, protocol=protocol, decode_responses=True)
    try:
        expected = await answers(theirs)
    finally:
        await theirs.aclose()
    async with open_redis_client(real_server.url, protocol=protocol) as ours:
        got = await answers(ours)
    assert got == expected


async def _hello_then(
    stream: anyio.abc.SocketStream, after_hello: Callable[[list[bytes]], Any]
) -> None:
    import hiredis

    reader = hiredis.Reader()
    async with stream:
        try:
            while True:
                reader.feed(await stream.receive())
                while (request := reader.gets()) is not False:
                    if request[0].upper() == b"HELLO":
                        await stream.send(_HELLO_REPLY)
                    else:
                        await after_hello(request)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


@contextlib.asynccontextmanager
async def _multiplexer_for(
    serve: Callable[[anyio.abc.SocketStream], Awaitable[None]],
    on_push: Callable[[list[Any]], None],
) -> AsyncIterator[Multiplexer]:
    """A RESP3 multiplexer with ``on_push``, connected to a scripted server
    that runs ``serve`` per connection; closed, with the server, on the way out."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(listener.serve, serve)
            settings = ConnectionSettings(host="127.0.0.1", port=port, protocol=3)
            mux = Multiplexer(settings, tasks, decode=True, on_push=on_push)
            try:
                yield mux
            finally:
                await mux.aclose()
                tasks.cancel_scope.cancel()


async def test_a_push_frame_never_becomes_a_callers_reply() -> None:
    """A push ahead of a reply goes to whoever listens for pushes (here:
    nobody, so it is dropped); the caller gets its own reply."""

    async def answer(command: list[bytes]) -> bytes:
        if command[0].upper() == b"HELLO":
            return _HELLO_REPLY
        return _PUSH + b"$5\r\nvalue\r\n" + _PUSH

    async with anyio.create_task_group() as server:
        port = await server.start(serve_script, answer)
        async with open_redis_client(f"redis://127.0.0.1:{port}", protocol=3) as client:
            with anyio.fail_after(5):
                assert await client.get("k") == "value"
                assert await client.get("k") == "value"
                assert [await client.get(str(n)) for n in range(20)] == ["value"] * 20
        server.cancel_scope.cancel()


async def test_pushes_reach_the_listener_even_when_nobody_waits_for_a_reply() -> None:
    """With a push listener, the link reads all the time: a push that comes
    while no command is in flight is delivered, in order, and replies still
    go to their callers."""
    send_push = anyio.Event()
    pushes: list[list[Any]] = []
    got_two = anyio.Event()

    def on_push(frame: list[Any]) -> None:
        pushes.append(list(frame))
        if len(pushes) == 2:
            got_two.set()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async def after_hello(request: list[bytes]) -> None:
            await stream.send(_PUSH + b"+OK\r\n")
            await send_push.wait()
            await stream.send(_PUSH)

        await _hello_then(stream, after_hello)

    async with _multiplexer_for(serve, on_push) as mux:
        with anyio.fail_after(5):
            assert await mux.request(encode_command(("PING",)), 1, True) == ["OK"]
            assert len(pushes) == 1  # read with the reply, handed on first
            send_push.set()
            await got_two.wait()
        assert pushes == [["message", "c", "news"]] * 2


async def test_a_push_after_a_burst_of_one_callers_commands_is_still_delivered() -> None:
    """While one caller's commands come back to back, the reader task stands
    back (it would otherwise be woken for every reply the caller reads
    itself). Once they stop, it must read the socket again: a push that comes
    after the burst, with no command in flight, is delivered without one."""
    send_push = anyio.Event()
    pushes: list[list[Any]] = []
    got_one = anyio.Event()

    def on_push(frame: list[Any]) -> None:
        pushes.append(list(frame))
        got_one.set()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async def after_hello(request: list[bytes]) -> None:
            if request[0].upper() == b"ECHO" and request[1] == b"last":
                await stream.send(b"$4\r\nlast\r\n")
                await send_push.wait()
                await stream.send(_PUSH)
            else:
                await stream.send(b"+PONG\r\n")

        await _hello_then(stream, after_hello)

    async with _multiplexer_for(serve, on_push) as mux:
        with anyio.fail_after(10):
            for _ in range(2_000):  # several of the reader's stand-back windows
                assert await mux.request(encode_command(("PING",)), 1, True) == ["PONG"]
            assert await mux.request(encode_command(("ECHO", "last")), 1, True) == ["last"]
            assert pushes == []
            send_push.set()
            await got_one.wait()
        assert pushes == [["message", "c", "news"]]


async def test_the_provider_takes_redis_protocol(server_url: str, key: str) -> None:
    config = RedisConfig.from_env({"REDIS_URL": server_url, "REDIS_PROTOCOL": "3"})
    assert config.protocol == 3
    async with open_redis_provider(config) as cache:
        assert cache.client.protocol == 3
        await cache.set(key, "v", ttl_seconds=60)
        assert await cache.get(key) == "v"

        async def make() -> str:
            return "made"

        assert await cache.remember(f"{key}:r", make, ttl_seconds=60) == "made"


async def test_a_client_is_unnamed_unless_asked_but_the_provider_names_its_own(
    real_server: RedisServer,
) -> None:
    server_url = real_server.url  # fakeredis answers "" for a connection without a name
    async with open_redis_client(server_url) as client:
        assert await client.client_getname() is None
    async with open_redis_client(server_url, client_name="mine") as client:
        assert await client.client_getname() == "mine"
    async with open_redis_provider(RedisConfig(url=server_url)) as cache:
        assert await cache.client.client_getname() == "beignet-redis-anyio"
