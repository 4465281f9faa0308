"""Early refresh under the cross-process lease: ``remember`` and
``remember_many`` with ``lock=True, early_refresh=True``.

A due hit must recompute the value in the background — under the lease, so
that one process across the fleet refreshes — and the value stored must be
the new one. The leader's "a value exists: use it" look (which saves a miss
from recomputing what another process has just stored) must not turn a
refresh into a no-op: during a refresh the old value is always there.
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import pytest

from beignet_redis_anyio import RedisCachePort, RedisConfig, open_redis_provider
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from helpers.observing import Observed
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio


class Counted:
    """A factory returning ``value``, counting its calls."""

    def __init__(self, value: str = "new") -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return self.value


class CountedMany:
    """A ``factory_many`` returning ``value`` for every key, recording its calls."""

    def __init__(self, value: str = "new") -> None:
        self.value = value
        self.calls: list[list[str]] = []

    async def __call__(self, keys: list[str]) -> Mapping[str, str]:
        self.calls.append(list(keys))
        return dict.fromkeys(keys, self.value)


async def _never() -> str:
    raise AssertionError("a hit that is not due computes nothing")


async def _never_many(keys: list[str]) -> Mapping[str, str]:
    raise AssertionError("a hit that is not due computes nothing")


def _config(url: str, local_cache: bool) -> RedisConfig:
    return RedisConfig(url=url, local_cache=local_cache)


async def _old_and_due(cache: RedisCachePort, full: str) -> None:
    """``full`` holds "old", and computing it took far longer than the TTL
    left: the next hit read from Redis starts a refresh (short of a
    one-in-ten-million draw)."""
    await cache.client.set(full, "old", px=60_000)
    await cache.client.set(sidecar_key(full, "meta"), "1e12", px=60_000)


def _refresh_statuses(observed: Observed) -> list[str]:
    return [e.status for e in observed.events if e.operation == "cache.refresh"]


@pytest.mark.parametrize("local_cache", [False, True], ids=["redis", "local-cache"])
async def test_remember_a_due_hit_recomputes_under_the_lease(
    real_server: RedisServer, key: str, local_cache: bool
) -> None:
    observed = Observed()
    factory = Counted()
    async with open_redis_provider(
        _config(real_server.url, local_cache), observer=observed
    ) as cache:
        full = cache.key_prefix + key
        await _old_and_due(cache, full)
        with anyio.fail_after(10):
            got = await cache.remember(key, factory, ttl_seconds=60, lock=True, early_refresh=True)
            assert got == "old"  # the hit answers at once
            await observed.refreshed.wait()
        assert factory.calls == 1
        assert await cache.client.get(full) == "new"
        assert await cache.client.get(sidecar_key(full, "lock")) is None  # let go
        # Stored with its new metadata (how long it took: not due again).
        assert float(await cache.client.get(sidecar_key(full, "meta"))) < 1e6
        assert (
            await cache.remember(key, _never, ttl_seconds=60, lock=True, early_refresh=True)
            == "new"
        )
        assert cache.in_flight == 0
    assert _refresh_statuses(observed) == ["stored"]


async def test_remember_a_due_hit_from_memory_recomputes_under_the_lease(
    real_server: RedisServer, key: str
) -> None:
    observed = Observed()
    factory = Counted()
    async with open_redis_provider(_config(real_server.url, True), observer=observed) as cache:
        full = cache.key_prefix + key
        await cache.client.set(full, "old", px=60_000)
        await cache.client.set(sidecar_key(full, "meta"), "0.001", px=60_000)  # not due
        options = {"ttl_seconds": 60, "lock": True, "early_refresh": True}
        assert await cache.remember(key, _never, **options) == "old"  # kept locally
        local = cache._local
        assert local is not None
        # The entry's metadata decides a hit from memory: make it due.
        local._entries[full].meta = "1e12"
        with anyio.fail_after(10):
            assert await cache.remember(key, factory, **options) == "old"
            await observed.refreshed.wait()
        local_hits = [e.local for e in observed.events if e.operation == "cache.remember"]
        assert local_hits == [False, True]  # the due hit came from memory
        assert factory.calls == 1
        assert await cache.client.get(full) == "new"
        assert await cache.remember(key, _never, **options) == "new"
    assert _refresh_statuses(observed) == ["stored"]


@pytest.mark.parametrize("local_cache", [False, True], ids=["redis", "local-cache"])
async def test_remember_many_a_due_hit_recomputes_under_the_lease(
    real_server: RedisServer, key: str, local_cache: bool
) -> None:
    observed = Observed()
    factory = CountedMany()
    async with open_redis_provider(
        _config(real_server.url, local_cache), observer=observed
    ) as cache:
        due, fresh = f"{key}:due", f"{key}:fresh"
        await _old_and_due(cache, cache.key_prefix + due)
        await cache.client.set(cache.key_prefix + fresh, "fresh", px=60_000)
        options = {"ttl_seconds": 60, "lock": True, "early_refresh": True}
        with anyio.fail_after(10):
            got = await cache.remember_many([due, fresh], factory, **options)
            assert got == {due: "old", fresh: "fresh"}  # the hits answer at once
            await observed.refreshed.wait()
        assert factory.calls == [[due]]
        assert await cache.client.get(cache.key_prefix + due) == "new"
        assert await cache.client.get(sidecar_key(cache.key_prefix + due, "lock")) is None
        assert await cache.remember_many([due, fresh], _never_many, **options) == {
            due: "new",
            fresh: "fresh",
        }
        assert cache.in_flight == 0
    assert _refresh_statuses(observed) == ["stored"]


async def test_another_processs_refresh_in_flight_is_not_duplicated(
    real_server: RedisServer, key: str
) -> None:
    """Still one process across the fleet refreshing: a due hit whose lease
    another process holds (its refresh is under way) does not compute."""
    observed = Observed()
    factory, many = Counted(), CountedMany()
    async with open_redis_provider(_config(real_server.url, False), observer=observed) as cache:
        single, batch = f"{key}:single", f"{key}:batch"
        for name in (single, batch):
            full = cache.key_prefix + name
            await _old_and_due(cache, full)
            await cache.client.set(sidecar_key(full, "lock"), "another-process", px=60_000)
        options = {"ttl_seconds": 60, "lock": True, "early_refresh": True}
        with anyio.fail_after(10):
            assert await cache.remember(single, factory, **options) == "old"
            await observed.refreshed.wait()
            observed.refreshed = anyio.Event()
            assert await cache.remember_many([batch], many, **options) == {batch: "old"}
            await observed.refreshed.wait()
        assert factory.calls == 0
        assert many.calls == []
        for name in (single, batch):
            full = cache.key_prefix + name
            assert await cache.client.get(full) == "old"
            assert await cache.client.get(sidecar_key(full, "lock")) == "another-process"
            await cache.client.delete(sidecar_key(full, "lock"))
        assert cache.in_flight == 0


async def test_a_refresh_leader_uses_a_value_stored_meanwhile_by_another_process(
    real_server: RedisServer, key: str
) -> None:
    """Between the hit that started the refresh and the lease, another
    process refreshed the key: the leader takes that value (it is not the
    one the refresh started from) instead of computing again; the value it
    started from is recomputed."""
    produced: list[str] = []

    async def produce() -> tuple[str, float]:
        produced.append("single")
        return "mine", 0.001

    async def store(value: str, delta: float) -> None:
        raise AssertionError("the leader stores under the lease")

    async def call(fulls: list[str]) -> tuple[dict[str, object], float]:
        produced.extend(fulls)
        return dict.fromkeys(fulls, "mine"), 0.001

    def followed(fulls: list[str]) -> None:
        raise AssertionError(f"nobody else holds {fulls}")

    async with open_redis_provider(_config(real_server.url, False)) as cache:
        moved, same = f"{cache.key_prefix}{key}:moved", f"{cache.key_prefix}{key}:same"
        await cache.client.set(moved, "refreshed elsewhere", px=60_000)
        await cache.client.set(same, "old", px=60_000)
        lease = cache._lease
        with anyio.fail_after(10):
            got = await lease.compute(
                "moved", moved, produce, store, 60_000, lambda d: "1", refreshing="old"
            )
            assert got == "refreshed elsewhere"
            assert produced == []
            led = await cache._batches._batch_lease.compute(
                [moved, same],
                {moved: "moved", same: "same"},
                call,
                followed,
                lambda: 60_000,
                lambda d: "1",
                {moved: "old", same: "old"},
            )
        assert led.outcomes == {moved: "refreshed elsewhere", same: "mine"}
        assert produced == [same]
        assert await cache.client.get(moved) == "refreshed elsewhere"
        assert await cache.client.get(same) == "mine"
        for full in (moved, same):
            assert await cache.client.get(sidecar_key(full, "lock")) is None
