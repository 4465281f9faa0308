"""The port's behaviour, one test for every implementation.

Each test here takes ``any_cache`` (or ``open_any_cache``), so it runs
against ``RedisCachePort`` on fakeredis, Redis and Valkey and against
``testing.MemoryCachePort``, under asyncio and trio: the test double cannot
drift from the real port. What only Redis can show (what reaches the wire,
the key prefix as the server sees it, the lease, sidecars) stays in
``test_port.py`` and ``test_remember.py``; what only the double has, in
``test_memory.py``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import pytest

from beignet_redis_anyio import CacheEvent, CachePort
from helpers.factories import Factory, append, backends_and_kinds, base_exception

if TYPE_CHECKING:
    from conftest import AnyCache, OpenCache

pytestmark = pytest.mark.anyio


# -- the five operations ------------------------------------------------------


async def test_get_set_delete_has(any_cache: AnyCache) -> None:
    assert isinstance(any_cache, CachePort)
    assert await any_cache.get("k") is None
    assert await any_cache.has("k") is False
    assert await any_cache.set("k", "v") is None
    assert await any_cache.get("k") == "v"
    assert await any_cache.has("k") is True
    assert await any_cache.delete("k") is True
    assert await any_cache.delete("k") is False
    assert await any_cache.get("k") is None


async def test_empty_string_and_unicode_are_values(any_cache: AnyCache) -> None:
    await any_cache.set("empty", "")
    assert await any_cache.get("empty") == ""
    assert await any_cache.has("empty") is True
    await any_cache.set("unicode", "héllo ✓ 世界")
    assert await any_cache.get("unicode") == "héllo ✓ 世界"


@pytest.mark.parametrize("via", ["set", "remember"])
async def test_values_expire(any_cache: AnyCache, via: str) -> None:
    async def factory() -> str:
        return "v"

    if via == "set":
        await any_cache.set("k", "v", ttl_seconds=0.05)
    else:
        assert await any_cache.remember("k", factory, ttl_seconds=0.05) == "v"
    assert await any_cache.get("k") == "v"
    with anyio.fail_after(5):
        # The store's clock decides and it sends no event: poll it.
        while await any_cache.has("k"):  # noqa: ASYNC110
            await anyio.sleep(0.01)
    assert await any_cache.get("k") is None


# -- input checks -------------------------------------------------------------


@pytest.mark.parametrize("key", ["", None, 5, b"bytes"])
async def test_bad_keys_are_refused_and_no_factory_runs(any_cache: AnyCache, key: object) -> None:
    async def factory() -> str:
        raise AssertionError("the factory must not run for a bad key")

    for operation in (any_cache.get, any_cache.delete, any_cache.has):
        with pytest.raises((TypeError, ValueError), match="key"):
            await operation(key)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="key"):
        await any_cache.set(key, "v")  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="key"):
        await any_cache.remember(key, factory)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 5, b"bytes", {"a": 1}])
async def test_non_str_values_are_refused_and_nothing_is_written(
    any_cache: AnyCache, value: object
) -> None:
    with pytest.raises(TypeError, match="must be a str"):
        await any_cache.set("k", value)  # type: ignore[arg-type]
    assert await any_cache.has("k") is False


@pytest.mark.parametrize("ttl", [True, 0, -1, math.nan, math.inf, "60", 10**12 + 1])
async def test_bad_ttls_are_refused_and_nothing_is_written(
    any_cache: AnyCache, ttl: object
) -> None:
    with pytest.raises((TypeError, ValueError), match="ttl_seconds"):
        await any_cache.set("k", "v", ttl_seconds=ttl)  # type: ignore[arg-type]

    async def factory() -> str:
        raise AssertionError("never called")

    with pytest.raises((TypeError, ValueError), match="ttl_seconds"):
        await any_cache.remember("k", factory, ttl_seconds=ttl)  # type: ignore[arg-type]
    assert await any_cache.has("k") is False


async def test_a_str_with_no_utf8_form_is_refused_naming_the_key(any_cache: AnyCache) -> None:
    with pytest.raises(ValueError, match=r"'lone'.*cannot be encoded as UTF-8.*nothing was stored"):
        await any_cache.set("lone", "half a pair: \ud800")
    assert await any_cache.get("lone") is None
    await any_cache.set("lone", "héllo ✓")  # other non-ASCII text is fine
    assert await any_cache.get("lone") == "héllo ✓"


async def test_a_factory_that_is_not_callable_is_refused(any_cache: AnyCache) -> None:
    with pytest.raises(TypeError, match="factory must be an async callable"):
        await any_cache.remember("k", "not a factory")  # type: ignore[arg-type]


# -- events -------------------------------------------------------------------


async def test_one_event_per_operation_never_the_value(open_any_cache: OpenCache) -> None:
    events: list[CacheEvent] = []
    async with open_any_cache(observer=events.append) as cache:
        await cache.delete("k")
        await cache.get("k")
        await cache.set("k", "secret-value", ttl_seconds=60)
        await cache.get("k")
        await cache.has("k")
        await cache.has("nope")
        await cache.delete("k")

        async def factory() -> str:
            return "computed-secret"

        await cache.remember("r", factory, ttl_seconds=5)
        await cache.remember("r", factory, ttl_seconds=5)
        await cache.delete("r")
    assert [(e.operation, e.status) for e in events] == [
        ("cache.delete", "not_found"),
        ("cache.get", "miss"),
        ("cache.set", "stored"),
        ("cache.get", "hit"),
        ("cache.has", "hit"),
        ("cache.has", "miss"),
        ("cache.delete", "deleted"),
        ("cache.remember", "miss"),
        ("cache.remember", "hit"),
        ("cache.delete", "deleted"),
    ]
    assert events[2].ttl_seconds == 60 and events[7].ttl_seconds == 5
    assert all(e.key in ("k", "nope", "r") for e in events)
    assert all(e.duration_seconds >= 0 for e in events)
    assert "secret" not in repr(events)


async def test_cancelled_operations_are_reported_and_change_nothing(
    open_any_cache: OpenCache,
) -> None:
    events: list[CacheEvent] = []
    async with open_any_cache(observer=events.append) as cache:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await cache.get("k")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await cache.remember("k", Factory())
        assert cache.in_flight == 0
    assert [(e.operation, e.status) for e in events] == [
        ("cache.get", "cancelled"),
        ("cache.remember", "cancelled"),
    ]


async def test_factory_errors_are_reported_naming_the_exception(
    open_any_cache: OpenCache,
) -> None:
    events: list[CacheEvent] = []
    factory = Factory()
    factory.error = LookupError("database said no")
    factory.release.set()
    async with open_any_cache(observer=events.append) as cache:
        with pytest.raises(LookupError):
            await cache.remember("k", factory)
    assert [(e.operation, e.status) for e in events] == [("cache.remember", "error")]
    assert events[0].error is not None and events[0].error.startswith("LookupError")


async def test_a_failing_observer_never_breaks_an_operation(
    open_any_cache: OpenCache, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: CacheEvent) -> None:
        raise RuntimeError("dashboard is down")

    async with open_any_cache(observer=broken) as cache:
        await cache.set("k", "v")
        assert await cache.get("k") == "v"
        await cache.delete("k")
    assert "cache observer failed" in caplog.text


# -- remember: hit, miss, single-flight -----------------------------------------


async def test_hit_returns_the_cached_value_without_calling_the_factory(
    any_cache: AnyCache,
) -> None:
    factory = Factory()
    await any_cache.set("k", "cached")
    assert await any_cache.remember("k", factory) == "cached"
    assert factory.calls == 0


@pytest.mark.parametrize("lock", [None, False, True])
async def test_miss_computes_stores_and_returns(any_cache: AnyCache, lock: bool | None) -> None:
    factory = Factory()
    factory.release.set()
    assert await any_cache.remember("k", factory, ttl_seconds=30, lock=lock) == "computed"
    assert await any_cache.get("k") == "computed"
    assert await any_cache.remember("k", factory, lock=lock) == "computed"
    assert factory.calls == 1


async def test_an_empty_string_is_a_hit(any_cache: AnyCache) -> None:
    factory = Factory("")
    factory.release.set()
    assert await any_cache.remember("k", factory) == ""
    assert await any_cache.remember("k", factory) == ""
    assert factory.calls == 1


async def test_concurrent_misses_run_the_factory_once(any_cache: AnyCache) -> None:
    factory = Factory()
    results: list[str] = []

    async def caller() -> None:
        results.append(await any_cache.remember("k", factory))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            for _ in range(1000):
                tasks.start_soon(caller)
            await factory.started.wait()
            await anyio.wait_all_tasks_blocked()
            factory.release.set()
    assert factory.calls == 1
    assert results == ["computed"] * 1000
    assert any_cache.in_flight == 0


async def test_an_instant_factory_still_runs_once(any_cache: AnyCache) -> None:
    calls = 0

    async def instant() -> str:
        nonlocal calls
        calls += 1
        return "fast"

    async with anyio.create_task_group() as tasks:
        for _ in range(300):
            tasks.start_soon(any_cache.remember, "k", instant)
    assert calls == 1


@pytest.mark.parametrize("which", ["first", "middle", "last"])
async def test_cancelling_one_caller_never_touches_the_others(
    any_cache: AnyCache, which: str
) -> None:
    factory = Factory()
    results: list[str] = []
    scopes: list[anyio.CancelScope] = []

    async def caller() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            results.append(await any_cache.remember("k", factory))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            # The first caller starts the run; the others then find it in
            # progress and join it at once (no I/O), so all five are waiting.
            tasks.start_soon(caller)
            await factory.started.wait()
            for _ in range(4):
                tasks.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            scopes[{"first": 0, "middle": 2, "last": 4}[which]].cancel()
            await anyio.wait_all_tasks_blocked()
            assert not factory.cancelled.is_set()
            factory.release.set()
    assert results == ["computed"] * 4
    assert factory.calls == 1
    assert await any_cache.get("k") == "computed"


async def test_when_every_caller_is_gone_the_work_is_cancelled(any_cache: AnyCache) -> None:
    factory = Factory()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(any_cache.remember, "k", factory)
            await factory.started.wait()
            for _ in range(2):
                tasks.start_soon(any_cache.remember, "k", factory)
            await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()
        await factory.cancelled.wait()
    assert any_cache.in_flight == 0
    assert await any_cache.has("k") is False
    # The next call starts afresh.
    again = Factory()
    again.release.set()
    assert await any_cache.remember("k", again) == "computed"


async def test_per_key_state_does_not_grow_with_keys_seen(any_cache: AnyCache) -> None:
    async def value() -> str:
        return "v"

    async with anyio.create_task_group() as tasks:
        for index in range(300):
            tasks.start_soon(any_cache.remember, f"many:{index}", value)
    assert any_cache.in_flight == 0


# -- remember: what factories do --------------------------------------------------


async def test_a_factory_error_reaches_every_waiter_and_nothing_is_stored(
    any_cache: AnyCache,
) -> None:
    factory = Factory()
    factory.error = LookupError("database said no")
    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await any_cache.remember("k", factory)
        except LookupError as exc:
            errors.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(caller)
            await factory.started.wait()
            for _ in range(3):
                tasks.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            factory.release.set()
    assert len(errors) == 4
    assert all(str(error) == "database said no" for error in errors)
    assert factory.calls == 1
    assert await any_cache.has("k") is False
    retry = Factory()
    retry.release.set()
    assert await any_cache.remember("k", retry) == "computed"
    assert retry.calls == 1


@pytest.mark.parametrize("lock", [False, True], ids=["local", "lock"])
@pytest.mark.parametrize(
    ("anyio_backend", "kind"),
    backends_and_kinds("custom", "generator-exit", "system-exit", "stray-cancel"),
)
async def test_a_factory_base_exception_fails_its_waiters_only(
    any_cache: AnyCache, anyio_backend: str, kind: str, lock: bool
) -> None:
    error = base_exception(kind, anyio_backend)
    failing = Factory()
    failing.error = error
    unrelated = Factory("unrelated")
    caught: list[BaseException] = []
    unrelated_results: list[str] = []

    async def waiter() -> None:
        try:
            await any_cache.remember("k", failing, lock=lock)
        except BaseException as exc:  # whatever it is, it must be the factory's own
            caught.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as outer:
            # Another key's run is in flight meanwhile.
            outer.start_soon(append, unrelated_results, any_cache.remember("other", unrelated))
            await unrelated.started.wait()
            async with anyio.create_task_group() as waiters:
                waiters.start_soon(waiter)
                await failing.started.wait()
                for _ in range(2):
                    waiters.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                failing.release.set()
            assert len(caught) == 3
            assert all(exc is error for exc in caught)  # as itself, never wrapped
            assert not unrelated.cancelled.is_set()
            unrelated.release.set()
    assert unrelated_results == ["unrelated"]
    assert await any_cache.has("k") is False
    assert any_cache.in_flight == 0
    # The port carries on: a later call computes afresh, reads still work.
    retry = Factory()
    retry.release.set()
    assert await any_cache.remember("k", retry, lock=lock) == "computed"
    assert await any_cache.get("other") == "unrelated"


async def test_a_factory_awaiting_its_own_key_gets_an_error_not_a_deadlock(
    any_cache: AnyCache,
) -> None:
    async def selfish() -> str:
        return await any_cache.remember("k", selfish)

    with anyio.fail_after(5), pytest.raises(RuntimeError, match="inside its own factory"):
        await any_cache.remember("k", selfish)
    assert any_cache.in_flight == 0


async def test_a_cycle_through_another_key_is_detected_too(any_cache: AnyCache) -> None:
    async def make_a() -> str:
        return await any_cache.remember("b", make_b)

    async def make_b() -> str:
        return await any_cache.remember("a", make_a)

    with anyio.fail_after(5), pytest.raises(RuntimeError, match="inside its own factory"):
        await any_cache.remember("a", make_a)


async def test_a_factory_may_remember_other_keys(any_cache: AnyCache) -> None:
    async def inner() -> str:
        return "inner"

    async def outer() -> str:
        return "outer+" + await any_cache.remember("inner", inner)

    assert await any_cache.remember("outer", outer) == "outer+inner"


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["list"]])
async def test_non_str_results_raise_type_error_and_store_nothing(
    any_cache: AnyCache, bad: object
) -> None:
    factory = Factory(bad)
    factory.release.set()
    with pytest.raises(TypeError, match="not str"):
        await any_cache.remember("k", factory)
    assert await any_cache.has("k") is False


async def test_a_result_that_cannot_be_encoded_is_refused_naming_the_key(
    any_cache: AnyCache,
) -> None:
    factory = Factory("fine, then \ud800")  # a lone surrogate: no UTF-8 for it
    factory.release.set()
    with pytest.raises(ValueError, match=r"'k'.*cannot be encoded as UTF-8.*nothing was stored"):
        await any_cache.remember("k", factory)
    assert await any_cache.has("k") is False
