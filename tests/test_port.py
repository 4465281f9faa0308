"""The five operations, input checks, TTLs, the key prefix and events."""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest
from redis.exceptions import ResponseError

from beignet_redis_anyio import CacheEvent, CachePort, RedisCachePort, RedisConfig
from beignet_redis_anyio import open_redis_provider as open_provider
from servers import RedisServer

pytestmark = pytest.mark.anyio


async def test_get_set_delete_has(cache: RedisCachePort) -> None:
    assert isinstance(cache, CachePort)
    assert await cache.get("k") is None
    assert await cache.has("k") is False
    assert await cache.set("k", "v") is None
    assert await cache.get("k") == "v"
    assert await cache.has("k") is True
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.get("k") is None


async def test_empty_string_and_unicode_are_values(cache: RedisCachePort) -> None:
    await cache.set("empty", "")
    assert await cache.get("empty") == ""
    assert await cache.has("empty") is True
    await cache.set("unicode", "héllo ✓ 世界")
    assert await cache.get("unicode") == "héllo ✓ 世界"


async def test_fractional_ttl_keeps_millisecond_precision(cache: RedisCachePort) -> None:
    await cache.set("short", "v", ttl_seconds=12.345)
    remaining = await cache.client.pttl(cache.key_prefix + "short")
    assert 12_000 < remaining <= 12_345
    await cache.set("long", "v", ttl_seconds=3600)
    assert 3_599_000 < await cache.client.pttl(cache.key_prefix + "long") <= 3_600_000
    await cache.set("forever", "v")
    assert await cache.client.pttl(cache.key_prefix + "forever") == -1


async def test_values_expire_on_a_real_server(real_server: RedisServer) -> None:
    async with open_provider(RedisConfig(url=real_server.url, key_prefix="expiry:")) as cache:
        await cache.set("k", "v", ttl_seconds=0.05)
        assert await cache.get("k") == "v"
        with anyio.fail_after(5):
            # The server's clock decides and it sends no event: poll it.
            while await cache.has("k"):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert await cache.get("k") is None


@pytest.mark.parametrize("key", ["", None, 5, b"bytes"])
async def test_bad_keys_fail_before_any_io(
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


@pytest.mark.parametrize("value", [None, 5, b"bytes", {"a": 1}])
async def test_non_str_values_are_refused_and_nothing_is_written(
    cache: RedisCachePort, value: object
) -> None:
    with pytest.raises(TypeError, match="must be a str"):
        await cache.set("k", value)  # type: ignore[arg-type]
    assert await cache.has("k") is False


@pytest.mark.parametrize("ttl", [True, 0, -1, math.nan, math.inf, "60"])
async def test_bad_ttls_are_refused_and_nothing_is_written(
    cache: RedisCachePort, ttl: object
) -> None:
    with pytest.raises((TypeError, ValueError), match="ttl_seconds"):
        await cache.set("k", "v", ttl_seconds=ttl)  # type: ignore[arg-type]

    async def factory() -> str:
        raise AssertionError("never called")

    with pytest.raises((TypeError, ValueError), match="ttl_seconds"):
        await cache.remember("k", factory, ttl_seconds=ttl)  # type: ignore[arg-type]
    assert await cache.has("k") is False


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


async def test_one_event_per_operation_never_the_value(server_url: str) -> None:
    events: list[CacheEvent] = []
    config = RedisConfig(url=server_url, key_prefix="events:")
    async with open_provider(config, observer=events.append) as cache:
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


async def test_errors_and_cancellations_are_reported(server_url: str) -> None:
    events: list[CacheEvent] = []
    config = RedisConfig(url=server_url, key_prefix="errors:")
    async with open_provider(config, observer=events.append) as cache:
        await cache.client.rpush("errors:list", "x")
        with pytest.raises(ResponseError):
            await cache.get("list")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await cache.get("k")
        await cache.client.delete("errors:list")
    assert (events[0].operation, events[0].status) == ("cache.get", "error")
    assert events[0].error is not None and "WRONGTYPE" in events[0].error
    assert (events[1].operation, events[1].status) == ("cache.get", "cancelled")


async def test_a_failing_observer_never_breaks_an_operation(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: CacheEvent) -> None:
        raise RuntimeError("dashboard is down")

    async with open_provider(RedisConfig(url=server_url, key_prefix="obs:"), observer=broken) as c:
        await c.set("k", "v")
        assert await c.get("k") == "v"
        await c.delete("k")
    assert "cache observer failed" in caplog.text


async def test_a_str_with_no_utf8_form_is_refused_naming_the_key(cache: RedisCachePort) -> None:
    with pytest.raises(ValueError, match=r"'lone'.*cannot be encoded as UTF-8.*nothing was stored"):
        await cache.set("lone", "half a pair: \ud800")
    assert await cache.get("lone") is None
    await cache.set("lone", "héllo ✓")  # other non-ASCII text is fine
    assert await cache.get("lone") == "héllo ✓"
