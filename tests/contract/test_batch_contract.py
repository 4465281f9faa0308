"""The batch operations on every view of every port.

Each test runs against ``RedisCachePort`` (fakeredis, Redis, Valkey) and
``MemoryCachePort``, under each backend, through each view a web app uses:
the port itself, ``cache.json``, a namespace, a namespace's ``json``, a
nested namespace, and a :class:`CacheSlot` bound to the port. Values are
strings on the string views and JSON objects on the typed ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from beignet_redis_anyio import BatchError, CacheEvent, CacheSlot
from helpers.crowds import crowd

if TYPE_CHECKING:
    from conftest import AnyCache, OpenCache

pytestmark = pytest.mark.anyio

VIEWS = ["port", "json", "namespace", "namespace.json", "nested", "slot"]


class View:
    """A view of a port, and how its values look (``str`` or JSON)."""

    def __init__(self, name: str, port: Any) -> None:
        self.name = name
        self.typed = name.endswith("json")
        if name == "port" or name == "slot":
            self.view = port
        elif name == "json":
            self.view = port.json
        elif name == "namespace":
            self.view = port.namespace("shop")
        elif name == "namespace.json":
            self.view = port.namespace("shop").json
        else:
            self.view = port.namespace("tenant").namespace("shop")

    def value(self, n: object) -> Any:
        return {"n": n, "tags": ["a"]} if self.typed else f"v{n}"


@asynccontextmanager
async def opened(open_any_cache: OpenCache, name: str, **options: Any) -> AsyncIterator[View]:
    async with open_any_cache(**options) as port:
        if name == "slot":
            slot = CacheSlot()
            with slot.bound(port):
                yield View(name, slot)
        else:
            yield View(name, port)


@pytest.fixture(params=VIEWS)
async def view(request: pytest.FixtureRequest, open_any_cache: OpenCache) -> AsyncIterator[View]:
    async with opened(open_any_cache, request.param) as made:
        yield made


async def test_set_get_delete_many(view: View) -> None:
    v = view.view
    await v.set_many({"a": view.value(1), "c": view.value(3)}, ttl_seconds=60)
    got = await v.get_many(["a", "b", "c", "a"])
    assert list(got) == ["a", "b", "c"]  # in order, duplicates once
    assert got == {"a": view.value(1), "b": None, "c": view.value(3)}
    assert await v.get("a") == view.value(1)  # the batch and the single key agree
    assert await v.delete_many(["a", "b"]) == 1
    assert await v.get_many(["a", "c"]) == {"a": None, "c": view.value(3)}
    assert await v.get_many([]) == {}
    assert await v.delete_many([]) == 0


async def test_a_single_str_is_not_a_batch(view: View) -> None:
    with pytest.raises(TypeError, match="single str"):
        await view.view.get_many("abc")
    with pytest.raises(TypeError, match="mapping"):
        await view.view.set_many([("a", view.value(1))])


async def test_remember_many_computes_only_the_misses_in_one_call(view: View) -> None:
    v = view.view
    await v.set("a", view.value("old"))
    calls: list[list[str]] = []

    async def load(missing: list[str]) -> dict[str, Any]:
        calls.append(missing)
        return {key: view.value(key) for key in missing}

    got = await v.remember_many(["a", "b", "c"], load, ttl_seconds=60)
    assert got == {"a": view.value("old"), "b": view.value("b"), "c": view.value("c")}
    assert calls == [["b", "c"]]
    again = await v.remember_many(["a", "b", "c"], load, ttl_seconds=60)
    assert again == got and calls == [["b", "c"]]  # all hits now
    assert await v.get("b") == view.value("b")


async def test_remember_many_fails_key_by_key(view: View) -> None:
    v = view.view

    async def load(missing: list[str]) -> dict[str, Any]:
        return {key: view.value(key) for key in missing if key != "bad"}

    with pytest.raises(BatchError) as caught:
        await v.remember_many(["good", "bad"], load, ttl_seconds=60)
    assert caught.value.values == {"good": view.value("good")}
    assert list(caught.value.errors) == ["bad"]  # named as the caller gave it
    assert isinstance(caught.value.errors["bad"], LookupError)
    assert await v.get("good") == view.value("good")
    assert await v.has("bad") is False


async def test_remember_many_single_flight_with_remember(view: View) -> None:
    v = view.view
    release = anyio.Event()
    calls: list[str] = []

    async def slow() -> Any:
        calls.append("remember")
        await release.wait()
        return view.value("slow")

    async def load(missing: list[str]) -> dict[str, Any]:
        calls.append(f"many {missing}")
        return {key: view.value(key) for key in missing}

    results: dict[str, Any] = {}

    async def remember_one() -> None:
        results["one"] = await v.remember("x", slow, ttl_seconds=60)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(remember_one)
        while not calls:
            await anyio.lowlevel.checkpoint()
        tasks.start_soon(_store, results, v.remember_many(["x", "y"], load, ttl_seconds=60))
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        release.set()
    assert results["one"] == view.value("slow")
    assert results["many"] == {"x": view.value("slow"), "y": view.value("y")}
    assert calls == ["remember", "many ['y']"]  # x was joined, not recomputed


async def _store(results: dict[str, Any], call: Any) -> None:
    results["many"] = await call


async def test_cancelling_one_caller_leaves_the_other_its_values(view: View) -> None:
    v = view.view
    started, release = anyio.Event(), anyio.Event()

    async def load(missing: list[str]) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {key: view.value(key) for key in missing}

    results: dict[str, Any] = {}
    async with anyio.create_task_group() as tasks:
        first = anyio.CancelScope()
        tasks.start_soon(_cancellable, first, v.remember_many(["p", "q"], load))
        await started.wait()
        tasks.start_soon(_store, results, v.remember_many(["p", "q"], load))
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        first.cancel()
        release.set()
    assert results["many"] == {"p": view.value("p"), "q": view.value("q")}


async def _cancellable(scope: anyio.CancelScope, call: Any) -> None:
    with scope:
        await call


@pytest.mark.parametrize("name", ["port", "json", "namespace"])
async def test_batches_report_one_event_per_key(open_any_cache: OpenCache, name: str) -> None:
    events: list[CacheEvent] = []
    async with opened(open_any_cache, name, observer=events.append) as made:
        v = made.view
        await v.set_many({"a": made.value(1)})
        await v.get_many(["a", "b"])

        async def load(missing: list[str]) -> Mapping[str, Any]:
            return {key: made.value(key) for key in missing}

        await v.remember_many(["a", "c"], load)
    batches = [e for e in events if e.operation.endswith("_many")]
    assert [(e.operation, e.status, e.batch_index, e.batch_size) for e in batches] == [
        ("cache.set_many", "stored", 0, 1),
        ("cache.get_many", "hit", 0, 2),
        ("cache.get_many", "miss", 1, 2),
        ("cache.remember_many", "hit", 0, 2),
        ("cache.remember_many", "miss", 1, 2),
    ]


async def test_a_typed_view_fails_only_the_key_it_cannot_decode(any_cache: AnyCache) -> None:
    await any_cache.set("broken", "{not json")
    await any_cache.json.set("fine", [1])
    with pytest.raises(BatchError) as caught:
        await any_cache.json.get_many(["fine", "broken", "missing"])
    assert caught.value.values == {"fine": [1], "missing": None}
    assert type(caught.value.errors["broken"]).__name__ == "CacheDecodeError"

    async def load(missing: list[str]) -> dict[str, Any]:
        return {key: {"made": key} for key in missing}

    with pytest.raises(BatchError) as caught:
        await any_cache.json.remember_many(["broken", "new"], load)
    assert caught.value.values == {"new": {"made": "new"}}
    assert await any_cache.get("broken") == "{not json"  # never overwritten


async def test_a_typed_view_fails_only_the_key_it_cannot_encode(any_cache: AnyCache) -> None:
    async def load(missing: list[str]) -> dict[str, Any]:
        return {"ok": [1], "nan": float("nan")}

    with pytest.raises(BatchError) as caught:
        await any_cache.json.remember_many(["ok", "nan"], load)
    assert caught.value.values == {"ok": [1]}
    assert "NaN" in str(caught.value.errors["nan"])  # the codec's reason, not "no value"
    assert await any_cache.has("nan") is False
    with pytest.raises(ValueError, match="nothing was stored"):
        await any_cache.json.set_many({"fine": 1, "nan": float("nan")})
    assert await any_cache.has("fine") is False  # nothing is sent when one fails


async def test_none_is_cached_by_a_typed_batch(any_cache: AnyCache) -> None:
    calls: list[list[str]] = []

    async def load(missing: list[str]) -> dict[str, Any]:
        calls.append(missing)
        return dict.fromkeys(missing)

    assert await any_cache.json.remember_many(["gone"], load, none_ttl_seconds=30) == {"gone": None}
    assert await any_cache.json.remember_many(["gone"], load) == {"gone": None}
    assert calls == [["gone"]]
    assert await any_cache.json.get_many(["gone", "other"], default="-") == {
        "gone": None,
        "other": "-",
    }


@pytest.mark.parametrize("name", ["namespace.json", "slot"])
async def test_a_thousand_batch_callers_share_one_factory_call(
    open_any_cache: OpenCache, name: str
) -> None:
    started, release = anyio.Event(), anyio.Event()
    calls: list[list[str]] = []

    async with opened(open_any_cache, name) as made:

        async def load(missing: list[str]) -> dict[str, Any]:
            calls.append(missing)
            started.set()
            await release.wait()
            return {key: made.value(key) for key in missing}

        keys = [f"k{n}" for n in range(5)]
        results = await crowd(1000, lambda: made.view.remember_many(keys, load), started, release)
    assert calls == [keys]  # one call, for every caller, across the five keys
    assert all(result == {key: made.value(key) for key in keys} for result in results)


@pytest.mark.parametrize("steps", range(0, 12, 3))
async def test_a_caller_cancelled_at_any_point_leaves_nothing_half_done(
    open_any_cache: OpenCache, steps: int
) -> None:
    """Cancel a remember_many after ``steps`` scheduler turns: the key is
    either stored whole or not at all, and the next call is correct."""
    async with opened(open_any_cache, "json") as made:

        async def load(missing: list[str]) -> dict[str, Any]:
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            return {key: made.value(key) for key in missing}

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(made.view.remember_many, ["a", "b"], load)
                for _ in range(steps):
                    await anyio.lowlevel.checkpoint()
                scope.cancel()
        for key in ("a", "b"):
            assert await made.view.get(key) in (None, made.value(key))
        assert await made.view.remember_many(["a", "b"], load) == {
            "a": made.value("a"),
            "b": made.value("b"),
        }
        assert getattr(made.view, "in_flight", 0) == 0
