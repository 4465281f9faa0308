"""Pub/sub fan-out benchmark: ``client.pubsub()`` against redis-py's asyncio pub/sub.

What is measured
----------------
One publisher and 10 subscribers on one channel of a throw-away local
``redis-server`` (started on a free loopback port by this script and always
stopped again), all in one process:

* the publisher is one task publishing on its own client (ours: on the
  shared multiplexed connection; redis-py: a pooled connection), as fast as
  it can, awaiting each ``PUBLISH`` (a round trip) before the next;
* each subscriber is a task with a pubsub of its own (``client.pubsub()`` of
  a second client, so its own connection), subscribed before the first
  publish (its ``subscribe`` confirmation has been read), reading with
  ``listen()``.

Every message is ``b"SEQ:NS"``: its number and ``time.perf_counter_ns()``
just before its ``PUBLISH``; a subscriber takes the clock again as each
message reaches it. Reported per contender:

``delivered msg/s``
    10 x N deliveries / the time from just before the first publish to the
    last subscriber's last message.
``p50`` / ``p99`` latency
    Of all 10 x N (receive - send) times, nearest rank.
``publishes/s``
    N / the publisher's own time (the rate it could keep up).

Each measurement first runs a warm-up round of the same shape (its own 500
messages, so the connections are open and warm), then the timed round.
Checks, in the child (a failed one is a crash): every ``PUBLISH`` reached
all 10 subscribers, and every subscriber got all N messages, in order, within
a minute.

Contenders
----------
``ours-asyncio`` / ``ours-trio``
    ``open_redis_client(url, decode_responses=False)``, twice (publisher,
    subscribers), under ``anyio.run`` with each backend.
``ours-resp3-asyncio``
    The same with ``?protocol=3`` on the URL (asyncio).
``redis-py-asyncio``
    ``redis.asyncio.Redis.from_url(url)``, twice, and ``.pubsub()`` (hiredis
    parser), under ``anyio.run(backend="asyncio")``, i.e. ``asyncio.run``:
    anyio only starts the tasks and holds the deadline; nothing of it is in
    the measured loops, which are redis-py's ``publish()`` and ``listen()``.

Each contender's measurement runs in its OWN subprocess (this same file with
``--run``); repetitions are interleaved round-robin across the contenders,
and the best run of each is reported (highest msg/s, lowest latencies, each
on its own). The ratios ours/redis-py come from the same invocation; only
they are meaningful on a noisy machine. A latency ratio below 1 means ours
delivers sooner.

Usage::

    python bench/bench_pubsub.py [--quick] [--json PATH]

Exit status is 0 whatever the numbers (this is a report), and non-zero when
a contender crashes (a failed check included) or redis-server is missing. A
client without ``pubsub()`` is reported as ``n/a (pubsub not available)``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from _harness import (
    HOST,
    ChildFailed,
    bench_main,
    check,
    exit_status,
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

CHANNEL = "bench:fanout"
SUBSCRIBERS = 10
WARMUP_MESSAGES = 500
#: A round that takes longer than this has lost a message (or is hung).
ROUND_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 10.0

CONTENDERS: tuple[str, ...] = (
    "ours-asyncio",
    "ours-trio",
    "ours-resp3-asyncio",
    "redis-py-asyncio",
)
REFERENCE = "redis-py-asyncio"
#: What a child says when our client has no pubsub() yet (not a crash).
UNAVAILABLE = "pubsub not available"


# --------------------------------------------------------------------------
# Child side: one contender, one measurement.
# --------------------------------------------------------------------------


class PubSubLike(Protocol):
    """What both clients' pubsub objects offer (redis-py's API)."""

    async def subscribe(self, *args: Any) -> Any: ...

    async def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0
    ) -> dict[str, Any] | None: ...

    def listen(self) -> AsyncIterator[dict[str, Any]]: ...


Publish = Callable[[str, bytes], Awaitable[int]]


@dataclass
class Subscriber:
    pubsub: PubSubLike
    received: int = 0
    out_of_order: int = 0
    last_ns: int = 0
    latencies_ns: list[int] = field(default_factory=list)


async def wait_subscribed(pubsub: PubSubLike) -> None:
    """Subscribe and read the confirmation, so no message can come first."""
    await pubsub.subscribe(CHANNEL)
    while True:
        message = await pubsub.get_message(timeout=READY_TIMEOUT_S)
        check(message is not None, f"no subscribe confirmation within {READY_TIMEOUT_S}s")
        assert message is not None
        if message["type"] == "subscribe":
            return


async def consume(subscriber: Subscriber, count: int) -> None:
    """Take ``count`` messages, timing each and checking its number."""
    perf_counter_ns = time.perf_counter_ns
    latencies = subscriber.latencies_ns
    expected = 0
    # Both listen()s are async generators, typed as mere iterators.
    listen = cast("AsyncGenerator[dict[str, Any], None]", subscriber.pubsub.listen())
    async with aclosing(listen) as messages:
        async for message in messages:
            now = perf_counter_ns()
            if message["type"] != "message":
                continue
            data = message["data"]
            if isinstance(data, str):
                data = data.encode()
            seq, _, sent = data.partition(b":")
            latencies.append(now - int(sent))
            if int(seq) != expected:
                subscriber.out_of_order += 1
            expected += 1
            subscriber.last_ns = now
            subscriber.received = expected
            if expected == count:
                return


async def fan_out_round(
    publish: Publish, pubsubs: Sequence[PubSubLike], count: int
) -> dict[str, Any]:
    """One round: the subscribers take ``count`` messages each while the
    publisher sends them; the deliveries' timing."""
    import anyio

    subscribers = [Subscriber(pubsub) for pubsub in pubsubs]
    perf_counter_ns = time.perf_counter_ns
    short = 0
    start_ns = published_ns = 0

    async def publisher() -> None:
        nonlocal short, start_ns, published_ns
        start_ns = perf_counter_ns()
        for seq in range(count):
            receivers = await publish(CHANNEL, b"%d:%d" % (seq, perf_counter_ns()))
            if receivers != len(subscribers):
                short += 1
        published_ns = perf_counter_ns()

    with anyio.move_on_after(ROUND_TIMEOUT_S) as deadline:
        async with anyio.create_task_group() as tg:
            for subscriber in subscribers:
                tg.start_soon(consume, subscriber, count)
            tg.start_soon(publisher)
    got = [s.received for s in subscribers]
    check(
        not deadline.cancelled_caught,
        f"after {ROUND_TIMEOUT_S:.0f}s the subscribers had {got} of {count} messages",
    )
    check(short == 0, f"{short} of {count} PUBLISHes reached fewer than {len(subscribers)}")
    check(all(n == count for n in got), f"subscribers got {got} of {count} messages")
    disorder = [s.out_of_order for s in subscribers]
    check(not any(disorder), f"messages out of order per subscriber: {disorder}")
    latencies = sorted(ns for s in subscribers for ns in s.latencies_ns)
    delivered = len(latencies)
    elapsed_s = (max(s.last_ns for s in subscribers) - start_ns) / 1e9

    def percentile_ms(p: float) -> float:
        return latencies[max(0, math.ceil(p * delivered) - 1)] / 1e6

    return {
        "messages": count,
        "delivered": delivered,
        "seconds": elapsed_s,
        "delivered_per_s": delivered / elapsed_s,
        "publishes_per_s": count / ((published_ns - start_ns) / 1e9),
        "p50_ms": percentile_ms(0.50),
        "p99_ms": percentile_ms(0.99),
        "max_ms": latencies[-1] / 1e6,
    }


async def measure(
    publish: Publish,
    open_pubsub: Callable[[], AbstractAsyncContextManager[PubSubLike]],
    count: int,
) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        pubsubs = [await stack.enter_async_context(open_pubsub()) for _ in range(SUBSCRIBERS)]
        for pubsub in pubsubs:
            await wait_subscribed(pubsub)
        await fan_out_round(publish, pubsubs, WARMUP_MESSAGES)
        gc.collect()
        return await fan_out_round(publish, pubsubs, count)


def run_ours(url: str, backend: str, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    import anyio

    from beignet_redis_anyio import RedisClient, open_redis_client

    if not hasattr(RedisClient, "pubsub"):
        sys.exit(UNAVAILABLE)

    async def main() -> dict[str, Any]:
        async with (
            open_redis_client(url, decode_responses=False) as publisher,
            open_redis_client(url, decode_responses=False) as subscribers,
        ):
            return await measure(publisher.publish, subscribers.pubsub, count)

    return anyio.run(main, backend=backend), {}


def run_redis_py(url: str, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    import anyio
    import redis
    import redis.asyncio
    import redis.asyncio.connection
    import redis.utils

    async def main() -> dict[str, Any]:
        publisher = redis.asyncio.Redis.from_url(url)
        subscribers = redis.asyncio.Redis.from_url(url)
        try:
            return await measure(publisher.publish, subscribers.pubsub, count)
        finally:
            await publisher.aclose()
            await subscribers.aclose()

    return anyio.run(main, backend="asyncio"), {
        "hiredis_available": redis.utils.HIREDIS_AVAILABLE,
        "parser": redis.asyncio.connection.DefaultParser.__name__,
        "version": redis.__version__,
    }


def child_main(args: argparse.Namespace) -> None:
    contender, url, count = args.run, args.url, args.messages
    family, _, backend = contender.rpartition("-")
    runners: dict[str, Callable[[], tuple[dict[str, Any], dict[str, Any]]]] = {
        "ours": lambda: run_ours(url, backend, count),
        "ours-resp3": lambda: run_ours(f"{url}?protocol=3", backend, count),
        "redis-py": lambda: run_redis_py(url, count),
    }
    result, info = runners[family]()
    print(json.dumps({"contender": contender, **result, "info": info}), flush=True)


# --------------------------------------------------------------------------
# Parent side: redis-server, orchestration, report.
# --------------------------------------------------------------------------

#: Reported metrics, and whether more is better.
METRICS: dict[str, bool] = {
    "delivered_per_s": True,
    "p50_ms": False,
    "p99_ms": False,
    "publishes_per_s": True,
}


@dataclass
class ContenderResult:
    runs: list[dict[str, Any]] = field(default_factory=list)
    unavailable: str | None = None
    crashed: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def series(self, metric: str) -> list[float]:
        return [run[metric] for run in self.runs] if not (self.unavailable or self.crashed) else []

    def best(self, metric: str) -> float | None:
        values = self.series(metric)
        if not values:
            return None
        return max(values) if METRICS[metric] else min(values)


def fmt(metric: str, value: float | None, result: ContenderResult) -> str:
    if result.unavailable:
        return f"n/a ({result.unavailable})"
    if result.crashed:
        return f"CRASHED ({result.crashed})"
    if value is None:
        return "n/a"
    return f"{value:,.2f}" if metric.endswith("_ms") else f"{value:,.0f}"


def ratios(results: dict[str, ContenderResult]) -> list[dict[str, Any]]:
    """ours / redis-py for msg/s and p99 (each side's best, and round by round)."""
    reference = results[REFERENCE]
    out = []
    for metric in ("delivered_per_s", "p99_ms"):
        for name in CONTENDERS:
            if name == REFERENCE:
                continue
            ratio, per_round = paired_ratio(
                results[name].series(metric),
                reference.series(metric),
                higher_is_better=METRICS[metric],
            )
            out.append(
                {"metric": metric, "ours": name, "other": REFERENCE, "ratio": ratio,
                 "per_round": per_round}
            )  # fmt: skip
    return out


def print_report(
    results: dict[str, ContenderResult], evaluations: Sequence[dict[str, Any]]
) -> None:
    rows: list[tuple[str, ...]] = [
        ("contender", "delivered msg/s", "p50 ms", "p99 ms", "publishes/s")
    ]
    rows += [
        (name, *(fmt(metric, r.best(metric), r) for metric in METRICS))
        for name, r in results.items()
    ]
    print()
    print_table(rows)
    print()
    labels = {"delivered_per_s": "msg/s", "p99_ms": "p99"}
    for ev in evaluations:
        pair = f"{ev['ours']} / {ev['other']}"
        lead = f"{labels[ev['metric']]:<6}"
        print(ratio_line(lead, pair, ev["ratio"], ev["per_round"], width=37))


def parent_main(args: argparse.Namespace) -> int:
    found = print_header()
    if found is None:
        return 2
    executable, server_version = found

    count = 2000 if args.quick else 10000
    repeats = 1 if args.quick else 8
    print(
        f"1 publisher, {SUBSCRIBERS} subscribers, {count:,} messages after a "
        f"{WARMUP_MESSAGES}-message warm-up round; best of {repeats}"
    )

    results = {name: ContenderResult() for name in CONTENDERS}
    with RedisServer(binary=executable) as server:
        url = f"redis://{HOST}:{server.port}/0"
        print(f"redis-server on {url}")
        for rep in range(repeats):
            for name in CONTENDERS:
                result = results[name]
                if result.unavailable or result.crashed:
                    continue
                try:
                    out = run_child(__file__, run=name, url=url, messages=count)
                except ChildFailed as exc:
                    if exc.reason == UNAVAILABLE:
                        result.unavailable = exc.reason
                        print(f"  {name}: unavailable: {exc.reason}", file=sys.stderr)
                    else:
                        result.crashed = exc.reason
                        print(f"  {name} CRASHED:\n{exc.stderr}", file=sys.stderr)
                    continue
                result.runs.append(out)
                result.info.update(out["info"])
                print(
                    f"  [{rep + 1}/{repeats}] {name:<18} {out['delivered_per_s']:>10,.0f} msg/s"
                    f"  p50 {out['p50_ms']:>8.2f} ms  p99 {out['p99_ms']:>8.2f} ms"
                    f"  {out['publishes_per_s']:>8,.0f} publishes/s",
                    flush=True,
                )

    info = results[REFERENCE].info
    if info:
        print(
            f"redis-py {info['version']}: redis.utils.HIREDIS_AVAILABLE="
            f"{info['hiredis_available']} (parser {info['parser']})"
        )
    evaluations = ratios(results)
    print_report(results, evaluations)

    payload = {
        "settings": {
            "quick": args.quick,
            "repeats": repeats,
            "messages": count,
            "subscribers": SUBSCRIBERS,
            "warmup_messages": WARMUP_MESSAGES,
            "python": platform.python_version(),
            "redis_server": server_version,
        },
        "results": {
            name: {
                "best": {metric: r.best(metric) for metric in METRICS},
                "runs": r.runs,
                "unavailable": r.unavailable,
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
        "--messages": {"type": int},
    }
    return bench_main(
        __doc__, argv, "2,000 messages, one repetition", child, child_main, parent_main
    )


if __name__ == "__main__":
    sys.exit(main())
