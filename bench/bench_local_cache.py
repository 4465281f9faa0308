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
``hgetall``
    One task, N ``cache.client.hgetall`` of one hot 10-field hash: a
    provider with the local cache against one without. Target: >= 50x.
``get_many``
    One task, N/50 ``get_many`` of 50 hot keys, with and without (ops/s
    counts keys). Target: >= 20x. The same 50 keys each time, as a hot page
    is read; ``get_many (new keys)`` is for scale: each call a different 50
    of 1,000 hot keys, so every key is looked up on its own.
``early_refresh``
    One task, N ``remember(..., early_refresh=True)`` hits on a key whose
    refresh is not due: with the local cache, decided from memory; without,
    read from Redis each time (as every early-refresh hit was before).
    Target: >= 30x.
``ping``
    One task, N ``cache.client.ping()``: what a round trip costs on a
    tracking connection (its reader task reads whenever no caller does) against one
    without tracking (a caller alone reads its own reply).
``invalidation``
    A writer's ``SET`` acknowledged -> the reader's local entry gone, timed
    on the reader's side (its connection reads while idle, so nothing but
    the push has to arrive). p50/p99 over K writes. Target: p99 < 2 ms.
``rss``
    Memory after many distinct keys (1,000,000; 50,000 with ``--quick``),
    made by ``DEBUG POPULATE`` (16-byte values), each read once by
    ``cache.get`` from 100 tasks pulling from one iterator: by a provider
    with the local cache and its default bounds (10,000 entries / 64 MiB /
    60 s), and by one without. Each of the four runs (backend x local or not) is its own
    subprocess, so that memory one run freed cannot hide what the next one
    takes: the process's ``VmRSS`` after the reads and its peak ``VmHWM``
    from ``/proc/self/status``, in MiB over its ``VmRSS`` before them (the
    provider open and connected), and ``cache.local_stats`` at the end.
    Target: entries <= 10,000 (the bound held).

Usage::

    python bench/bench_local_cache.py [--quick] [--json PATH]

Exit status 0 even when a target FAILs (this is a report); non-zero when a
child crashes or redis-server is missing.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from _harness import (
    CheckFailed,
    ChildFailed,
    bench_main,
    check,
    exit_status,
    print_header,
    print_table,
    run_child,
    status,
    target_line,
    verdict_line,
    write_results,
)

from beignet_redis_anyio import RedisConfig
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from beignet_redis_anyio.testing.servers import RedisServer, command

#: The distributions whose versions the result records.
PEERS = ("anyio", "trio")
BACKENDS = ("asyncio", "trio")
#: DEBUG POPULATE names its keys PREFIX:0 .. PREFIX:N-1.
RSS_PREFIX = "bench:rss"
#: Targets: local/network ratio of ``get`` with one task and with 100; p99 (ms).
GET_SEQ_MIN, GET_100_MIN, INVALIDATION_P99_MAX_MS = 15, 5, 2
#: Targets: local/network ratio of a client HGETALL, a 50-key get_many, an
#: early-refresh remember hit.
HGETALL_MIN, GET_MANY_MIN, EARLY_REFRESH_MIN = 50, 20, 30
HOT_KEYS = [f"bench:page:{n}" for n in range(50)]
POOL_KEYS = [f"bench:pool:{n}" for n in range(1000)]


async def _each_new(cache: Any, draws: Any) -> None:
    await cache.get_many(draws())


async def _measure(url: str, n: int, writes: int) -> dict[str, float]:
    import anyio

    from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider

    async def factory() -> str:
        raise CheckFailed("the factory must not run on a hit")

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

    async def timed(call: Any, count: int, weight: int = 1) -> float:
        started = time.perf_counter()
        for _ in range(count):
            await call()
        return count * weight / (time.perf_counter() - started)

    results: dict[str, float] = {}
    async with open_redis_client(url) as writer:
        await writer.set("bench:hot", "v" * 16)
        await writer.hset("bench:hash", mapping={f"field{i}": "v" * 16 for i in range(10)})
        await writer.mset({key: "v" * 16 for key in HOT_KEYS})
        await writer.mset({key: "v" * 16 for key in POOL_KEYS})
        draw = random.Random(50)
        samples = [draw.sample(POOL_KEYS, 50) for _ in range(max(1, n // 50))]
        await writer.set("bench:er", "v" * 16, ex=3600)
        # As if computing it took a microsecond: a refresh is never due.
        await writer.set(sidecar_key("bench:er", "meta"), "0.001", ex=3600)
        for local in (False, True):
            name = "local" if local else "network"
            config = RedisConfig(url=url, local_cache=local)
            async with open_redis_provider(config) as cache:
                await cache.get("bench:hot")  # warm: connected, and cached if local
                results[f"get_seq_{name}"] = await sequential(cache, "get")
                results[f"get_100_{name}"] = await concurrent(cache)
                results[f"remember_{name}"] = await sequential(cache, "remember")
                hgetall = partial(cache.client.hgetall, "bench:hash")
                await hgetall()
                results[f"hgetall_{name}"] = await timed(hgetall, n)
                get_many = partial(cache.get_many, HOT_KEYS)
                await get_many()
                results[f"get_many_{name}"] = await timed(get_many, n // 50, 50)
                for start in range(0, len(POOL_KEYS), 50):
                    await cache.get_many(POOL_KEYS[start : start + 50])
                draws = partial(next, iter(samples))
                results[f"get_many_new_{name}"] = await timed(
                    partial(_each_new, cache, draws), len(samples), 50
                )
                early = partial(
                    cache.remember, "bench:er", factory, ttl_seconds=3600, early_refresh=True
                )
                await early()
                results[f"early_refresh_{name}"] = await timed(early, n)
                # What tracking costs a round trip: its connection's reader
                # task reads whenever no caller does (pushes may come while
                # idle), and stands back while a caller reads its own reply.
                started = time.perf_counter()
                for _ in range(n):
                    await cache.client.ping()
                results[f"ping_seq_{name}"] = n / (time.perf_counter() - started)
        delays: list[float] = []
        config = RedisConfig(url=url, local_cache=True)
        async with open_redis_provider(config) as cache:
            # This provider holds one key only, so its public counters say when
            # that entry is gone: no look into the local cache itself.
            def held() -> int:
                stats = cache.local_stats
                check(stats is not None, "no local cache")
                assert stats is not None
                return stats.entries

            for i in range(writes):
                await writer.set("bench:inv", str(i))
                check(await cache.get("bench:inv") is not None, "bench:inv missing")  # cached now
                await writer.set("bench:inv", f"{i}+")
                acked = time.perf_counter()
                while held():
                    await anyio.lowlevel.checkpoint()
                delays.append(time.perf_counter() - acked)
    delays.sort()
    results["invalidation_p50_ms"] = statistics.median(delays) * 1000
    results["invalidation_p99_ms"] = delays[int(len(delays) * 0.99) - 1] * 1000
    return results


def _memory_kib() -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (its peak) of this process, in KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])  # "123456 kB"
    return fields


async def _measure_rss(url: str, keys: int, local: bool) -> dict[str, float]:
    import anyio

    from beignet_redis_anyio import open_redis_provider

    tasks = 100
    async with open_redis_provider(RedisConfig(url=url, local_cache=local)) as cache:
        await cache.get(f"{RSS_PREFIX}:0")  # warm: connected (and tracking, if local)
        before = _memory_kib()
        # One iterator shared by every task: next() never yields, so each key
        # is read exactly once, whichever task takes it.
        pending = iter(range(keys))
        missing = 0

        async def worker() -> None:
            nonlocal missing
            for i in pending:
                if await cache.get(f"{RSS_PREFIX}:{i}") is None:
                    missing += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(tasks):
                group.start_soon(worker)
        elapsed = time.perf_counter() - started
        after = _memory_kib()  # the provider still open: its entries still held
        stats = cache.local_stats
    check(missing == 0, f"{missing} of {keys} populated keys read as missing")
    result: dict[str, float] = {
        "rss_delta_mib": (after["VmRSS"] - before["VmRSS"]) / 1024,
        "peak_delta_mib": (after["VmHWM"] - before["VmRSS"]) / 1024,
        "rss_before_mib": before["VmRSS"] / 1024,
        "reads_per_s": keys / elapsed,
    }
    if stats is not None:
        result |= {"entries": stats.entries, "bytes": stats.bytes, "evictions": stats.evictions}
    return result


def child_main(args: argparse.Namespace) -> None:
    import anyio

    if args.rss:
        result = anyio.run(_measure_rss, args.url, args.keys, args.rss == "local", backend=args.run)
    else:
        result = anyio.run(_measure, args.url, args.n, args.writes, backend=args.run)
    print(json.dumps(result), flush=True)


def parent_main(args: argparse.Namespace) -> int:
    found = print_header()
    if found is None:
        return 2
    executable, _ = found
    n, writes = (5_000, 200) if args.quick else (args.n, args.writes)
    keys = 50_000 if args.quick else args.keys
    rows: list[tuple[str, dict[str, Any]]] = []
    rss_rows: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    crashed: list[str] = []
    # DEBUG (for POPULATE) is refused unless enabled; this server is ours alone.
    with RedisServer("--enable-debug-command", "local", binary=executable) as server:
        for backend in BACKENDS:
            try:
                rows.append(
                    (backend, run_child(__file__, run=backend, url=server.url, n=n, writes=writes))
                )
            except ChildFailed as exc:
                crashed.append(f"{backend}: {exc.reason}")
        # After the hot-key rows, so that they ran against the same small server.
        reply = command(server.port, "DEBUG", "POPULATE", keys, RSS_PREFIX, 16, timeout=120)
        check(reply == b"+OK\r\n", f"DEBUG POPULATE: {reply!r}")
        for backend in BACKENDS:
            try:
                off, on = (
                    run_child(__file__, run=backend, url=server.url, keys=keys, rss=mode)
                    for mode in ("network", "local")
                )
            except ChildFailed as exc:
                crashed.append(f"{backend} rss: {exc.reason}")
                continue
            rss_rows.append((backend, off, on))
    print(f"\nlocal cache, one hot key, n={n} (ops/s; ratio local/network)\n")
    table = [
        (
            "backend",
            "get 1 task: network / local (x)",
            "get 100 tasks (x)",
            "remember hit (x)",
            "PING round trip: untracked / tracked",
            "invalidation p50 / p99",
        )
    ]
    for backend, r in rows:
        cells = []
        for name in ("get_seq", "get_100", "remember"):
            network, local = r[f"{name}_network"], r[f"{name}_local"]
            cells.append(f"{network:,.0f} / {local:,.0f} ({local / network:.1f}x)")
        cells.append(f"{r['ping_seq_network']:,.0f} / {r['ping_seq_local']:,.0f}")
        delay = f"{r['invalidation_p50_ms']:.3f} / {r['invalidation_p99_ms']:.3f} ms"
        table.append((backend, *cells, delay))
    print_table(table, [False] * len(table[0]), title="hot key")
    print()
    table = [
        (
            "backend",
            "client HGETALL (x)",
            "get_many of 50 keys (x)",
            "get_many (new keys) (x)",
            "early-refresh hit (x)",
        )
    ]
    for backend, r in rows:
        cells = []
        for name in ("hgetall", "get_many", "get_many_new", "early_refresh"):
            network, local = r[f"{name}_network"], r[f"{name}_local"]
            cells.append(f"{network:,.0f} / {local:,.0f} ({local / network:.1f}x)")
        table.append((backend, *cells))
    print_table(table, [False] * len(table[0]), title="every read")
    print()
    for backend, r in rows:
        for name, target in (
            ("get_seq", GET_SEQ_MIN),
            ("get_100", GET_100_MIN),
            ("hgetall", HGETALL_MIN),
            ("get_many", GET_MANY_MIN),
            ("early_refresh", EARLY_REFRESH_MIN),
        ):
            ratio = r[f"{name}_local"] / r[f"{name}_network"]
            verdict = status(ratio >= target)
            lead = f"{backend:<7}"
            print(target_line(lead, name, f"{ratio:.1f}x", f">= {target}x", verdict, width=16))
        p99 = r["invalidation_p99_ms"]
        verdict = status(p99 < INVALIDATION_P99_MAX_MS)
        wanted = f"< {INVALIDATION_P99_MAX_MS} ms"
        print(
            target_line(
                f"{backend:<7}", "invalidation p99", f"{p99:.3f}", wanted, verdict, width=16
            )
        )
    bounds = RedisConfig(url="redis://localhost")  # for its defaults only
    max_entries = bounds.local_cache_max_entries
    print()
    print(f"local cache memory, {keys:,} distinct keys each read once by 100 tasks, default "
          f"bounds ({max_entries:,} entries / {bounds.local_cache_max_bytes // 2**20} MiB / "
          f"{bounds.local_cache_ttl:g} s); MiB over the process before reading, "
          "network (no local cache) / local\n")  # fmt: skip
    table = [
        (
            "backend",
            "RSS after",
            "peak (VmHWM)",
            "local entries / bytes / evictions",
            "reads/s",
        )
    ]
    for backend, off, on in rss_rows:
        cells = [
            f"{off[name]:+.1f} / {on[name]:+.1f}" for name in ("rss_delta_mib", "peak_delta_mib")
        ]
        cells.append(f"{on['entries']:,} / {on['bytes'] / 2**20:.1f} MiB / {on['evictions']:,}")
        cells.append(f"{off['reads_per_s']:,.0f} / {on['reads_per_s']:,.0f}")
        table.append((backend, *cells))
    print_table(table, [False] * len(table[0]), title="memory")
    print()
    for backend, _, on in rss_rows:
        entries = on["entries"]
        target = f"{backend} rss entries after {keys:,} keys (target <= {max_entries:,})"
        print(verdict_line(target, status(entries <= max_entries), f"{entries:,}"))
    parameters = {
        "quick": args.quick,
        "n": n,
        "writes": writes,
        "keys": keys,
        "max_entries": max_entries,
        "max_bytes": bounds.local_cache_max_bytes,
        "ttl_s": bounds.local_cache_ttl,
    }
    data = {
        "hot_key": dict(rows),
        "rss": {backend: {"network": off, "local": on} for backend, off, on in rss_rows},
    }
    write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=data)
    return exit_status(crashed)


def main(argv: Sequence[str] | None = None) -> int:
    child = {
        "--run": {"metavar": "BACKEND", "choices": BACKENDS},
        "--url": {},
        "--n": {"type": int, "default": 50_000},
        "--writes": {"type": int, "default": 1000},
        "--keys": {"type": int, "default": 1_000_000},
        "--rss": {"choices": ("network", "local"), "default": None},
    }
    quick = "5,000 operations, 200 writes and 50,000 keys"
    return bench_main(__doc__, argv, quick, child, child_main, parent_main)


if __name__ == "__main__":
    sys.exit(main())
