"""Early refresh (XFetch), TTL jitter, fail-open and the circuit breaker."""

from __future__ import annotations

import anyio
import pytest
from redis.exceptions import ConnectionError

from beignet_redis_anyio import CacheEvent, CircuitOpenError, RedisConfig, open_redis_provider
from beignet_redis_anyio._cache.breaker import CircuitBreaker
from beignet_redis_anyio._cache.remember.keys import has_hash_tag, sidecar_key
from helpers.observing import Observed
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio


async def test_early_refresh_recomputes_before_expiry_without_making_callers_wait(
    real_server: RedisServer,
) -> None:
    config = RedisConfig(
        url=real_server.url, key_prefix="xfetch:", early_refresh=True, early_refresh_beta=50.0
    )
    generation = 0

    async def factory() -> str:
        nonlocal generation
        generation += 1
        await anyio.sleep(0.05)  # delta: a big beta makes refreshing near-certain
        return f"v{generation}"

    observe = Observed()
    events, refreshed = observe.events, observe.refreshed

    async with open_redis_provider(config, observer=observe) as cache:
        assert await cache.remember("k", factory, ttl_seconds=2) == "v1"
        # get() reads exactly what was stored: metadata lives beside it.
        assert await cache.get("k") == "v1"
        slowest = 0.0
        with anyio.fail_after(10):
            while generation < 2:
                began = anyio.current_time()
                value = await cache.remember("k", factory, ttl_seconds=2)
                slowest = max(slowest, anyio.current_time() - began)
                assert value in ("v1", "v2")
                await anyio.sleep(0.01)
            await refreshed.wait()
        assert await cache.get("k") == "v2"
        # It happened before expiry, in the background: nobody waited for the
        # factory (50 ms), and every remember was a hit.
        assert slowest < 0.05
        remember_statuses = {e.status for e in events if e.operation == "cache.remember"}
        assert remember_statuses == {"miss", "hit"}
        assert [e.status for e in events if e.operation == "cache.refresh"] == ["stored"]
        assert 0 < await cache.client.pttl("xfetch:k") <= 2000
        await cache.delete("k")


async def test_without_early_refresh_no_metadata_is_written(real_server: RedisServer) -> None:
    async with open_redis_provider(RedisConfig(url=real_server.url, key_prefix="plain:")) as c:

        async def factory() -> str:
            return "v"

        await c.remember("k", factory, ttl_seconds=10)
        assert await c.client.exists(sidecar_key("plain:k", "meta")) == 0
        await c.remember("k2", factory, ttl_seconds=10, early_refresh=True)
        assert await c.client.exists(sidecar_key("plain:k2", "meta")) == 1
        assert await c.get("k2") == "v"


async def test_ttl_jitter_spreads_expiries(server_url: str) -> None:
    config = RedisConfig(url=server_url, key_prefix="jitter:", ttl_jitter=0.2)
    async with open_redis_provider(config) as cache:
        ttls = set()
        for index in range(20):

            async def factory() -> str:
                return "v"

            await cache.remember(f"k{index}", factory, ttl_seconds=100)
            ttls.add(await cache.client.pttl(f"jitter:k{index}"))
        assert len(ttls) > 5
        assert all(79_000 <= ttl <= 120_000 for ttl in ttls)


async def test_bypass_keeps_answering_while_redis_is_down(own_server: RedisServer) -> None:
    config = RedisConfig(
        url=own_server.url,
        failure_policy="bypass",
        connect_timeout=0.5,
        command_timeout=0.5,
        breaker_threshold=2,
        breaker_cooldown_seconds=0.3,
    )
    events: list[CacheEvent] = []
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        return f"fresh-{calls}"

    async with open_redis_provider(config, observer=events.append) as cache:
        await cache.set("k", "cached")
        assert await cache.remember("k", factory) == "cached"
        own_server.stop()
        with anyio.fail_after(10):
            # Each answers without Redis, quickly, and says why in its event.
            assert await cache.remember("k", factory) == "fresh-1"
            assert await cache.get("k") is None
            assert await cache.has("k") is False
            assert await cache.set("k", "v") is None
            assert await cache.delete("k") is False
            assert cache.breaker_state == "open"
            began = anyio.current_time()
            assert await cache.remember("k", factory) == "fresh-2"
            assert anyio.current_time() - began < 0.1  # open breaker: no timeout paid
        assert ("cache.breaker", "opened") in [(e.operation, e.status) for e in events]
        failures = [e for e in events if e.status == "error"]
        assert {e.operation for e in failures} >= {"cache.remember", "cache.get", "cache.set"}
        assert all(e.error for e in failures)

        own_server.start()
        with anyio.fail_after(10):
            while cache.breaker_state != "closed":  # the cooldown runs on its own clock
                await anyio.sleep(0.1)
                try:
                    await cache.get("probe")
                except ConnectionError:
                    pytest.fail("bypass must never raise for an unavailable Redis")
        assert ("cache.breaker", "closed") in [(e.operation, e.status) for e in events]
        await cache.set("k", "back")
        assert await cache.remember("k", factory) == "back"


async def test_bypass_starts_even_when_redis_is_down_at_startup(own_server: RedisServer) -> None:
    own_server.stop()
    config = RedisConfig(url=own_server.url, failure_policy="bypass", connect_timeout=0.3)

    async def factory() -> str:
        return "from-the-source"

    with anyio.fail_after(10):
        async with open_redis_provider(config) as cache:
            assert await cache.remember("k", factory) == "from-the-source"


async def test_raise_policy_raises_and_the_breaker_fails_fast(own_server: RedisServer) -> None:
    config = RedisConfig(
        url=own_server.url, connect_timeout=0.5, breaker_threshold=1, breaker_cooldown_seconds=30
    )
    async with open_redis_provider(config) as cache:
        own_server.stop()
        with anyio.fail_after(10):
            with pytest.raises(ConnectionError):
                await cache.get("k")
            with pytest.raises(CircuitOpenError, match="not trying again"):
                await cache.get("k")


def test_breaker_opens_after_threshold_and_closes_after_a_good_probe() -> None:
    now = [0.0]
    changes: list[str] = []
    breaker = CircuitBreaker(
        threshold=3, cooldown=5, on_change=lambda s, _: changes.append(s), clock=lambda: now[0]
    )
    error = ConnectionError("down")
    breaker.failed(error)
    breaker.failed(error)
    breaker.check()  # still closed after two
    breaker.failed(error)
    with pytest.raises(CircuitOpenError):
        breaker.check()
    now[0] = 5.1
    breaker.check()  # half-open: one probe through
    breaker.failed(error)  # the probe failed: open again
    with pytest.raises(CircuitOpenError):
        breaker.check()
    now[0] = 10.3
    breaker.check()
    breaker.succeeded()
    assert breaker.state == "closed"
    assert changes == ["opened", "opened", "closed"]


@pytest.mark.parametrize(
    ("key", "lock"),
    [
        ("user:1", "{user:1}:beignet:lock"),
        ("{user:1}:profile", "{user:1}:profile:beignet:lock"),
        ("a{b", "{a{b}:beignet:lock"),  # a brace, but no tag: wrapped whole
    ],
)
def test_sidecar_keys_share_the_values_slot(key: str, lock: str) -> None:
    from redis.crc import key_slot

    assert sidecar_key(key, "lock") == lock
    assert key_slot(lock.encode()) == key_slot(key.encode())


def test_hash_tag_detection() -> None:
    assert has_hash_tag("{a}b") and not has_hash_tag("{}b") and not has_hash_tag("ab")
