"""A batch during an outage fails as an outage: the ``ConnectionError`` (or
``TimeoutError``) an app's 503 handler catches, never a ``BatchError`` it
would miss; and under ``bypass`` every key answered without Redis is
reported as an error, as the single-key operations report it."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import anyio
import pytest
from redis.exceptions import ConnectionError, TimeoutError

from beignet_redis_anyio import (
    BatchError,
    BatchUnavailableError,
    CacheEvent,
    CircuitOpenError,
    RedisConfig,
    open_redis_provider,
)
from beignet_redis_anyio._cache.batches import answer
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio


def _config(server: RedisServer, **options: Any) -> RedisConfig:
    return RedisConfig(
        url=server.url, key_prefix=f"t:{uuid.uuid4().hex}:", connect_timeout=1, **options
    )


async def _load(missing: list[str]) -> dict[str, str]:
    return {key: key.upper() for key in missing}


#: With and without the cross-process lease: ``remember_many(lock=True)``
#: fails, and under ``bypass`` carries on, exactly as without it.
LOCKS = pytest.mark.parametrize("lock", [False, True], ids=["no-lock", "lock"])


@LOCKS
async def test_every_batch_raises_the_outage_itself(own_server: RedisServer, lock: bool) -> None:
    config = _config(own_server, breaker_threshold=3, remember_lock=lock)
    async with open_redis_provider(config) as cache:
        own_server.stop()
        for call in (
            cache.get_many(["a", "b"]),
            cache.set_many({"a": "1"}),
            cache.delete_many(["a"]),
            cache.remember_many(["a", "b"], _load),
            cache.json.remember_many(["a"], _load),
            cache.namespace("ns").get_many(["a"]),
        ):
            with pytest.raises(ConnectionError) as caught:
                await call
            assert not isinstance(caught.value, BatchError)
        # The breaker opened on the way: the next batch fails at once, as itself.
        with pytest.raises(CircuitOpenError):
            await cache.remember_many(["c"], _load)


@LOCKS
async def test_a_batch_part_done_before_the_outage_is_a_connection_error_too(
    own_server: RedisServer, lock: bool
) -> None:
    async with open_redis_provider(_config(own_server, remember_lock=lock)) as cache:
        await cache.set("hit", "stored before")

        async def load_then_lose_redis(missing: list[str]) -> dict[str, str]:
            own_server.stop()  # the values are made; storing them fails
            return {key: "new" for key in missing}

        with pytest.raises(BatchUnavailableError) as caught:
            await cache.remember_many(["hit", "miss"], load_then_lose_redis)
    assert isinstance(caught.value, ConnectionError)
    assert caught.value.values == {"hit": "stored before"}
    assert isinstance(caught.value.errors["miss"], ConnectionError)


def test_the_rule_for_mixed_outcomes() -> None:
    outage, bad = ConnectionError("gone"), LookupError("no row")
    with pytest.raises(BatchUnavailableError):
        answer("get_many", ["a", "b"], ["v", outage])
    with pytest.raises(BatchUnavailableError):  # a per-key failure beside an outage
        answer("get_many", ["a", "b"], [bad, outage])
    with pytest.raises(ConnectionError) as caught:
        answer("get_many", ["a", "b"], [outage, outage])
    assert caught.value is outage
    with pytest.raises(BatchError) as not_outage:
        answer("get_many", ["a", "b"], ["v", bad])
    assert not isinstance(not_outage.value, ConnectionError)
    assert answer("get_many", ["a"], [None]) == {"a": None}


@LOCKS
async def test_bypassed_batches_are_reported_as_errors_per_key(
    own_server: RedisServer, lock: bool
) -> None:
    events: list[CacheEvent] = []
    config = _config(own_server, failure_policy="bypass", remember_lock=lock)
    async with open_redis_provider(config, observer=events.append) as cache:
        own_server.stop()
        assert await cache.remember_many(["a", "b"], _load) == {"a": "A", "b": "B"}
        assert await cache.get_many(["a"]) == {"a": None}
        assert await cache.remember("c", lambda: _one("c")) == "C"
    reported = [
        (e.operation, e.key, e.status)
        for e in events
        if e.operation in ("cache.remember_many", "cache.get_many", "cache.remember")
    ]
    assert reported == [
        ("cache.remember_many", "a", "error"),
        ("cache.remember_many", "b", "error"),
        ("cache.get_many", "a", "error"),
        ("cache.remember", "c", "error"),
    ]
    assert all("ConnectionError" in (e.error or "") for e in events if e.status == "error")


async def _one(key: str) -> str:
    return key.upper()


async def test_a_frozen_server_fails_a_batch_as_a_timeout_within_one_command_timeout(
    own_server: RedisServer,
) -> None:
    config = _config(own_server, command_timeout=0.3)
    async with open_redis_provider(config) as cache:
        await cache.set_many({"a": "1"})
        assert own_server.process is not None
        own_server.process.send_signal(signal.SIGSTOP)
        try:
            with anyio.fail_after(5):
                with pytest.raises((TimeoutError, ConnectionError)) as caught:
                    await cache.json.remember_many(["a", "b"], _load)
                assert not isinstance(caught.value, BatchError)
                with pytest.raises((TimeoutError, ConnectionError)) as caught:
                    await cache.namespace("ns").remember_many(["a"], _load)
                assert not isinstance(caught.value, BatchError)
        finally:
            own_server.process.send_signal(signal.SIGCONT)
