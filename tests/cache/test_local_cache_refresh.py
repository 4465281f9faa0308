"""``remember(early_refresh=True)`` with the local cache: the XFetch inputs
(the sidecar's metadata and the key's remaining TTL) are kept beside the
entry, so a hit decides from memory whether to refresh."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from beignet_redis_anyio import CacheEvent, RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._cache.local import ABSENT
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio


async def _calls(client: Any, command: str) -> int:
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def _config(url: str) -> RedisConfig:
    return RedisConfig(url=url, local_cache=True, early_refresh=True)


async def _never() -> str:
    raise AssertionError("a hit that is not due computes nothing")


async def test_hits_come_from_memory_and_decide_there(real_server: RedisServer, key: str) -> None:
    events: list[CacheEvent] = []
    async with (
        open_redis_provider(_config(real_server.url), observer=events.append) as cache,
        open_redis_client(real_server.url) as other,
    ):
        await other.set(key, "v", ex=3600)
        await other.set(sidecar_key(key, "meta"), "0.001", ex=3600)  # a 1 µs computation
        assert await cache.remember(key, _never, ttl_seconds=3600) == "v"  # from Redis
        gets = await _calls(other, "get")
        for _ in range(50):
            assert await cache.remember(key, _never, ttl_seconds=3600) == "v"
        assert await _calls(other, "get") == gets  # nothing left the process
    remembered = [(e.status, e.local) for e in events if e.operation == "cache.remember"]
    assert remembered == [("hit", False)] + [("hit", True)] * 50


async def test_a_local_hit_that_is_due_refreshes_in_the_background(
    real_server: RedisServer, key: str
) -> None:
    refreshed = anyio.Event()
    events: list[CacheEvent] = []

    def observe(event: CacheEvent) -> None:
        events.append(event)
        if event.operation == "cache.refresh":
            refreshed.set()

    async def new() -> str:
        return "new"

    async with (
        open_redis_provider(_config(real_server.url), observer=observe) as cache,
        open_redis_client(real_server.url) as other,
    ):
        await other.set(key, "old", ex=3600)
        await other.set(sidecar_key(key, "meta"), "0.001", ex=3600)
        assert await cache.remember(key, _never, ttl_seconds=3600) == "old"  # kept locally
        # As if computing it took far longer than the TTL left: the next hit,
        # from memory, is due (the entry's metadata is what decides).
        local = cache._local
        assert local is not None
        found = local.lookup_refreshable(key)
        assert found is not ABSENT and found[0] == "old"
        local._entries[key].meta = "1e12"
        with anyio.fail_after(10):
            assert await cache.remember(key, new, ttl_seconds=3600) == "old"  # at once
            await refreshed.wait()
        assert [(e.status, e.local) for e in events if e.operation == "cache.remember"][-1] == (
            "hit",
            True,
        )
        # The refreshed value replaced the local one.
        assert await cache.remember(key, _never, ttl_seconds=3600) == "new"
        assert await other.get(key) == "new"


async def test_an_entry_read_by_get_is_read_again_once_with_its_metadata(
    real_server: RedisServer, key: str
) -> None:
    async with (
        open_redis_provider(_config(real_server.url)) as cache,
        open_redis_client(real_server.url) as other,
    ):
        await other.set(key, "v", ex=3600)
        assert await cache.get(key) == "v"  # kept, but without the XFetch inputs
        gets = await _calls(other, "get")
        assert await cache.remember(key, _never, ttl_seconds=3600) == "v"
        assert await _calls(other, "get") == gets + 2  # the value and its sidecar, once
        assert await cache.remember(key, _never, ttl_seconds=3600) == "v"
        assert await _calls(other, "get") == gets + 2


async def test_another_clients_write_is_seen_after_one_round_trip(
    real_server: RedisServer, key: str
) -> None:
    async with (
        open_redis_provider(_config(real_server.url)) as cache,
        open_redis_client(real_server.url) as writer,
    ):
        await writer.set(key, "v0", ex=3600)
        for round_ in range(1, 60):
            assert await cache.remember(key, _never, ttl_seconds=3600) == f"v{round_ - 1}"
            assert await cache.remember(key, _never, ttl_seconds=3600) == f"v{round_ - 1}"
            await writer.set(key, f"v{round_}", ex=3600)
            assert await cache.client.ping()  # the reader's one round trip
        stats = cache.local_stats
        assert stats is not None and stats.hits >= 59 and stats.invalidations >= 59


async def test_the_remaining_ttl_is_the_keys_own(real_server: RedisServer, key: str) -> None:
    async with (
        open_redis_provider(_config(real_server.url)) as cache,
        open_redis_client(real_server.url) as other,
    ):
        await other.set(key, "v", px=50_000)
        await other.set(sidecar_key(key, "meta"), "0.001", px=50_000)
        assert await cache.remember(key, _never, ttl_seconds=3600) == "v"
        local = cache._local
        assert local is not None
        found = local.lookup_refreshable(key)
        assert found is not ABSENT
        value, meta, remaining_ms = found
        assert (value, meta) == ("v", 0.001)  # kept parsed
        assert 40_000 < remaining_ms <= 50_000


# -- the decision itself --------------------------------------------------------


@pytest.mark.parametrize("meta", ["0.5", b"0.5", 0.5])
def test_a_hit_is_due_only_where_some_draw_could_make_it(
    monkeypatch: pytest.MonkeyPatch, meta: Any
) -> None:
    """XFetch's draw is ``1 - random.random()``, at least 2**-53: the most
    it can stretch ``delta * beta`` is ``-ln(2**-53)``, about 36.74 times.
    With the most extreme draw, a hit just inside that reach is due; one
    past it is decided without a draw at all, and is not."""
    import random

    from beignet_redis_anyio._cache.remember.refresh import meta_delta, refresh_due

    draws: list[int] = []

    def extreme() -> float:
        draws.append(1)
        return 1.0 - 2.0**-53

    monkeypatch.setattr(random, "random", extreme)
    delta, beta = 0.5, 2.0
    assert meta_delta(meta) == delta
    reach = delta * beta * 36.7
    assert refresh_due(meta, int(reach) - 1, beta) is True
    assert draws == [1]
    assert refresh_due(meta, int(delta * beta * 36.8) + 1, beta) is False
    assert draws == [1]  # no draw was needed to know


@pytest.mark.parametrize("meta", [None, "", "nan", "inf", "-1", b"\xff", "1e400"])
def test_metadata_another_program_wrote_never_refreshes(meta: Any) -> None:
    from beignet_redis_anyio._cache.remember.refresh import meta_delta, refresh_due

    assert meta_delta(meta) is None
    assert refresh_due(meta, 1, 1.0) is False
