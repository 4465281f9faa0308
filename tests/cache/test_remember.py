"""remember() on Redis: what only the Redis port shows — the shared first read,
the lease's sidecars, early refresh in the provider's task group, the provider
closing. The single-flight rules every port shares are in
``test_port_contract.py``."""

from __future__ import annotations

import uuid

import anyio
import pytest

from beignet_redis_anyio import RedisCachePort, RedisConfig, open_redis_provider
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from helpers.factories import Factory, append, backends_and_kinds, base_exception
from helpers.observing import Observed
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio


async def test_a_miss_stores_with_its_ttl_as_the_server_sees_it(cache: RedisCachePort) -> None:
    factory = Factory()
    factory.release.set()
    assert await cache.remember("k", factory, ttl_seconds=30) == "computed"
    assert 0 < await cache.client.pttl(cache.key_prefix + "k") <= 30_000


async def test_concurrent_callers_share_one_read(real_server: RedisServer) -> None:
    """One process, a hundred callers, a cold key: one GET and one SET reach
    Redis, not a hundred reads (single-flight merges the reads too)."""
    key = f"shared-read:{uuid.uuid4().hex[:8]}"
    async with open_redis_provider(RedisConfig(url=real_server.url)) as cache:
        await cache.client.config_resetstat()

        async def factory() -> str:
            await anyio.sleep(0.05)
            return "v"

        async with anyio.create_task_group() as tasks:
            for _ in range(100):
                tasks.start_soon(cache.remember, key, factory)
        stats = await cache.client.info("commandstats")
        await cache.delete(key)
    assert stats["cmdstat_get"]["calls"] <= 2  # a second read only if a run ended meanwhile
    assert stats["cmdstat_set"]["calls"] == 1


async def test_a_cancelled_first_reader_does_not_strand_the_others(
    real_server: RedisServer,
) -> None:
    key = f"shared-read:{uuid.uuid4().hex[:8]}"
    async with open_redis_provider(RedisConfig(url=real_server.url)) as cache:
        await cache.set(key, "cached")
        results: list[str] = []
        first_reader = anyio.CancelScope()

        async def first() -> None:
            with first_reader:
                await cache.remember(key, Factory())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                # The server sleeps, so the first reader's GET stays in flight.
                tasks.start_soon(cache.client.execute_command, "DEBUG", "SLEEP", "0.3")
                await anyio.wait_all_tasks_blocked()
                tasks.start_soon(first)
                await anyio.wait_all_tasks_blocked()
                for _ in range(5):
                    tasks.start_soon(append, results, cache.remember(key, Factory()))
                await anyio.wait_all_tasks_blocked()  # they wait for its answer
                first_reader.cancel()
        assert results == ["cached"] * 5


@pytest.mark.parametrize(
    ("anyio_backend", "kind"), backends_and_kinds("custom", "generator-exit", "stray-cancel")
)
async def test_a_background_refresh_raising_a_base_exception_fails_only_itself(
    server_url: str, key: str, anyio_backend: str, kind: str
) -> None:
    error = base_exception(kind, anyio_backend)
    observe = Observed()
    events, refreshed = observe.events, observe.refreshed

    async def failing() -> str:
        raise error

    unrelated = Factory("unrelated")
    results: list[str] = []
    async with open_redis_provider(
        RedisConfig(url=server_url, early_refresh=True), observer=observe
    ) as cache:
        await cache.set(key, "old", ttl_seconds=60)
        # As if computing it last took far longer than the TTL left: a hit
        # starts a background refresh (short of a one-in-ten-million draw).
        await cache.client.set(sidecar_key(key, "meta"), "1e12", px=60_000)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(append, results, cache.remember(f"{key}:other", unrelated))
                await unrelated.started.wait()
                assert await cache.remember(key, failing, ttl_seconds=60) == "old"
                await refreshed.wait()
                assert not unrelated.cancelled.is_set()
                unrelated.release.set()
        assert results == ["unrelated"]
        assert await cache.get(key) == "old"
        assert cache.in_flight == 0
    refreshes = [e for e in events if e.operation == "cache.refresh"]
    assert [e.status for e in refreshes] == ["error"]
    assert refreshes[0].error is not None
    assert refreshes[0].error.startswith(type(error).__name__)


async def test_the_provider_closing_mid_computation_tells_its_waiters(
    server_url: str, key: str
) -> None:
    """The one cancellation that is not the factory's failure: the provider's
    own task group closing. Waiters hear why; the provider exits cleanly."""
    factory = Factory()
    caught: list[BaseException] = []

    async def waiter(cache: RedisCachePort) -> None:
        try:
            await cache.remember(key, factory)
        except RuntimeError as exc:
            caught.append(exc)

    with anyio.fail_after(10):
        async with (
            anyio.create_task_group() as tasks,
            open_redis_provider(RedisConfig(url=server_url)) as cache,
        ):
            tasks.start_soon(waiter, cache)
            await factory.started.wait()
    assert factory.cancelled.is_set()
    assert [str(exc) for exc in caught] == [f"the provider closed while computing {key!r}"]


async def test_a_str_that_cannot_be_encoded_leaves_no_lease_behind(
    cache: RedisCachePort,
) -> None:
    lock = True
    factory = Factory("fine, then \ud800")  # a lone surrogate: no UTF-8 for it
    factory.release.set()
    with pytest.raises(ValueError, match=r"'k'.*cannot be encoded as UTF-8.*nothing was stored"):
        await cache.remember("k", factory, lock=lock)
    full_key = cache.key_prefix + "k"
    assert await cache.client.exists(full_key, sidecar_key(full_key, "lock")) == 0
    factory.value = "fine"
    assert await cache.remember("k", factory, lock=lock) == "fine"
