"""A pytest plugin: a ready cache port, every backend on request, an app's lifespan.

Enable it in your ``conftest.py``::

    pytest_plugins = ["anyio", "beignet_redis_anyio.testing.pytest_plugin"]

    @pytest.mark.anyio
    async def test_profile_is_cached(cache):
        await cache.set("user:1", "{}")
        assert await cache.has("user:1")

* ``cache``: a fresh port on a key prefix of its own per test, so tests never
  see each other's keys; when the test ends, every key under that prefix
  (and the port's sidecars) is deleted from the server — found with ``SCAN``
  on each node, a cluster's primaries included — so a real, long-lived Redis
  does not fill up. ``cache.client`` is the raw client and is not prefixed:
  keys you write through it are cleaned up only under ``cache.key_prefix``.
  The server is an embedded fakeredis started once per session; set
  ``BEIGNET_TEST_REDIS_URL`` to test against a real Redis instead, or
  override the ``beignet_redis_url`` fixture.
* ``memory_cache``: a ``MemoryCachePort``, for tests that need no server.
* ``asgi_lifespan``: ``async with asgi_lifespan(app) as running:`` runs the
  app's real lifespan (``testing/asgi.py``).
* Every backend: ``beignet_backends = asyncio uvloop trio`` in your pytest
  ini (``[tool.pytest.ini_options]``) runs every ``@pytest.mark.anyio`` test
  and its async fixtures under each backend named (``uvloop`` is asyncio on
  uvloop's event loop, what uvicorn picks when it is installed), and fails
  at once if one is not installed. It wins over any ``anyio_backend``
  fixture, except for tests that parametrize ``anyio_backend`` themselves.

Note: this ``cache`` fixture shadows pytest's built-in ``cache`` fixture
(``config.cache``) in the suites that enable the plugin.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager

import anyio
import pytest

from .. import RedisCachePort, RedisConfig, open_redis_provider
from . import EmbeddedRedis, MemoryCachePort
from ._backends import backend_params, check_backends
from .asgi import AsgiApp, RunningApp, run_asgi_lifespan
from .cleanup import delete_prefixed

#: How long the end-of-test cleanup may take before it gives up (it is
#: shielded, so it also runs when the test was cancelled).
CLEANUP_TIMEOUT = 10.0

_BACKENDS_HELP = (
    "anyio backends to run every anyio test under, of asyncio, uvloop (asyncio "
    "on uvloop's loop) and trio, e.g. 'asyncio uvloop trio' "
    "(beignet_redis_anyio's plugin; default: the anyio plugin's own choice)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("beignet_backends", _BACKENDS_HELP, type="args", default=[])


def pytest_configure(config: pytest.Config) -> None:
    """A backend asked for but not installed fails the run before any test."""
    check_backends(config.getini("beignet_backends"), "beignet_backends")


@pytest.hookimpl(tryfirst=True)  # before pytest parametrizes the anyio_backend fixture
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    backends: list[str] = metafunc.config.getini("beignet_backends")
    if not backends or "anyio_backend" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",")]
        if "anyio_backend" in names:
            return  # the test chose its backends itself
    # Module scope, as the anyio plugin's own fixture: module-scoped async
    # fixtures keep working.
    metafunc.parametrize("anyio_backend", backend_params(backends), scope="module")


@pytest.fixture(scope="session")
def beignet_redis_url() -> Iterator[str]:
    """The Redis every ``cache`` fixture of the session talks to."""
    configured = os.environ.get("BEIGNET_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def cache(beignet_redis_url: str) -> AsyncIterator[RedisCachePort]:
    """An open :class:`RedisCachePort` with a key prefix unique to this test;
    its keys are deleted when the test ends."""
    config = RedisConfig(url=beignet_redis_url, key_prefix=f"test:{uuid.uuid4().hex}:")
    async with open_redis_provider(config) as port:
        try:
            yield port
        finally:
            with anyio.CancelScope(shield=True), anyio.fail_after(CLEANUP_TIMEOUT):
                await delete_prefixed(port.client, config.key_prefix)


@pytest.fixture
def memory_cache() -> MemoryCachePort:
    """A fresh :class:`MemoryCachePort`: the port's semantics, no server."""
    return MemoryCachePort()


@pytest.fixture
def asgi_lifespan() -> Callable[[AsgiApp], AbstractAsyncContextManager[RunningApp]]:
    """``async with asgi_lifespan(app) as running:`` — the app's lifespan runs
    (its provider opens), ``running.request(...)`` sends it requests, and
    the lifespan shuts down (the provider closes) when the block ends."""
    return run_asgi_lifespan
