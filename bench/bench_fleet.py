"""What the cross-process lease costs the server per computed key, by fleet size.

Scenario
--------
One throw-away local ``redis-server`` per measurement (a free loopback port,
always stopped again). In one process: one *leader* provider and N *fleet*
providers (N = 1, 10, 50, 200), each with connections of its own — each
stands for one worker process of a fleet. Every fleet provider has waited
once, as a follower, for one warm-up key (so each has its subscriber
connection open). Then the leader computes K distinct keys with
``remember(..., lock=True)`` that nobody else wants (the common case of a
miss), one after the other.

What is measured
----------------
``B/key``
    ``INFO stats`` ``total_net_output_bytes``, after minus before, / K: the
    bytes the server wrote for each computed key, to everyone.
``CPU ms/key``
    ``INFO cpu`` ``used_cpu_user + used_cpu_sys``, after minus before, / K.

Modes
-----
``shared`` (the baseline: the design before issue 14)
    One ready channel for the whole database, to which every provider that
    has ever waited stays subscribed for life, and to which every leader
    publishes. Emulated here, not kept in the library, and without touching
    its internals: each fleet provider subscribes to one channel
    (``beignet:ready:0``, ``SSUBSCRIBE``; on one server ``SPUBLISH`` to N
    subscribers is the same fan-out as ``PUBLISH``), and after each computed
    key the leader publishes the lease's message (``"v" + value``) there
    itself. Its own per-key publish, inside the store script, reaches no one
    and writes nothing. The emulation's one extra command's reply to the
    leader (``:N``) is not the design's and is subtracted from the bytes; its
    CPU (one more command per key) is not.
``per-key`` (the library as it is)
    Each key's own channel, subscribed only while a follower waits for it.

Target: per-key cost flat in the fleet size — ``per-key`` at N = 200 within
2x of N = 1, for bytes (CPU is reported, not judged: two shared cores).

Usage::

    python bench/bench_fleet.py [--quick] [--json PATH]

Exit status is 0 whatever the numbers (this is a report); non-zero when
redis-server is missing or a run crashes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from _harness import (
    exit_status,
    print_header,
    print_table,
    report_parser,
    status,
    verdict_line,
    write_results,
)

from beignet_redis_anyio import RedisCachePort, RedisConfig, open_redis_provider
from beignet_redis_anyio.testing.servers import RedisServer, command

#: The distributions whose versions the result records.
PEERS = ("anyio",)
FLEETS = (1, 10, 50, 200)
QUICK_FLEETS = (1, 10, 50)
KEYS, QUICK_KEYS = 400, 100
SHARED_CHANNEL = "beignet:ready:0"
#: The warm-up key's own ready channel: named like its lock (``{warm}:beignet:lock``,
#: polled below), the key's hash tag then the role.
WARM_CHANNEL = "{warm}:beignet:ready"
#: Short, so that the baseline's messages (``"v" + value``) are the size of
#: the old design's (the key's name) give or take a few bytes.
VALUE = "a-value"


def _info(port: int, section: str, *names: str) -> float:
    text = command(port, "INFO", section).decode()
    total = 0.0
    for name in names:
        match = re.search(rf"^{name}:([\d.]+)", text, re.MULTILINE)
        assert match is not None, name
        total += float(match.group(1))
    return total


@asynccontextmanager
async def _fleet(url: str, count: int) -> AsyncIterator[list[RedisCachePort]]:
    config = RedisConfig(url=url, remember_lock=True, lock_wait_seconds=60)
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_redis_provider(config)) for _ in range(count)]


async def _wait_once(leader: RedisCachePort, fleet: list[RedisCachePort]) -> None:
    """Every fleet provider follows the leader once, on a warm-up key (so each
    has opened its subscriber connection, and unsubscribed again)."""
    release = anyio.Event()

    async def slow() -> str:
        await release.wait()
        return VALUE

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(leader.remember, "warm", slow)
        while True:  # another provider's state (and the server's): poll
            if await leader.client.exists("{warm}:beignet:lock"):
                break
            await anyio.sleep(0.01)
        for provider in fleet:
            tasks.start_soon(provider.remember, "warm", slow)
        while True:  # every follower subscribed to the key's channel: ask the server
            reply = await leader.client.execute_command("PUBSUB", "SHARDNUMSUB", WARM_CHANNEL)
            if int(reply[1]) >= len(fleet):
                break
            await anyio.sleep(0.01)
        release.set()


async def _subscribe_for_life(fleet: list[RedisCachePort]) -> None:
    for provider in fleet:
        pubsub = provider.client.pubsub()
        await pubsub.ssubscribe(SHARED_CHANNEL)
        with anyio.fail_after(10):
            while (await pubsub.get_message(timeout=5)) is None:
                pass  # until the confirmation


async def _measure(shared: bool, fleet_size: int, keys: int) -> dict[str, Any]:
    server = RedisServer()
    try:
        async with _fleet(server.url, fleet_size + 1) as (leader, *fleet):
            if shared:
                await _subscribe_for_life(fleet)
            else:
                await _wait_once(leader, fleet)

            async def value() -> str:
                return VALUE

            emulation = 0  # bytes of the emulation's own replies, not the design's
            out = _info(server.port, "stats", "total_net_output_bytes")
            cpu = _info(server.port, "cpu", "used_cpu_user", "used_cpu_sys")
            for index in range(keys):
                await leader.remember(f"key:{index}", value)
                if shared:  # the baseline: the old design's publish, to everyone
                    heard = await leader.client.execute_command(
                        "SPUBLISH", SHARED_CHANNEL, "v" + VALUE
                    )
                    emulation += len(f":{heard}\r\n")
            out = _info(server.port, "stats", "total_net_output_bytes") - out - emulation
            cpu = _info(server.port, "cpu", "used_cpu_user", "used_cpu_sys") - cpu
    finally:
        server.close()
    return {
        "mode": "shared" if shared else "per-key",
        "providers": fleet_size,
        "bytes_per_key": out / keys,
        "cpu_ms_per_key": cpu * 1000 / keys,
    }


def main(argv: list[str] | None = None) -> int:
    parser = report_parser(__doc__, quick="fleets of 1, 10 and 50; 100 keys")
    args = parser.parse_args(argv)
    if print_header() is None:
        return 1
    fleets = QUICK_FLEETS if args.quick else FLEETS
    keys = QUICK_KEYS if args.quick else KEYS
    results = [
        anyio.run(_measure, shared, size, keys) for size in fleets for shared in (True, False)
    ]
    by = {(r["mode"], r["providers"]): r for r in results}
    print(f"\nOne provider computes {keys} keys nobody else wants, with N providers idle:\n")
    rows = [
        ["providers", "shared B/key", "per-key B/key", "shared CPU ms/key", "per-key CPU ms/key"]
    ]
    for size in fleets:
        old, new = by[("shared", size)], by[("per-key", size)]
        rows.append(
            [
                str(size),
                f"{old['bytes_per_key']:,.0f}",
                f"{new['bytes_per_key']:,.0f}",
                f"{old['cpu_ms_per_key']:.3f}",
                f"{new['cpu_ms_per_key']:.3f}",
            ]
        )
    print_table(rows)
    first, last = by[("per-key", fleets[0])], by[("per-key", fleets[-1])]
    flat = last["bytes_per_key"] <= 2 * first["bytes_per_key"]
    checks = [
        {
            "target": f"per-key bytes/key at {fleets[-1]} providers within 2x of {fleets[0]}",
            "status": status(flat),
            "value": f"{last['bytes_per_key']:.0f} vs {first['bytes_per_key']:.0f}",
        }
    ]
    print()
    for entry in checks:
        print(verdict_line(entry["target"], entry["status"], entry["value"]))
    parameters = {"quick": args.quick, "fleets": list(fleets), "keys": keys}
    write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=results)
    return exit_status([])  # a FAIL is a result; a crash would have raised


if __name__ == "__main__":
    sys.exit(main())
