"""Topology benchmark: what the cache port pays per operation on a Redis Cluster.

``bench_port.py`` measures the cache port against one ``redis-server``; this
script measures the same port (``open_redis_provider`` → ``RedisCachePort``)
against two topologies started side by side in ONE run, so their ratio is
meaningful even on a noisy machine:

``single``
    One throw-away ``redis-server`` on a free loopback port (``_harness``'s
    ``redis_server`` helper), URL ``redis://127.0.0.1:PORT/0``.
``cluster``
    A real Redis Cluster on loopback, 3 primaries + 3 replicas (the test
    suite's ``servers.RedisCluster``), URL ``redis+cluster://…``. Every
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
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
TESTS_DIR = REPO_ROOT / "tests"
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_ROOT))

from _harness import (  # noqa: E402
    HOST,
    ChildFailed,
    find_redis_server,
    redis_server,
    report_parser,
    run_json_child,
    write_json,
)

if TYPE_CHECKING:
    from beignet_redis_anyio import RedisCachePort
    from servers import RedisCluster

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


class CheckFailed(AssertionError):
    """A correctness check inside a child failed (not stripped by ``-O``)."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


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


def child_main(backend: str, operation: str, url: str, n: int) -> None:
    import anyio

    from beignet_redis_anyio import RedisConfig, open_redis_provider

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


def run_child(backend: str, operation: str, url: str, n: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run", backend,
        "--operation", operation,
        "--url", url,
        "--n", str(n),
    ]  # fmt: skip
    return run_json_child(cmd)


@contextmanager
def redis_cluster() -> Iterator[RedisCluster]:
    """The test suite's 3 primaries + 3 replicas; every node is stopped on exit.

    ``RedisCluster()`` starts its nodes before it runs ``redis-cli --cluster
    create``; should that (or the wait for the cluster to be ready) fail,
    the constructor raises and the caller never gets the object that knows
    the nodes. So the object is made first and initialised inside ``try``.
    """
    sys.path.insert(0, str(TESTS_DIR))
    from servers import RedisCluster

    cluster = RedisCluster.__new__(RedisCluster)
    try:
        RedisCluster.__init__(cluster)
        yield cluster
    finally:
        for node in getattr(cluster, "nodes", ()):
            node.close()


def keys_per_primary(cluster: RedisCluster) -> dict[int, int]:
    """DBSIZE of each primary (the cluster is fresh: only the bench keys live there)."""
    from servers import _command

    return {
        node.port: int(_command(node.port, "DBSIZE").strip()[1:]) for node in cluster.primaries()
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


def fmt_ops(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for i, row in enumerate(rows):
        line = [row[0].ljust(widths[0])]
        line += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("| " + " | ".join(line) + " |")
        if i == 0:
            rules = ["-" * (widths[0] + 2)] + ["-" * (width + 1) + ":" for width in widths[1:]]
            print("|" + "|".join(rules) + "|")
    print("\nratio = cluster / single ops/s; overhead = 1/cluster - 1/single per operation\n")
    for operation in OPERATIONS:
        parts = []
        for backend in BACKENDS:
            c = comparisons[operation][backend]
            parts.append(f"{backend} {fmt_ratio(c['ratio']):>6} ({fmt_us(c['overhead_us']):>13})")
        print(f"{operation:<10}  cluster / single:  " + "   ".join(parts) + "  INFO")


def parent_main(args: argparse.Namespace) -> int:
    executable = find_redis_server()
    if executable is None:
        print("error: redis-server not found on PATH (nor /usr/bin/redis-server)", file=sys.stderr)
        return 2
    if shutil.which("redis-cli") is None:
        print("error: redis-cli not found on PATH (needed to create the cluster)", file=sys.stderr)
        return 2

    n = 2000 if args.quick else 10000
    repeats = 1 if args.quick else 3
    server_version = subprocess.run(
        [executable, "--version"], capture_output=True, text=True
    ).stdout.strip()
    print(f"python {platform.python_version()} ({sys.executable})")
    print(server_version)
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
        with redis_server(executable) as port, redis_cluster() as cluster:
            urls = {"single": f"redis://{HOST}:{port}/0", "cluster": cluster.url}
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
                                out = run_child(backend, operation, urls[topology], n)
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
    print(
        f"{'keys':<10}  per cluster primary: {' / '.join(map(str, counts)) or 'n/a'}"
        f" of {KEY_COUNT} (target: all {CLUSTER_PRIMARIES} primaries > 0)  "
        + ("PASS" if spread_ok else "FAIL")
    )

    if args.json:
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
        write_json(args.json, payload)

    if crashed:
        print("\nerror: child(ren) crashed:\n  " + "\n  ".join(crashed), file=sys.stderr)
        return 1
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = report_parser(__doc__, quick="smaller sizes, one repetition")
    child = parser.add_argument_group("child mode (internal)")
    child.add_argument("--run", metavar="BACKEND", choices=BACKENDS)
    child.add_argument("--operation", choices=OPERATIONS)
    child.add_argument("--url")
    child.add_argument("--n", type=int)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run:
        if not (args.operation and args.url and args.n):
            print("error: --run needs --operation, --url and --n", file=sys.stderr)
            return 2
        child_main(args.run, args.operation, args.url, args.n)
        return 0
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
