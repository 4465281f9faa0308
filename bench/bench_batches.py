"""Batch-read benchmark: ``get_many`` of 100 keys, against 100 ``get`` calls
and against cashews' and aiocache's batch reads, on the same server.

Against a throw-away local ``redis-server`` (started on a free loopback port,
always stopped again). Each backend runs in its own subprocess (this file
with ``--run``); inside it every contender is measured in alternating rounds
(the order rotating each round, so a noisy machine's drift hits all alike),
and only ratios from the same process are reported:

``get_many / sequential get``
    one task: ``await cache.get_many(keys)`` (100 keys, one ``MGET``) against
    ``for key in keys: await cache.get(key)``, counted in keys per second.
    Target: >= 20x, on asyncio and on trio.

``get_many / cashews`` and ``get_many / aiocache``
    the same 100-key read with ``cashews.Cache.get_many`` and
    ``aiocache.RedisCache.multi_get``, each reading 100 keys it stored itself
    (their serialisers are their own). asyncio only: neither runs on trio.
    Target: >= 2x.

Every read is checked (all 100 values come back); a wrong answer fails the
child. Usage::

    python bench/bench_batches.py [--quick] [--json PATH]

Exit status is 0 even when a target FAILs (this is a report), non-zero when
a child crashes or redis-server is missing.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from _harness import (
    ChildFailed,
    bench_main,
    check,
    exit_status,
    print_header,
    print_table,
    run_child,
    status,
    target_line,
    write_results,
)

from beignet_redis_anyio.testing.servers import RedisServer

#: The distributions whose versions the result records.
PEERS = ("anyio", "trio", "cashews", "aiocache", "redis")
BACKENDS = ("asyncio", "trio")
KEYS = 100
ROUNDS = 10
SEQUENTIAL_MIN = 20.0
PEER_MIN = 2.0

Read = Callable[[], Awaitable[None]]


async def contenders(url: str, backend: str, stack: Any) -> dict[str, Read]:
    """Each contender's 100-key read, its keys stored first."""
    from beignet_redis_anyio import RedisConfig, open_redis_provider

    cache = await stack.enter_async_context(open_redis_provider(RedisConfig(url=url)))
    keys = [f"bench:batch:{i}" for i in range(KEYS)]
    await cache.set_many({key: f"value-{key}" for key in keys})

    async def get_many() -> None:
        values = await cache.get_many(keys)
        check(len(values) == KEYS and values[keys[-1]] is not None, "get_many missed")

    async def sequential() -> None:
        for key in keys:
            value = await cache.get(key)
        check(value is not None, "get missed")

    reads: dict[str, Read] = {"get_many": get_many, "sequential get": sequential}
    if backend != "asyncio":
        return reads

    from aiocache import RedisCache  # type: ignore[import-untyped]
    from cashews import Cache

    cashews = Cache()
    cashews.setup(url)
    stack.push_async_callback(cashews.close)
    cashews_keys = [f"bench:cashews:{i}" for i in range(KEYS)]
    await cashews.set_many({key: f"value-{key}" for key in cashews_keys})

    async def cashews_get_many() -> None:
        values = await cashews.get_many(*cashews_keys)
        check(len(values) == KEYS and values[-1] is not None, "cashews missed")

    parts = urlsplit(url)
    aiocache = RedisCache(endpoint=parts.hostname, port=parts.port)
    stack.push_async_callback(aiocache.close)
    aiocache_keys = [f"bench:aiocache:{i}" for i in range(KEYS)]
    await aiocache.multi_set([(key, f"value-{key}") for key in aiocache_keys])

    async def aiocache_multi_get() -> None:
        values = await aiocache.multi_get(aiocache_keys)
        check(len(values) == KEYS and values[-1] is not None, "aiocache missed")

    return {**reads, "cashews": cashews_get_many, "aiocache": aiocache_multi_get}


def child_main(args: argparse.Namespace) -> None:
    import contextlib

    import anyio

    async def main() -> dict[str, Any]:
        async with contextlib.AsyncExitStack() as stack:
            reads = await contenders(args.url, args.run, stack)
            names = list(reads)
            seconds = dict.fromkeys(names, 0.0)
            batches = max(1, args.n // KEYS // ROUNDS)
            for name in names:  # warm-up
                for _ in range(20):
                    await reads[name]()
            for round_no in range(ROUNDS):
                gc.collect()
                for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
                    read = reads[name]
                    started = time.perf_counter()
                    for _ in range(batches):
                        await read()
                    seconds[name] += time.perf_counter() - started
            keys_read = batches * ROUNDS * KEYS
            return {
                "keys_read": keys_read,
                "keys_per_s": {n: keys_read / seconds[n] for n in names},
            }

    result = anyio.run(main, backend=args.run)
    print(json.dumps({"backend": args.run, **result}), flush=True)


def parent_main(args: argparse.Namespace) -> int:
    found = print_header()
    if found is None:
        return 2
    executable, _ = found
    n = 20_000 if args.quick else 200_000
    results: dict[str, dict[str, Any] | None] = {}
    crashed: list[str] = []
    with RedisServer(binary=executable) as server:
        for backend in BACKENDS:
            try:
                results[backend] = run_child(__file__, run=backend, url=server.url, n=n)
            except ChildFailed as exc:
                results[backend] = None
                crashed.append(f"{backend}: {exc.reason}")
    rows: list[Sequence[str]] = [["keys/s (100 keys a read)", *BACKENDS]]
    names = ["get_many", "sequential get", "cashews", "aiocache"]
    for name in names:
        cells = []
        for backend in BACKENDS:
            result = results[backend]
            rate = result["keys_per_s"].get(name) if result else None
            cells.append(f"{rate:,.0f}" if rate else "n/a")
        rows.append([name, *cells])
    print()
    print_table(rows)
    print()
    lines = []
    for backend in BACKENDS:
        result = results[backend]
        rates = result["keys_per_s"] if result else {}
        for other, wanted in (
            ("sequential get", SEQUENTIAL_MIN),
            ("cashews", PEER_MIN),
            ("aiocache", PEER_MIN),
        ):
            if result is not None and other not in rates:
                continue  # the peers run on asyncio only
            ratio = rates["get_many"] / rates[other] if other in rates else None
            measured = f"{ratio:.1f}x" if ratio is not None else "n/a"
            verdict = status(None if ratio is None else ratio >= wanted)
            lines.append((backend, f"get_many / {other}", measured, f">= {wanted:g}x", verdict))
    width = max(len(line[1]) for line in lines)
    for backend, name, measured, wanted, verdict in lines:
        print(target_line(f"[{backend:<7}]", name, measured, wanted, verdict, width=width))
    parameters = {"quick": args.quick, "keys": KEYS, "keys_read": n, "rounds": ROUNDS}
    write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=results)
    return exit_status(crashed)


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(
        __doc__,
        argv,
        "20,000 keys read per contender instead of 200,000",
        {
            "--run": {"metavar": "BACKEND", "choices": BACKENDS},
            "--url": {},
            "--n": {"type": int, "default": 200_000},
        },
        child_main,
        parent_main,
    )


if __name__ == "__main__":
    sys.exit(main())
