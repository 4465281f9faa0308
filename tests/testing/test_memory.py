"""What only the test double has: its clock, its lack of a client, early
refresh in the caller, and the one place hosting a run in its first caller
shows. Everything it shares with the Redis port is in ``test_port_contract.py``."""

from __future__ import annotations

import anyio
import pytest

from beignet_redis_anyio import CachePort
from beignet_redis_anyio.testing import MemoryCachePort
from helpers.factories import Factory
from helpers.observing import Observed

pytestmark = pytest.mark.anyio


class Clock:
    """A clock the test moves: ``clock.now += 5``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_it_needs_no_arguments_and_is_a_cache_port() -> None:
    port = MemoryCachePort()
    assert isinstance(port, CachePort)
    assert repr(port) == "<MemoryCachePort 0 key(s)>"


def test_client_says_there_is_no_redis_behind_it() -> None:
    port = MemoryCachePort()
    with pytest.raises(
        AttributeError, match=r"MemoryCachePort has no Redis client.*`cache` fixture"
    ):
        _ = port.client
    assert getattr(port, "client", None) is None


async def test_ttls_follow_the_clock_it_is_given() -> None:
    clock = Clock()
    cache = MemoryCachePort(clock=clock)
    await cache.set("k", "v", ttl_seconds=10)
    await cache.set("forever", "v")
    clock.now += 9.999
    assert await cache.get("k") == "v"
    clock.now += 0.001
    assert await cache.get("k") is None
    assert await cache.has("k") is False
    assert await cache.delete("k") is False
    clock.now += 10**9
    assert await cache.get("forever") == "v"


async def test_remember_recomputes_after_its_ttl() -> None:
    clock = Clock()
    cache = MemoryCachePort(clock=clock)
    factory = Factory()
    factory.release.set()
    assert await cache.remember("k", factory, ttl_seconds=60) == "computed"
    clock.now += 59
    assert await cache.remember("k", factory, ttl_seconds=60) == "computed"
    assert factory.calls == 1
    clock.now += 1
    assert await cache.remember("k", factory, ttl_seconds=60) == "computed"
    assert factory.calls == 2


async def test_keys_carry_the_prefix_and_leave_out_expired_ones() -> None:
    clock = Clock()
    cache = MemoryCachePort(clock=clock, key_prefix="svc:")
    await cache.set("a", "1", ttl_seconds=1)
    await cache.set("b", "2")
    assert sorted(cache.keys()) == ["svc:a", "svc:b"]
    clock.now += 1
    assert cache.keys() == ["svc:b"]
    cache.clear()
    assert cache.keys() == [] and await cache.get("b") is None


def test_a_key_prefix_must_be_text() -> None:
    with pytest.raises(TypeError, match="key_prefix must be a str"):
        MemoryCachePort(key_prefix=b"svc:")  # type: ignore[arg-type]


async def test_a_cancelled_first_caller_leaves_when_the_run_ends() -> None:
    """The documented difference: the first caller hosts the run, so when it
    is cancelled while others wait it stops waiting but returns (cancelled)
    only once the run ends; the others still get the value."""
    cache = MemoryCachePort()
    factory = Factory()
    first_scope = anyio.CancelScope()
    first_left = anyio.Event()
    results: list[str] = []

    async def first() -> None:
        with first_scope:
            await cache.remember("k", factory)
        first_left.set()

    async def other() -> None:
        results.append(await cache.remember("k", factory))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first)
            await factory.started.wait()
            tasks.start_soon(other)
            await anyio.wait_all_tasks_blocked()
            first_scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert not first_left.is_set()
            assert not factory.cancelled.is_set()
            factory.release.set()
            await first_left.wait()
    assert results == ["computed"]
    assert factory.calls == 1


async def test_early_refresh_recomputes_a_hit_near_expiry_in_the_caller() -> None:
    clock = Clock()
    observe = Observed()
    cache = MemoryCachePort(clock=clock, observer=observe, early_refresh=True)
    values = iter(["first", "second"])

    async def slow() -> str:
        clock.now += 30  # computing it "takes" 30 seconds of this clock
        return next(values)

    assert await cache.remember("k", slow, ttl_seconds=60) == "first"
    # XFetch recomputes when -delta * beta * ln(rand) >= time left: with 30 s
    # to compute and 1 ms left, short of a one-in-e**30000 draw it does.
    clock.now += 60 - 0.001
    assert await cache.remember("k", slow, ttl_seconds=60) == "first"  # the hit it found
    assert await cache.get("k") == "second"
    refreshes = [(e.operation, e.status) for e in observe.events if e.operation == "cache.refresh"]
    assert refreshes == [("cache.refresh", "stored")]


async def test_early_refresh_is_off_unless_asked_and_needs_a_ttl() -> None:
    clock = Clock()
    factory = Factory()
    factory.release.set()
    for cache, ttl in ((MemoryCachePort(clock=clock), 60), (MemoryCachePort(clock=clock), None)):
        await cache.remember("k", factory, ttl_seconds=ttl, early_refresh=ttl is None)
        clock.now += 59.999
        await cache.remember("k", factory, ttl_seconds=ttl, early_refresh=ttl is None)
        clock.now -= 59.999
    assert factory.calls == 2  # once per port: never refreshed


async def test_a_failed_early_refresh_keeps_the_old_value_and_is_reported() -> None:
    clock = Clock()
    observe = Observed()
    cache = MemoryCachePort(clock=clock, observer=observe)

    async def slow() -> str:
        clock.now += 30
        return "old"

    async def failing() -> str:
        raise LookupError("database said no")

    await cache.remember("k", slow, ttl_seconds=60, early_refresh=True)
    clock.now += 60 - 0.001
    assert await cache.remember("k", failing, ttl_seconds=60, early_refresh=True) == "old"
    assert await cache.get("k") == "old"
    refreshes = [e for e in observe.events if e.operation == "cache.refresh"]
    assert [e.status for e in refreshes] == ["error"]
    assert refreshes[0].error is not None and refreshes[0].error.startswith("LookupError")
    assert cache.in_flight == 0


def test_it_implements_every_member_of_the_protocol_itself() -> None:
    """It subclasses ``CachePort`` (so ``isinstance`` holds on every Python):
    a member added to the protocol must not be inherited as a stub that
    silently returns ``None``."""
    members = [name for name in vars(CachePort) if not name.startswith("_")]
    assert {"client", "get", "set", "delete", "has", "remember"} <= set(members)
    inherited = [name for name in members if name not in vars(MemoryCachePort)]
    assert inherited == []


async def test_the_plugin_hands_out_a_fresh_one(memory_cache: MemoryCachePort) -> None:
    assert isinstance(memory_cache, MemoryCachePort)
    assert memory_cache.keys() == []
    await memory_cache.set("k", "v")
    assert memory_cache.keys() == ["k"]


async def test_the_double_has_the_typed_view_decorator_and_namespaces() -> None:
    from beignet_redis_anyio.testing import MemoryCachePort

    cache = MemoryCachePort()
    calls = 0

    async def load(user_id: int) -> dict[str, object] | None:
        nonlocal calls
        calls += 1
        return None if user_id == 0 else {"id": user_id}

    cached = cache.cached(key="user:{user_id}", ttl_seconds=60)(load)
    assert await cached(1) == {"id": 1}
    assert await cached(1) == {"id": 1}
    assert await cached(0) is None  # negative caching: a None is a value
    assert await cached(0) is None
    assert calls == 2
    assert await cache.json.get("user:1") == {"id": 1}
    assert await cache.json.get("missing", default="d") == "d"

    users = cache.namespace("users")
    await users.set("a", "1")
    assert await users.get("a") == "1"
    assert await users.invalidate()
    assert await users.get("a") is None
