"""cache.json / cache.with_codec: typed values, negative caching, decode errors.

Every ``remember`` guarantee must hold through the view: single-flight,
private cancellation, bypass, events, and lock=/early_refresh= reaching the
port.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from beignet_redis_anyio import (
    CacheDecodeError,
    CacheEvent,
    RedisCachePort,
    RedisConfig,
    open_redis_provider,
)
from beignet_redis_anyio._cache.remember.refresh import meta_key
from helpers.crowds import crowd
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio


class Gate:
    """An async factory that counts calls and returns ``value`` once released."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.calls = 0
        self.started = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return self.value


async def test_json_values_round_trip_compact_and_deterministic(cache: RedisCachePort) -> None:
    value = {"name": "Zoë", "tags": ("a", "b"), "n": 1.5, "ok": True, "none": None, "b": [1]}
    await cache.json.set("k", value)
    # Sorted keys, no spaces, non-ASCII as is: equal values are equal strings.
    assert await cache.get("k") == (
        '{"b":[1],"n":1.5,"name":"Zoë","none":null,"ok":true,"tags":["a","b"]}'
    )
    assert await cache.json.get("k") == {**value, "tags": ["a", "b"]}  # tuples → lists
    assert await cache.json.has("k")
    assert await cache.json.delete("k")
    assert not await cache.json.has("k")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), [float("-inf")]])
async def test_nan_and_infinity_are_refused_and_nothing_is_stored(
    cache: RedisCachePort, bad: object
) -> None:
    with pytest.raises(ValueError, match=r"'k'.*NaN and Infinity"):
        await cache.json.set("k", bad)  # type: ignore[arg-type]
    assert not await cache.has("k")


async def test_an_unencodable_object_fails_naming_the_key(cache: RedisCachePort) -> None:
    with pytest.raises(TypeError, match=r"'k'.*not JSON serializable"):
        await cache.json.set("k", {"when": object()})
    assert not await cache.has("k")


async def test_an_unencodable_factory_result_fails_every_waiter_and_stores_nothing(
    cache: RedisCachePort,
) -> None:
    async def factory() -> Any:
        return {1, 2}

    with pytest.raises(TypeError, match="'k'"):
        await cache.json.remember("k", factory)
    assert not await cache.has("k")


async def test_nan_written_by_another_program_is_a_decode_error(cache: RedisCachePort) -> None:
    await cache.set("k", "NaN")
    with pytest.raises(CacheDecodeError, match="'k'"):
        await cache.json.get("k")


async def test_a_stored_none_is_not_a_miss(cache: RedisCachePort) -> None:
    sentinel = object()
    assert await cache.json.get("k", default=sentinel) is sentinel  # a real miss
    assert await cache.json.get("k") is None
    await cache.json.set("k", None)
    assert await cache.get("k") == "null"
    assert await cache.json.get("k", default=sentinel) is None
    assert await cache.json.has("k")


async def test_a_factory_returning_none_is_cached(cache: RedisCachePort) -> None:
    calls = 0

    async def missing_row() -> None:
        nonlocal calls
        calls += 1

    assert await cache.json.remember("user:404", missing_row, ttl_seconds=60) is None
    assert await cache.json.remember("user:404", missing_row, ttl_seconds=60) is None
    assert calls == 1
    assert 50_000 < await cache.client.pttl(cache.key_prefix + "user:404") <= 60_000


async def test_none_ttl_seconds_applies_to_none_only(cache: RedisCachePort) -> None:
    async def nothing() -> None:
        return None

    async def something() -> str:
        return "x"

    await cache.json.remember("none", nothing, ttl_seconds=600, none_ttl_seconds=5)
    await cache.json.remember("value", something, ttl_seconds=600, none_ttl_seconds=5)
    assert 0 < await cache.client.pttl(cache.key_prefix + "none") <= 5_000
    assert 500_000 < await cache.client.pttl(cache.key_prefix + "value") <= 600_000
    with pytest.raises(ValueError, match="ttl_seconds"):
        await cache.json.remember("bad", nothing, none_ttl_seconds=0)
    assert not await cache.has("bad")


async def test_undecodable_data_raises_naming_the_key_and_is_never_overwritten(
    cache: RedisCachePort,
) -> None:
    await cache.set("k", "not json {")
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        return "fresh"

    with pytest.raises(CacheDecodeError, match="'k'") as raised:
        await cache.json.get("k")
    assert raised.value.key == "k"
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value.__cause__, json.JSONDecodeError)
    with pytest.raises(CacheDecodeError, match="'k'"):
        await cache.json.remember("k", factory)
    assert calls == 0
    assert await cache.get("k") == "not json {"


class Upper:
    """A codec of the module shape: ``dumps``/``loads``."""

    def dumps(self, obj: str) -> str:
        return "U:" + obj.upper()

    def loads(self, data: str) -> str:
        if not data.startswith("U:"):
            raise ValueError("no U: prefix")
        return data[2:].lower()


async def test_with_codec_uses_the_codec_both_ways(cache: RedisCachePort) -> None:
    view = cache.with_codec(Upper())
    await view.set("k", "hello")
    assert await cache.get("k") == "U:HELLO"
    assert await view.get("k") == "hello"

    async def factory() -> str:
        return "made"

    assert await view.remember("m", factory) == "made"
    assert await cache.get("m") == "U:MADE"
    await cache.set("foreign", "plain")
    with pytest.raises(CacheDecodeError, match=r"'foreign'.*no U: prefix"):
        await view.get("foreign")


async def test_a_codec_returning_bytes_is_a_type_error(cache: RedisCachePort) -> None:
    class Bytes:
        def dumps(self, obj: object) -> bytes:
            return b"x"

        def loads(self, data: str) -> object:
            return data

    with pytest.raises(TypeError, match="returned bytes, not str"):
        await cache.with_codec(Bytes()).set("k", 1)  # type: ignore[arg-type]
    assert not await cache.has("k")


async def test_a_thousand_concurrent_callers_share_one_factory_run(cache: RedisCachePort) -> None:
    factory = Gate({"id": 1, "pair": (1, 2)})
    results = await crowd(
        1000,
        lambda: cache.json.remember("k", factory, ttl_seconds=60),
        factory.started,
        factory.release,
    )
    assert factory.calls == 1
    assert results == [{"id": 1, "pair": [1, 2]}] * 1000
    assert cache.in_flight == 0


async def test_cancelling_one_caller_leaves_the_others_their_value(cache: RedisCachePort) -> None:
    factory = Gate([1])
    results: list[Any] = []
    scopes: list[anyio.CancelScope] = []

    async def caller() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            results.append(await cache.json.remember("k", factory))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(caller)
            await factory.started.wait()
            for _ in range(3):
                tasks.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            scopes[0].cancel()  # the caller whose factory runs
            await anyio.wait_all_tasks_blocked()
            factory.release.set()
    assert results == [[1]] * 3
    assert factory.calls == 1
    assert await cache.json.get("k") == [1]


async def test_events_are_the_ports_under_the_key_given(server_url: str) -> None:
    events: list[CacheEvent] = []
    async with open_redis_provider(RedisConfig(url=server_url), observer=events.append) as cache:
        key = f"test:{id(events)}"

        async def factory() -> dict[str, int]:
            return {"a": 1}

        await cache.json.remember(key, factory, ttl_seconds=30)
        await cache.json.remember(key, factory, ttl_seconds=30)
        await cache.json.get(key)
        await cache.json.delete(key)
    assert [(e.operation, e.key, e.status) for e in events] == [
        ("cache.remember", key, "miss"),
        ("cache.remember", key, "hit"),
        ("cache.get", key, "hit"),
        ("cache.delete", key, "deleted"),
    ]


async def test_lock_and_early_refresh_reach_the_port(cache: RedisCachePort) -> None:
    async def factory() -> list[int]:
        return [1]

    assert await cache.json.remember("k", factory, ttl_seconds=60, early_refresh=True) == [1]
    # Early refresh stores its recompute time beside the value.
    assert await cache.client.exists(meta_key(cache.key_prefix + "k")) == 1
    assert await cache.json.remember("l", factory, ttl_seconds=60, lock=True) == [1]
    assert await cache.json.get("l") == [1]


async def test_under_bypass_the_factorys_value_comes_back_decoded_unstored(
    own_server: RedisServer,
) -> None:
    config = RedisConfig(url=own_server.url, failure_policy="bypass", command_timeout=0.5)
    async with open_redis_provider(config) as cache:
        own_server.stop()

        async def factory() -> dict[str, Any]:
            return {"t": (1,)}

        with anyio.fail_after(20):
            assert await cache.json.remember("k", factory) == {"t": [1]}
            assert await cache.json.get("k", default="miss") == "miss"
            await cache.json.set("k", [1])  # bypassed: nothing raised
