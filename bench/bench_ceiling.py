"""The shared connection against the ceiling its event loop sets.

What is measured
----------------
Against a throw-away local ``redis-server`` (a free loopback port, always
stopped again), every figure a ratio between contenders that ran moments
apart, in rounds that alternate them:

``scale``
    ``GET bench:key`` from 1, 10, 100 and 1,000 tasks sharing one client, on
    asyncio, asyncio with uvloop's loop, and trio, by three contenders:

    ``null``
        The null ceiling: each task puts an event in a FIFO and waits for it;
        one resolver task sets them all. No I/O at all: what scheduling
        alone costs any client that multiplexes, on that loop.
    ``bare``
        ``BareMultiplexer``: one connection, a writer and a reader task, a
        FIFO of waiters, a ``hiredis.Reader``, nothing else.
    ``ours``
        ``open_redis_client(url)``: the shared multiplexed connection.

``peers``
    ``redis-py`` (asyncio, hiredis parser) and ``coredis`` (asyncio) at 1 and
    100 tasks, against ``ours`` on asyncio; ``redis-benchmark -c 1`` (the
    server's own C client, one connection, no pipelining) against one task
    of ours.
``tail``
    Each command's latency at 100 tasks: p50, p99 and p99.9, ours on each
    loop against redis-py on asyncio.
``large``
    One task: 1 MiB ``SET`` and ``GET``, and a 10,000-command pipeline
    (``SET``), ours against redis-py; and the peak memory a process takes
    per MiB in flight, 32 tasks each ``GET``-ting a 1 MiB value at once.
``tracking``
    A command that is no local hit, with the local cache on: ``PING`` from
    one task and ``GETEX`` from 100 (a keyed command the local cache does not
    keep, so it drops its key's replies around it; a ``GET`` would now be a
    hit), through a provider with ``local_cache=True``
    (its connection tracks keys, and its reader task reads whenever no caller does)
    against one without, on each loop. In each child both are open side by
    side and measured in the order without, with, with, without, twice; each
    side keeps its best: drift over the child's life lands on both alike.
``cost``
    The same 100 tasks' ``GETEX``, tracked against untracked, counted in
    instructions a command by ``valgrind --tool=callgrind``, for scale
    (information only): the machine's noise is as large as the few percent
    measured in time. Not a verdict, as what a tracked link does depends on
    time (how long its reader stands back, how many turns a caller spins)
    and callgrind slows the client many times over against the same server. One
    task's ``PING`` is not counted at all: there that changes everything.

Every contender runs in its own subprocess (this file with ``--run``), on
CPUs other than the server's (see ``_harness.separate_cores``: where the
scheduler put a client was the largest noise in the one-connection rows). With
``--baseline DIR`` (a checkout of this repository, e.g. ``git worktree add``
or ``git archive``), ``ours`` is also measured as that checkout's code, as
contender ``base``, in the same rounds: what a change buys, in one run.

Usage::

    python bench/bench_ceiling.py [--quick] [--only SCENARIO,...] [--baseline DIR] [--json PATH]

Exit status 0 even when a target FAILs (this is a report); non-zero when a
child crashes or redis-server is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from _harness import (
    CHILD_TIMEOUT_S,
    HOST,
    LOOPS,
    BareMultiplexer,
    ChildFailed,
    bench_main,
    check,
    exit_status,
    fan_out,
    fmt_ops,
    host_port,
    paired_ratio,
    print_header,
    print_table,
    ratio_line,
    run_child,
    run_on,
    separate_cores,
    status,
    target_line,
    write_results,
)

from beignet_redis_anyio.testing.servers import RedisServer, command, encode_command

PEERS = ("anyio", "trio", "uvloop", "redis", "hiredis", "coredis")
SCENARIOS = ("scale", "peers", "tail", "large", "tracking", "cost")
TASKS = (1, 10, 100, 1000)
#: The tasks the peers, tail, large and tracking scenarios run at.
PAIR = (1, 100)
KEY, VALUE = "bench:key", "hello"
BIG_KEY = "bench:big"
MIB = 1 << 20
GET_COMMAND = encode_command("GET", KEY)

#: The ratio targets: (what, minimum).
CEILING_MIN = {"asyncio": 0.65, "uvloop": 0.60, "trio": 0.65}
REDIS_BENCHMARK_MIN = 1.2
REDIS_PY_100_MIN, COREDIS_100_MIN = 7.5, 10.0

#: A non-hit command costs at most 5% more with the local cache on, in time.
TRACKING_MIN = 0.95
#: The ``cost`` scenario's figures, in the order its child runs them.
COST_FIGURES = ("getex_100_untracked", "getex_100_tracked")
#: Commands per figure in the ``cost`` children: each figure's count is the
#: difference of a child that runs COST_MORE of its command and one that
#: runs COST_BASE, so what the child does besides (start, import, connect)
#: drops out.
COST_BASE, COST_MORE = 2_000, 10_000
LARGE_MIN = 1.0


# --------------------------------------------------------------------------
# Child side.
# --------------------------------------------------------------------------


class NullResolver:
    """The null ceiling: the FIFO of waiters a multiplexer keeps, and one
    task that resolves them, with nothing to send or read in between."""

    def __init__(self) -> None:
        import anyio

        self._anyio = anyio
        self._waiters: deque[Any] = deque()
        self._wakeup = anyio.Event()

    async def request(self) -> object:
        event = self._anyio.Event()
        self._waiters.append(event)
        if not self._wakeup.is_set():
            self._wakeup.set()
        await event.wait()
        return VALUE

    async def resolver(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = self._anyio.Event()
            waiters, self._waiters = self._waiters, deque()
            for event in waiters:
                event.set()


async def _rates(get: Callable[[], Awaitable[object]], tasks: Sequence[int], ops: int) -> dict:
    """ops/s of ``get`` from each number of ``tasks`` (``ops`` in all each time)."""
    rates: dict[str, float] = {}

    async def run(n: int) -> object:
        reply: object = None
        for _ in range(n):
            reply = await get()
        return reply

    for count in tasks:
        each = max(1, ops // count)
        warm_up = max(1, each // 10)
        for reply in await fan_out(lambda: run(warm_up), count):  # noqa: B023 (awaited here)
            check(reply in (VALUE, VALUE.encode(), True), f"unexpected reply {reply!r}")
        gc.collect()
        started = time.perf_counter()
        await fan_out(lambda: run(each), count)  # noqa: B023 (awaited here)
        rates[str(count)] = each * count / (time.perf_counter() - started)
    return rates


async def _repeat(call: Callable[[], Awaitable[object]], times: int) -> None:
    for _ in range(times):
        await call()


async def _latencies(get: Callable[[], Awaitable[object]], tasks: int, ops: int) -> dict:
    """p50/p99/p99.9 of one command's latency, in microseconds, from ``tasks`` tasks."""
    samples: list[float] = []
    clock = time.perf_counter

    async def run(n: int, record: bool) -> None:
        for _ in range(n):
            started = clock()
            await get()
            if record:
                samples.append(clock() - started)

    await fan_out(lambda: run(20, False), tasks)
    gc.collect()
    await fan_out(lambda: run(ops // tasks, True), tasks)
    samples.sort()

    def pick(q: float) -> float:
        return samples[min(len(samples) - 1, int(len(samples) * q))] * 1e6

    return {"p50_us": pick(0.5), "p99_us": pick(0.99), "p999_us": pick(0.999)}


def _peak_kib() -> int:
    """``VmHWM``, this process's peak resident memory, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _large(client: Any, ops: int, pipeline: Callable[[], Any]) -> dict:
    big = b"x" * MIB
    await client.set(BIG_KEY, big)
    result: dict[str, float] = {}
    started = time.perf_counter()
    for _ in range(ops):
        await client.set(BIG_KEY, big)
    result["set_1mib_per_s"] = ops / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(ops):
        reply = await client.get(BIG_KEY)
    result["get_1mib_per_s"] = ops / (time.perf_counter() - started)
    check(len(reply) == MIB, "short 1 MiB reply")
    commands = 10_000
    best = 0.0
    for _ in range(3):
        pipe = pipeline()
        for i in range(commands):
            pipe.set(f"bench:p:{i % 100}", i)
        started = time.perf_counter()
        replies = await pipe.execute()
        best = max(best, commands / (time.perf_counter() - started))
        check(len(replies) == commands, "short pipeline")
    result["pipeline_cmds_per_s"] = best
    # Peak memory per MiB in flight: 32 tasks read the value at once.
    in_flight = 32
    gc.collect()
    before = _peak_kib()
    for _ in range(3):
        await fan_out(lambda: client.get(BIG_KEY), in_flight)
    result["peak_kib_per_mib_in_flight"] = (_peak_kib() - before) / in_flight
    return result


def _child_ours(args: argparse.Namespace) -> dict:
    from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider

    url, tasks, ops = args.url, [int(t) for t in args.tasks.split(",")], args.ops

    async def main() -> dict:
        if args.scenario == "cost":
            # Both providers side by side, each figure's command so many
            # times: for callgrind to count (see _costs).
            counts = dict(zip(COST_FIGURES, map(int, args.counts.split(",")), strict=True))
            # (a PING from one task is not counted: what it does depends on
            # time — how long the reader stands back, how many turns the
            # caller spins — and under callgrind the client runs many times
            # slower against the same server.)
            async with (
                open_redis_provider(RedisConfig(url=url, local_cache=False)) as plain,
                open_redis_provider(RedisConfig(url=url, local_cache=True)) as local,
            ):
                for figure, times in counts.items():
                    client = (local if figure.endswith("_tracked") else plain).client
                    await client.ping()
                    call = partial(client.getex, KEY)
                    await fan_out(lambda: _repeat(call, times // 100), 100)  # noqa: B023
            return {}
        if args.scenario == "tracking":
            out: dict[str, Any] = {}
            # Both providers open side by side, measured in turn: A, B, B, A,
            # twice, each side keeping its best. What drifts over the child's
            # life (the heap, the server's state, the clock) falls on both
            # alike, and a target of a few percent needs more than one try a
            # side to see past a hiccup of the machine.
            async with (
                open_redis_provider(RedisConfig(url=url, local_cache=False)) as plain,
                open_redis_provider(RedisConfig(url=url, local_cache=True)) as local,
            ):
                for cache in (plain, local, local, plain) * 2:
                    client = cache.client
                    name = "tracked" if cache is local else "untracked"
                    await client.ping()
                    ping = await _rates(client.ping, [1], ops)
                    # 100 tasks: GETEX is never a local hit (not read-only).
                    # (five times the commands: 100 tasks get through ops in
                    # a fraction of a second, where one hiccup is a percent)
                    get = await _rates(partial(client.getex, KEY), [100], 5 * ops)
                    for figure, rate in (
                        (f"ping_1_{name}", ping["1"]),
                        (f"getex_100_{name}", get["100"]),
                    ):
                        out[figure] = max(out.get(figure, 0.0), rate)
            return out
        async with open_redis_client(url, decode_responses=False) as client:
            if args.scenario == "scale" or args.scenario == "peers":
                return await _rates(lambda: client.get(KEY), tasks, ops)
            if args.scenario == "tail":
                return await _latencies(lambda: client.get(KEY), 100, ops)
            return await _large(client, args.big_ops, lambda: client.pipeline(transaction=False))

    result: dict = run_on(args.loop, main)
    return result


def _child_redis_py(args: argparse.Namespace) -> dict:
    import redis.asyncio

    tasks, ops = [int(t) for t in args.tasks.split(",")], args.ops

    async def main() -> dict:
        client = redis.asyncio.Redis.from_url(args.url)
        try:
            if args.scenario == "tail":
                return await _latencies(lambda: client.get(KEY), 100, ops)
            if args.scenario == "large":
                return await _large(client, args.big_ops, lambda: client.pipeline(False))
            return await _rates(lambda: client.get(KEY), tasks, ops)
        finally:
            await client.aclose()

    # redis-py is an asyncio library: anyio's tasks on asyncio are asyncio's.
    result: dict = asyncio.run(main())
    return result


def _child_coredis(args: argparse.Namespace) -> dict:
    import coredis

    tasks = [int(t) for t in args.tasks.split(",")]

    async def main() -> dict:
        async with coredis.Redis.from_url(args.url) as client:
            return await _rates(lambda: client.get(KEY), tasks, args.ops)

    result: dict = run_on(args.loop, main)
    return result


def _child_null(args: argparse.Namespace) -> dict:
    import anyio

    async def main() -> dict:
        null = NullResolver()
        async with anyio.create_task_group() as tg:
            tg.start_soon(null.resolver)
            rates = await _rates(null.request, [int(t) for t in args.tasks.split(",")], args.ops)
            tg.cancel_scope.cancel()
        return rates

    result: dict = run_on(args.loop, main)
    return result


def _child_bare(args: argparse.Namespace) -> dict:
    import anyio

    host, port = host_port(args.url)

    async def main() -> dict:
        async with await anyio.connect_tcp(host, port) as stream:
            mux = BareMultiplexer(stream)
            async with anyio.create_task_group() as tg:
                tg.start_soon(mux.writer)
                tg.start_soon(mux.reader)
                tasks = [int(t) for t in args.tasks.split(",")]
                rates = await _rates(lambda: mux.request(GET_COMMAND), tasks, args.ops)
                tg.cancel_scope.cancel()
            return rates

    result: dict = run_on(args.loop, main)
    return result


def child_main(args: argparse.Namespace) -> None:
    runners = {
        "ours": _child_ours,
        "base": _child_ours,
        "redis-py": _child_redis_py,
        "coredis": _child_coredis,
        "null": _child_null,
        "bare": _child_bare,
    }
    print(json.dumps(runners[args.run](args)), flush=True)


# --------------------------------------------------------------------------
# Parent side.
# --------------------------------------------------------------------------


def _redis_benchmark(port: int, ops: int) -> dict:
    """``redis-benchmark -c 1`` ``GET bench:key``: one connection, no pipelining."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise ChildFailed("redis-benchmark not found")
    out = subprocess.run(
        [exe, "-h", HOST, "-p", str(port), "-c", "1", "-n", str(ops), "--csv", "GET", KEY],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    for line in out.splitlines():
        cells = [cell.strip('"') for cell in line.split(",")]
        if cells and cells[0].startswith("GET"):
            return {"1": float(cells[1])}
    raise ChildFailed(f"redis-benchmark printed no rate: {out!r}")


def _costs(script: str, url: str) -> dict[str, dict[str, float]]:
    """Instructions a command, by loop and :data:`COST_FIGURES`, counted by
    callgrind: unlike the time a command takes, they do not move with the
    machine's noise, so a difference of a few percent can be read in one
    run. Each figure is the difference of two children, one running
    :data:`COST_MORE` of its command and one :data:`COST_BASE`, divided by
    the commands between them."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise ChildFailed("valgrind not found (Debian's valgrind package)")

    def count(loop: str, counts: Sequence[int]) -> int:
        cmd = [
            valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, str(Path(script).resolve()), "--run", "ours", "--url", url,
            "--scenario", "cost", "--loop", loop, "--counts", ",".join(map(str, counts)),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or found is None:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            raise ChildFailed(lines[-1] if lines else f"exit status {proc.returncode}", proc.stderr)
        return int(found.group(1))

    jobs = {
        (loop, which): [COST_MORE if i == which else COST_BASE for i in range(len(COST_FIGURES))]
        for loop in LOOPS
        for which in (None, *range(len(COST_FIGURES)))
    }
    # Counts do not depend on timing, so two children may share the cores.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        totals = dict(zip(jobs, pool.map(lambda job: count(job[0], jobs[job]), jobs), strict=True))
    return {
        loop: {
            figure: (totals[loop, i] - totals[loop, None]) / (COST_MORE - COST_BASE)
            for i, figure in enumerate(COST_FIGURES)
        }
        for loop in LOOPS
    }


class Runs:
    """Every round's figures, by (scenario, contender, loop) then figure name."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str, str], dict[str, list[float]]] = {}
        self.crashed: list[str] = []

    def add(self, key: tuple[str, str, str], figures: dict[str, float]) -> None:
        into = self.runs.setdefault(key, {})
        for name, value in figures.items():
            into.setdefault(name, []).append(value)

    def get(self, key: tuple[str, str, str], name: str) -> list[float]:
        return self.runs.get(key, {}).get(name, [])

    def best(self, key: tuple[str, str, str], name: str, *, high: bool = True) -> float | None:
        values = self.get(key, name)
        return (max(values) if high else min(values)) if values else None


WIDTH = 44


def _ratio(
    runs: Runs,
    lead: str,
    ours: tuple[tuple[str, str, str], str],
    other: tuple[tuple[str, str, str], str],
    minimum: float | None,
    *,
    high: bool = True,
    label: str = "",
) -> str:
    """A ratio line: ``ours / other``, best against best, with its rounds' spread."""
    mine, theirs = runs.get(*ours), runs.get(*other)
    ratio, per_round = (
        paired_ratio(mine, theirs, higher_is_better=high)
        if len(mine) == len(theirs)
        else (None, [])
    )
    if not high and ratio is not None:
        ratio, per_round = 1 / ratio, [1 / r for r in per_round]  # ratios read "higher is better"
    pair = label or f"{ours[0][1]}/{other[0][1]}"
    if minimum is None:
        return ratio_line(lead, pair, ratio, per_round, width=WIDTH)
    verdict = status(None if ratio is None else ratio >= minimum)
    wanted = f"(target >= {minimum:.2f}x)"
    return ratio_line(lead, pair, ratio, per_round, width=WIDTH, wanted=wanted, verdict=verdict)


def _report(runs: Runs, scenarios: Sequence[str], baseline: bool) -> None:
    contenders = ["null", "bare", "ours", *(["base"] if baseline else [])]
    lines: list[str] = []
    if "scale" in scenarios:
        rows = [("loop", "contender", *(f"{t} tasks" for t in TASKS))]
        for loop in LOOPS:
            for name in contenders:
                cells = [fmt_ops(runs.best(("scale", name, loop), str(t))) for t in TASKS]
                rows.append((loop, name, *cells))
        print()
        print_table(rows, [False, False, True, True, True, True], title="GET ops/s by tasks")
        for loop in LOOPS:
            for t in TASKS:
                minimum = CEILING_MIN[loop] if t == 100 else None
                lines.append(
                    _ratio(
                        runs,
                        f"{loop:<7} {t:>4} tasks",
                        (("scale", "ours", loop), str(t)),
                        (("scale", "null", loop), str(t)),
                        minimum,
                        label="ours / null ceiling",
                    )
                )
            lines.append(
                _ratio(
                    runs,
                    f"{loop:<7}  100 tasks",
                    (("scale", "ours", loop), "100"),
                    (("scale", "bare", loop), "100"),
                    None,
                    label="ours / bare multiplexer",
                )
            )
            if baseline:
                for t in TASKS:
                    lines.append(
                        _ratio(
                            runs,
                            f"{loop:<7} {t:>4} tasks",
                            (("scale", "ours", loop), str(t)),
                            (("scale", "base", loop), str(t)),
                            None,
                            label="ours / baseline",
                        )
                    )
    if "peers" in scenarios:
        ours = ("scale", "ours", "asyncio")
        lines.append(
            _ratio(
                runs,
                "asyncio    1 task ",
                (ours, "1"),
                (("peers", "redis-benchmark", "c"), "1"),
                REDIS_BENCHMARK_MIN,
                label="ours / redis-benchmark -c 1",
            )
        )
        for peer, minimum in (("redis-py", REDIS_PY_100_MIN), ("coredis", COREDIS_100_MIN)):
            for t, wanted in (("1", None), ("100", minimum)):
                lines.append(
                    _ratio(
                        runs,
                        f"asyncio {t:>4} tasks",
                        (ours, t),
                        (("peers", peer, "asyncio"), t),
                        wanted,
                        label=f"ours / {peer}",
                    )
                )
    if "tail" in scenarios:
        rows = [("loop", "client", "p50 µs", "p99 µs", "p99.9 µs")]
        for name, loop in [("redis-py", "asyncio"), *(("ours", loop) for loop in LOOPS)]:
            key = ("tail", name, loop)
            rows.append(
                (
                    loop,
                    name,
                    *(
                        f"{value:,.0f}" if (value := runs.best(key, q, high=False)) else "n/a"
                        for q in ("p50_us", "p99_us", "p999_us")
                    ),
                )
            )
        print()
        print_table(rows, [False, False, True, True, True], title="GET latency at 100 tasks")
        for q in ("p99_us", "p999_us"):
            lines.append(
                _ratio(
                    runs,
                    "asyncio  100 tasks",
                    (("tail", "ours", "asyncio"), q),
                    (("tail", "redis-py", "asyncio"), q),
                    LARGE_MIN,
                    high=False,
                    label=f"{q[:-3]} redis-py / ours",
                )
            )
    if "large" in scenarios:
        rows = [("figure", "ours", "redis-py")]
        figures = ("set_1mib_per_s", "get_1mib_per_s", "pipeline_cmds_per_s")
        for name in (*figures, "peak_kib_per_mib_in_flight"):
            high = name != "peak_kib_per_mib_in_flight"
            rows.append(
                (
                    name,
                    *(
                        fmt_ops(runs.best(("large", who, "asyncio"), name, high=high))
                        for who in ("ours", "redis-py")
                    ),
                )
            )
        print()
        print_table(rows, title="one task, asyncio: 1 MiB values, 10,000-command pipeline")
        for name in figures:
            lines.append(
                _ratio(
                    runs,
                    "asyncio    1 task ",
                    (("large", "ours", "asyncio"), name),
                    (("large", "redis-py", "asyncio"), name),
                    LARGE_MIN,
                    label=f"{name.removesuffix('_per_s')} ours / redis-py",
                )
            )
    if "tracking" in scenarios:
        for loop in LOOPS:
            for figure in ("ping_1", "getex_100"):
                lines.append(
                    _ratio(
                        runs,
                        f"{loop:<7} {figure:<9} ",
                        (("tracking", "ours", loop), f"{figure}_tracked"),
                        (("tracking", "ours", loop), f"{figure}_untracked"),
                        TRACKING_MIN,
                        label="tracked / untracked ops/s (non-hit)",
                    )
                )
    if "cost" in scenarios:
        for loop in LOOPS:
            for figure in ("getex_100",):
                tracked = runs.best(("cost", "ours", loop), f"{figure}_tracked")
                untracked = runs.best(("cost", "ours", loop), f"{figure}_untracked")
                ratio = None if not tracked or not untracked else tracked / untracked
                measured = "n/a" if ratio is None else f"{ratio:.3f}x"
                note = "" if ratio is None else f"{tracked:,.0f} / {untracked:,.0f} instructions"
                # For scale, not the verdict (that is the time, above): a
                # tracked link's reader stands back for a time, not for a
                # number of commands, so under callgrind's slowdown it does
                # something else than at speed, and its counts move by a few
                # percent from run to run.
                lines.append(
                    target_line(
                        f"{loop:<7} {figure:<9} ",
                        "tracked / untracked instructions (non-hit)",
                        measured,
                        "(info only)",
                        "INFO",
                        note,
                        width=WIDTH,
                    )
                )
    print()
    for line in lines:
        print(line)


def _plan(scenarios: Sequence[str], baseline: str | None) -> list[tuple[str, str, str, str]]:
    """(scenario, contender, loop, script) for every child of one round."""
    here = str(Path(__file__).resolve())
    base = str(Path(baseline, "bench", "bench_ceiling.py")) if baseline else None
    plan: list[tuple[str, str, str, str]] = []
    for scenario in scenarios:
        if scenario == "scale":
            for loop in LOOPS:
                for name in ("null", "bare", "ours", "base"):
                    if name == "base" and base is None:
                        continue
                    plan.append((scenario, name, loop, base if name == "base" else here))  # type: ignore[arg-type]
        elif scenario == "peers":
            plan += [
                (scenario, "redis-py", "asyncio", here),
                (scenario, "coredis", "asyncio", here),
                (scenario, "redis-benchmark", "c", ""),
            ]
        elif scenario == "tail":
            plan += [(scenario, "redis-py", "asyncio", here)]
            plan += [(scenario, "ours", loop, here) for loop in LOOPS]
        elif scenario == "large":
            plan += [(scenario, who, "asyncio", here) for who in ("ours", "redis-py")]
        elif scenario == "tracking":
            plan += [(scenario, "ours", loop, here) for loop in LOOPS]
    return plan


def parent_main(args: argparse.Namespace) -> int:
    found = print_header()
    if found is None:
        return 2
    executable, server_version = found
    scenarios = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]
    if "peers" in scenarios and "scale" not in scenarios:
        scenarios.insert(0, "scale")  # the peers' ratios are to ours at scale
    rounds = args.rounds or (1 if args.quick else 5)
    ops = 3_000 if args.quick else 20_000
    big_ops = 20 if args.quick else 100
    tail_ops = 20_000 if args.quick else 100_000
    print(
        f"{ops:,} GETs per measurement (split over the tasks), tail {tail_ops:,}, "
        f"{big_ops} 1 MiB values; best of {rounds} rounds; scenarios {', '.join(scenarios)}"
    )
    runs = Runs()
    plan = _plan(scenarios, args.baseline)
    with RedisServer(binary=executable) as server:
        assert server.process is not None
        with separate_cores(server.process.pid) as placement:
            url = f"redis://{HOST}:{server.port}/0"
            check(command(server.port, "SET", KEY, VALUE).startswith(b"+OK"), "SET failed")
            print(f"redis-server on {url}; {placement}")
            for number in range(rounds if plan else 0):
                # Rotate the order, so no contender always runs first in a round.
                shift = number % len(plan)
                for scenario, name, loop, script in plan[shift:] + plan[:shift]:
                    key = (scenario, name, loop)
                    try:
                        if name == "redis-benchmark":
                            figures = _redis_benchmark(server.port, ops)
                        else:
                            figures = run_child(
                                script, run=name, url=url, scenario=scenario, loop=loop,
                                tasks=",".join(map(str, TASKS if scenario == "scale" else PAIR)),
                                ops=tail_ops if scenario == "tail" else ops, big_ops=big_ops,
                            )  # fmt: skip
                    except ChildFailed as exc:
                        runs.crashed.append(f"{name} {scenario} {loop}: {exc.reason}")
                        print(f"  {name} {scenario} {loop} CRASHED:\n{exc.stderr}", file=sys.stderr)
                        continue
                    runs.add(key, figures)
                    shown = ", ".join(f"{k} {v:,.0f}" for k, v in figures.items())
                    print(f"  [{number + 1}/{rounds}] {scenario:<8} {name:<15} {loop:<7} {shown}")
        if "cost" in scenarios:
            print("counting instructions a command (callgrind, one run: counts are not noisy)")
            try:
                for loop, costs in _costs(__file__, url).items():
                    runs.add(("cost", "ours", loop), costs)
                    shown = ", ".join(f"{k} {v:,.0f}" for k, v in costs.items())
                    print(f"  cost     ours            {loop:<7} {shown}")
            except ChildFailed as exc:
                runs.crashed.append(f"cost: {exc.reason}")
                print(f"  cost CRASHED:\n{exc.stderr}", file=sys.stderr)
    _report(runs, scenarios, args.baseline is not None)
    parameters = {
        "quick": args.quick,
        "rounds": rounds,
        "ops": ops,
        "tail_ops": tail_ops,
        "big_ops": big_ops,
        "tasks": list(TASKS),
        "scenarios": scenarios,
        "baseline": args.baseline,
        "placement": placement,
        "redis_server": server_version,
    }
    data = {
        "runs": [
            {"scenario": s, "contender": c, "loop": loop, "figures": figures}
            for (s, c, loop), figures in runs.runs.items()
        ],
        "spread": {
            f"{s}/{c}/{loop}/{name}": statistics.pstdev(values) / statistics.mean(values)
            for (s, c, loop), figures in runs.runs.items()
            for name, values in figures.items()
            if len(values) > 1 and statistics.mean(values)
        },
    }
    # A partial or A/B run writes only where it is told to: the committed
    # result is a full run of this checkout alone.
    if args.json or not (args.baseline or args.only):
        write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=data)
    return exit_status(runs.crashed)


def main(argv: Sequence[str] | None = None) -> int:
    child = {
        "--run": {"metavar": "CONTENDER", "default": None},
        "--url": {"default": None},
        "--scenario": {"choices": SCENARIOS, "default": "scale"},
        "--loop": {"choices": LOOPS, "default": "asyncio"},
        "--tasks": {"default": "1,10,100,1000"},
        "--ops": {"type": int, "default": 20_000},
        "--big-ops": {"type": int, "default": 100},
        "--counts": {"default": "0,0", "help": "commands per COST_FIGURES"},
    }
    parser_extra = {
        "--only": {"default": None, "help": "comma-separated scenarios (parent)"},
        "--baseline": {"default": None, "help": "a checkout to measure as 'base' (parent)"},
        "--rounds": {"type": int, "default": None, "help": "rounds (parent)"},
    }
    return bench_main(
        __doc__, argv, "small sizes, one round", {**child, **parser_extra}, child_main, parent_main
    )


if __name__ == "__main__":
    sys.exit(main())
