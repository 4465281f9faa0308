"""Batches: get_many, set_many, delete_many, remember_many — under asyncio and
trio, on fakeredis, Redis and Valkey (``cache`` is on ``server_url``), and on
a cluster with keys across slots."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from beignet_redis_anyio import (
    BatchError,
    CacheEvent,
    RedisCachePort,
    RedisConfig,
    open_redis_provider,
)
from beignet_redis_anyio._cache import batches
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from helpers.observing import Observed
from helpers.targets import RedisCluster, RedisServer

pytestmark = pytest.mark.anyio


class ManyFactory:
    """A factory_many that records the keys of each call and runs when released."""

    def __init__(self, make: Any = None) -> None:
        self.make = make
        self.calls: list[list[str]] = []
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()
        self.error: BaseException | None = None

    async def __call__(self, keys: list[str]) -> Mapping[str, str]:
        self.calls.append(keys)
        self.started.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        if self.error is not None:
            raise self.error
        if self.make is not None:
            return self.make(keys)  # type: ignore[no-any-return]
        return {key: key.upper() for key in keys}


def released(make: Any = None) -> ManyFactory:
    factory = ManyFactory(make)
    factory.release.set()
    return factory


# -- get_many, set_many, delete_many ------------------------------------------


async def test_get_many_answers_every_key_in_order_duplicates_once(cache: RedisCachePort) -> None:
    await cache.set_many({"a": "1", "b": "2"})
    assert list((await cache.get_many(["b", "missing", "a", "b"])).items()) == [
        ("b", "2"),
        ("missing", None),
        ("a", "1"),
    ]
    # The port's keys carry the prefix, as get's do.
    assert await cache.client.get(cache.key_prefix + "a") == "1"


async def test_set_many_stores_with_the_ttl(cache: RedisCachePort) -> None:
    await cache.set_many({"a": "1", "b": ""}, ttl_seconds=30)
    assert await cache.get("b") == ""
    for key in ("a", "b"):
        assert 0 < await cache.client.pttl(cache.key_prefix + key) <= 30_000
    await cache.set_many({"c": "3"})
    assert await cache.client.pttl(cache.key_prefix + "c") == -1


async def test_delete_many_counts_what_was_there(cache: RedisCachePort) -> None:
    await cache.set_many({"a": "1", "b": "2"})
    assert await cache.delete_many(["a", "b", "c", "a"]) == 2
    assert await cache.get_many(["a", "b"]) == {"a": None, "b": None}
    assert await cache.delete_many(["a"]) == 0


async def test_empty_batches_send_nothing(
    cache: RedisCachePort, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_io(commands: Any) -> Any:
        raise AssertionError(f"sent {commands}")

    monkeypatch.setattr(cache._batches, "_send", no_io)
    factory = released()
    assert await cache.get_many([]) == {}
    await cache.set_many({})
    assert await cache.delete_many(iter(())) == 0
    assert await cache.remember_many([], factory) == {}
    assert factory.calls == []


async def test_bad_input_fails_before_any_io(cache: RedisCachePort) -> None:
    factory = released()
    with pytest.raises(ValueError, match="empty"):
        await cache.get_many(["a", ""])
    with pytest.raises(TypeError, match="must be a str"):
        await cache.delete_many(["a", 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a single str"):
        await cache.get_many("abc")
    with pytest.raises(TypeError, match="value must be a str"):
        await cache.set_many({"a": "1", "b": 2})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="ttl_seconds"):
        await cache.set_many({"a": "1"}, ttl_seconds=0)
    with pytest.raises(TypeError, match="mapping"):
        await cache.set_many([("a", "1")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        await cache.remember_many(["a", ""], factory)
    with pytest.raises(TypeError, match="async callable"):
        await cache.remember_many(["a"], "not callable")  # type: ignore[arg-type]
    assert await cache.get("a") is None  # nothing of the bad calls was stored
    assert factory.calls == []


async def test_more_keys_than_one_command_holds(cache: RedisCachePort) -> None:
    count = batches.CHUNK * 2 + 7
    keys = [f"k{i}" for i in range(count)]
    await cache.set_many({key: key for key in keys}, ttl_seconds=60)
    values = await cache.get_many(keys)
    assert list(values) == keys and all(values[key] == key for key in keys)
    factory = released()
    result = await cache.remember_many([*keys, "new"], factory, ttl_seconds=60)
    assert factory.calls == [["new"]] and result["new"] == "NEW" and result["k5"] == "k5"
    assert await cache.delete_many([*keys, "new"]) == count + 1


async def test_a_value_that_is_not_text_fails_only_its_key(cache: RedisCachePort) -> None:
    await cache.set_many({"a": "1", "b": "2"})
    await cache.client.set(cache.key_prefix + "img", b"\xff\xd8\xff")
    with pytest.raises(BatchError) as caught:
        await cache.get_many(["a", "img", "b"])
    assert caught.value.values == {"a": "1", "b": "2"}
    assert list(caught.value.errors) == ["img"]
    assert isinstance(caught.value.errors["img"], UnicodeDecodeError)
    assert "'img' is not utf-8 text" in str(caught.value)
    # remember_many computes the others, and does not overwrite it.
    factory = released()
    with pytest.raises(BatchError) as caught:
        await cache.remember_many(["img", "c"], factory)
    assert caught.value.values == {"c": "C"} and list(caught.value.errors) == ["img"]
    assert factory.calls == [["c"]]
    raw = await cache.client.execute_command("GET", cache.key_prefix + "img", NEVER_DECODE=True)
    assert raw == b"\xff\xd8\xff"


async def test_remember_many_never_overwrites_a_key_of_another_type(
    cache: RedisCachePort,
) -> None:
    await cache.client.rpush(cache.key_prefix + "list", "x")
    factory = released()
    with pytest.raises(BatchError, match="WRONGTYPE") as caught:
        await cache.remember_many(["list", "a"], factory)
    assert caught.value.values == {"a": "A"} and factory.calls == [["a"]]
    assert await cache.client.lrange(cache.key_prefix + "list", 0, -1) == ["x"]


# -- remember_many --------------------------------------------------------------


async def test_remember_many_computes_only_the_misses_in_one_call(cache: RedisCachePort) -> None:
    await cache.set("hit", "cached")
    factory = released()
    result = await cache.remember_many(["x", "hit", "y", "x"], factory, ttl_seconds=30)
    assert list(result.items()) == [("x", "X"), ("hit", "cached"), ("y", "Y")]
    assert factory.calls == [["x", "y"]]
    assert await cache.get_many(["x", "y"]) == {"x": "X", "y": "Y"}
    assert 0 < await cache.client.pttl(cache.key_prefix + "x") <= 30_000
    assert await cache.remember_many(["x", "y"], factory) == {"x": "X", "y": "Y"}
    assert len(factory.calls) == 1


async def test_a_key_in_flight_elsewhere_is_awaited_not_recomputed(
    cache: RedisCachePort,
) -> None:
    single_calls = 0
    single_release = anyio.Event()

    async def single() -> str:
        nonlocal single_calls
        single_calls += 1
        await single_release.wait()
        return "from remember"

    factory = ManyFactory()
    results: dict[str, Any] = {}

    async def many() -> None:
        results["many"] = await cache.remember_many(["a", "b", "c"], factory)

    async def one(key: str) -> None:
        results[key] = await cache.remember(key, single)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(one, "b")
            while "b" not in [k[len(cache.key_prefix) :] for k in cache._flights._flights]:
                await anyio.lowlevel.checkpoint()
            tasks.start_soon(many)
            await factory.started.wait()
            tasks.start_soon(one, "c")  # joins the batch's run for c
            while cache._flights._flights[cache.key_prefix + "c"].waiters < 2:
                await anyio.lowlevel.checkpoint()
            factory.release.set()
            single_release.set()
    assert factory.calls == [["a", "c"]]
    assert single_calls == 1
    assert results == {
        "b": "from remember",
        "c": "C",
        "many": {"a": "A", "b": "from remember", "c": "C"},
    }


async def test_overlapping_batches_compute_each_key_once(cache: RedisCachePort) -> None:
    factory = ManyFactory()
    results: list[dict[str, str]] = []

    async def many(keys: list[str]) -> None:
        results.append(await cache.remember_many(keys, factory))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(many, ["a", "b"])
            await factory.started.wait()
            for _ in range(5):
                tasks.start_soon(many, ["b", "c", "a"])
            while len(cache._flights) < 3:
                await anyio.lowlevel.checkpoint()
            factory.release.set()
    assert sorted(map(sorted, factory.calls)) == [["a", "b"], ["c"]]
    assert results[0] == {"a": "A", "b": "B"}
    assert results[1:] == [{"b": "B", "c": "C", "a": "A"}] * 5


async def test_cancelling_one_caller_leaves_the_others_keys_running(
    cache: RedisCachePort,
) -> None:
    factory = ManyFactory()
    joined: list[str] = []

    async def join_b() -> None:
        joined.append(await cache.remember("b", _never))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            first = anyio.CancelScope()
            tasks.start_soon(_in_scope, first, cache.remember_many(["a", "b"], factory))
            await factory.started.wait()
            tasks.start_soon(join_b)
            while cache._flights._flights[cache.key_prefix + "b"].waiters < 2:
                await anyio.lowlevel.checkpoint()
            first.cancel()
            while cache._flights._flights[cache.key_prefix + "b"].waiters > 1:
                await anyio.lowlevel.checkpoint()
            assert not factory.cancelled.is_set()
            factory.release.set()
    assert joined == ["B"] and factory.calls == [["a", "b"]]
    assert await cache.get("b") == "B"


async def test_cancelling_the_only_caller_cancels_the_factory(cache: RedisCachePort) -> None:
    factory = ManyFactory()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(cache.remember_many, ["a", "b"], factory)
            await factory.started.wait()
            tasks.cancel_scope.cancel()
        await factory.cancelled.wait()
    assert await cache.get_many(["a", "b"]) == {"a": None, "b": None}
    assert cache.in_flight == 0


async def test_a_factory_error_fails_its_keys_and_stores_nothing(cache: RedisCachePort) -> None:
    await cache.set("hit", "cached")
    factory = released()
    factory.error = LookupError("no such row")
    with pytest.raises(BatchError, match="no such row") as caught:
        await cache.remember_many(["a", "hit", "b"], factory)
    assert caught.value.values == {"hit": "cached"}
    assert list(caught.value.errors) == ["a", "b"]
    assert all(error is factory.error for error in caught.value.errors.values())
    assert await cache.get_many(["a", "b"]) == {"a": None, "b": None}


@pytest.mark.parametrize(
    ("made", "error"),
    [
        ({"a": "A"}, "no value for 'b'"),
        ({"a": "A", "b": 2}, "returned int, not str"),
        ({"a": "A", "b": "\ud800"}, "cannot be encoded"),
    ],
)
async def test_a_bad_value_fails_its_key_alone(
    cache: RedisCachePort, made: dict[str, Any], error: str
) -> None:
    factory = released(lambda keys: made)
    with pytest.raises(BatchError, match=error) as caught:
        await cache.remember_many(["a", "b"], factory)
    assert caught.value.values == {"a": "A"} and list(caught.value.errors) == ["b"]
    assert await cache.get_many(["a", "b"]) == {"a": "A", "b": None}


async def test_a_factory_returning_no_mapping_fails_every_key(cache: RedisCachePort) -> None:
    factory = released(lambda keys: ["A"])
    with pytest.raises(BatchError, match="not a dict") as caught:
        await cache.remember_many(["a"], factory)
    assert list(caught.value.errors) == ["a"]


async def test_a_base_exception_from_the_factory_is_raised_as_itself(
    cache: RedisCachePort,
) -> None:
    class Stop(BaseException):
        pass

    factory = released()
    factory.error = Stop()
    with pytest.raises(Stop):
        await cache.remember_many(["a"], factory)


async def test_remember_from_inside_factory_many_is_an_error(cache: RedisCachePort) -> None:
    async def factory(keys: list[str]) -> dict[str, str]:
        # Both keys: whichever of them this task was started for, one is not.
        return {"a": await cache.remember("a", _never), "b": await cache.remember("b", _never)}

    with anyio.fail_after(10), pytest.raises(BatchError, match="inside its own factory"):
        await cache.remember_many(["a", "b"], factory)


async def test_get_many_reads_a_key_of_another_type_as_missing(cache: RedisCachePort) -> None:
    await cache.client.rpush(cache.key_prefix + "list", "x")
    assert await cache.get_many(["list"]) == {"list": None}


async def test_early_refresh_recomputes_due_keys_in_the_background(server_url: str) -> None:
    observed = Observed()
    config = RedisConfig(url=server_url, key_prefix=f"t:{uuid.uuid4().hex}:")
    async with open_redis_provider(config, observer=observed) as cache:
        factory = released(lambda keys: {k: "new" for k in keys})
        full = cache.key_prefix + "a"
        await cache.remember_many(["b"], factory, ttl_seconds=60, early_refresh=True)
        assert await cache.client.get(sidecar_key(cache.key_prefix + "b", "meta")) is not None
        # "a" took a very long time to compute: its refresh is due at once.
        await cache.client.set(full, "old", px=60_000)
        await cache.client.set(sidecar_key(full, "meta"), "1e12", px=60_000)
        with anyio.fail_after(10):
            result = await cache.remember_many(
                ["a", "b"], factory, ttl_seconds=60, early_refresh=True
            )
            assert result == {"a": "old", "b": "new"}  # the hit answers at once
            await observed.refreshed.wait()
        assert factory.calls[-1] == ["a"]
        assert await cache.get("a") == "new"


# -- events, outages, the cluster -------------------------------------------------


async def test_events_one_per_key_with_the_batch_size(server_url: str) -> None:
    events: list[CacheEvent] = []
    config = RedisConfig(url=server_url, key_prefix=f"t:{uuid.uuid4().hex}:")
    async with open_redis_provider(config, observer=events.append) as cache:
        await cache.set_many({"a": "1", "b": "2"}, ttl_seconds=5)
        await cache.get_many(["a", "x"])
        await cache.remember_many(["a", "y"], released())
        await cache.delete_many(["a", "z"])
    seen = [(e.operation, e.key, e.status, e.batch_size, e.batch_index) for e in events]
    assert seen == [
        ("cache.set_many", "a", "stored", 2, 0),
        ("cache.set_many", "b", "stored", 2, 1),
        ("cache.get_many", "a", "hit", 2, 0),
        ("cache.get_many", "x", "miss", 2, 1),
        ("cache.remember_many", "a", "hit", 2, 0),
        ("cache.remember_many", "y", "miss", 2, 1),
        ("cache.delete_many", "a", "deleted", 2, 0),
        ("cache.delete_many", "z", "not_found", 2, 1),
    ]
    assert events[0].ttl_seconds == 5
    assert len({e.duration_seconds for e in events[:2]}) == 1  # the batch's duration


async def test_bypass_answers_without_redis_during_an_outage(own_server: RedisServer) -> None:
    events: list[CacheEvent] = []
    config = RedisConfig(
        url=own_server.url, failure_policy="bypass", breaker_threshold=1, command_timeout=0.5
    )
    async with open_redis_provider(config, observer=events.append) as cache:
        await cache.set_many({"a": "1"})
        own_server.stop()
        with anyio.fail_after(20):
            assert await cache.get_many(["a", "b"]) == {"a": None, "b": None}
            await cache.set_many({"a": "2"})
            assert await cache.delete_many(["a"]) == 0
            factory = released()
            assert await cache.remember_many(["a", "b"], factory) == {"a": "A", "b": "B"}
            assert await cache.remember_many(["a"], factory) == {"a": "A"}
        assert len(factory.calls) == 2  # nothing cached while Redis is away
        assert cache.breaker_state == "open"
    get_many = [e for e in events if e.operation == "cache.get_many"]
    assert [(e.key, e.status) for e in get_many] == [("a", "error"), ("b", "error")]


async def test_batches_across_cluster_slots(cluster: RedisCluster) -> None:
    prefix = f"cl:{uuid.uuid4().hex[:6]}:"
    keys = [f"k{i}" for i in range(200)]
    async with open_redis_provider(RedisConfig(url=cluster.url, key_prefix=prefix)) as cache:
        await cache.set_many({key: key for key in keys[:100]}, ttl_seconds=300)
        assert await cache.get_many(keys) == {
            k: (k if i < 100 else None) for i, k in enumerate(keys)
        }
        factory = released()
        with anyio.fail_after(10):
            result = await cache.remember_many(keys, factory, ttl_seconds=300, early_refresh=True)
        assert factory.calls == [keys[100:]]
        assert result == {k: (k if i < 100 else k.upper()) for i, k in enumerate(keys)}
        assert await cache.get_many(keys[100:]) == {k: k.upper() for k in keys[100:]}
        assert await cache.delete_many(keys) == 200
        assert await cache.get_many(keys[:3]) == dict.fromkeys(keys[:3])


async def _in_scope(scope: anyio.CancelScope, awaitable: Any) -> None:
    with scope:
        await awaitable


async def _never() -> str:
    await anyio.sleep_forever()
    raise AssertionError
