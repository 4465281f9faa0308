"""The cache provider in an application, under asyncio or trio.

    python examples/app.py --backend trio

Uses ``REDIS_URL`` (and the other ``REDIS_*`` variables) when set; otherwise
starts an embedded Redis, so it runs on a machine with no Redis at all.
"""

from __future__ import annotations

import argparse
import json
import os
from contextlib import AsyncExitStack

import anyio

from beignet_redis_anyio import CacheEvent, RedisConfig, open_redis_provider
from beignet_redis_anyio.testing import embedded_redis


async def load_profile(user_id: int) -> str:
    """Stands in for a slow database query."""
    await anyio.sleep(0.2)
    return json.dumps({"id": user_id, "name": "Ada Lovelace"})


async def main() -> None:
    events: list[CacheEvent] = []
    async with AsyncExitStack() as stack:
        if "REDIS_URL" in os.environ:
            config = RedisConfig.from_env()
        else:
            print("REDIS_URL is not set: starting an embedded Redis")
            config = RedisConfig(url=await stack.enter_async_context(embedded_redis()))
        cache = await stack.enter_async_context(open_redis_provider(config, observer=events.append))

        # The five operations.
        await cache.set("user:1:profile", json.dumps({"id": 1}), ttl_seconds=3600)
        print("get     ", await cache.get("user:1:profile"))
        print("has     ", await cache.has("user:1:profile"))
        print("delete  ", await cache.delete("user:1:profile"))
        print("get     ", await cache.get("user:1:profile"))

        # A stampede: 100 concurrent requests miss the same key at once. The
        # factory runs once; every caller gets its value.
        calls = 0

        async def factory() -> str:
            nonlocal calls
            calls += 1
            return await load_profile(1)

        results: list[str] = []

        async def request() -> None:
            results.append(await cache.remember("user:1:profile", factory, ttl_seconds=300))

        started = anyio.current_time()
        async with anyio.create_task_group() as tasks:
            for _ in range(100):
                tasks.start_soon(request)
        elapsed = anyio.current_time() - started
        print(
            f"remember: 100 concurrent callers, factory ran {calls} time(s), "
            f"{len(set(results))} distinct value(s), {elapsed * 1000:.0f} ms"
        )
        print("remember", await cache.remember("user:1:profile", factory), "(a hit)")

        # The escape hatch: the raw client, same keys, same connection.
        print("incr    ", await cache.client.incr("page:views"))
        print("expire  ", await cache.client.expire("page:views", 300))
        await cache.client.delete("user:1:profile", "page:views")

    hits = sum(event.status == "hit" for event in events)
    print(f"events  : {len(events)} cache events observed ({hits} hits)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)
