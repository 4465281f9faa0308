"""Topology benchmark: what the cache port pays per operation on a Redis Cluster.

``bench_port.py`` measures the cache port against one ``redis-server``; this
script measures the same port (``open_redis_provider`` → ``RedisCachePort``)
against two topologies started side by side in ONE run, so their ratio is
meaningful even on a noisy machine:

``single``
    One throw-away ``redis-server`` on a free loopback port
    (``beignet_redis_anyio.testing.servers.RedisServer``), URL
    ``redis://127.0.0.1:PORT/0``.
``cluster``
    A real Redis Cluster on loopback, 3 primaries + 3 replicas (``RedisCluster``
    from the same module, as the tests use), URL ``redis+cluster://…``. Every
    command is routed by key slot to the primary that owns it.

Both are always torn down again, whatever happens.

Keys are ``bench:0`` … ``bench:99`` (no ``{hash tag}``), so they hash to
slots owned by all three primaries; the report counts the keys on each
primary and checks that none is empty. Each child sets the 100 keys to
``"v"`` before it measures. Four operations:

``get``
    One task, N sequential ``cache.get(k)`` cycling over the 100 keys.
``set``
    One task, N sequential ``cache.set(k, "v", ttl_seconds=60)``, cycling.
``remember``
    One task, N sequential ``cache.remember(k, factory)``, cycling; every
    call is a hit (the factory counts its calls; the child fails if it ran).
``concurrent``
    100 tasks x 100 ``cache.get`` each, all sharing the one port; task ``t``
    walks the keys from offset ``t``, so every moment has requests in flight
    for every primary.

Each of these runs after a warm-up with the same shape (which also opens the
connections to every primary), in its OWN subprocess (this same file with
``--run``), per topology and backend (asyncio, trio). Repetitions are
interleaved round-robin over operations, backends and topologies, and the
best (max ops/s) run is reported. Reported per operation and backend: ops/s
on each topology, the ratio cluster/single, and the overhead in µs per
operation, ``1/cluster - 1/single``. There are no targets: every result
line is INFO; the key-spread check is PASS or FAIL.

Usage::

    python bench/bench_topology.py [--quick] [--json PATH]

Exit status is 0 whatever the numbers (this is a report), and non-zero when
a child crashes (including a failed check) or a topology cannot be started.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from _harness import (
    HOST,
    ChildFailed,
    bench_main,
    check,
    exit_status,
    fmt_ops,
    print_header,
    print_table,
    run_child,
    status,
    verdict_line,
    write_results,
)

from beignet_redis_anyio.testing.servers import RedisCluster, RedisServer, command

#: The distributions whose versions the result records.
PEERS = ("anyio", "trio")

if TYPE_CHECKING:
    from beignet_redis_anyio import RedisCachePort

BACKENDS: tuple[str, ...] = ("asyncio", "trio")
TOPOLOGIES: tuple[str, ...] = ("single", "cluster")
OPERATIONS: tuple[str, ...] = ("get", "set", "remember", "concurrent")

KEY_COUNT = 100
KEYS: tuple[str, ...] = tuple(f"bench:{i}" for i in range(KEY_COUNT))
VALUE = "v"
SET_TTL_SECONDS = 60
SEQUENTIAL_WARMUP = 500
CONCURRENT_TASKS = 100
CONCURRENT_OPS_PER_TASK = 100
CONCURRENT_WARMUP_PER_TASK = 5
CLUSTER_PRIMARIES = 3


# --------------------------------------------------------------------------
# Child side: one topology, one backend, one operation, one measurement.
# --------------------------------------------------------------------------


def cycling(count: int, offset: int = 0) -> list[str]:
    """``count`` keys, walking the 100 keys round from ``offset`` (built before timing)."""
    return [KEYS[(offset + i) % KEY_COUNT] for i in range(count)]


async def bench_sequential(cache: RedisCachePort, operation: str, n: int) -> dict[str, Any]:
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        return "recomputed"

    async def run_get(keys: list[str]) -> None:
        value: str | None = None
        for key in keys:
            value = await cache.get(key)
        check(value == VALUE, f"get returned {value!r}")

    async def run_set(keys: list[str]) -> None:
        for key in keys:
            await cache.set(key, VALUE, ttl_seconds=SET_TTL_SECONDS)

    async def run_remember(keys: list[str]) -> None:
        value = ""
        for key in keys:
            value = await cache.remember(key, factory)
        check(value == VALUE, f"remember returned {value!r}")

    runners: dict[str, Callable[[list[str]], Awaitable[None]]] = {
        "get": run_get,
        "set": run_set,
        "remember": run_remember,
    }
    run = runners[operation]
    await run(cycling(SEQUENTIAL_WARMUP))
    keys = cycling(n)
    gc.collect()
    start = time.perf_counter()
    await run(keys)
    elapsed = time.perf_counter() - start
    check(calls == 0, f"the factory ran {calls} time(s) on a hit")
    if operation == "set":
        stored = await cache.get(KEYS[0])
        check(stored == VALUE, f"after set, get returned {stored!r}")
    return {"ops": n, "seconds": elapsed, "ops_per_s": n / elapsed}


async def bench_concurrent(cache: RedisCachePort) -> dict[str, Any]:
    import anyio

    async def round_of(per_task: int) -> None:
        plans = [cycling(per_task, offset=t) for t in range(CONCURRENT_TASKS)]
        wrong: list[str | None] = []

        async def worker(keys: list[str]) -> None:
            for key in keys:
                value = await cache.get(key)
                if value != VALUE:
                    wrong.append(value)

        async with anyio.create_task_group() as tg:
            for keys in plans:
                tg.start_soon(worker, keys)
        check(not wrong, f"{len(wrong)} get(s) returned another value, e.g. {wrong[:1]!r}")

    await round_of(CONCURRENT_WARMUP_PER_TASK)
    gc.collect()
    start = time.perf_counter()
    await round_of(CONCURRENT_OPS_PER_TASK)
    elapsed = time.perf_counter() - start
    ops = CONCURRENT_TASKS * CONCURRENT_OPS_PER_TASK
    return {
        "ops": ops,
        "tasks": CONCURRENT_TASKS,
        "seconds": elapsed,
        "ops_per_s": ops / elapsed,
    }


def child_main(args: argparse.Namespace) -> None:
    import anyio

    from beignet_redis_anyio import RedisConfig, open_redis_provider

    backend, operation, url, n = args.run, args.operation, args.url, args.n

    async def main() -> dict[str, Any]:
        async with open_redis_provider(RedisConfig(url=url)) as cache:
            for key in KEYS:
                await cache.set(key, VALUE)
            if operation == "concurrent":
                return await bench_concurrent(cache)
            return await bench_sequential(cache, operation, n)

    result = anyio.run(main, backend=backend)
    print(json.dumps({"backend": backend, "operation": operation, **result}), flush=True)


# --------------------------------------------------------------------------
# Parent side: the two topologies, orchestration, report.
# --------------------------------------------------------------------------


def keys_per_primary(cluster: RedisCluster) -> dict[int, int]:
    """DBSIZE of each primary (the cluster is fresh: only the bench keys live there)."""
    return {
        node.port: int(command(node.port, "DBSIZE").strip()[1:]) for node in cluster.primaries()
    }


Results = dict[str, dict[str, dict[str, list[float] | None]]]  # topology → backend → op → runs


def best(results: Results, topology: str, backend: str, operation: str) -> float | None:
    runs = results[topology][backend][operation]
    return max(runs) if runs else None


def compare(results: Results, backend: str, operation: str) -> dict[str, float | None]:
    single = best(results, "single", backend, operation)
    cluster = best(results, "cluster", backend, operation)
    if single is None or cluster is None:
        return {"single": single, "cluster": cluster, "ratio": None, "overhead_us": None}
    return {
        "single": single,
        "cluster": cluster,
        "ratio": cluster / single,
        "overhead_us": (1 / cluster - 1 / single) * 1e6,
    }


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def fmt_us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} µs/op"


def print_report(comparisons: dict[str, dict[str, dict[str, float | None]]], n: int) -> None:
    labels = {
        "get": f"get ({n:,} sequential)",
        "set": f"set ttl={SET_TTL_SECONDS}s ({n:,} sequential)",
        "remember": f"remember, hit ({n:,} sequential)",
        "concurrent": f"get ({CONCURRENT_TASKS} tasks x {CONCURRENT_OPS_PER_TASK})",
    }
    header = ["operation (ops/s)"]
    for backend in BACKENDS:
        header += [f"single {backend}", f"cluster {backend}", "ratio"]
    rows = [tuple(header)]
    for operation in OPERATIONS:
        cells: list[str] = [labels[operation]]
        for backend in BACKENDS:
            c = comparisons[operation][backend]
            cells += [fmt_ops(c["single"]), fmt_ops(c["cluster"]), fmt_ratio(c["ratio"])]
        rows.append(tuple(cells))
    print()
    print_table(rows)
    print("\nratio = cluster / single ops/s; overhead = 1/cluster - 1/single per operation\n")
    for operation in OPERATIONS:
        parts = []
        for backend in BACKENDS:
            c = comparisons[operation][backend]
            parts.append(f"{backend} {fmt_ratio(c['ratio']):>6} ({fmt_us(c['overhead_us']):>13})")
        print(verdict_line(f"{operation:<10} cluster / single", "INFO", "   ".join(parts)))


def parent_main(args: argparse.Namespace) -> int:
    found = print_header(cluster=True)
    if found is None:
        return 2
    executable, server_version = found

    n = 2000 if args.quick else 10000
    repeats = 1 if args.quick else 3
    print(
        f"sequential get/set/remember: {n:,} ops over {KEY_COUNT} keys after "
        f"{SEQUENTIAL_WARMUP} warm-up; concurrent: {CONCURRENT_TASKS} tasks x "
        f"{CONCURRENT_OPS_PER_TASK} gets after a {CONCURRENT_TASKS} x "
        f"{CONCURRENT_WARMUP_PER_TASK} warm-up round; best of {repeats}"
    )

    results: Results = {t: {b: {op: [] for op in OPERATIONS} for b in BACKENDS} for t in TOPOLOGIES}
    crashed: list[str] = []
    spread: dict[int, int] = {}
    try:
        with (
            RedisServer(binary=executable) as server,
            closing(RedisCluster(binary=executable)) as cluster,
        ):
            urls = {"single": f"redis://{HOST}:{server.port}/0", "cluster": cluster.url}
            for topology in TOPOLOGIES:
                print(f"{topology}: {urls[topology]}")
            for rep in range(repeats):
                for operation in OPERATIONS:
                    for backend in BACKENDS:
                        for topology in TOPOLOGIES:
                            runs = results[topology][backend][operation]
                            if runs is None:
                                continue  # crashed before: do not retry
                            try:
                                out = run_child(
                                    __file__, run=backend, operation=operation,
                                    url=urls[topology], n=n,
                                )  # fmt: skip
                            except ChildFailed as exc:
                                results[topology][backend][operation] = None
                                crashed.append(f"{topology}/{backend}/{operation}: {exc.reason}")
                                print(
                                    f"  {topology} {backend} {operation} CRASHED:\n{exc.stderr}",
                                    file=sys.stderr,
                                )
                                continue
                            runs.append(out["ops_per_s"])
                            print(
                                f"  [{rep + 1}/{repeats}] {operation:<10} {backend:<7}"
                                f" {topology:<7} {out['ops_per_s']:>10,.0f} ops/s",
                                flush=True,
                            )
            spread = keys_per_primary(cluster)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: could not run a topology: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    comparisons = {op: {b: compare(results, b, op) for b in BACKENDS} for op in OPERATIONS}
    print_report(comparisons, n)
    counts = list(spread.values())
    spread_ok = len(counts) == CLUSTER_PRIMARIES and all(count > 0 for count in counts)
    target = f"keys per cluster primary (target: all {CLUSTER_PRIMARIES} primaries > 0)"
    measured = f"{' / '.join(map(str, counts)) or 'n/a'} of {KEY_COUNT}"
    print(verdict_line(target, status(spread_ok), measured))

    payload = {
        "settings": {
            "quick": args.quick,
            "repeats": repeats,
            "sequential_ops": n,
            "sequential_warmup": SEQUENTIAL_WARMUP,
            "keys": KEY_COUNT,
            "concurrent_tasks": CONCURRENT_TASKS,
            "concurrent_ops_per_task": CONCURRENT_OPS_PER_TASK,
            "concurrent_warmup_per_task": CONCURRENT_WARMUP_PER_TASK,
            "python": platform.python_version(),
            "redis_server": server_version,
        },
        "runs": results,
        "comparisons": comparisons,
        "keys_per_primary": {str(port): count for port, count in spread.items()},
        "keys_spread_ok": spread_ok,
        "crashed": crashed,
    }
    parameters = payload.pop("settings")
    write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=payload)

    return exit_status(crashed)


def main(argv: Sequence[str] | None = None) -> int:
    child = {
        "--run": {"metavar": "BACKEND", "choices": BACKENDS},
        "--operation": {"choices": OPERATIONS},
        "--url": {},
        "--n": {"type": int},
    }
    return bench_main(
        __doc__, argv, "smaller sizes, one repetition", child, child_main, parent_main
    )


if __name__ == "__main__":
    sys.exit(main())
