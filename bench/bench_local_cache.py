"""Local-cache benchmark: a hit from process memory against a round trip.

Against a throw-away local ``redis-server`` (started on a free loopback port,
always stopped again), under asyncio and under trio, each backend in its own
subprocess (this file with ``--run BACKEND``) so that one's event loop and
allocator state cannot leak into the other's figures:

``get``
    One task, N ``cache.get`` of one hot key: the provider with
    ``local_cache=True`` against one without (every get a round trip).
    Target: >= 15x. Then 100 tasks, N gets in all. Target: >= 5x.
``remember``
    One task, N ``remember`` hits, with and without the local cache.
``ping``
    One task, N ``cache.client.ping()``: what a round trip costs on a
    tracking connection (its reader task reads all the time) against one
    without tracking (a caller alone reads its own reply).
``invalidation``
    A writer's ``SET`` acknowledged -> the reader's local entry gone, timed
    on the reader's side (its connection reads all the time, so nothing but
    the push has to arrive). p50/p99 over K writes. Target: p99 < 2 ms.

Usage::

    python bench/bench_local_cache.py [--quick]

Exit status 0 even when a target FAILs (this is a report); non-zero when a
child crashes or redis-server is missing. Not measured yet: RSS after 1M
distinct keys.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


from beignet_redis_anyio.testing.servers import RedisServer  # noqa: E402

BACKENDS = ("asyncio", "trio")


async def _measure(url: str, n: int, writes: int) -> dict[str, float]:
    import anyio

    from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider

    async def factory() -> str:
        raise AssertionError("the factory must not run on a hit")

    async def sequential(cache: Any, operation: str) -> float:
        call = cache.get if operation == "get" else None
        started = time.perf_counter()
        if call is not None:
            for _ in range(n):
                await call("bench:hot")
        else:
            for _ in range(n):
                await cache.remember("bench:hot", factory)
        return n / (time.perf_counter() - started)

    async def concurrent(cache: Any, tasks: int = 100) -> float:
        each = n // tasks

        async def worker() -> None:
            for _ in range(each):
                await cache.get("bench:hot")

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(tasks):
                group.start_soon(worker)
        return each * tasks / (time.perf_counter() - started)

    results: dict[str, float] = {}
    async with open_redis_client(url) as writer:
        await writer.set("bench:hot", "v" * 16)
        for local in (False, True):
            name = "local" if local else "network"
            config = RedisConfig(url=url, local_cache=local)
            async with open_redis_provider(config) as cache:
                await cache.get("bench:hot")  # warm: connected, and cached if local
                results[f"get_seq_{name}"] = await sequential(cache, "get")
                results[f"get_100_{name}"] = await concurrent(cache)
                results[f"remember_{name}"] = await sequential(cache, "remember")
                # What tracking costs a round trip: its connection's reader
                # task reads all the time (pushes may come while idle), so
                # a caller no longer reads its own reply.
                started = time.perf_counter()
                for _ in range(n):
                    await cache.client.ping()
                results[f"ping_seq_{name}"] = n / (time.perf_counter() - started)
        delays: list[float] = []
        config = RedisConfig(url=url, local_cache=True)
        async with open_redis_provider(config) as cache:
            local = cache._local
            assert local is not None
            for i in range(writes):
                await writer.set("bench:inv", str(i))
                assert await cache.get("bench:inv") is not None  # cached now
                await writer.set("bench:inv", f"{i}+")
                acked = time.perf_counter()
                while local.lookup("bench:inv") is not local_absent():
                    await anyio.lowlevel.checkpoint()
                delays.append(time.perf_counter() - acked)
    delays.sort()
    results["invalidation_p50_ms"] = statistics.median(delays) * 1000
    results["invalidation_p99_ms"] = delays[int(len(delays) * 0.99) - 1] * 1000
    return results


def local_absent() -> object:
    from beignet_redis_anyio._cache.local import ABSENT

    return ABSENT


def _child(backend: str, url: str, n: int, writes: int) -> None:
    import anyio

    result = anyio.run(_measure, url, n, writes, backend=backend)
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--run")
    parser.add_argument("--url")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--writes", type=int, default=1000)
    args = parser.parse_args()
    if args.run:
        _child(args.run, args.url, args.n, args.writes)
        return 0
    n, writes = (5_000, 200) if args.quick else (args.n, args.writes)
    rows = []
    with RedisServer() as server:
        for backend in BACKENDS:
            out = subprocess.run(
                [sys.executable, __file__, "--run", backend, "--url", server.url,
                 "--n", str(n), "--writes", str(writes)],
                capture_output=True, text=True, timeout=600, check=True,
            )  # fmt: skip
            rows.append((backend, json.loads(out.stdout.strip().splitlines()[-1])))
    print(f"local cache, one hot key, n={n} (ops/s; ratio local/network)")
    print("| backend | get 1 task: network / local (x) | get 100 tasks (x) | remember hit (x) "
          "| PING round trip: untracked / tracked | invalidation p50 / p99 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for backend, r in rows:
        cells = []
        for name in ("get_seq", "get_100", "remember"):
            network, local = r[f"{name}_network"], r[f"{name}_local"]
            cells.append(f"{network:,.0f} / {local:,.0f} ({local / network:.1f}x)")
        cells.append(f"{r['ping_seq_network']:,.0f} / {r['ping_seq_local']:,.0f}")
        delay = f"{r['invalidation_p50_ms']:.3f} / {r['invalidation_p99_ms']:.3f} ms"
        print(f"| {backend} | {' | '.join(cells)} | {delay} |")
    for backend, r in rows:
        for name, target in (("get_seq", 15), ("get_100", 5)):
            ratio = r[f"{name}_local"] / r[f"{name}_network"]
            verdict = "PASS" if ratio >= target else "FAIL"
            print(f"{backend} {name}: {ratio:.1f}x (target >= {target}x) {verdict}")
        p99 = r["invalidation_p99_ms"]
        print(f"{backend} invalidation p99: {p99:.3f} ms (target < 2 ms) "
              f"{'PASS' if p99 < 2 else 'FAIL'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
