"""One OS process of the cross-process tests: many callers of remember().

    python remember_worker.py URL KEY --backend uvloop --callers 50 --factory-seconds 0.2

With ``--many N`` each caller asks ``remember_many`` for the keys
``KEY:0`` … ``KEY:N-1`` instead, and the factory also counts the keys it
computed (INCRBY KEY:keys-computed); a caller's results are its values in
key order.

Waits for a start signal (BLPOP on KEY:go) so that every process starts
together, runs the callers, and prints one JSON line: what each caller got,
how often this process ran the factory, and the backend it ran on. The
factory counts its runs in Redis (INCR KEY:factory-calls) so the test can
add them up across processes.
"""

from __future__ import annotations

import argparse
import json
import os

import anyio

from beignet_redis_anyio import CacheEvent, RedisConfig, open_redis_provider
from beignet_redis_anyio.testing._backends import NAMED, run_options
from helpers.backends import running_backend


async def main(args: argparse.Namespace) -> None:
    events: list[CacheEvent] = []
    config = RedisConfig(
        url=args.url,
        protocol=int(os.environ.get("BEIGNET_TEST_PROTOCOL", "2")),
        remember_lock=True,
        lock_lease_seconds=args.lease,
        lock_wait_seconds=args.wait,
    )
    calls = 0
    async with open_redis_provider(config, observer=events.append) as cache:

        async def factory() -> str:
            nonlocal calls
            calls += 1
            await cache.client.incr(f"{args.key}:factory-calls")
            await cache.client.rpush(f"{args.key}:started", os.getpid())
            await anyio.sleep(args.factory_seconds)
            return f"value-from-{os.getpid()}"

        async def factory_many(keys: list[str]) -> dict[str, str]:
            nonlocal calls
            calls += 1
            await cache.client.incr(f"{args.key}:factory-calls")
            await cache.client.incrby(f"{args.key}:keys-computed", len(keys))
            await cache.client.rpush(f"{args.key}:started", os.getpid())
            await anyio.sleep(args.factory_seconds)
            return dict.fromkeys(keys, f"value-from-{os.getpid()}")

        await cache.client.blpop([f"{args.key}:go"], timeout=30)
        results: list[str] = []
        keys = [f"{args.key}:{index}" for index in range(args.many)]

        async def caller() -> None:
            if not keys:
                results.append(await cache.remember(args.key, factory, ttl_seconds=60))
                return
            got = await cache.remember_many(keys, factory_many, ttl_seconds=60)
            results.extend(got[k] for k in keys)

        async with anyio.create_task_group() as tasks:
            for _ in range(args.callers):
                tasks.start_soon(caller)
    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "backend": running_backend(),
                "results": results,
                "factory_calls": calls,
                "lock_events": [e.status for e in events if e.operation == "cache.lock"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("--backend", default="asyncio", choices=NAMED)
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--factory-seconds", type=float, default=0.2)
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--wait", type=float, default=10.0)
    parser.add_argument("--many", type=int, default=0)
    arguments = parser.parse_args()
    anyio.run(main, arguments, **run_options(arguments.backend))
