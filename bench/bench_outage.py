"""Outage benchmark: how long does a caller wait while Redis is away?

100 concurrent callers (each: ``cache.remember`` on one of 50 keys, then
10 ms of other work) run against a throw-away local ``redis-server`` with
``command_timeout=0.5``, through this timeline:

1. up (1 s) — warm;
2. **stopped** (3 s) — the process is gone: connections are refused;
3. **frozen** (3 s) — started again and SIGSTOPped at once: the kernel still
   accepts TCP connections, the server says nothing;
4. **back** (3 s) — SIGCONT.

Reported per backend and failure policy: the longest any single call took
(overall and per phase), calls that succeeded or failed (or were bypassed)
per phase, how many times the factory ran (under ``bypass`` every call with
Redis away computes its value), and how long after the server came back the
first call succeeded. Each backend × policy runs in its own subprocess.

Usage::

    python bench/bench_outage.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from _harness import (
    ChildFailed,
    bench_main,
    print_header,
    print_table,
    run_child,
    status,
    verdict_line,
    write_results,
)

from beignet_redis_anyio.testing.servers import RedisServer

#: The distributions whose versions the result records.
PEERS = ("anyio", "trio")
CALLERS = 100
KEYS = 50
COMMAND_TIMEOUT = 0.5
PHASES = ("up", "stopped", "frozen", "back")


async def _timeline(server: RedisServer, policy: str, phase_seconds: float) -> dict[str, Any]:
    import anyio

    from beignet_redis_anyio import RedisConfig, open_redis_provider

    config = RedisConfig(
        url=f"redis://127.0.0.1:{server.port}",
        command_timeout=COMMAND_TIMEOUT,
        failure_policy=policy,  # type: ignore[arg-type]
    )
    phase = "up"
    back_at: float | None = None
    first_success_after_back: float | None = None
    longest = dict.fromkeys(PHASES, 0.0)
    ok = dict.fromkeys(PHASES, 0)
    failed = dict.fromkeys(PHASES, 0)
    factory_calls = 0

    async def factory() -> str:
        nonlocal factory_calls
        factory_calls += 1
        return "computed"

    async def caller(index: int, stop: anyio.Event) -> None:
        nonlocal first_success_after_back
        count = 0
        while not stop.is_set():
            key = f"outage:{(index + count) % KEYS}"
            count += 1
            began = time.perf_counter()
            started_in = phase
            try:
                await cache.remember(key, factory, ttl_seconds=60)
            except Exception:
                failed[started_in] += 1
            else:
                ok[started_in] += 1
                # Under bypass "success" means Redis answered: ask the breaker.
                if (
                    back_at is not None
                    and first_success_after_back is None
                    and (policy == "raise" or cache.breaker_state == "closed")
                ):
                    first_success_after_back = time.perf_counter() - back_at
            took = time.perf_counter() - began
            longest[started_in] = max(longest[started_in], took)
            await anyio.sleep(0.01)

    async with open_redis_provider(config) as cache:
        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:
            for index in range(CALLERS):
                tasks.start_soon(caller, index, stop)
            await anyio.sleep(1.0)
            phase = "stopped"
            await anyio.to_thread.run_sync(server.stop)
            await anyio.sleep(phase_seconds)
            await anyio.to_thread.run_sync(server.start)
            server.freeze()
            phase = "frozen"
            await anyio.sleep(phase_seconds)
            server.thaw()
            phase = "back"
            back_at = time.perf_counter()
            await anyio.sleep(phase_seconds)
            stop.set()
    return {
        "longest_call_s": max(longest.values()),
        "longest_by_phase_s": longest,
        "ok_by_phase": ok,
        "failed_by_phase": failed,
        "factory_calls": factory_calls,
        "first_success_after_back_s": first_success_after_back,
    }


def child_main(args: argparse.Namespace) -> None:
    import json

    import anyio

    with RedisServer() as server:
        timeline = (_timeline, server, args.policy, args.phase_seconds)
        result = anyio.run(*timeline, backend=args.run)
    print(json.dumps(result))


def parent_main(args: argparse.Namespace) -> int:
    if print_header() is None:
        return 2
    phase_seconds = 1.0 if args.quick else 3.0
    print(f"{CALLERS} callers, command_timeout=0.5 s,")
    print(f"timeline: up 1 s, stopped {phase_seconds:g} s, frozen {phase_seconds:g} s, back")
    results: dict[str, Any] = {}
    rows = [
        [
            "backend/policy",
            "longest call",
            *(f"longest ms: {p}" for p in PHASES),
            *(f"ok/failed: {p}" for p in PHASES),
            "factory runs",
            "first success after back",
        ]
    ]
    for backend in ("asyncio", "trio"):
        for policy in ("raise", "bypass"):
            name = f"{backend}/{policy}"
            try:
                result = results[name] = run_child(
                    __file__, run=backend, policy=policy, phase_seconds=phase_seconds
                )
            except ChildFailed as exc:
                print(f"{name}: FAILED ({exc.reason})")
                return 1
            by_phase = result["longest_by_phase_s"]
            first = result["first_success_after_back_s"]
            rows.append(
                [
                    name,
                    f"{result['longest_call_s'] * 1000:.0f} ms",
                    *(f"{by_phase[p] * 1000:.0f}" for p in PHASES),
                    *(f"{result['ok_by_phase'][p]}/{result['failed_by_phase'][p]}" for p in PHASES),
                    str(result["factory_calls"]),
                    "never" if first is None else f"{first * 1000:.0f} ms",
                ]
            )
    print()
    print_table(rows)
    longest = max(r["longest_call_s"] for r in results.values())
    verdict = longest <= COMMAND_TIMEOUT * 1.5
    target = (
        f"no call waits much longer than one command timeout "
        f"({COMMAND_TIMEOUT:g} s, +50% for scheduling on this noisy machine)"
    )
    print("\n" + verdict_line(target, status(verdict), f"longest {longest * 1000:.0f} ms"))
    parameters = {
        "quick": args.quick,
        "callers": CALLERS,
        "keys": KEYS,
        "command_timeout_s": COMMAND_TIMEOUT,
        "phase_seconds": phase_seconds,
    }
    write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=results)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    child = {
        "--run": {"choices": ("asyncio", "trio")},
        "--policy": {"choices": ("raise", "bypass")},
        "--phase-seconds": {"type": float, "default": 3.0},
    }
    return bench_main(__doc__, argv, "1 s phases instead of 3 s", child, child_main, parent_main)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.TimeoutExpired:
        sys.exit(1)
