"""Transaction benchmark: ``client.transaction()`` against redis-py's.

What is measured
----------------
``client.transaction(increment, key)`` against a throw-away local
``redis-server`` (started on a free loopback port by this script and always
stopped again), where ``increment(pipe)`` is a read-modify-write::

    value = await pipe.get(key)
    pipe.multi()
    pipe.set(key, int(value or 0) + 1)

so each transaction is ``WATCH``, ``GET``, then ``MULTI``/``SET``/``EXEC`` in
one write: three round trips on a connection held for the transaction (ours:
a dedicated connection; redis-py: a pooled one). Two scenarios:

``sequential``
    One task, N transactions back to back on one key.
``concurrent``
    10 tasks on 10 different keys (no conflicts), M transactions each, all
    sharing one client.

Each runs after a warm-up of the same shape (200 transactions, or 10 x 20)
and reports transactions/s. Checks, in the child (a failed one is a crash):
every transaction returned ``[True]``, and each counter ends at exactly the
number of transactions run on it (warm-up included); ``WatchError`` retries
(none are expected: no two tasks share a key) are counted and reported.

Contenders
----------
``ours-asyncio`` / ``ours-trio``
    ``open_redis_client(url, decode_responses=False)`` under ``anyio.run``
    with each backend.
``redis-py-asyncio``
    ``redis.asyncio.Redis.from_url(url).transaction`` (hiredis parser) under
    ``anyio.run(backend="asyncio")``, i.e. ``asyncio.run``: anyio only starts
    the tasks; the measured loops are redis-py's.

Each contender and scenario runs in its OWN subprocess (this same file with
``--run``); repetitions are interleaved round-robin across scenarios and
contenders, and the best (max transactions/s) run is reported with the ratio
ours/redis-py from the same invocation, the only kind of number that means
anything on a noisy machine.

Usage::

    python bench/bench_transaction.py [--quick] [--json PATH]

Exit status is 0 whatever the numbers (this is a report), and non-zero when
a contender crashes (a failed check included) or redis-server is missing.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _harness import (
    HOST,
    ChildFailed,
    bench_main,
    check,
    exit_status,
    fmt_ops,
    paired_ratio,
    print_header,
    print_table,
    ratio_line,
    run_child,
    write_results,
)

from beignet_redis_anyio.testing.servers import RedisServer

#: The distributions whose versions the result records.
PEERS = ("anyio", "trio", "redis", "hiredis")

CONTENDERS: tuple[str, ...] = ("ours-asyncio", "ours-trio", "redis-py-asyncio")
REFERENCE = "redis-py-asyncio"
SCENARIOS: tuple[str, ...] = ("sequential", "concurrent")
CONCURRENT_TASKS = 10
SEQUENTIAL_WARMUP = 200
CONCURRENT_WARMUP_PER_TASK = 20


# --------------------------------------------------------------------------
# Child side: one contender, one scenario, one measurement.
# --------------------------------------------------------------------------

#: ``client.transaction`` of either client: (func, *watches) → execute()'s results.
Transaction = Callable[..., Awaitable[Any]]
#: Sends one plain command (setup and the final counter reads).
Command = Callable[..., Awaitable[Any]]


@dataclass
class Counter:
    """One task's key, and what its transactions did."""

    key: str
    attempts: int = 0
    committed: int = 0
    wrong: list[Any] = field(default_factory=list)


async def run_transactions(transaction: Transaction, counter: Counter, count: int) -> None:
    async def increment(pipe: Any) -> None:
        counter.attempts += 1
        value = await pipe.get(counter.key)
        pipe.multi()
        pipe.set(counter.key, int(value or 0) + 1)

    for _ in range(count):
        results = await transaction(increment, counter.key)
        if results != [True]:
            counter.wrong.append(results)
        counter.committed += 1


async def measure(
    transaction: Transaction, command: Command, scenario: str, count: int
) -> dict[str, Any]:
    """Warm up, time ``count`` transactions per task, check the counters."""
    import anyio

    tasks = 1 if scenario == "sequential" else CONCURRENT_TASKS
    warmup = SEQUENTIAL_WARMUP if scenario == "sequential" else CONCURRENT_WARMUP_PER_TASK
    counters = [Counter(f"bench:tx:{t}") for t in range(tasks)]
    await command("DEL", *(c.key for c in counters))

    async def round_of(per_task: int) -> None:
        async with anyio.create_task_group() as tg:
            for counter in counters:
                tg.start_soon(run_transactions, transaction, counter, per_task)

    await round_of(warmup)
    gc.collect()
    start = time.perf_counter()
    await round_of(count)
    elapsed = time.perf_counter() - start

    expected = warmup + count
    for counter in counters:
        check(not counter.wrong, f"{counter.key}: execute() returned {counter.wrong[:1]!r}")
        stored = await command("GET", counter.key)
        check(
            stored is not None and int(stored) == expected,
            f"{counter.key} ends at {stored!r}, expected {expected}",
        )
    total = tasks * count
    retries = sum(c.attempts - c.committed for c in counters)
    return {
        "scenario": scenario,
        "tasks": tasks,
        "transactions": total,
        "seconds": elapsed,
        "tx_per_s": total / elapsed,
        "watch_retries": retries,
    }


def run_ours(
    url: str, backend: str, scenario: str, count: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    import anyio

    from beignet_redis_anyio import open_redis_client

    async def main() -> dict[str, Any]:
        async with open_redis_client(url, decode_responses=False) as client:
            return await measure(client.transaction, client.execute_command, scenario, count)

    return anyio.run(main, backend=backend), {}


def run_redis_py(url: str, scenario: str, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    import anyio
    import redis
    import redis.asyncio
    import redis.asyncio.connection
    import redis.utils

    async def main() -> dict[str, Any]:
        client = redis.asyncio.Redis.from_url(url)
        try:
            return await measure(client.transaction, client.execute_command, scenario, count)
        finally:
            await client.aclose()

    return anyio.run(main, backend="asyncio"), {
        "hiredis_available": redis.utils.HIREDIS_AVAILABLE,
        "parser": redis.asyncio.connection.DefaultParser.__name__,
        "version": redis.__version__,
    }


def child_main(args: argparse.Namespace) -> None:
    contender, url, scenario, count = args.run, args.url, args.scenario, args.transactions
    family, _, backend = contender.rpartition("-")
    runners: dict[str, Callable[[], tuple[dict[str, Any], dict[str, Any]]]] = {
        "ours": lambda: run_ours(url, backend, scenario, count),
        "redis-py": lambda: run_redis_py(url, scenario, count),
    }
    result, info = runners[family]()
    print(json.dumps({"contender": contender, **result, "info": info}), flush=True)


# --------------------------------------------------------------------------
# Parent side: redis-server, orchestration, report.
# --------------------------------------------------------------------------


@dataclass
class ContenderResult:
    runs: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SCENARIOS})
    retries: int = 0
    crashed: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def best(self, scenario: str) -> float | None:
        runs = self.runs[scenario]
        return max(runs) if runs and not self.crashed else None


def ratios(results: dict[str, ContenderResult]) -> list[dict[str, Any]]:
    """ours / redis-py per scenario, best against best and round by round."""
    reference = results[REFERENCE]
    out = []
    for scenario in SCENARIOS:
        for name in CONTENDERS:
            if name == REFERENCE:
                continue
            ratio, per_round = paired_ratio(
                results[name].runs[scenario] if not results[name].crashed else [],
                reference.runs[scenario] if not reference.crashed else [],
            )
            out.append(
                {"scenario": scenario, "ours": name, "other": REFERENCE, "ratio": ratio,
                 "per_round": per_round}
            )  # fmt: skip
    return out


def print_report(
    results: dict[str, ContenderResult],
    evaluations: Sequence[dict[str, Any]],
    counts: dict[str, int],
) -> None:
    rows: list[tuple[str, ...]] = [
        (
            "contender (transactions/s)",
            f"sequential ({counts['sequential']:,})",
            f"concurrent ({CONCURRENT_TASKS} x {counts['concurrent']:,})",
            "WATCH retries",
        )
    ]
    rows += [
        (name, *(fmt_ops(r.best(s), crashed=r.crashed) for s in SCENARIOS), str(r.retries))
        for name, r in results.items()
    ]
    print()
    print_table(rows)
    print()
    for ev in evaluations:
        pair = f"{ev['ours']} / {ev['other']}"
        lead = f"{ev['scenario']:<10} "
        print(ratio_line(lead, pair, ev["ratio"], ev["per_round"], width=31))


def parent_main(args: argparse.Namespace) -> int:
    found = print_header()
    if found is None:
        return 2
    executable, server_version = found

    if args.quick:
        counts = {"sequential": 500, "concurrent": 50}
        repeats = 1
    else:
        counts = {"sequential": 5000, "concurrent": 800}
        repeats = 7
    print(
        f"sequential: {counts['sequential']:,} transactions after {SEQUENTIAL_WARMUP}; "
        f"concurrent: {CONCURRENT_TASKS} tasks x {counts['concurrent']:,} after "
        f"{CONCURRENT_TASKS} x {CONCURRENT_WARMUP_PER_TASK}; best of {repeats}"
    )

    results = {name: ContenderResult() for name in CONTENDERS}
    with RedisServer(binary=executable) as server:
        url = f"redis://{HOST}:{server.port}/0"
        print(f"redis-server on {url}")
        for rep in range(repeats):
            for scenario in SCENARIOS:
                for name in CONTENDERS:
                    result = results[name]
                    if result.crashed:
                        continue
                    try:
                        out = run_child(
                            __file__, run=name, url=url, scenario=scenario,
                            transactions=counts[scenario],
                        )  # fmt: skip
                    except ChildFailed as exc:
                        result.crashed = exc.reason
                        print(f"  {name} {scenario} CRASHED:\n{exc.stderr}", file=sys.stderr)
                        continue
                    result.runs[scenario].append(out["tx_per_s"])
                    result.retries += out["watch_retries"]
                    result.info.update(out["info"])
                    print(
                        f"  [{rep + 1}/{repeats}] {scenario:<10} {name:<16}"
                        f" {out['tx_per_s']:>8,.0f} transactions/s"
                        f"  ({out['watch_retries']} retries)",
                        flush=True,
                    )

    info = results[REFERENCE].info
    if info:
        print(
            f"redis-py {info['version']}: redis.utils.HIREDIS_AVAILABLE="
            f"{info['hiredis_available']} (parser {info['parser']})"
        )
    evaluations = ratios(results)
    print_report(results, evaluations, counts)

    payload = {
        "settings": {
            "quick": args.quick,
            "repeats": repeats,
            "transactions": counts,
            "concurrent_tasks": CONCURRENT_TASKS,
            "sequential_warmup": SEQUENTIAL_WARMUP,
            "concurrent_warmup_per_task": CONCURRENT_WARMUP_PER_TASK,
            "python": platform.python_version(),
            "redis_server": server_version,
        },
        "results": {
            name: {
                "best": {s: r.best(s) for s in SCENARIOS},
                "runs": r.runs,
                "watch_retries": r.retries,
                "crashed": r.crashed,
                "info": r.info,
            }
            for name, r in results.items()
        },
        "ratios": evaluations,
    }
    parameters = payload.pop("settings")
    write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=payload)

    return exit_status([name for name, r in results.items() if r.crashed], "contender(s)")


def main(argv: Sequence[str] | None = None) -> int:
    child: dict[str, dict[str, Any]] = {
        "--run": {"metavar": "CONTENDER", "choices": CONTENDERS},
        "--url": {},
        "--scenario": {"choices": SCENARIOS},
        "--transactions": {"type": int},
    }
    return bench_main(__doc__, argv, "small sizes, one repetition", child, child_main, parent_main)


if __name__ == "__main__":
    sys.exit(main())
