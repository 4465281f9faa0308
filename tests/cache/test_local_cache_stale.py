"""``local_cache_stale_if_error``: while Redis cannot be reached, the bypass
serves what the local cache held when the connection was lost — and never
once Redis answers again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from redis.exceptions import ConnectionError

from beignet_redis_anyio import (
    CacheEvent,
    ConfigError,
    RedisConfig,
    open_redis_client,
    open_redis_provider,
)
from beignet_redis_anyio._cache.local import ABSENT, LocalCache
from beignet_redis_anyio._cache.port import RedisCachePort
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _stale_if_error(
    url: str, events: list[CacheEvent] | None = None, **options: Any
) -> AsyncIterator[RedisCachePort]:
    config = RedisConfig(
        url=url,
        local_cache=True,
        failure_policy="bypass",
        connect_timeout=1,
        # The breaker would answer for Redis after a few failures: kept shut,
        # so that every call here asks.
        **{"local_cache_stale_if_error": True, "breaker_threshold": 1000, **options},
    )
    observer = None if events is None else events.append
    async with open_redis_provider(config, observer=observer) as cache:
        yield cache


async def _until_lost(cache: RedisCachePort) -> None:
    """Until the reader knows its connection is gone (its server was stopped)."""
    with anyio.fail_after(10):
        while True:
            try:
                await cache.client.ping()
            except ConnectionError:
                return
            await anyio.sleep(0.01)  # the EOF is on its way


async def _until_back(cache: RedisCachePort) -> None:
    with anyio.fail_after(30):
        while True:
            try:
                await cache.client.ping()
                return
            except ConnectionError:
                await anyio.sleep(0.05)  # the reconnect's backoff


async def test_an_outage_serves_what_was_held_and_reports_it(
    own_server: RedisServer, key: str
) -> None:
    events: list[CacheEvent] = []
    async with _stale_if_error(own_server.url, events) as cache:
        await cache.set(key, "held")
        assert await cache.get(key) == "held"
        assert await cache.get(f"{key}:missing") is None  # held as missing
        own_server.stop()
        await _until_lost(cache)
        del events[:]

        async def factory() -> str:
            raise AssertionError("a stale value is served without computing")

        assert await cache.get(key) == "held"
        assert await cache.has(key) is True
        assert await cache.remember(key, factory) == "held"
        assert await cache.get(f"{key}:missing") is None
        assert await cache.get(f"{key}:never-read") is None  # the plain bypass
        assert [(e.operation, e.status, e.local, e.stale) for e in events] == [
            ("cache.get", "hit", True, True),
            ("cache.has", "hit", True, True),
            ("cache.remember", "hit", True, True),
            ("cache.get", "miss", True, True),
            ("cache.get", "error", False, False),
        ]
        assert all(e.error for e in events)  # each names why Redis did not answer
        stats = cache.local_stats
        assert stats is not None
        assert (stats.stale_hits, stats.entries) == (4, 0)  # in doubt: no plain hit
        own_server.start()


async def test_once_redis_answers_again_nothing_stale_is_served(
    own_server: RedisServer, key: str
) -> None:
    other = f"{key}:other"
    async with _stale_if_error(own_server.url) as cache:
        for name in (key, other):
            await cache.set(name, "old")
            assert await cache.get(name) == "old"
        own_server.stop()
        await _until_lost(cache)
        assert await cache.get(key) == "old"
        own_server.start()  # empty: the restart lost the data
        await _until_back(cache)
        assert await cache.get(key) is None  # Redis's answer, not the stale one
        own_server.stop()  # a second outage; `other` was not read in between
        await _until_lost(cache)
        assert await cache.get(other) is None
        own_server.start()


async def test_a_write_during_the_outage_drops_the_stale_entry(
    own_server: RedisServer, key: str
) -> None:
    """The process's own write may have landed: what it held is not served."""
    async with _stale_if_error(own_server.url) as cache:
        await cache.set(key, "before")
        assert await cache.get(key) == "before"
        own_server.stop()
        await _until_lost(cache)
        await cache.set(key, "during")  # bypassed
        assert await cache.get(key) is None
        await cache.set(f"{key}:2", "x")
        own_server.start()


async def test_without_it_an_outage_serves_nothing_held(own_server: RedisServer, key: str) -> None:
    async with open_redis_provider(
        RedisConfig(url=own_server.url, local_cache=True, failure_policy="bypass")
    ) as cache:
        await cache.set(key, "held")
        assert await cache.get(key) == "held"
        own_server.stop()
        await _until_lost(cache)
        assert await cache.get(key) is None
        own_server.start()


async def test_writes_by_others_are_still_seen_while_connected(
    real_server: RedisServer, key: str
) -> None:
    async with (
        _stale_if_error(real_server.url) as cache,
        open_redis_client(real_server.url) as other,
    ):
        await other.set(key, "old")
        assert await cache.get(key) == "old"
        await other.set(key, "new")
        await cache.client.ping()
        assert await cache.get(key) == "new"


def test_an_expired_entry_is_not_served_stale() -> None:
    local = LocalCache(max_entries=10, max_bytes=1 << 20, ttl=60, stale_if_error=True)
    local.finish("k", local.begin("k"), True, "v", -1)
    local.lost()
    assert local.stale("k") == "v"
    local._doubtful["k"].expires = 0.0  # as if its time had come
    assert local.stale("k") is ABSENT


def test_set_aside_entries_count_in_the_bounds_and_go_first() -> None:
    local = LocalCache(max_entries=3, max_bytes=1 << 20, ttl=60, stale_if_error=True)
    for key in ("a", "b", "c"):
        local.finish(key, local.begin(key), True, key, -1)
    local.lost()
    # (On a cluster, other nodes' reads go on while one node's are set aside.)
    local.finish("d", local.begin("d"), True, "d", -1)
    assert local.stale("a") is ABSENT  # evicted first
    assert [local.stale(key) for key in "bcd"] == ["b", "c", "d"]
    assert local.stats().evictions == 1
    local.flush()
    assert local.stats().bytes == 0
    assert [local.stale(key) for key in "bcd"] == [ABSENT] * 3


def test_the_option_needs_the_local_cache_and_the_bypass() -> None:
    with pytest.raises(ConfigError, match="needs REDIS_LOCAL_CACHE=true and REDIS_FAILURE"):
        RedisConfig(url="redis://h", local_cache_stale_if_error=True)
    with pytest.raises(ConfigError, match="needs REDIS_LOCAL_CACHE=true and REDIS_FAILURE"):
        RedisConfig(url="redis://h", local_cache=True, local_cache_stale_if_error=True)
    with pytest.raises(ConfigError, match="REDIS_LOCAL_CACHE_STALE_IF_ERROR must be true or"):
        RedisConfig(
            url="redis://h",
            local_cache=True,
            failure_policy="bypass",
            local_cache_stale_if_error="yes",  # type: ignore[arg-type]
        )
    config = RedisConfig.from_env(
        {
            "REDIS_URL": "redis://h",
            "REDIS_LOCAL_CACHE": "true",
            "REDIS_FAILURE_POLICY": "bypass",
            "REDIS_LOCAL_CACHE_STALE_IF_ERROR": "true",
        }
    )
    assert config.local_cache_stale_if_error is True


async def test_a_frozen_server_serves_what_was_held_once_the_connection_is_dropped(
    own_server: RedisServer, key: str
) -> None:
    async with _stale_if_error(own_server.url, command_timeout=0.5) as cache:
        await cache.set(key, "held")
        assert await cache.get(key) == "held"
        own_server.freeze()
        try:
            assert await cache.get(key) == "held"  # a plain hit: nothing in doubt yet
            # A read that waits out the timeout; the silent connection is dropped.
            assert await cache.get(f"{key}:unheld") is None
            with anyio.fail_after(10):
                while cache.local_stats.entries:  # type: ignore[union-attr]  # noqa: ASYNC110
                    await anyio.sleep(0.05)  # the watchdog's verdict; no event to await
            assert await cache.get(key) == "held"  # now served in doubt
            assert cache.local_stats.stale_hits >= 1  # type: ignore[union-attr]
        finally:
            own_server.thaw()
        await _until_back(cache)
        assert await cache.get(key) == "held"  # read from Redis again
        assert cache.local_stats.entries == 1  # type: ignore[union-attr]
