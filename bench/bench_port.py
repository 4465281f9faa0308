"""Cache-port benchmark: what ``remember`` costs and what it guarantees.

``bench_client.py`` measures the raw client; this script measures the cache
port on top of it (``open_redis_provider`` → ``RedisCachePort``), against a
throw-away local ``redis-server`` that it starts on a free loopback port and
always stops again. Three scenarios, each under asyncio and under trio:

``hit``
    ``remember`` on a hit should cost about what a plain ``get`` costs: the
    single-flight bookkeeping must stay off the hot path. One task issues N
    ``cache.get("bench:hot")`` and N ``cache.remember("bench:hot", factory)``
    in alternating blocks (several rounds, the order flipping each round, so a
    slow drift of a noisy machine hits both alike). The factory must never
    run on a hit (checked; the child fails if it does). Reported: ops/s of
    each, the ratio remember/get over all rounds and the range of the
    per-round ratios. Target: ratio >= 0.90.

``stampede``
    1000 tasks, released together by one event, call ``remember`` on the same
    cold key; the factory counts its calls and sleeps 50 ms (a slow query).
    Reported: factory calls (worst of 3 runs, fresh key each; target exactly
    1) and the wall time from the release until the last caller has its value
    (median of 3; the floor is the factory's 50 ms). Every caller must get the
    factory's value (checked).

``state``
    Per-key state must not outlive the computation, or memory grows with the
    number of distinct keys ever seen. 100,000 distinct cold keys go through
    ``remember`` (the factory returns at once), pulled by 100 worker tasks
    from one shared iterator. Reported: ``cache.in_flight`` afterwards
    (target 0), its peak as sampled by the workers and inside the factory
    (bounded by the worker count), keys/s, and the growth of the process's
    max RSS (``ru_maxrss``) over the run, for information.

``views``
    The conveniences must stay thin. One task, hits only, in alternating
    blocks like ``hit`` (the order rotating each round): the string
    ``remember``, ``cache.json.remember`` on a small JSON object, and a
    ``@cache.cached(key="user:{user_id}:profile")`` function reading the same
    key. Reported: ops/s of each; json/string (target >= 0.85) and the
    decorator's overhead over the direct ``cache.json.remember`` with an
    f-string key — what you would write by hand (target <= 15%).

Each backend and scenario runs in its OWN subprocess (this same file with
``--run``), like ``bench_client.py``: event loops, allocator state and the
max-RSS high-water mark from one cannot leak into another, and a crash in one
does not take the others down. Only ratios measured in the same run are
meaningful on a noisy machine; the hit ratio is measured within one process.

Usage::

    python bench/bench_port.py [--quick] [--json PATH]

Exit status is 0 even when a target FAILs (this is a report), and non-zero
when a child crashes (including a failed check) or redis-server is missing.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from _harness import (
    HOST,
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
    write_results,
)

from beignet_redis_anyio.testing.servers import RedisServer

#: The distributions whose versions the result records.
PEERS = ("anyio", "trio")

if TYPE_CHECKING:
    from beignet_redis_anyio import RedisCachePort

BACKENDS: tuple[str, ...] = ("asyncio", "trio")
SCENARIOS: tuple[str, ...] = ("hit", "stampede", "state", "views")

HOT_KEY = "bench:hot"
HOT_VALUE = "hello"
HIT_ROUNDS = 10
HIT_WARMUP = 500
STAMPEDE_TASKS = 1000
STAMPEDE_SLEEP_S = 0.05
STAMPEDE_REPEATS = 3
STATE_WORKERS = 100

HIT_MIN_RATIO = 0.90
JSON_MIN_RATIO = 0.85
DECORATOR_MAX_OVERHEAD = 0.15
VIEW_VALUE = {"id": 1, "name": "Ada", "tags": ["admin", "ops"]}


def max_rss_bytes() -> int:
    """The process's max RSS so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


# --------------------------------------------------------------------------
# Child side: one backend, one scenario.
# --------------------------------------------------------------------------


async def bench_hit(cache: RedisCachePort, n: int) -> dict[str, Any]:
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        return "recomputed"

    async def get_block(count: int) -> float:
        value: str | None = None
        start = time.perf_counter()
        for _ in range(count):
            value = await cache.get(HOT_KEY)
        elapsed = time.perf_counter() - start
        check(value == HOT_VALUE, f"get returned {value!r}")
        return elapsed

    async def remember_block(count: int) -> float:
        value = ""
        start = time.perf_counter()
        for _ in range(count):
            value = await cache.remember(HOT_KEY, factory)
        elapsed = time.perf_counter() - start
        check(value == HOT_VALUE, f"remember returned {value!r}")
        return elapsed

    await cache.set(HOT_KEY, HOT_VALUE)
    await get_block(HIT_WARMUP)
    await remember_block(HIT_WARMUP)

    per_block = max(1, n // HIT_ROUNDS)
    get_s = remember_s = 0.0
    round_ratios: list[float] = []
    for round_no in range(HIT_ROUNDS):
        gc.collect()
        if round_no % 2 == 0:
            g = await get_block(per_block)
            r = await remember_block(per_block)
        else:
            r = await remember_block(per_block)
            g = await get_block(per_block)
        get_s += g
        remember_s += r
        round_ratios.append(g / r)  # (per/r) / (per/g)

    check(calls == 0, f"the factory ran {calls} time(s) on a hit")
    ops = per_block * HIT_ROUNDS
    return {
        "ops_each": ops,
        "rounds": HIT_ROUNDS,
        "get_ops_per_s": ops / get_s,
        "remember_ops_per_s": ops / remember_s,
        "ratio": get_s / remember_s,
        "round_ratios": round_ratios,
        "factory_calls": calls,
    }


async def stampede_once(cache: RedisCachePort, tasks: int) -> tuple[int, float]:
    """One stampede on a fresh cold key; returns (factory calls, wall seconds)."""
    import anyio

    token = uuid.uuid4().hex
    key = f"bench:cold:{token}"
    expected = f"computed:{token}"
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(STAMPEDE_SLEEP_S)
        return expected

    results: list[str] = []
    finished: list[float] = []
    ready = 0
    all_ready = anyio.Event()
    gate = anyio.Event()

    async def caller() -> None:
        nonlocal ready
        ready += 1
        if ready == tasks:
            all_ready.set()
        await gate.wait()
        results.append(await cache.remember(key, factory))
        finished.append(time.perf_counter())

    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(caller)
        await all_ready.wait()
        start = time.perf_counter()
        gate.set()

    check(len(results) == tasks, f"{len(results)} of {tasks} callers returned")
    wrong = [value for value in results if value != expected]
    check(not wrong, f"{len(wrong)} caller(s) got another value, e.g. {wrong[:1]!r}")
    stored = await cache.get(key)
    check(stored == expected, f"the stored value is {stored!r}")
    return calls, max(finished) - start


async def bench_stampede(cache: RedisCachePort, tasks: int) -> dict[str, Any]:
    await stampede_once(cache, 10)  # warm-up: code paths, not the connection
    runs = [await stampede_once(cache, tasks) for _ in range(STAMPEDE_REPEATS)]
    check(cache.in_flight == 0, f"in_flight is {cache.in_flight} after the stampedes")
    walls_ms = [wall * 1000 for _, wall in runs]
    return {
        "tasks": tasks,
        "repeats": STAMPEDE_REPEATS,
        "factory_calls": [calls for calls, _ in runs],
        "worst_factory_calls": max(calls for calls, _ in runs),
        "wall_ms": walls_ms,
        "median_wall_ms": statistics.median(walls_ms),
    }


async def bench_state(cache: RedisCachePort, n: int) -> dict[str, Any]:
    import anyio

    prefix = f"bench:state:{uuid.uuid4().hex}:"
    value = "v"
    calls = 0
    peak = 0

    async def factory() -> str:
        nonlocal calls, peak
        calls += 1
        peak = max(peak, cache.in_flight)  # this key's own run counts
        return value

    async def run(keys: range) -> None:
        # One iterator shared by all workers: tasks are cooperative, and
        # next() does not await, so each key is handed out exactly once.
        shared = iter(keys)

        async def worker() -> None:
            nonlocal peak
            for i in shared:
                peak = max(peak, cache.in_flight)
                got = await cache.remember(f"{prefix}{i}", factory)
                peak = max(peak, cache.in_flight)
                if got != value:
                    raise CheckFailed(f"remember returned {got!r}")

        async with anyio.create_task_group() as tg:
            for _ in range(STATE_WORKERS):
                tg.start_soon(worker)

    warmup = max(STATE_WORKERS, n // 100)
    await run(range(-warmup, 0))  # negative indices: distinct from the timed keys
    check(calls == warmup, f"the factory ran {calls} times for {warmup} warm-up keys")
    calls = peak = 0
    gc.collect()
    rss_before = max_rss_bytes()
    start = time.perf_counter()
    await run(range(n))
    elapsed = time.perf_counter() - start
    in_flight_after = cache.in_flight  # before any further checkpoint
    gc.collect()
    rss_after = max_rss_bytes()
    check(calls == n, f"the factory ran {calls} times for {n} cold keys")
    return {
        "keys": n,
        "workers": STATE_WORKERS,
        "keys_per_s": n / elapsed,
        "in_flight_after": in_flight_after,
        "peak_in_flight": peak,
        "factory_calls": calls,
        "max_rss_before_bytes": rss_before,
        "max_rss_after_bytes": rss_after,
        "max_rss_growth_bytes": rss_after - rss_before,
    }


async def bench_views(cache: RedisCachePort, n: int) -> dict[str, Any]:
    calls = 0

    async def factory() -> Any:
        nonlocal calls
        calls += 1
        return "recomputed"

    @cache.cached(key="user:{user_id}:profile")
    async def profile(user_id: int) -> Any:
        return await factory()

    user_id = 1
    json_remember = cache.json.remember
    remember = cache.remember

    async def string_block(count: int) -> float:
        value = ""
        start = time.perf_counter()
        for _ in range(count):
            value = await remember(f"user:{user_id}:profile", factory)
        elapsed = time.perf_counter() - start
        check(json.loads(value) == VIEW_VALUE, f"remember returned {value!r}")
        return elapsed

    async def json_block(count: int) -> float:
        value: Any = None
        start = time.perf_counter()
        for _ in range(count):
            value = await json_remember(f"user:{user_id}:profile", factory)
        elapsed = time.perf_counter() - start
        check(value == VIEW_VALUE, f"json.remember returned {value!r}")
        return elapsed

    async def decorated_block(count: int) -> float:
        value: Any = None
        start = time.perf_counter()
        for _ in range(count):
            value = await profile(user_id)
        elapsed = time.perf_counter() - start
        check(value == VIEW_VALUE, f"the decorated function returned {value!r}")
        return elapsed

    await cache.json.set(f"user:{user_id}:profile", VIEW_VALUE)
    blocks = {"string": string_block, "json": json_block, "decorated": decorated_block}
    for block in blocks.values():
        await block(HIT_WARMUP)
    per_block = max(1, n // HIT_ROUNDS)
    totals = dict.fromkeys(blocks, 0.0)
    json_ratios: list[float] = []
    overheads: list[float] = []
    names = list(blocks)
    for round_no in range(HIT_ROUNDS):
        gc.collect()
        order = names[round_no % 3 :] + names[: round_no % 3]
        took = {name: await blocks[name](per_block) for name in order}
        for name, seconds in took.items():
            totals[name] += seconds
        json_ratios.append(took["string"] / took["json"])
        overheads.append(took["decorated"] / took["json"] - 1)
    check(calls == 0, f"the factory ran {calls} time(s) on a hit")
    ops = per_block * HIT_ROUNDS
    return {
        "ops_each": ops,
        "rounds": HIT_ROUNDS,
        **{f"{name}_ops_per_s": ops / seconds for name, seconds in totals.items()},
        "json_ratio": totals["string"] / totals["json"],
        "json_round_ratios": json_ratios,
        "decorator_overhead": totals["decorated"] / totals["json"] - 1,
        "decorator_round_overheads": overheads,
    }


def child_main(args: argparse.Namespace) -> None:
    import anyio

    from beignet_redis_anyio import RedisConfig, open_redis_provider

    backend, scenario, url, n = args.run, args.scenario, args.url, args.n
    scenarios: dict[str, Callable[[RedisCachePort], Awaitable[dict[str, Any]]]] = {
        "hit": lambda cache: bench_hit(cache, n),
        "stampede": lambda cache: bench_stampede(cache, STAMPEDE_TASKS),
        "state": lambda cache: bench_state(cache, n),
        "views": lambda cache: bench_views(cache, n),
    }

    async def main() -> dict[str, Any]:
        async with open_redis_provider(RedisConfig(url=url)) as cache:
            return await scenarios[scenario](cache)

    result = anyio.run(main, backend=backend)
    print(json.dumps({"backend": backend, "scenario": scenario, **result}), flush=True)


# --------------------------------------------------------------------------
# Parent side: redis-server, orchestration, report.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    backend: str
    target: str
    measured: str
    wanted: str
    status: str  # PASS, FAIL or N/A (the child crashed)


def evaluate(backend: str, results: dict[str, dict[str, Any] | None]) -> list[Evaluation]:
    hit, stampede, state, views = (results.get(s) for s in SCENARIOS)

    def judged(target: str, measured: object, wanted: str, passed: bool) -> Evaluation:
        return Evaluation(backend, target, str(measured), wanted, status(passed))

    def crashed(target: str) -> Evaluation:
        return Evaluation(backend, target, "n/a", "", "N/A")

    hit_wanted = f">= {HIT_MIN_RATIO:.2f}x"
    return [
        crashed("remember / get (hit)")
        if hit is None
        else judged(
            "remember / get (hit)",
            f"{hit['ratio']:.2f}x",
            hit_wanted,
            hit["ratio"] >= HIT_MIN_RATIO,
        ),
        crashed("stampede factory calls")
        if stampede is None
        else judged(
            f"stampede factory calls (worst of {stampede['repeats']})",
            stampede["worst_factory_calls"],
            "== 1",
            stampede["worst_factory_calls"] == 1,
        ),
        crashed("in_flight after distinct keys")
        if state is None
        else judged(
            f"in_flight after {state['keys']:,} keys",
            state["in_flight_after"],
            "== 0",
            state["in_flight_after"] == 0,
        ),
        crashed("json.remember / remember (hit)")
        if views is None
        else judged(
            "json.remember / remember (hit)",
            f"{views['json_ratio']:.2f}x",
            f">= {JSON_MIN_RATIO:.2f}x",
            views["json_ratio"] >= JSON_MIN_RATIO,
        ),
        crashed("@cached over json.remember (hit)")
        if views is None
        else judged(
            "@cached over json.remember (hit)",
            f"{views['decorator_overhead']:+.1%}",
            f"<= {DECORATOR_MAX_OVERHEAD:.0%}",
            views["decorator_overhead"] <= DECORATOR_MAX_OVERHEAD,
        ),
    ]


def report_rows(results: dict[str, dict[str, Any] | None]) -> list[tuple[str, str]]:
    """(metric, formatted value) rows for one backend; "n/a" where a child crashed."""
    hit, stampede, state, views = (results.get(s) for s in SCENARIOS)
    rows: list[tuple[str, str]] = []
    if hit is not None:
        ratios = hit["round_ratios"]
        rows += [
            (f"hit: get ops/s ({hit['ops_each']:,} ops)", f"{hit['get_ops_per_s']:,.0f}"),
            (
                f"hit: remember ops/s ({hit['ops_each']:,} ops)",
                f"{hit['remember_ops_per_s']:,.0f}",
            ),
            ("hit: remember / get", f"{hit['ratio']:.2f}x"),
            (
                f"hit: per-round ratio range ({hit['rounds']} rounds)",
                f"{min(ratios):.2f}-{max(ratios):.2f}x",
            ),
            ("hit: factory calls", str(hit["factory_calls"])),
        ]
    if stampede is not None:
        tasks, repeats = stampede["tasks"], stampede["repeats"]
        rows += [
            (
                f"stampede: factory calls, worst of {repeats} ({tasks:,} tasks)",
                str(stampede["worst_factory_calls"]),
            ),
            (
                f"stampede: ms until all have the value, median of {repeats}",
                f"{stampede['median_wall_ms']:.1f}",
            ),
            (
                "stampede: ms per run",
                " / ".join(f"{ms:.1f}" for ms in stampede["wall_ms"]),
            ),
        ]
    if state is not None:
        rows += [
            (
                f"state: distinct keys/s ({state['keys']:,} keys, {state['workers']} workers)",
                f"{state['keys_per_s']:,.0f}",
            ),
            ("state: in_flight afterwards", str(state["in_flight_after"])),
            ("state: peak in_flight (sampled)", str(state["peak_in_flight"])),
            (
                "state: max RSS growth (MiB)",
                f"{state['max_rss_growth_bytes'] / 2**20:.1f}",
            ),
        ]
    if views is not None:
        ops = f"{views['ops_each']:,} ops"
        rows += [
            (f"views: remember ops/s ({ops})", f"{views['string_ops_per_s']:,.0f}"),
            (f"views: json.remember ops/s ({ops})", f"{views['json_ops_per_s']:,.0f}"),
            (f"views: @cached ops/s ({ops})", f"{views['decorated_ops_per_s']:,.0f}"),
            ("views: json.remember / remember", f"{views['json_ratio']:.2f}x"),
            (
                "views: json.remember / remember, per round",
                f"{min(views['json_round_ratios']):.2f}-{max(views['json_round_ratios']):.2f}x",
            ),
            ("views: @cached over json.remember", f"{views['decorator_overhead']:+.1%}"),
            (
                "views: @cached overhead, per round",
                f"{min(views['decorator_round_overheads']):+.1%} to "
                f"{max(views['decorator_round_overheads']):+.1%}",
            ),
        ]
    return rows


def print_report(
    results: dict[str, dict[str, dict[str, Any] | None]], evaluations: Sequence[Evaluation]
) -> None:
    per_backend = {backend: dict(report_rows(results[backend])) for backend in BACKENDS}
    metrics: list[str] = []
    for backend in BACKENDS:
        for metric, _ in report_rows(results[backend]):
            if metric not in metrics:
                metrics.append(metric)
    rows = [("metric", *BACKENDS)]
    rows += [(m, *(per_backend[b].get(m, "n/a") for b in BACKENDS)) for m in metrics]
    print()
    print_table(rows)
    print()
    name_width = max(len(ev.target) for ev in evaluations)
    for ev in evaluations:
        wanted = f"(target {ev.wanted})" if ev.wanted else ""
        print(
            target_line(
                f"{ev.backend:<8}", ev.target, ev.measured, wanted, ev.status, width=name_width
            )
        )


def parent_main(args: argparse.Namespace) -> int:
    found = print_header()
    if found is None:
        return 2
    executable, server_version = found

    hit_n = 3000 if args.quick else 20000
    state_n = 10_000 if args.quick else 100_000
    sizes = {"hit": hit_n, "stampede": STAMPEDE_TASKS, "state": state_n, "views": hit_n}

    print(
        f"hit: {hit_n} get + {hit_n} remember in {HIT_ROUNDS} alternating rounds "
        f"after {HIT_WARMUP} of each; stampede: {STAMPEDE_TASKS} tasks x "
        f"{STAMPEDE_REPEATS} runs, factory sleeps {STAMPEDE_SLEEP_S * 1000:.0f} ms; "
        f"state: {state_n:,} distinct keys, {STATE_WORKERS} workers; "
        f"views: {hit_n} hits each of remember, json.remember and @cached"
    )

    results: dict[str, dict[str, dict[str, Any] | None]] = {b: {} for b in BACKENDS}
    crashed: list[str] = []
    with RedisServer(binary=executable) as server:
        url = f"redis://{HOST}:{server.port}/0"
        print(f"redis-server on {url}")
        for scenario in SCENARIOS:
            for backend in BACKENDS:
                try:
                    out = run_child(
                        __file__, run=backend, scenario=scenario, url=url, n=sizes[scenario]
                    )
                except ChildFailed as exc:
                    results[backend][scenario] = None
                    crashed.append(f"{backend}/{scenario}: {exc.reason}")
                    print(f"  {backend} {scenario} CRASHED:\n{exc.stderr}", file=sys.stderr)
                    continue
                results[backend][scenario] = out
                print(f"  done: {scenario:<8} {backend}", flush=True)

    evaluations = [ev for backend in BACKENDS for ev in evaluate(backend, results[backend])]
    print_report(results, evaluations)

    payload = {
        "settings": {
            "quick": args.quick,
            "sizes": sizes,
            "hit_rounds": HIT_ROUNDS,
            "hit_warmup": HIT_WARMUP,
            "stampede_repeats": STAMPEDE_REPEATS,
            "stampede_sleep_s": STAMPEDE_SLEEP_S,
            "state_workers": STATE_WORKERS,
            "python": platform.python_version(),
            "redis_server": server_version,
        },
        "results": results,
        "targets": [asdict(ev) for ev in evaluations],
    }
    parameters = payload.pop("settings")
    write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=payload)

    return exit_status(crashed)


def main(argv: Sequence[str] | None = None) -> int:
    child = {
        "--run": {"metavar": "BACKEND", "choices": BACKENDS},
        "--scenario": {"choices": SCENARIOS},
        "--url": {},
        "--n": {"type": int},
    }
    return bench_main(__doc__, argv, "smaller sizes", child, child_main, parent_main)


if __name__ == "__main__":
    sys.exit(main())
