"""cache.namespace: generation-counter invalidation, cluster-safe."""

from __future__ import annotations

import anyio
import pytest

from beignet_redis_anyio import Namespace, RedisCachePort, RedisConfig, open_redis_provider
from helpers.targets import RedisCluster, RedisServer

pytestmark = pytest.mark.anyio


async def test_invalidate_makes_every_key_unreachable_at_once(cache: RedisCachePort) -> None:
    users, posts = cache.namespace("users"), cache.namespace("posts")
    await users.set("1", "alice")
    await users.json.set("2", {"name": "bob"})
    await posts.set("1", "hello")
    await cache.set("1", "plain")
    assert await users.get("1") == "alice" and await users.has("2")
    assert await users.invalidate()
    assert await users.get("1") is None
    assert await users.json.get("2") is None
    assert await posts.get("1") == "hello"  # other namespaces untouched
    assert await cache.get("1") == "plain"  # and keys outside any namespace
    await users.set("1", "carol")
    assert await users.get("1") == "carol"
    assert await users.delete("1") and not await users.delete("1")


async def test_keys_carry_the_generation_and_nothing_is_deleted(cache: RedisCachePort) -> None:
    ns = cache.namespace("users")
    await ns.set("1", "alice", ttl_seconds=60)
    assert await cache.get("users#0:1") == "alice"
    await ns.invalidate()
    assert await cache.get("users#generation") == "1"
    assert await cache.get("users#0:1") == "alice"  # unreachable, expiring by its TTL
    await ns.set("1", "bob")
    assert await cache.get("users#1:1") == "bob"


async def test_remember_single_flight_holds_in_a_namespace(cache: RedisCachePort) -> None:
    ns = cache.namespace("users")
    calls = 0
    release = anyio.Event()

    async def factory() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "v"

    results: list[str] = []

    async def caller() -> None:
        results.append(await ns.remember("k", factory, ttl_seconds=30))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            for _ in range(200):
                tasks.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert calls == 1 and results == ["v"] * 200


async def test_concurrent_callers_share_one_generation_read(cache: RedisCachePort) -> None:
    reads = 0
    original = cache._generation

    async def counting(key: str, increment: int) -> int | None:
        nonlocal reads
        reads += increment == 0
        return await original(key, increment)

    cache._generation = counting  # type: ignore[method-assign]
    ns = cache.namespace("users", generation_ttl_seconds=3600)
    async with anyio.create_task_group() as tasks:
        for _ in range(100):
            tasks.start_soon(ns.get, "k")
    assert reads == 1
    await ns.get("k")
    assert reads == 1  # still fresh


async def test_a_cancelled_generation_reader_does_not_strand_the_others(
    cache: RedisCachePort,
) -> None:
    first = True
    entered = anyio.Event()
    original = cache._generation

    async def blocking_once(key: str, increment: int) -> int | None:
        nonlocal first
        if first:
            first = False
            entered.set()
            await anyio.sleep_forever()
        return await original(key, increment)

    ns = cache.namespace("users", generation_ttl_seconds=0)  # every call reads
    await ns.set("k", "v")
    cache._generation = blocking_once  # type: ignore[method-assign]
    results: list[str | None] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            reader = anyio.CancelScope()

            async def cancelled_reader() -> None:
                with reader:
                    await ns.get("k")

            async def other() -> None:
                results.append(await ns.get("k"))

            tasks.start_soon(cancelled_reader)
            await entered.wait()
            for _ in range(3):
                tasks.start_soon(other)
            await anyio.wait_all_tasks_blocked()
            reader.cancel()
    assert results == ["v"] * 3


async def test_views_of_one_namespace_see_an_invalidation_at_once(cache: RedisCachePort) -> None:
    one = cache.namespace("users", generation_ttl_seconds=3600)
    two = cache.namespace("users", generation_ttl_seconds=3600)
    await one.set("k", "v")
    assert await two.get("k") == "v"
    await two.invalidate()
    assert await one.get("k") is None


async def test_another_process_sees_it_within_the_generation_ttl(server_url: str, key: str) -> None:
    name = f"{key}:ns"
    async with (
        open_redis_provider(RedisConfig(url=server_url)) as here,
        open_redis_provider(RedisConfig(url=server_url)) as there,
    ):
        await here.namespace(name).set("k", "v")
        stale = there.namespace(name, generation_ttl_seconds=3600)
        fresh = there.namespace(name + "x")  # noqa: F841 (another name: its own state)
        assert await stale.get("k") == "v"
        await here.namespace(name).invalidate()
        assert await stale.get("k") == "v"  # the documented staleness window
        # A provider that reads the generation on every call sees it at once.
        async with open_redis_provider(RedisConfig(url=server_url)) as third:
            assert await third.namespace(name, generation_ttl_seconds=0).get("k") is None


async def test_a_nested_namespace_goes_with_its_parent(cache: RedisCachePort) -> None:
    tenant = cache.namespace("tenant-1")
    users = tenant.namespace("users")
    await users.set("1", "alice")
    assert await users.get("1") == "alice"
    await tenant.invalidate()
    assert await users.get("1") is None


async def test_conveniences_compose_in_a_namespace(cache: RedisCachePort) -> None:
    ns = cache.namespace("profiles")

    @ns.cached(key="p:{user_id}")
    async def profile(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    assert await profile(1) == {"id": 1}
    assert await ns.json.get("p:1") == {"id": 1}
    await ns.invalidate()
    assert await ns.json.get("p:1") is None


async def test_bad_names_and_keys_fail_before_any_io(cache: RedisCachePort) -> None:
    with pytest.raises(ValueError, match="namespace name"):
        cache.namespace("")
    with pytest.raises(ValueError, match="namespace name"):
        cache.namespace("a#b")
    with pytest.raises(TypeError, match="namespace name"):
        cache.namespace(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="generation_ttl_seconds"):
        cache.namespace("a", generation_ttl_seconds=-1)
    with pytest.raises(ValueError, match="must not be empty"):
        await cache.namespace("a").get("")
    assert not await cache.has("a#generation")


async def test_a_port_without_an_atomic_counter_has_no_namespaces() -> None:
    class Plain:
        async def get(self, key: str) -> str | None:
            return None

    with pytest.raises(TypeError, match="no atomic counter"):
        Namespace(Plain(), "users")


async def test_on_a_cluster(cluster: RedisCluster, key: str) -> None:
    async with open_redis_provider(RedisConfig(url=cluster.url)) as cache:
        # Many keys, so they spread over the slots: each operation is one key.
        users = cache.namespace(f"{key}:users")
        for i in range(20):
            await users.set(str(i), f"v{i}", ttl_seconds=60)

        async def factory() -> str:
            return "computed"

        assert await users.remember("r", factory, ttl_seconds=60) == "computed"
        assert [await users.get(str(i)) for i in range(20)] == [f"v{i}" for i in range(20)]
        assert await users.invalidate()
        assert [await users.get(str(i)) for i in range(20)] == [None] * 20
        assert await users.get("r") is None


async def test_under_bypass_an_outage_is_a_miss_and_invalidate_says_false(
    own_server: RedisServer,
) -> None:
    config = RedisConfig(url=own_server.url, failure_policy="bypass", command_timeout=0.5)
    async with open_redis_provider(config) as cache:
        known = cache.namespace("known")
        await known.set("k", "v")
        own_server.stop()

        async def factory() -> str:
            return "computed"

        with anyio.fail_after(20):
            assert await known.get("k") is None  # the port bypassed
            assert not await known.invalidate()
            unknown = cache.namespace("unknown")  # never read: no generation known
            assert await unknown.get("k") is None
            assert await unknown.remember("k", factory) == "computed"
            assert not await unknown.has("k")
