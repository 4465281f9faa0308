"""The launcher users (and our tests and bench) get from ``beignet_redis_anyio.testing.servers``."""

from __future__ import annotations

import pytest

from beignet_redis_anyio.testing import servers as launcher
from beignet_redis_anyio.testing.servers import (
    RedisServer,
    ServerNotFound,
    command,
    encode_command,
)
from helpers.targets import server_binary


def test_encode_command() -> None:
    assert encode_command("SET", b"k", 10, "é") == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n10\r\n$2\r\n\xc3\xa9\r\n"
    )


@pytest.mark.parametrize("flavour", ["redis", "valkey"])
def test_a_server_stops_starts_and_answers_whole_replies(flavour: str) -> None:
    binary = server_binary(flavour)  # type: ignore[arg-type]
    big = "x" * 200_000  # more than one recv
    with RedisServer(binary=binary) as server:
        assert command(server.port, "SET", "k", big) == b"+OK\r\n"
        server.restart()  # no persistence: a restart forgets
        assert command(server.port, "GET", "k") == b"$-1\r\n"
        assert command(server.port, "RPUSH", "l", "a", big) == b":2\r\n"
        assert command(server.port, "LRANGE", "l", 0, -1) == (
            b"*2\r\n$1\r\na\r\n$200000\r\n" + big.encode() + b"\r\n"
        )
        directory = server.dir
    assert server.process is None
    assert not directory.exists()


def test_a_missing_binary_is_said_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "find_server", lambda flavour: None)
    with pytest.raises(ServerNotFound, match="valkey-server is not installed"):
        RedisServer(flavour="valkey")


def test_a_cluster_node_s_ports_are_none_an_outgoing_connection_could_take() -> None:
    """A port checked free can be taken, before the node binds it, by any
    client's outgoing connection if it lies in the kernel's range for those:
    the node then exits, and every test of its cluster with it."""
    ephemeral = launcher._ephemeral_ports()
    for _ in range(50):
        port = launcher.free_cluster_port()
        assert port not in ephemeral
        assert port + 10000 not in ephemeral
        assert port < 20000 <= port + 10000  # no bus port is another node's port
