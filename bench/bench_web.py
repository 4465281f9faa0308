"""Web-app benchmark: what tags cost, and the example app through an outage.

Two measurements issue 25 asks for, each in its own subprocess (this file
with ``--run``) against a throw-away local ``redis-server``:

``tags`` (asyncio and trio)
    *Hits.* ``@cache.cached`` functions of the same signature, untagged,
    with one tag (``"prices"``) and with three (``"prices"``,
    ``"shop:{shop}"``, ``"region:{region}"``), each called on a hit, in
    interleaved rounds (the order rotating each round): from one task, and
    from 100 tasks at once. Reported: calls/s of each and tagged/untagged,
    best round against best round, with the per-round range. A tag's
    generation is kept for a second, so its re-read (one ``INCRBY 0`` per
    stale tag) is inside these numbers, as in an app.

    *Invalidation.* N = 10, 1,000 and 100,000 results of a ``@cached``
    function, stored by 100 tasks, then dropped four ways: ``await
    cache.invalidate_tag(tag)`` (the results carry the tag), ``await
    ns.invalidate()`` (the function is ``ns.cached``), ``f.invalidate(i)``
    for each result from one task, and one ``cache.delete_many`` of their
    keys. Reported: the latency of each (the first two: the median of five
    calls in a row on the stored results, the first included), and the first
    call after ``invalidate_tag`` — a miss that recomputes — next to a hit.
    Every result is checked to be gone afterwards (the next call recomputes).

``outage`` (asyncio, uvloop if installed, and trio; ``failure_policy``
``raise`` and ``bypass``)
    ``examples/web_lifespan.py``'s app, its real lifespan run in-process
    (``beignet_redis_anyio.testing.asgi.run_asgi_lifespan``), with 50
    clients each looping over ``GET /users/7`` and ``GET /products?ids=…``
    (10 ids) with 10 ms between requests. After 2 s the server is killed
    (SIGKILL), 3 s later started again on the same port, and the load runs
    3 s more. Recorded per 0.25 s window (in the JSON): the count of each
    status (200, 503, 500 — an exception out of the app — and other) and
    the longest request. Reported: the counts during the stop, the longest
    request, the time from the restart to the first 200, to the first 200
    after which every answer is a 200, and to the breaker closing (Redis in
    use again: under ``bypass`` every answer should be a 200 throughout), and
    any 500. The clients share the app's process and event loop, and ask for
    more than it can serve on this machine: the counts are what it served,
    and the longest request includes waiting for the loop.

Usage::

    python bench/bench_web.py [--quick] [--json PATH]

Exit status is 0 even when a target FAILs (this is a report), non-zero when
a child crashes (a failed check included) or redis-server is missing.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import count
from typing import Any

from _harness import (
    REPO_ROOT,
    ChildFailed,
    bench_main,
    check,
    exit_status,
    fan_out,
    fmt_ops,
    format_table,
    host_port,
    paired_ratio,
    print_header,
    print_table,
    ratio_line,
    run_child,
    run_on,
    status,
    verdict_line,
    write_results,
)

from beignet_redis_anyio.testing.servers import RedisServer, command

#: The distributions whose versions the result records.
PEERS = ("anyio", "trio", "uvloop", "fastapi", "starlette")
TAG_BACKENDS = ("asyncio", "trio")
OUTAGE_LOOPS = ("asyncio", "uvloop", "trio")
POLICIES = ("raise", "bypass")

HIT_ROUNDS = 8
HIT_TASKS = 100
HIT_VARIANTS = ("untagged", "1 tag", "3 tags")
POPULATE_TASKS = 100
#: The repeated bumps timed for invalidate_tag and ns.invalidate.
BUMPS = 5
TAGGED_CONSTANT_MAX = 3.0

CLIENTS = 50
THINK_S = 0.01
WINDOW_S = 0.25
UP_S, STOPPED_S, BACK_S = 2.0, 3.0, 3.0
STATUSES = ("200", "503", "500", "other")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


# --------------------------------------------------------------------------
# Child: tags.
# --------------------------------------------------------------------------


async def _load(i: int, shop: str = "s1", region: str = "eu") -> dict[str, Any]:
    """The cached function's body: a row, at once (the cache is measured)."""
    return {"id": i, "shop": shop, "region": region, "price": i * 1.5}


async def bench_tag_hits(cache: Any, calls: int) -> dict[str, Any]:
    ran = 0

    async def load(i: int, shop: str = "s1", region: str = "eu") -> dict[str, Any]:
        nonlocal ran
        ran += 1
        return await _load(i, shop, region)

    functions = {
        "untagged": cache.cached(key="hit:plain:{i}", ttl_seconds=600)(load),
        "1 tag": cache.cached(key="hit:one:{i}", ttl_seconds=600, tags=("prices",))(load),
        "3 tags": cache.cached(
            key="hit:three:{i}",
            ttl_seconds=600,
            tags=("prices", "shop:{shop}", "region:{region}"),
        )(load),
    }

    async def block(function: Callable[..., Awaitable[Any]], n: int) -> None:
        for _ in range(n):
            value = await function(1)
        check(value["id"] == 1, f"the cached call returned {value!r}")

    for function in functions.values():  # store each once, then warm the path
        await block(function, 200)
    check(ran == len(functions), f"{ran} computations for {len(functions)} stored results")

    per_block = max(HIT_TASKS, calls // HIT_ROUNDS)
    per_task = per_block // HIT_TASKS
    rates: dict[str, dict[str, list[float]]] = {
        shape: {name: [] for name in functions} for shape in ("1 task", f"{HIT_TASKS} tasks")
    }
    names = list(functions)
    for round_no in range(HIT_ROUNDS):
        gc.collect()
        for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
            function = functions[name]
            started = time.perf_counter()
            await block(function, per_block)
            rates["1 task"][name].append(per_block / (time.perf_counter() - started))
            started = time.perf_counter()
            await fan_out(functools.partial(block, function, per_task), HIT_TASKS)
            rates[f"{HIT_TASKS} tasks"][name].append(
                per_task * HIT_TASKS / (time.perf_counter() - started)
            )
    check(ran == len(functions), f"a hit recomputed: {ran - len(functions)} time(s)")
    return {"calls_per_block": per_block, "rounds": HIT_ROUNDS, "calls_per_s": rates}


async def _populate(function: Callable[..., Awaitable[Any]], n: int) -> None:
    """``function(i)`` for i < n, from POPULATE_TASKS tasks sharing one counter."""
    numbers = iter(range(n))

    async def worker() -> None:
        for i in numbers:
            await function(i)

    await fan_out(worker, POPULATE_TASKS)


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def bench_invalidation(cache: Any, n: int, label: str) -> dict[str, Any]:
    """Store n results four times over, drop them each way, time it."""
    ran = 0

    async def load(i: int) -> dict[str, Any]:
        nonlocal ran
        ran += 1
        return await _load(i)

    async def recomputes(function: Callable[..., Awaitable[Any]], i: int = 0) -> float:
        """The next call's latency; checks that it was a miss."""
        before = ran
        took = await _timed(lambda: function(i))
        check(ran == before + 1, f"{label}: a call after the invalidation was a hit")
        return took

    async def bumps(invalidate: Callable[[], Awaitable[bool]]) -> list[float]:
        times = []
        for _ in range(BUMPS):
            started = time.perf_counter()
            done = await invalidate()
            times.append(time.perf_counter() - started)
            check(done, f"{label}: an invalidation said nothing was invalidated")
        return times

    tag = f"bench-tag-{label}"
    tagged = cache.cached(key=f"inv:{label}:tagged:{{i}}", ttl_seconds=600, tags=(tag,))(load)
    await _populate(tagged, n)
    tag_s = await bumps(lambda: cache.invalidate_tag(tag))
    miss_s = await recomputes(tagged)
    hit_s = statistics.median([await _timed(lambda: tagged(0)) for _ in range(21)])

    ns = cache.namespace(f"bench-ns-{label}")
    in_ns = ns.cached(key="inv:{i}", ttl_seconds=600)(load)
    await _populate(in_ns, n)
    ns_s = await bumps(ns.invalidate)
    await recomputes(in_ns)

    plain = cache.cached(key=f"inv:{label}:plain:{{i}}", ttl_seconds=600)(load)
    await _populate(plain, n)
    started = time.perf_counter()
    for i in range(n):
        await plain.invalidate(i)
    one_by_one_s = time.perf_counter() - started
    await recomputes(plain, n - 1)

    await _populate(plain, n)
    keys = [plain.key(i) for i in range(n)]  # what a caller holds before deleting
    started = time.perf_counter()
    deleted = await cache.delete_many(keys)
    delete_many_s = time.perf_counter() - started
    check(deleted == n, f"{label}: delete_many deleted {deleted} of {n}")
    await recomputes(plain, n - 1)
    return {
        "n": n,
        "invalidate_tag_s": tag_s,
        "ns_invalidate_s": ns_s,
        "one_by_one_s": one_by_one_s,
        "delete_many_s": delete_many_s,
        "first_call_after_s": miss_s,
        "hit_s": hit_s,
    }


def tags_child(args: argparse.Namespace) -> dict[str, Any]:
    from beignet_redis_anyio import RedisConfig, open_redis_provider

    sizes = [int(size) for size in args.sizes.split(",")]
    _, port = host_port(args.url)

    async def main() -> dict[str, Any]:
        async with open_redis_provider(RedisConfig(url=args.url)) as cache:
            hits = await bench_tag_hits(cache, args.calls)
            invalidation = []
            for n in sizes:
                invalidation.append(await bench_invalidation(cache, n, f"{args.run}-{n}"))
                # The dropped results stay until their TTL: free them for the next N.
                command(port, "FLUSHDB")
        return {"hits": hits, "invalidation": invalidation}

    return dict(run_on(args.run, main))


# --------------------------------------------------------------------------
# Child: the example app through an outage.
# --------------------------------------------------------------------------


def outage_child(args: argparse.Namespace) -> dict[str, Any]:
    import anyio

    sys.path.insert(0, str(REPO_ROOT / "examples"))  # as the example tests import it
    from web_lifespan import make_app

    from beignet_redis_anyio import RedisConfig
    from beignet_redis_anyio.testing.asgi import run_asgi_lifespan

    windows = int((UP_S + STOPPED_S + BACK_S) / WINDOW_S) + 1
    counts = [dict.fromkeys(STATUSES, 0) for _ in range(windows)]
    longest = [0.0] * windows
    during_stop = dict.fromkeys(STATUSES, 0)  # answered between the kill and the restart
    errors: dict[str, int] = {}
    moments: dict[str, float] = {}
    transitions: list[tuple[float, str]] = []  # (seconds from the start, breaker state)
    non_200_after_restart: list[float] = []
    ok_after_restart: list[float] = []

    with RedisServer() as server:
        app = make_app(RedisConfig(url=server.url, failure_policy=args.policy))

        async def main() -> None:
            async with run_asgi_lifespan(app) as running:
                began = time.perf_counter()
                stop = anyio.Event()

                async def client(index: int) -> None:
                    for request in count(index):
                        if stop.is_set():
                            return
                        if request % 2:
                            first = 1 + request * 7 % 190
                            path = "/products"
                            params = {"ids": ",".join(str(first + k) for k in range(10))}
                        else:
                            path, params = "/users/7", {}
                        started = time.perf_counter()
                        try:
                            response = await running.request("GET", path, params=params)
                            code = str(response.status)
                        except Exception as exc:  # out of the app: a server answers 500
                            code = "500"
                            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                        ended = time.perf_counter()
                        window = min(int((ended - began) / WINDOW_S), windows - 1)
                        counts[window][code if code in STATUSES else "other"] += 1
                        longest[window] = max(longest[window], ended - started)
                        restarted = moments.get("restart")
                        if "kill" in moments and restarted is None:
                            during_stop[code if code in STATUSES else "other"] += 1
                        if restarted is not None and started >= restarted:
                            if code == "200":
                                ok_after_restart.append(ended - restarted)
                            else:
                                non_200_after_restart.append(ended - restarted)
                        await anyio.sleep(THINK_S)

                async def breaker() -> None:
                    # Under bypass every answer is a 200: when Redis is in use
                    # again is what the breaker says.
                    port, last = running.state["cache"], None
                    while not stop.is_set():
                        if port.breaker_state != last:
                            last = port.breaker_state
                            transitions.append((time.perf_counter() - began, last))
                        await anyio.sleep(0.005)

                async with anyio.create_task_group() as tasks:
                    for index in range(CLIENTS):
                        tasks.start_soon(client, index)
                    tasks.start_soon(breaker)
                    await anyio.sleep(UP_S)
                    moments["kill"] = time.perf_counter()
                    assert server.process is not None
                    server.process.kill()  # SIGKILL: no goodbye to the clients
                    await anyio.to_thread.run_sync(server.process.wait)
                    server.stop()  # forgets the dead process, so start() makes a new one
                    await anyio.sleep(STOPPED_S)
                    moments["restart"] = time.perf_counter()
                    await anyio.to_thread.run_sync(server.start)  # returns once PING answers
                    moments["answers"] = time.perf_counter()
                    await anyio.sleep(BACK_S)
                    stop.set()
                moments["began"] = began

        run_on(args.run, main)

    began = moments["began"]
    restart_at = moments["restart"] - began
    last_bad = max(non_200_after_restart, default=None)
    # From when on every answer is a 200: the first 200 after the last other answer.
    all_200 = min(
        (ended for ended in ok_after_restart if last_bad is None or ended > last_bad),
        default=None,
    )
    closed = [at for at, state in transitions if state == "closed" and at >= restart_at]
    return {
        "loop": args.run,
        "policy": args.policy,
        "window_s": WINDOW_S,
        "kill_at_s": moments["kill"] - began,
        "restart_at_s": restart_at,
        "answers_at_s": moments["answers"] - began,
        "windows": [
            {"start_s": i * WINDOW_S, **c, "max_latency_s": m}
            for i, (c, m) in enumerate(zip(counts, longest, strict=True))
        ],
        "total": {code: sum(c[code] for c in counts) for code in STATUSES},
        "during_stop": during_stop,
        "longest_s": max(longest),
        "restart_to_first_200_s": min(ok_after_restart, default=None),
        "restart_to_all_200_s": all_200,
        "restart_to_breaker_closed_s": closed[0] - restart_at if closed else None,
        "breaker_transitions": transitions,
        "exceptions": errors,
    }


def child_main(args: argparse.Namespace) -> None:
    result = tags_child(args) if args.scenario == "tags" else outage_child(args)
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------
# Parent: the report.
# --------------------------------------------------------------------------


def _tags_report(results: dict[str, dict[str, Any] | None]) -> None:
    rows: list[Sequence[str]] = [
        ["backend, callers", *(f"{v} calls/s" for v in HIT_VARIANTS), "1 tag / untagged",
         "3 tags / untagged"],
    ]  # fmt: skip
    lines = []
    for backend, result in results.items():
        if result is None:
            continue
        for shape, rates in result["hits"]["calls_per_s"].items():
            ratios = [paired_ratio(rates[v], rates["untagged"]) for v in HIT_VARIANTS[1:]]
            rows.append(
                [f"{backend}, {shape}", *(fmt_ops(max(rates[v])) for v in HIT_VARIANTS),
                 *("n/a" if r is None else f"{r:.2f}x" for r, _ in ratios)]
            )  # fmt: skip
            for variant, (ratio, rounds) in zip(HIT_VARIANTS[1:], ratios, strict=True):
                lines.append((f"[{backend:<7} {shape:>9}]", f"{variant} / untagged", ratio, rounds))
    print()
    print_table(rows, title="Hits of a tagged @cached function")
    rows = [
        ["backend, N results", "invalidate_tag", "ns.invalidate", "f.invalidate one by one",
         "delete_many", "first call after invalidate_tag (miss)", "hit"],
    ]  # fmt: skip
    constant: list[tuple[str, float]] = []
    for backend, result in results.items():
        if result is None:
            continue
        measured = result["invalidation"]
        for size in measured:
            rows.append(
                [f"{backend}, {size['n']:,}",
                 _duration(statistics.median(size["invalidate_tag_s"])),
                 _duration(statistics.median(size["ns_invalidate_s"])),
                 _duration(size["one_by_one_s"]), _duration(size["delete_many_s"]),
                 _duration(size["first_call_after_s"]), _duration(size["hit_s"])]
            )  # fmt: skip
        smallest, largest = measured[0], measured[-1]
        growth = statistics.median(largest["invalidate_tag_s"]) / statistics.median(
            smallest["invalidate_tag_s"]
        )
        constant.append((f"{backend}: {largest['n']:,} vs {smallest['n']:,}", growth))
    print()
    print_table(rows, title="Dropping N results (latency of one call)")
    print()
    width = max(len(line[1]) for line in lines)
    for lead, pair, ratio, rounds in lines:
        print(ratio_line(lead, pair, ratio, rounds, width=width))
    for what, growth in constant:
        target = (
            f"invalidate_tag is constant in N (median of {BUMPS}, {what}: "
            f"<= {TAGGED_CONSTANT_MAX:g}x on this noisy machine)"
        )
        verdict = status(growth <= TAGGED_CONSTANT_MAX)
        print(verdict_line(target, verdict, f"{growth:.2f}x"))


def _outage_report(results: dict[str, dict[str, Any] | None]) -> None:
    rows: list[Sequence[str]] = [
        ["loop/policy", "requests", "200", "503", "500", "during the 3 s stop: 200/503/500",
         "longest request", "restart -> first 200", "restart -> all 200",
         "restart -> breaker closed"],
    ]  # fmt: skip
    for name, result in results.items():
        if result is None:
            continue
        total, stop = result["total"], result["during_stop"]
        rows.append(
            [name, f"{sum(total.values()):,}", f"{total['200']:,}", f"{total['503']:,}",
             f"{total['500']:,}" + (f" (+{total['other']} other)" if total["other"] else ""),
             f"{stop['200']:,}/{stop['503']:,}/{stop['500']:,}", _duration(result["longest_s"]),
             _duration(result["restart_to_first_200_s"]),
             _duration(result["restart_to_all_200_s"]),
             _duration(result["restart_to_breaker_closed_s"])]
        )  # fmt: skip
    print()
    print_table(rows, title="examples/web_lifespan.py, 50 clients, Redis killed for 3 s")
    measured = [r for r in results.values() if r is not None]
    fives = sum(r["total"]["500"] for r in measured)
    print()
    print(verdict_line("no 500 under either policy", status(fives == 0), f"{fives} 500s"))
    bypass = [r for r in measured if r["policy"] == "bypass"]
    others = sum(sum(r["total"].values()) - r["total"]["200"] for r in bypass)
    print(verdict_line("bypass: only 200s", status(others == 0), f"{others} other answers"))


def _timeline(name: str, result: dict[str, Any]) -> None:
    """The per-window counts, on the console only (the JSON has them)."""
    print(f"\n{name}: killed at {result['kill_at_s']:.2f} s, "
          f"restarted at {result['restart_at_s']:.2f} s")  # fmt: skip
    rows = [["window", *STATUSES, "max latency"]]
    for window in result["windows"]:
        rows.append(
            [f"{window['start_s']:.2f} s", *(str(window[code]) for code in STATUSES),
             _duration(window["max_latency_s"])]
        )  # fmt: skip
    for line in format_table(rows, [False] + [True] * (len(rows[0]) - 1)):
        print(line)


def parent_main(args: argparse.Namespace) -> int:
    found = print_header()
    if found is None:
        return 2
    executable, _ = found
    calls = 8_000 if args.quick else 40_000
    sizes = (10, 1_000, 10_000) if args.quick else (10, 1_000, 100_000)
    loops = [
        loop
        for loop in OUTAGE_LOOPS
        if loop != "uvloop" or importlib.util.find_spec("uvloop") is not None
    ]
    crashed: list[str] = []
    tags: dict[str, dict[str, Any] | None] = {}
    with RedisServer(binary=executable) as server:
        for backend in TAG_BACKENDS:
            try:
                tags[backend] = run_child(
                    __file__, run=backend, scenario="tags", url=server.url, calls=calls,
                    sizes=",".join(map(str, sizes)),
                )  # fmt: skip
            except ChildFailed as exc:
                tags[backend] = None
                crashed.append(f"tags/{backend}: {exc.reason}")
    outage: dict[str, dict[str, Any] | None] = {}
    for loop in loops:
        for policy in POLICIES:
            name = f"{loop}/{policy}"
            try:
                outage[name] = run_child(__file__, run=loop, scenario="outage", policy=policy)
            except ChildFailed as exc:
                outage[name] = None
                crashed.append(f"outage/{name}: {exc.reason}")
                continue
            _timeline(name, outage[name])
    _tags_report(tags)
    _outage_report(outage)
    parameters = {
        "quick": args.quick,
        "hit_calls": calls,
        "hit_rounds": HIT_ROUNDS,
        "hit_tasks": HIT_TASKS,
        "sizes": list(sizes),
        "clients": CLIENTS,
        "think_s": THINK_S,
        "timeline_s": {"up": UP_S, "stopped": STOPPED_S, "back": BACK_S},
        "window_s": WINDOW_S,
    }
    data = {"tags": tags, "outage": outage}
    write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=data)
    return exit_status(crashed)


def main(argv: Sequence[str] | None = None) -> int:
    child = {
        "--run": {"metavar": "LOOP", "choices": OUTAGE_LOOPS},
        "--scenario": {"choices": ("tags", "outage")},
        "--url": {"default": ""},
        "--calls": {"type": int, "default": 40_000},
        "--sizes": {"default": "10,1000,100000"},
        "--policy": {"choices": POLICIES, "default": "raise"},
    }
    return bench_main(
        __doc__,
        argv,
        "fewer hit calls and N up to 10,000 (the outage timeline is the same)",
        child,
        child_main,
        parent_main,
    )


if __name__ == "__main__":
    sys.exit(main())
