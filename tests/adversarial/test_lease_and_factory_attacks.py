"""Promises a hostile-user pass broke, kept as tests (each failed before its fix).

Cancelled lease takers and a closing provider left leases behind; a ready
subscription that could not open made every ``lock=True`` miss wait; a
factory error whose ``__str__`` raises was replaced by that error; foreign
data in the early-refresh sidecar broke good hits.
"""

from __future__ import annotations

import random

import anyio
import pytest
from redis.exceptions import ConnectionError

from beignet_redis_anyio import RedisConfig, open_redis_provider
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from helpers.backends import asyncio_backends
from helpers.targets import FLAVOURS, RedisServer

pytestmark = pytest.mark.anyio

#: Long enough that a call which waited one would blow the tests' bounds.
LONG = 30.0


async def _value() -> str:
    return "v"


async def test_a_lock_miss_under_bypass_never_waits_for_a_subscription_that_cannot_open(
    own_server: RedisServer, key: str
) -> None:
    config = RedisConfig(url=own_server.url, command_timeout=LONG, failure_policy="bypass")
    async with open_redis_provider(config) as cache:
        own_server.stop()
        with anyio.fail_after(10):  # far below one command timeout
            with pytest.raises(ConnectionError):
                await cache.client.ping()  # the outage is known now
            for index in range(3):
                assert await cache.remember(f"{key}:{index}", _value, lock=True) == "v"


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_refused_ready_subscription_makes_lock_misses_poll_not_wait(
    key: str, flavour: str
) -> None:
    """At maxclients the shared connection works but the subscriber's is
    refused: followers poll; nobody waits a command timeout for it."""
    server = RedisServer("--maxclients", "1", flavour=flavour)
    try:
        config = RedisConfig(url=server.url, command_timeout=LONG)
        async with open_redis_provider(config) as cache:
            with anyio.fail_after(10):
                for index in range(3):
                    assert await cache.remember(f"{key}:{index}", _value, lock=True) == "v"
    finally:
        server.close()


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


async def test_a_factory_error_whose_str_raises_still_reaches_the_caller_as_itself(
    real_server: RedisServer, key: str
) -> None:
    error = _UnprintableError()

    async def factory() -> str:
        raise error

    events: list[object] = []
    async with open_redis_provider(
        RedisConfig(url=real_server.url), observer=events.append
    ) as cache:
        with pytest.raises(_UnprintableError) as caught:
            await cache.remember(key, factory)
        assert caught.value is error
        assert events  # the observer heard of it, described by its class


@pytest.mark.parametrize("meta", ["not-a-number", "inf", "nan", "-5", b"\xff\xfe"])
async def test_foreign_early_refresh_metadata_never_breaks_a_hit(
    real_server: RedisServer, key: str, meta: str | bytes
) -> None:
    async def factory() -> str:
        return "computed"

    async with open_redis_provider(RedisConfig(url=real_server.url)) as cache:
        await cache.client.set(key, "cached", px=100_000)
        await cache.client.set(sidecar_key(key, "meta"), meta, px=100_000)
        for _ in range(5):
            assert await cache.remember(key, factory, ttl_seconds=100, early_refresh=True) == (
                "cached"
            )
        assert await cache.client.get(key) == "cached"


async def test_a_leader_whose_provider_closes_lets_the_lease_go(
    real_server: RedisServer, key: str
) -> None:
    """A process shutting down mid-compute (a rolling deploy): its lease is
    released on the way out, so a follower takes over at once instead of
    waiting out REDIS_LOCK_WAIT."""

    async def never() -> str:
        await anyio.sleep_forever()
        raise AssertionError

    async def value() -> str:
        return "from-follower"

    leader_config = RedisConfig(url=real_server.url, lock_lease_seconds=LONG)
    follower_config = RedisConfig(url=real_server.url, lock_wait_seconds=LONG)
    lock = sidecar_key(key, "lock")
    with anyio.fail_after(10):
        async with open_redis_provider(follower_config) as follower:
            async with (
                anyio.create_task_group() as tasks,
                open_redis_provider(leader_config) as leader,
            ):

                async def lead() -> None:
                    with pytest.raises(RuntimeError, match="provider closed"):
                        await leader.remember(key, never, lock=True)

                tasks.start_soon(lead)
                while not await follower.client.exists(lock):  # noqa: ASYNC110 - server state
                    await anyio.sleep(0.01)
            assert await follower.client.exists(lock) == 0
            assert await follower.remember(key, value, lock=True) == "from-follower"


async def test_cancelled_lease_takers_leave_no_lease_behind(
    real_server: RedisServer, key: str
) -> None:
    """Callers cancelled at random instants, some while their SET NX is in
    flight: every lease they may have taken is given up, long before it
    would expire by itself."""
    rng = random.Random(3)
    config = RedisConfig(url=real_server.url, lock_lease_seconds=LONG)
    async with open_redis_provider(config) as cache:

        async def one(name: str) -> None:
            with anyio.move_on_after(rng.random() * 0.004):
                await cache.remember(name, _value, lock=True)

        for round_ in range(4):
            async with anyio.create_task_group() as tasks:
                for index in range(50):
                    tasks.start_soon(one, f"{key}:{round_}:{index}")
        pattern = sidecar_key(f"{key}:*", "lock")
        with anyio.fail_after(10):  # a lease left behind would last LONG
            while await cache.client.keys(pattern):  # noqa: ASYNC110 - server state
                await anyio.sleep(0.02)


@pytest.mark.parametrize("anyio_backend", asyncio_backends())  # trio.Cancelled cannot be made
async def test_a_factorys_stray_cancellation_is_reported_as_an_error_not_a_cancel(
    server_url: str, key: str, anyio_backend: object
) -> None:
    stray = anyio.get_cancelled_exc_class()()

    async def factory() -> str:
        raise stray  # as if it awaited a future someone else cancelled

    events: list[object] = []
    async with open_redis_provider(RedisConfig(url=server_url), observer=events.append) as cache:
        with pytest.raises(type(stray)):
            await cache.remember(key, factory)
    statuses = [(e.operation, e.status) for e in events]  # type: ignore[attr-defined]
    assert ("cache.remember", "error") in statuses
    assert ("cache.remember", "cancelled") not in statuses
