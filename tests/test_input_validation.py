"""Input and configuration: limits the server can honour, ASCII digits only,
and no password in any message, repr or chained exception."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from beignet_redis_anyio import (
    RedisCachePort,
    RedisConfig,
    open_redis_provider,
)
from beignet_redis_anyio._keys import sidecar_key
from beignet_redis_anyio._port import MAX_TTL_SECONDS, _ttl_milliseconds
from servers import RedisServer

pytestmark = pytest.mark.anyio

# -- 10. TTLs the server can store, checked before any I/O ------------------

TOO_LONG = [1e300, 2**63, 10**30, 1e308, 10**400, MAX_TTL_SECONDS + 0.001, MAX_TTL_SECONDS + 1]

#: Every way a TTL reaches the server: SET, SET with the early-refresh
#: metadata, and the lease's store script (with and without metadata).
PATHS = ["set", "remember", "remember_lock", "remember_early_refresh", "remember_lock_refresh"]


class RecordingFactory:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return "computed"


def _operation(
    path: str, cache: RedisCachePort, factory: RecordingFactory, ttl: object
) -> Callable[[], Awaitable[object]]:
    ttl_seconds: Any = ttl
    if path == "set":
        return lambda: cache.set("k", "v", ttl_seconds=ttl_seconds)
    lock = path in ("remember_lock", "remember_lock_refresh")
    refresh = path in ("remember_early_refresh", "remember_lock_refresh")
    return lambda: cache.remember(
        "k", factory, ttl_seconds=ttl_seconds, lock=lock, early_refresh=refresh
    )


@asynccontextmanager
async def _port(server: RedisServer, key: str, **config: Any) -> AsyncIterator[RedisCachePort]:
    async with open_redis_provider(
        RedisConfig(url=server.url, key_prefix=f"{key}:", **config)
    ) as cache:
        yield cache


async def _commands_sent(cache: RedisCachePort) -> dict[str, int]:
    """Calls per command on the server so far, INFO itself aside."""
    stats = await cache.client.info("commandstats")
    counts = {name: fields["calls"] for name, fields in stats.items() if name != "cmdstat_info"}
    assert counts  # at least the provider's PING: the stats are really read
    return counts


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ttl", TOO_LONG, ids=repr)
async def test_a_ttl_too_long_to_store_is_refused_before_any_io(
    real_server: RedisServer, key: str, path: str, ttl: object
) -> None:
    factory = RecordingFactory()
    async with _port(real_server, key, ttl_jitter=0.5) as cache:
        before = await _commands_sent(cache)
        with pytest.raises(ValueError, match="ttl_seconds"):
            await _operation(path, cache, factory, ttl)()
        assert await _commands_sent(cache) == before  # nothing reached the server
        assert factory.calls == 0
        full_key = f"{key}:k"
        assert not await cache.client.exists(
            full_key, sidecar_key(full_key, "lock"), sidecar_key(full_key, "meta")
        )


@pytest.mark.parametrize("path", PATHS)
async def test_the_longest_ttl_is_stored_on_every_path(
    real_server: RedisServer, key: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_TTL_SECONDS, stretched by the largest jitter, through SET and the
    Lua store script alike (where the TTL becomes a double)."""
    jitter = 0.999
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the longest jitter
    factory = RecordingFactory()
    async with _port(real_server, key, ttl_jitter=jitter) as cache:
        await _operation(path, cache, factory, MAX_TTL_SECONDS)()
        full_key = f"{key}:k"
        longest = round(MAX_TTL_SECONDS * 1000 * (1 + jitter))
        stored_ms = await cache.client.pttl(full_key)
        expected = MAX_TTL_SECONDS * 1000 if path == "set" else longest
        assert expected - 60_000 < stored_ms <= expected
        if "refresh" in path:
            assert expected - 60_000 < await cache.client.pttl(sidecar_key(full_key, "meta"))
        assert not await cache.client.exists(sidecar_key(full_key, "lock"))


def test_fractional_ttls_keep_millisecond_precision_up_to_the_limit() -> None:
    assert _ttl_milliseconds(MAX_TTL_SECONDS) == 10**15
    assert _ttl_milliseconds(MAX_TTL_SECONDS - 0.001) == 10**15 - 1
    assert _ttl_milliseconds(12.345) == 12_345
    assert _ttl_milliseconds(0.0001) == 1
