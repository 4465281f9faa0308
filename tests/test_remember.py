"""remember(): every single-flight rule in DESIGN.md, under asyncio and trio."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

import anyio
import pytest

from beignet_redis_anyio import RedisCachePort, RedisConfig, open_redis_provider
from beignet_redis_anyio._cache.keys import sidecar_key
from observing import Observed
from servers import RedisServer

pytestmark = pytest.mark.anyio


class Factory:
    """A factory that counts its calls and runs only when released."""

    def __init__(self, value: object = "computed") -> None:
        self.value = value
        self.calls = 0
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()
        self.error: BaseException | None = None

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


async def test_hit_returns_the_cached_value_without_calling_the_factory(
    cache: RedisCachePort,
) -> None:
    factory = Factory()
    await cache.set("k", "cached")
    assert await cache.remember("k", factory) == "cached"
    assert factory.calls == 0


async def test_miss_computes_stores_and_returns(cache: RedisCachePort) -> None:
    factory = Factory()
    factory.release.set()
    assert await cache.remember("k", factory, ttl_seconds=30) == "computed"
    assert await cache.get("k") == "computed"
    assert 0 < await cache.client.pttl(cache.key_prefix + "k") <= 30_000
    assert await cache.remember("k", factory) == "computed"
    assert factory.calls == 1


async def test_concurrent_misses_run_the_factory_once(cache: RedisCachePort) -> None:
    factory = Factory()
    results: list[str] = []

    async def caller() -> None:
        results.append(await cache.remember("k", factory))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            for _ in range(200):
                tasks.start_soon(caller)
            await factory.started.wait()
            await anyio.wait_all_tasks_blocked()
            factory.release.set()
    assert factory.calls == 1
    assert results == ["computed"] * 200
    assert cache.in_flight == 0


async def test_an_instant_factory_still_runs_once(cache: RedisCachePort) -> None:
    calls = 0

    async def instant() -> str:
        nonlocal calls
        calls += 1
        return "fast"

    async with anyio.create_task_group() as tasks:
        for _ in range(300):
            tasks.start_soon(cache.remember, "k", instant)
    assert calls == 1


@pytest.mark.parametrize("which", ["first", "middle", "last"])
async def test_cancelling_one_caller_never_touches_the_others(
    cache: RedisCachePort, which: str
) -> None:
    factory = Factory()
    results: list[str] = []
    scopes: list[anyio.CancelScope] = []

    async def caller() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            results.append(await cache.remember("k", factory))

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
    assert await cache.get("k") == "computed"


async def test_when_every_caller_is_gone_the_work_is_cancelled(cache: RedisCachePort) -> None:
    factory = Factory()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(cache.remember, "k", factory)
            await factory.started.wait()
            for _ in range(2):
                tasks.start_soon(cache.remember, "k", factory)
            await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()
        await factory.cancelled.wait()
    assert cache.in_flight == 0
    assert await cache.has("k") is False
    # The next call starts afresh.
    again = Factory()
    again.release.set()
    assert await cache.remember("k", again) == "computed"


async def test_a_factory_error_reaches_every_waiter_and_nothing_is_stored(
    cache: RedisCachePort,
) -> None:
    factory = Factory()
    factory.error = LookupError("database said no")
    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await cache.remember("k", factory)
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
    assert await cache.has("k") is False
    retry = Factory()
    retry.release.set()
    assert await cache.remember("k", retry) == "computed"
    assert retry.calls == 1


async def test_a_factory_awaiting_its_own_key_gets_an_error_not_a_deadlock(
    cache: RedisCachePort,
) -> None:
    async def selfish() -> str:
        return await cache.remember("k", selfish)

    with anyio.fail_after(5), pytest.raises(RuntimeError, match="inside its own factory"):
        await cache.remember("k", selfish)
    assert cache.in_flight == 0


async def test_a_cycle_through_another_key_is_detected_too(cache: RedisCachePort) -> None:
    async def make_a() -> str:
        return await cache.remember("b", make_b)

    async def make_b() -> str:
        return await cache.remember("a", make_a)

    with anyio.fail_after(5), pytest.raises(RuntimeError, match="inside its own factory"):
        await cache.remember("a", make_a)


async def test_a_factory_may_remember_other_keys(cache: RedisCachePort) -> None:
    async def inner() -> str:
        return "inner"

    async def outer() -> str:
        return "outer+" + await cache.remember("inner", inner)

    assert await cache.remember("outer", outer) == "outer+inner"


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["list"]])
async def test_non_str_results_raise_type_error_and_store_nothing(
    cache: RedisCachePort, bad: object
) -> None:
    factory = Factory(bad)
    factory.release.set()
    with pytest.raises(TypeError, match="not str"):
        await cache.remember("k", factory)
    assert await cache.has("k") is False


async def test_an_empty_string_is_a_hit(cache: RedisCachePort) -> None:
    factory = Factory("")
    factory.release.set()
    assert await cache.remember("k", factory) == ""
    assert await cache.remember("k", factory) == ""
    assert factory.calls == 1


async def test_per_key_state_does_not_grow_with_keys_seen(cache: RedisCachePort) -> None:
    async def value() -> str:
        return "v"

    async with anyio.create_task_group() as tasks:
        for index in range(300):
            tasks.start_soon(cache.remember, f"many:{index}", value)
    assert cache.in_flight == 0


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


async def _append(results: list[str], call: Awaitable[str]) -> None:
    results.append(await call)


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
                    tasks.start_soon(_append, results, cache.remember(key, Factory()))
                await anyio.wait_all_tasks_blocked()  # they wait for its answer
                first_reader.cancel()
        assert results == ["cached"] * 5


class Unusual(BaseException):
    """A factory's own ``BaseException`` subclass."""


def _backends_and_kinds(*kinds: str) -> list[tuple[str, str]]:
    """Each kind on each backend, but a stray cancellation on asyncio only:
    trio.Cancelled cannot be constructed."""
    return [
        (backend, kind)
        for backend in ("asyncio", "trio")
        for kind in kinds
        if not (backend == "trio" and kind == "stray-cancel")
    ]


def _base_exception(kind: str, backend: str) -> BaseException:
    if kind == "stray-cancel":
        # On asyncio: as if the factory awaited a future someone else cancelled.
        return anyio.get_cancelled_exc_class()()
    return {
        "custom": Unusual("the factory's own"),
        "generator-exit": GeneratorExit(),
        "system-exit": SystemExit(3),
    }[kind]


@pytest.mark.parametrize("lock", [False, True], ids=["local", "lock"])
@pytest.mark.parametrize(
    ("anyio_backend", "kind"),
    _backends_and_kinds("custom", "generator-exit", "system-exit", "stray-cancel"),
)
async def test_a_factory_base_exception_fails_its_waiters_only(
    cache: RedisCachePort, anyio_backend: str, kind: str, lock: bool
) -> None:
    error = _base_exception(kind, anyio_backend)
    failing = Factory()
    failing.error = error
    unrelated = Factory("unrelated")
    caught: list[BaseException] = []
    unrelated_results: list[str] = []

    async def waiter() -> None:
        try:
            await cache.remember("k", failing, lock=lock)
        except BaseException as exc:  # whatever it is, it must be the factory's own
            caught.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as outer:
            # Another key's run is in flight meanwhile, in the same task group.
            outer.start_soon(_append, unrelated_results, cache.remember("other", unrelated))
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
    assert await cache.has("k") is False
    assert cache.in_flight == 0
    # The provider carries on: a later call computes afresh, reads still work.
    retry = Factory()
    retry.release.set()
    assert await cache.remember("k", retry, lock=lock) == "computed"
    assert await cache.get("other") == "unrelated"


@pytest.mark.parametrize(
    ("anyio_backend", "kind"), _backends_and_kinds("custom", "generator-exit", "stray-cancel")
)
async def test_a_background_refresh_raising_a_base_exception_fails_only_itself(
    server_url: str, key: str, anyio_backend: str, kind: str
) -> None:
    error = _base_exception(kind, anyio_backend)
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
                tasks.start_soon(_append, results, cache.remember(f"{key}:other", unrelated))
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


@pytest.mark.parametrize("lock", [False, True], ids=["local", "lock"])
async def test_a_str_that_cannot_be_encoded_fails_naming_the_key_and_stores_nothing(
    cache: RedisCachePort, lock: bool
) -> None:
    factory = Factory("fine, then \ud800")  # a lone surrogate: no UTF-8 for it
    factory.release.set()
    with pytest.raises(ValueError, match=r"'k'.*cannot be encoded as UTF-8.*nothing was stored"):
        await cache.remember("k", factory, lock=lock)
    full_key = cache.key_prefix + "k"
    assert await cache.client.exists(full_key, sidecar_key(full_key, "lock")) == 0
    factory.value = "fine"
    assert await cache.remember("k", factory, lock=lock) == "fine"
