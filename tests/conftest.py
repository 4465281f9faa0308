from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import (
    FakeServer,
    RedisCluster,
    RedisSentinels,
    RedisServer,
    TLSFiles,
    redis_server_binary,
)

pytest_plugins = ["anyio", "beignet_redis_anyio.testing.pytest_plugin"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def tls_files() -> TLSFiles:
    return TLSFiles(Path(tempfile.mkdtemp(prefix="beignet-tls-")))


@pytest.fixture(scope="session")
def real_server(tls_files: TLSFiles) -> Iterator[RedisServer]:
    """The shared real server: TCP, a Unix socket, TLS, and an ACL user."""
    server = RedisServer(tls=tls_files)
    try:
        import socket

        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"ACL SETUSER alice on >wonderland ~* &* +@all\r\n")
            assert sock.recv(64).startswith(b"+OK")
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def password_server() -> Iterator[RedisServer]:
    """A real server with ``requirepass`` (AUTH with a password only)."""
    server = RedisServer(password="s3cr3t-p@ss")
    yield server
    server.close()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A real server for one test alone: free to kill and restart."""
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture(params=["fake", "real"])
def server_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs against fakeredis and a real server."""
    name = "fake_server" if request.param == "fake" else "real_server"
    return str(request.getfixturevalue(name).url)


@pytest.fixture
def key() -> str:
    """A key prefix no other test uses: tests share servers, never keys."""
    return f"test:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def beignet_redis_url(server_url: str) -> str:
    """The plugin's ``cache`` fixture, on both servers (overrides the plugin's)."""
    return server_url


@pytest.fixture(scope="session")
def cluster() -> Iterator[RedisCluster]:
    """A real 3-primary, 3-replica Redis Cluster for the session."""
    redis_server_binary()  # skip (or, in CI, fail) without redis-server
    topology = RedisCluster()
    yield topology
    topology.close()


@pytest.fixture(scope="session")
def sentinels() -> Iterator[RedisSentinels]:
    """A master, a replica and three sentinels, for the session."""
    redis_server_binary()
    topology = RedisSentinels()
    yield topology
    topology.close()


@pytest.fixture
def own_sentinels() -> Iterator[RedisSentinels]:
    """A Sentinel set-up for one test alone: free to fail over."""
    redis_server_binary()
    topology = RedisSentinels()
    yield topology
    topology.close()
