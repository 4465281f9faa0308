"""``client.monitor()``: redis-py's Monitor, on a connection of its own."""

from __future__ import annotations

import anyio
import pytest
from redis.exceptions import DataError

from beignet_redis_anyio import open_redis_client
from beignet_redis_anyio._client.monitor import parse_monitor_line
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio


async def _next_with(monitor: object, needle: str) -> dict[str, object]:
    while True:
        info = await monitor.next_command()  # type: ignore[attr-defined]
        if needle in info["command"]:
            return info  # type: ignore[no-any-return]


async def test_monitor_sees_the_commands_others_send(real_server: RedisServer, key: str) -> None:
    async with open_redis_client(real_server.url) as client, client.monitor() as monitor:
        with anyio.fail_after(10):
            await client.set(key, 'say "hi"')
            info = await _next_with(monitor, key)
        assert info["command"] == f'SET {key} say "hi"'
        assert info["db"] == 0
        assert info["client_type"] == "tcp"
        assert info["client_address"] == "127.0.0.1"
        assert isinstance(info["time"], float)
        # The shared connection is not the monitor's: it still answers.
        assert await client.get(key) == 'say "hi"'


async def test_a_cancelled_next_command_keeps_the_monitors_place(
    real_server: RedisServer, key: str
) -> None:
    async with open_redis_client(real_server.url) as client, client.monitor() as monitor:
        with anyio.move_on_after(0.05):
            await _next_with(monitor, f"{key}:never")
        with anyio.fail_after(10):
            await client.get(f"{key}:after")
            info = await _next_with(monitor, f"{key}:after")
        assert info["command"] == f"GET {key}:after"


async def test_leaving_the_block_ends_the_monitor(real_server: RedisServer, key: str) -> None:
    name = f"mon-{key.rpartition(':')[2]}"
    async with open_redis_client(real_server.url, client_name=name) as client:
        async with client.monitor() as monitor:
            flags = [c["flags"] for c in await client.client_list() if c["name"] == name]
            assert "O" in flags  # the monitor's connection (flag O: MONITOR)
            await monitor.next_command()
        # Closed on our side; the server notices on its next turn, and may
        # answer CLIENT LIST first (seen under load): wait for it, bounded.
        with anyio.fail_after(5):
            while "O" in [c["flags"] for c in await client.client_list() if c["name"] == name]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        with pytest.raises(DataError, match=r"client\.monitor\(\)"):
            await client.execute_command("MONITOR")


def test_monitor_lines_parse_as_redis_py_parses_them() -> None:
    assert parse_monitor_line('1700000000.123456 [3 lua] "GET" "k"') == {
        "time": 1700000000.123456,
        "db": 3,
        "client_address": "lua",
        "client_port": "",
        "client_type": "lua",
        "command": "GET k",
    }
    unix = parse_monitor_line('1.5 [0 unix:/tmp/redis.sock] "PING"')
    assert (unix["client_address"], unix["client_port"], unix["client_type"]) == (
        "unix",
        "/tmp/redis.sock",
        "unix",
    )
    ipv6 = parse_monitor_line('1.5 [0 [::1]:6379] "PING"')
    assert (ipv6["client_address"], ipv6["client_port"]) == ("[::1]", "6379")
