"""``get_many`` with the local cache: the keys held locally answer without a
round trip, the rest go in one write and are kept under the same ticket rule
as ``get`` (``_cache/local.py``)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from beignet_redis_anyio import (
    BatchError,
    CacheEvent,
    RedisConfig,
    open_redis_client,
    open_redis_provider,
)
from beignet_redis_anyio._cache.local import ABSENT
from beignet_redis_anyio._cache.port import RedisCachePort
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _local(url: str, **options: Any) -> AsyncIterator[RedisCachePort]:
    async with open_redis_provider(RedisConfig(url=url, local_cache=True, **options)) as cache:
        yield cache


async def _calls(client: Any, command: str) -> int:
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_hot_keys_answer_from_memory_and_only_the_rest_are_read(
    real_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:{n}" for n in range(50)]
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as other:
        for n, name in enumerate(keys[:40]):
            await other.set(name, f"v{n}")
        expected = {name: (f"v{n}" if n < 40 else None) for n, name in enumerate(keys)}
        assert await cache.get_many(keys) == expected  # all 50 from Redis
        gets = await _calls(other, "get")
        assert await cache.get_many(keys) == expected
        assert await cache.get_many(list(reversed(keys))) == expected
        assert await _calls(other, "get") == gets  # nothing left the process
        stats = cache.local_stats
        assert stats is not None and stats.hits == 100 and stats.misses == 50
        # One key dropped locally: only it is read again.
        await cache.set(keys[0], "new")
        gets = await _calls(other, "get")
        assert (await cache.get_many(keys))[keys[0]] == "new"
        assert await _calls(other, "get") == gets + 1


async def test_another_clients_writes_are_seen_after_one_round_trip(
    real_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:{n}" for n in range(12)]
    rng = random.Random(23)
    current: dict[str, str | None] = dict.fromkeys(keys)
    async with _local(real_server.url) as cache, open_redis_client(real_server.url) as writer:
        for round_ in range(150):
            page = rng.sample(keys, 5)
            assert await cache.get_many(page) == {name: current[name] for name in page}, round_
            chosen = rng.choice(page)
            if round_ % 5 == 0:
                await writer.delete(chosen)
                current[chosen] = None
            else:
                current[chosen] = f"v{round_}"
                await writer.set(chosen, current[chosen])
            assert await cache.client.ping()  # the reader's one round trip
            assert await cache.get_many(page) == {name: current[name] for name in page}, round_
        stats = cache.local_stats
        assert stats is not None and stats.hits > 300 and stats.invalidations > 100


async def test_a_key_invalidated_while_the_read_was_out_is_returned_not_kept(
    real_server: RedisServer, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = f"{key}:a", f"{key}:b"
    async with _local(real_server.url) as cache:
        await cache.set_many({first: "1", second: "2"})
        local = cache._local
        assert local is not None
        original = cache.client._send_many

        async def overtaken(commands: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
            replies = await original(commands, transaction)
            local.invalidate(first)  # as if its push came just before the reply
            return replies

        monkeypatch.setattr(cache.client, "_send_many", overtaken)
        assert await cache.get_many([first, second]) == {first: "1", second: "2"}
        assert local.lookup(first) is ABSENT
        assert local.lookup(second) == "2"


async def test_foreign_bytes_and_another_type_fail_or_read_as_missing_per_key(
    real_server: RedisServer, key: str
) -> None:
    text, foreign, listed = f"{key}:t", f"{key}:f", f"{key}:l"
    async with (
        _local(real_server.url) as cache,
        open_redis_client(real_server.url, decode_responses=False) as raw,
    ):
        await raw.set(text, b"fine")
        await raw.set(foreign, b"\xff\xfe")
        await raw.rpush(listed, b"x")
        for _ in range(2):  # the second time, "fine" comes from memory
            with pytest.raises(BatchError) as caught:
                await cache.get_many([text, foreign, listed])
            assert caught.value.values == {text: "fine", listed: None}
            assert isinstance(caught.value.errors[foreign], UnicodeDecodeError)
        local = cache._local
        assert local is not None
        assert local.lookup(text) == "fine"
        assert local.lookup(foreign) is ABSENT and local.lookup(listed) is ABSENT


async def test_events_mark_the_keys_memory_answered(real_server: RedisServer, key: str) -> None:
    events: list[CacheEvent] = []
    hot, cold = f"{key}:hot", f"{key}:cold"
    config = RedisConfig(url=real_server.url, local_cache=True)
    async with open_redis_provider(config, observer=events.append) as cache:
        await cache.set(hot, "v")
        await cache.get(hot)
        events.clear()
        await cache.get_many([hot, cold])
    assert [(e.key, e.status, e.local, e.batch_index) for e in events] == [
        (hot, "hit", True, 0),
        (cold, "miss", False, 1),
    ]
