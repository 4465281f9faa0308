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

import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    ChildFailed,
    ServerProcess,
    find_redis_server,
    report_parser,
    run_json_child,
    write_json,
)

CALLERS = 100
KEYS = 50
COMMAND_TIMEOUT = 0.5
PHASES = ("up", "stopped", "frozen", "back")


async def _timeline(server: ServerProcess, policy: str, phase_seconds: float) -> dict[str, Any]:
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


def child_main(backend: str, policy: str, phase_seconds: float) -> None:
    import json

    import anyio

    executable = find_redis_server()
    assert executable is not None
    server = ServerProcess(executable)
    server.start()
    try:
        result = anyio.run(_timeline, server, policy, phase_seconds, backend=backend)
    finally:
        server.close()
    print(json.dumps(result))


def parent_main(quick: bool, json_path: str | None) -> int:
    if find_redis_server() is None:
        print("redis-server is not installed (Debian: apt-get install redis-server)")
        return 2
    phase_seconds = 1.0 if quick else 3.0
    print(f"python {platform.python_version()}; {CALLERS} callers, command_timeout=0.5 s,")
    print(f"timeline: up 1 s, stopped {phase_seconds:g} s, frozen {phase_seconds:g} s, back")
    results: dict[str, Any] = {}
    rows = []
    for backend in ("asyncio", "trio"):
        for policy in ("raise", "bypass"):
            name = f"{backend}/{policy}"
            cmd = [sys.executable, __file__, "--run", backend, "--policy", policy]
            cmd += ["--phase-seconds", str(phase_seconds)]
            try:
                result = results[name] = run_json_child(cmd)
            except ChildFailed as exc:
                print(f"{name}: FAILED ({exc.reason})")
                return 1
            by_phase = result["longest_by_phase_s"]
            first = result["first_success_after_back_s"]
            rows.append(
                f"| {name} | {result['longest_call_s'] * 1000:.0f} ms | "
                + " | ".join(f"{by_phase[p] * 1000:.0f}" for p in PHASES)
                + " | "
                + " | ".join(
                    f"{result['ok_by_phase'][p]}/{result['failed_by_phase'][p]}" for p in PHASES
                )
                + f" | {result['factory_calls']} | "
                + ("never" if first is None else f"{first * 1000:.0f} ms")
                + " |"
            )
    print()
    print(
        "| backend/policy | longest call | longest ms: "
        + " / ".join(PHASES)
        + " | ok/failed: "
        + " / ".join(PHASES)
        + " | factory runs | first success after back |"
    )
    print("|---|---:|" + "---:|" * len(PHASES) + "---:|" * len(PHASES) + "---:|---:|")
    for row in rows:
        print(row)
    verdict = all(r["longest_call_s"] <= COMMAND_TIMEOUT * 1.5 for r in results.values())
    print(
        f"\ntarget: no call waits much longer than one command timeout "
        f"({COMMAND_TIMEOUT:g} s, +50% for scheduling on this noisy machine): "
        + ("PASS" if verdict else "FAIL")
    )
    if json_path:
        write_json(json_path, results)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = report_parser(__doc__, quick="1 s phases instead of 3 s")
    child = parser.add_argument_group("child mode (internal)")
    child.add_argument("--run", choices=("asyncio", "trio"))
    child.add_argument("--policy", choices=("raise", "bypass"))
    child.add_argument("--phase-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.run:
        child_main(args.run, args.policy, args.phase_seconds)
        return 0
    return parent_main(args.quick, args.json)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.TimeoutExpired:
        sys.exit(1)
