"""A pytest plugin with a ready cache port: the ``cache`` fixture.

Enable it in your ``conftest.py``::

    pytest_plugins = ["anyio", "beignet_redis_anyio.testing.pytest_plugin"]

    @pytest.mark.anyio
    async def test_profile_is_cached(cache):
        await cache.set("user:1", "{}")
        assert await cache.has("user:1")

Each test gets a fresh port on its own key prefix, so tests never see each
other's keys (``cache.client`` is the raw client and is not prefixed). The
server is an embedded fakeredis started once per session; set
``BEIGNET_TEST_REDIS_URL`` to test against a real Redis instead, or override
the ``beignet_redis_url`` fixture.

Note: this ``cache`` fixture shadows pytest's built-in ``cache`` fixture
(``config.cache``) in the suites that enable the plugin.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from .. import RedisCachePort, RedisConfig, open_redis_provider
from . import EmbeddedRedis


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
    """An open :class:`RedisCachePort` with a key prefix unique to this test."""
    config = RedisConfig(url=beignet_redis_url, key_prefix=f"test:{uuid.uuid4().hex}:")
    async with open_redis_provider(config) as port:
        yield port
