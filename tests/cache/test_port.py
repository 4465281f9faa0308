"""What only the Redis port shows: TTLs and keys as the server sees them, no I/O
for bad input, error replies in events. The behaviour every port shares is
in ``test_port_contract.py``."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ResponseError

from beignet_redis_anyio import CacheEvent, RedisCachePort, RedisConfig
from beignet_redis_anyio import open_redis_provider as open_provider

pytestmark = pytest.mark.anyio


async def test_fractional_ttl_keeps_millisecond_precision(cache: RedisCachePort) -> None:
    await cache.set("short", "v", ttl_seconds=12.345)
    remaining = await cache.client.pttl(cache.key_prefix + "short")
    assert 12_000 < remaining <= 12_345
    await cache.set("long", "v", ttl_seconds=3600)
    assert 3_599_000 < await cache.client.pttl(cache.key_prefix + "long") <= 3_600_000
    await cache.set("forever", "v")
    assert await cache.client.pttl(cache.key_prefix + "forever") == -1


@pytest.mark.parametrize("key", ["", None, 5, b"bytes"])
async def test_bad_keys_send_nothing(
    cache: RedisCachePort, key: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from beignet_redis_anyio._net.transport import SocketTransport

    await cache.client.ping()  # connected: a send would find its way
    sent: list[bytes] = []
    for name in ("send_now", "send"):
        original = getattr(SocketTransport, name)

        def audited(self: SocketTransport, data: bytes, original: Any = original) -> Any:
            sent.append(bytes(data))
            return original(self, data)

        monkeypatch.setattr(SocketTransport, name, audited)

    async def factory() -> str:
        raise AssertionError("the factory must not run for a bad key")

    for operation in (cache.get, cache.delete, cache.has):
        with pytest.raises((TypeError, ValueError), match="key"):
            await operation(key)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="key"):
        await cache.set(key, "v")  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="key"):
        await cache.remember(key, factory)  # type: ignore[arg-type]
    assert sent == []
    await cache.client.ping()  # the audit sees real traffic
    assert len(sent) == 1


async def test_key_prefix_applies_to_the_port_not_the_client(server_url: str) -> None:
    async with open_provider(RedisConfig(url=server_url, key_prefix="svc:")) as cache:
        await cache.set("user:1", "ada")
        assert await cache.client.get("svc:user:1") == "ada"
        assert await cache.client.get("user:1") is None
        await cache.client.set("svc:user:2", "grace")
        assert await cache.get("user:2") == "grace"
        await cache.client.delete("svc:user:1", "svc:user:2")


async def test_escape_hatch_shares_keys_without_prefix(cache: RedisCachePort) -> None:
    key = cache.key_prefix + "counter"
    assert await cache.client.incr(key) == 1
    assert await cache.client.expire(key, 300) is True
    assert await cache.get("counter") == "1"


async def test_error_replies_are_reported_naming_the_error(server_url: str) -> None:
    events: list[CacheEvent] = []
    config = RedisConfig(url=server_url, key_prefix="errors:")
    async with open_provider(config, observer=events.append) as cache:
        await cache.client.rpush("errors:list", "x")
        with pytest.raises(ResponseError):
            await cache.get("list")
        await cache.client.delete("errors:list")
    assert [(e.operation, e.status) for e in events] == [("cache.get", "error")]
    assert events[0].error is not None and "WRONGTYPE" in events[0].error
