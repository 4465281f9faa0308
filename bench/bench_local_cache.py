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

    python bench/bench_local_cache.py [--quick]

Exit status 0 even when a target FAILs (this is a report); non-zero when a
child crashes or redis-server is missing.
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


from beignet_redis_anyio import RedisConfig  # noqa: E402
from beignet_redis_anyio.testing.servers import RedisServer, command  # noqa: E402

BACKENDS = ("asyncio", "trio")
#: DEBUG POPULATE names its keys PREFIX:0 .. PREFIX:N-1.
RSS_PREFIX = "bench:rss"


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
                # a caller reads its own reply only within its first turns.
                started = time.perf_counter()
                for _ in range(n):
                    await cache.client.ping()
                results[f"ping_seq_{name}"] = n / (time.perf_counter() - started)
        delays: list[float] = []
        config = RedisConfig(url=url, local_cache=True)
        async with open_redis_provider(config) as cache:
            tracker = cache._local
            assert tracker is not None
            for i in range(writes):
                await writer.set("bench:inv", str(i))
                assert await cache.get("bench:inv") is not None  # cached now
                await writer.set("bench:inv", f"{i}+")
                acked = time.perf_counter()
                while tracker.lookup("bench:inv") is not local_absent():
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
    assert missing == 0, f"{missing} of {keys} populated keys read as missing"
    result: dict[str, float] = {
        "rss_delta_mib": (after["VmRSS"] - before["VmRSS"]) / 1024,
        "peak_delta_mib": (after["VmHWM"] - before["VmRSS"]) / 1024,
        "rss_before_mib": before["VmRSS"] / 1024,
        "reads_per_s": keys / elapsed,
    }
    if stats is not None:
        result |= {"entries": stats.entries, "bytes": stats.bytes, "evictions": stats.evictions}
    return result


def local_absent() -> object:
    from beignet_redis_anyio._cache.local import ABSENT

    return ABSENT


def _child(backend: str, url: str, n: int, writes: int) -> None:
    import anyio

    result = anyio.run(_measure, url, n, writes, backend=backend)
    print(json.dumps(result))


def _child_rss(backend: str, url: str, keys: int, local: bool) -> None:
    import anyio

    result = anyio.run(_measure_rss, url, keys, local, backend=backend)
    print(json.dumps(result))


def _run_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, timeout=600, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--run")
    parser.add_argument("--url")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rss", choices=("network", "local"))
    args = parser.parse_args()
    if args.run and args.rss:
        _child_rss(args.run, args.url, args.keys, args.rss == "local")
        return 0
    if args.run:
        _child(args.run, args.url, args.n, args.writes)
        return 0
    n, writes = (5_000, 200) if args.quick else (args.n, args.writes)
    keys = 50_000 if args.quick else args.keys
    rows = []
    rss_rows = []
    # DEBUG (for POPULATE) is refused unless enabled; this server is ours alone.
    with RedisServer("--enable-debug-command", "local") as server:
        for backend in BACKENDS:
            rows.append((backend, _run_child(
                "--run", backend, "--url", server.url, "--n", str(n), "--writes", str(writes),
            )))  # fmt: skip
        # After the hot-key rows, so that they ran against the same small server.
        reply = command(server.port, "DEBUG", "POPULATE", keys, RSS_PREFIX, 16, timeout=120)
        assert reply == b"+OK\r\n", reply
        for backend in BACKENDS:
            off, on = (
                _run_child(
                    "--run", backend, "--url", server.url, "--keys", str(keys), "--rss", mode
                )
                for mode in ("network", "local")
            )
            rss_rows.append((backend, off, on))
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
    bounds = RedisConfig(url="redis://localhost")  # for its defaults only
    max_entries = bounds.local_cache_max_entries
    print()
    print(f"local cache memory, {keys:,} distinct keys each read once by 100 tasks, default "
          f"bounds ({max_entries:,} entries / {bounds.local_cache_max_bytes // 2**20} MiB / "
          f"{bounds.local_cache_ttl:g} s); MiB over the process before reading, "
          "network (no local cache) / local")  # fmt: skip
    print("| backend | RSS after | peak (VmHWM) | local entries / bytes / evictions | reads/s |")
    print("|---|---|---|---|---|")
    for backend, off, on in rss_rows:
        cells = [
            f"{off[name]:+.1f} / {on[name]:+.1f}" for name in ("rss_delta_mib", "peak_delta_mib")
        ]
        cells.append(f"{on['entries']:,} / {on['bytes'] / 2**20:.1f} MiB / {on['evictions']:,}")
        cells.append(f"{off['reads_per_s']:,.0f} / {on['reads_per_s']:,.0f}")
        print(f"| {backend} | {' | '.join(cells)} |")
    for backend, _, on in rss_rows:
        entries = on["entries"]
        verdict = "PASS" if entries <= max_entries else "FAIL"
        print(f"{backend} rss entries after {keys:,} keys: {entries:,} "
              f"(target <= {max_entries:,}) {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
