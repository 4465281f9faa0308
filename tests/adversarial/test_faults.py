"""Lost connections, restarts and hung servers: fail clearly, recover, never hang."""

from __future__ import annotations

import anyio
import pytest
from redis.exceptions import ConnectionError, TimeoutError

from beignet_redis_anyio import open_redis_client
from helpers.targets import RedisServer, serve_script

pytestmark = pytest.mark.anyio


async def _until_it_answers(client, value: str) -> None:  # type: ignore[no-untyped-def]
    """The first command after a drop may still race the drop; the one after
    that must succeed."""
    try:
        assert await client.echo(value) == value
    except ConnectionError:
        assert await client.echo(value) == value


async def test_client_kill_recovers_on_the_next_command(real_server: RedisServer) -> None:
    async with (
        open_redis_client(real_server.url, client_name="victim") as client,
        open_redis_client(real_server.url, client_name="killer") as killer,
    ):
        client_id = await client.client_id()
        with anyio.fail_after(10):
            assert await killer.client_kill_filter(_id=client_id) == 1
            await _until_it_answers(client, "back")
            assert await client.client_id() != client_id
            assert await client.client_getname() == "victim"


async def test_in_flight_commands_fail_and_are_never_replayed(
    real_server: RedisServer, key: str
) -> None:
    async with (
        open_redis_client(real_server.url, client_name="victim") as client,
        open_redis_client(real_server.url) as killer,
    ):
        client_id = await client.client_id()
        errors: list[BaseException] = []
        sent = anyio.Event()

        async def in_flight() -> None:
            sent.set()
            try:
                await client.set(key, "in flight")
            except ConnectionError as exc:
                errors.append(exc)

        with anyio.fail_after(10):
            # The server holds write commands while paused, but still serves
            # the killer's CLIENT KILL: our SET is in flight when the link dies.
            await killer.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
            try:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(in_flight)
                    await sent.wait()
                    # The server's view has no event to await: poll it.
                    while not any(  # noqa: ASYNC110
                        c["name"] == "victim" and c["cmd"] == "set"
                        for c in await killer.client_list()
                    ):
                        await anyio.sleep(0.01)
                    await killer.client_kill_filter(_id=client_id)
            finally:
                await killer.execute_command("CLIENT", "UNPAUSE")
            assert len(errors) == 1
            assert "127.0.0.1" in str(errors[0])
            await _until_it_answers(client, "recovered")
            # Not silently replayed on the new connection.
            assert await client.get(key) is None


async def test_server_restart_mid_run(own_server: RedisServer, key: str) -> None:
    async with open_redis_client(own_server.url, connect_timeout=2) as client:
        await client.set(key, "before")
        with anyio.fail_after(30):
            own_server.stop()
            with pytest.raises(ConnectionError):
                await client.get(key)
            # While it is down: clear, prompt failures — never a hang.
            with pytest.raises(ConnectionError):
                await client.get(key)
            own_server.start()
            recovered = None
            for _ in range(50):  # reconnect backoff may hold the first tries
                try:
                    recovered = await client.set(key, "after")
                    break
                except ConnectionError:
                    await anyio.sleep(0.1)
            assert recovered is True
            assert await client.get(key) == "after"


async def _answers_the_handshake_only(command: list[bytes]) -> bytes:
    """The handshake (PING, or HELLO under RESP3) is answered, then never a
    word again: a hung server."""
    name = command[0].upper()
    if name == b"PING":
        return b"+PONG\r\n"
    if name == b"HELLO":
        return b"%1\r\n+proto\r\n:3\r\n"
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


async def test_a_hung_server_never_holds_a_caller_past_its_timeout() -> None:
    async with anyio.create_task_group() as server:
        port = await server.start(serve_script, _answers_the_handshake_only)
        async with open_redis_client(f"redis://127.0.0.1:{port}", command_timeout=0.2) as client:
            with anyio.fail_after(5):
                with pytest.raises(TimeoutError, match="Timeout reading"):
                    await client.get("k")
                # The silent connection was dropped; the next command opens a
                # new one (which the hung server also ignores): same clear error.
                with pytest.raises(TimeoutError):
                    await client.get("k")
        server.cancel_scope.cancel()


async def test_exit_is_prompt_even_with_commands_in_flight() -> None:
    async with anyio.create_task_group() as server:
        port = await server.start(serve_script, _answers_the_handshake_only)
        with anyio.fail_after(5):
            async with (
                open_redis_client(f"redis://127.0.0.1:{port}", command_timeout=None) as client,
                anyio.create_task_group() as tasks,
            ):
                tasks.start_soon(client.get, "never answered")
                await anyio.wait_all_tasks_blocked()  # the GET is on the wire
                tasks.cancel_scope.cancel()
        server.cancel_scope.cancel()


async def test_an_exception_in_the_block_comes_out_as_itself(server_url: str) -> None:
    async def use_and_fail() -> None:
        async with open_redis_client(server_url) as client:
            await client.ping()
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await use_and_fail()
