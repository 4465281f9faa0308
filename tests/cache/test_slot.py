"""CacheSlot: decorators and namespaces declared at import time, bound to
the provider's port while it is open, to a test's port in a ``with``."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from beignet_redis_anyio import CacheSlot, RedisConfig, RedisProvider, open_redis_provider
from beignet_redis_anyio.testing import MemoryCachePort

pytestmark = pytest.mark.anyio

# Declared at import time, before any provider exists, as an app declares them.
slot = CacheSlot()
loads: list[int] = []


@slot.cached(key="product:{product_id}", ttl_seconds=60)
async def product(product_id: int) -> dict[str, Any]:
    loads.append(product_id)
    return {"id": product_id}


products = slot.namespace("products")


async def test_unbound_calls_fail_at_once_and_say_what_to_do() -> None:
    with anyio.fail_after(1):  # never waits for a provider to appear
        for call in (
            slot.get("k"),
            product(1),
            products.get("k"),
            slot.json.get_many(["k"]),
            slot.remember_many(["k"], _load),
        ):
            with pytest.raises(RuntimeError, match="bind=slot"):
                await call
    with pytest.raises(RuntimeError, match="no cache port is bound"):
        _ = slot.client
    assert slot.is_bound is False
    assert "unbound" in repr(slot)


async def test_the_provider_binds_its_port_while_open(server_url: str) -> None:
    loads.clear()
    config = RedisConfig(url=server_url, key_prefix="slot-test:")
    async with open_redis_provider(config, bind=slot) as cache:
        assert slot.port is cache and slot.is_bound
        await product.invalidate(7)
        assert await product(7) == {"id": 7}
        assert await product(7) == {"id": 7}
        assert loads == [7]  # the second call was a hit, in Redis
        assert await cache.json.get("product:7") == {"id": 7}
        await products.set("a", "1")
        assert await products.get_many(["a"]) == {"a": "1"}
        assert slot.client is cache.client
        await product.invalidate(7)
    with pytest.raises(RuntimeError):
        await product(7)  # unbound again on exit


async def test_a_failed_provider_still_unbinds(server_url: str) -> None:
    config = RedisConfig(url=server_url, key_prefix="slot-test:")
    with pytest.raises(LookupError):
        async with open_redis_provider(config, bind=slot):
            raise LookupError("the app failed")
    assert slot.is_bound is False


async def test_a_test_binds_a_memory_port() -> None:
    loads.clear()
    memory = MemoryCachePort()
    with slot.bound(memory):
        assert await product(3) == {"id": 3}
        assert await product(3) == {"id": 3}
    assert loads == [3]
    assert memory.keys() == ["product:3"]
    assert slot.is_bound is False


async def test_one_port_at_a_time(server_url: str) -> None:
    with slot.bound(MemoryCachePort()):
        with pytest.raises(RuntimeError, match="already bound"), slot.bound(MemoryCachePort()):
            pass
        config = RedisConfig(url=server_url, key_prefix="slot-test:")
        with pytest.raises(RuntimeError, match="already bound"):
            async with open_redis_provider(config, bind=slot):
                pass
        assert slot.is_bound  # the first binding is untouched
    with pytest.raises(TypeError, match="not a cache port"), slot.bound(object()):
        pass


async def test_namespaces_start_clean_on_each_binding() -> None:
    first = MemoryCachePort()
    with slot.bound(first):
        await products.invalidate()
        await products.invalidate()
        await products.set("k", "in generation 2")
    second = MemoryCachePort()
    with slot.bound(second):
        assert await products.get("k") is None
        await products.set("k", "fresh")
    # The second port's namespace started from its own generation (0), not 2.
    assert second.keys() == ["products#0:k"]


async def test_the_provider_object_carries_the_slot(server_url: str) -> None:
    own = CacheSlot("own")
    provider = RedisProvider().with_options(
        config=RedisConfig(url=server_url, key_prefix="slot-test:"), bind=own
    )
    async with provider.open() as cache:
        assert own.port is cache
    assert not own.is_bound


async def _load(missing: list[str]) -> dict[str, str]:
    return dict.fromkeys(missing, "v")
