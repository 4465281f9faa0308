"""The local cache's read paths under a randomised fault run.

A writer keeps versioned values (``"epoch:version"``) on a few string keys
and hashes; readers — many tasks on one provider with ``local_cache=True``,
a few on a second one — read them through every path memory answers
(``cache.client.get``/``hgetall``/``hget``, ``get_many`` — of the same few pages
again, answered as one lookup, and of random keys — ``remember`` with
early refresh, ``get``), while a chaos task kills connections, flushes,
restarts the server, and makes it sleep or pause its clients.

The rule checked (``docs/local-cache.md``): after a write is acknowledged, a
reader that completes one round trip never again returns the old value. So
each reader takes its floor — what the writer had acknowledged — just before
a ``PING``, and once the ``PING`` is answered, every value it reads must be
at least its floor. A key may read as missing only where the floor says so
(flushed or lost, and not written since), or where the data was lost after
the floor was taken (a ``FLUSHALL`` or a restart begun since then).

``BEIGNET_FAULT_RUN_SECONDS`` (default 3) and ``BEIGNET_FAULT_RUN_SEED``
(default: a fresh one, printed and named in every failure) make a longer or
a repeated run: ``BEIGNET_FAULT_RUN_SECONDS=60 pytest -k "fault_run and redis"``.
The seed fixes the workload's choices, not the scheduling: a failure found
once may take a few runs of its seed to come back.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from redis.exceptions import ConnectionError, TimeoutError

from beignet_redis_anyio import RedisCachePort, RedisConfig, open_redis_client, open_redis_provider
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio

SECONDS = float(os.environ.get("BEIGNET_FAULT_RUN_SECONDS", "3"))
SEED = os.environ.get("BEIGNET_FAULT_RUN_SEED")
#: Restarts at most per run (each costs a server start).
RESTARTS = 2
STRINGS = 5
HASHES = 3
#: Reader tasks on the first provider, and on the second.
READERS = (10, 3)
#: What a run must have done at least, lest it pass without testing much.
MIN_CHECKS = 300

Version = tuple[int, int]
#: What a reader may not read below, per key, and the data losses begun so far.
Floor = tuple[dict[str, Version], int]

UNREACHABLE = (ConnectionError, TimeoutError)


class _Missing(Exception):
    """What the factory ``remember`` calls on a miss raises: nothing is
    stored. It carries the floor of the call whose factory it is, since a
    call that finds a computation of its key under way waits for that one:
    its outcome is the first caller's, decided by a read made after the
    first caller's round trip, not necessarily after this one's (with a real
    factory it would be a value computed anew, not an old one)."""

    def __init__(self, floor: Floor) -> None:
        super().__init__()
        self.floor = floor


def _raising(floor: Floor) -> Callable[[], Awaitable[str]]:
    async def factory() -> str:
        raise _Missing(floor)

    return factory


@dataclass
class _Run:
    seed: int
    strings: list[str]
    hashes: list[str]
    acked: dict[str, Version]
    epoch: int = 0
    #: FLUSHALLs sent and restarts begun: data a floor vouched for may be gone.
    losses: int = 0
    #: A loss begun and not yet acknowledged.
    losing: bool = False
    checks: Counter[str] = field(default_factory=Counter)
    local_hits: Counter[str] = field(default_factory=Counter)
    stale: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    writes: int = 0
    #: remember calls that waited for another caller's computation.
    joined: int = 0
    #: ... whose outcome this call's own floor would not have allowed.
    joined_older: int = 0

    def pick(self, rng: random.Random, keys: list[str]) -> str:
        """A key of ``keys``, the first one (a hot key) half the time: readers
        crowd on it, so they meet each other's reads in flight."""
        return keys[0] if rng.random() < 0.5 else rng.choice(keys)

    def floor(self) -> Floor:
        # A loss under way counts as after the floor: what the floor
        # vouches for may be gone before the reader's round trip.
        return dict(self.acked), self.losses - self.losing

    def losing_everything(self) -> None:
        """A FLUSHALL is about to be sent, or the server about to be stopped."""
        self.losses += 1
        self.losing = True

    def lost_everything(self) -> None:
        """The data is gone, acknowledged (FLUSHALL answered, the server back):
        from now on nothing of an older epoch may be read."""
        self.epoch += 1
        self.acked = dict.fromkeys(self.acked, (self.epoch, -1))
        self.losing = False

    def check(self, path: str, floor: Floor, key: str, value: str | None) -> None:
        self.checks[path] += 1
        wrong = self.below(floor, key, value)
        if wrong is not None:
            self.stale.append(f"{path} {key}: {wrong} (seed {self.seed})")

    def below(self, floor: Floor, key: str, value: str | None) -> str | None:
        """What is wrong with reading ``value`` at ``key`` after ``floor``'s
        round trip, or ``None``."""
        versions, losses = floor
        least = versions[key]
        then = f"floor {least}, losses {losses} then, {self.losses} now"
        if value is None:
            if least[1] == -1 or self.losses > losses:
                return None
            return f"missing, {then}"
        epoch, version = (int(part) for part in value.split(":"))
        return f"{value}, {then}" if (epoch, version) < least else None

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {sum(self.checks.values())} checks {dict(self.checks)}, "
            f"local hits {dict(self.local_hits)}, {len(self.stale)} stale, "
            f"{self.writes} writes, {self.joined} joined ({self.joined_older} older), "
            f"faults {dict(self.faults)}, errors {dict(self.errors)}"
        )


async def _until_answered(client: Any) -> None:
    """PING until the server answers (the client reconnects by itself)."""
    with anyio.fail_after(20):
        while True:
            try:
                await client.ping()
                return
            except UNREACHABLE:
                await anyio.sleep(0.02)  # the reconnect's backoff: nothing to await


async def _writer(
    run: _Run,
    url: str,
    server: RedisServer,
    asks: anyio.abc.ObjectReceiveStream[str],
    rng: random.Random,
) -> None:
    """Writes higher versions, forever; a FLUSHALL or a restart when the
    chaos task asks (between writes: nothing of the writer's is in flight)."""
    version = 0
    async with open_redis_client(url) as writer:
        await _until_answered(writer)
        while True:
            try:
                ask = asks.receive_nowait()
            except anyio.WouldBlock:
                ask = ""
            if ask == "flushall":
                run.losing_everything()  # before it is sent: a reader may see it at once
                while True:
                    try:
                        await writer.flushall()
                        break
                    except UNREACHABLE:
                        run.errors["writer"] += 1
                        await anyio.sleep(0.02)  # the reconnect's backoff
                run.lost_everything()
                run.faults["flushall"] += 1
            elif ask == "restart":
                run.losing_everything()
                await anyio.to_thread.run_sync(server.restart)
                await _until_answered(writer)
                run.lost_everything()
                run.faults["restart"] += 1
            key = run.pick(rng, run.strings + run.hashes)
            version += 1  # even if unacknowledged: it may have been applied
            value = f"{run.epoch}:{version}"
            epoch = run.epoch
            try:
                if key in run.strings:
                    await writer.set(key, value, ex=3600)
                else:
                    await writer.hset(key, "v", value)
            except UNREACHABLE:
                run.errors["writer"] += 1
                await anyio.sleep(0.01)  # the reconnect's backoff
                continue
            run.writes += 1
            if run.acked[key] < (epoch, version):
                run.acked[key] = (epoch, version)
            if rng.random() < 0.3:
                # Quiet spells, so that readers hit memory between writes.
                await anyio.sleep(rng.uniform(0, 0.003))


def _served_locally(stats: Any, before: Any) -> bool:
    """Whether the read between ``before`` and ``stats`` was a local hit: a
    hit never yields, and a miss counts as one, so no miss was counted."""
    return bool(stats.misses == before.misses and stats.hits > before.hits)


async def _reader(run: _Run, cache: RedisCachePort, rng: random.Random) -> None:
    client = cache.client

    async def one(floor: Floor) -> None:
        path = rng.choice(
            ("client.get", "client.hgetall", "client.hget", "get_many", "remember", "get")
        )
        # The client's reply cache, or the port's local cache.
        stats: Callable[[], Any] = (
            (lambda: client.local_stats)
            if path.startswith("client.")
            else (lambda: cache.local_stats)
        )
        before = stats()
        if path == "client.get":
            key = run.pick(rng, run.strings)
            got = await client.get(key)
            if _served_locally(stats(), before):
                run.local_hits[path] += 1
            run.check(path, floor, key, got)
        elif path == "client.hgetall":
            key = rng.choice(run.hashes)
            whole = await client.hgetall(key)
            if _served_locally(stats(), before):
                run.local_hits[path] += 1
            assert set(whole) <= {"v"}, (whole, run.seed)
            run.check(path, floor, key, whole.get("v"))
        elif path == "client.hget":
            key = rng.choice(run.hashes)
            got = await client.hget(key, "v")
            if _served_locally(stats(), before):
                run.local_hits[path] += 1
            run.check(path, floor, key, got)
        elif path == "get_many":
            if rng.random() < 0.5:
                # The same few pages again and again: answered as pages
                # (``LocalCache.page``) while nothing of theirs has changed.
                keys = list(run.strings[: 2 + rng.randrange(3)])
            else:
                keys = rng.sample(run.strings, rng.randint(1, len(run.strings)))
            pages = cache._local.page_hits
            many = await cache.get_many(keys)
            if _served_locally(stats(), before):
                run.local_hits[path] += 1
            if cache._local.page_hits > pages:
                run.local_hits["get_many as a page"] += 1
            assert list(many) == keys, (many, keys, run.seed)
            for key, got in many.items():
                run.check(path, floor, key, got)
        elif path == "remember":
            key = run.pick(rng, run.strings)
            got_or_none: str | None
            verdict = floor
            try:
                got_or_none = await cache.remember(
                    key, _raising(floor), ttl_seconds=3600, early_refresh=True
                )
            except _Missing as missing:
                got_or_none, verdict = None, missing.floor
                if verdict is not floor:
                    run.joined += 1  # another caller's computation
                    if run.below(floor, key, None) is not None:
                        run.joined_older += 1  # begun before this call's round trip
            if _served_locally(stats(), before):
                run.local_hits[path] += 1
            run.check(path, verdict, key, got_or_none)
        else:
            key = run.pick(rng, run.strings)
            got = await cache.get(key)
            if _served_locally(stats(), before):
                run.local_hits[path] += 1
            run.check(path, floor, key, got)

    while True:
        floor = run.floor()  # just before the round trip
        try:
            assert await client.ping()
            for _ in range(rng.randint(1, 4)):
                await one(floor)
        except UNREACHABLE:
            run.errors["reader"] += 1
            await anyio.sleep(rng.uniform(0.005, 0.02))  # the reconnect's backoff
        await anyio.lowlevel.checkpoint()  # a round of local hits does not yield


async def _chaos(
    run: _Run,
    url: str,
    asks: anyio.abc.ObjectSendStream[str],
    rng: random.Random,
    deadline: float,
) -> None:
    """Faults at random, a few per second, from a client of its own."""
    restarts = 0
    async with open_redis_client(url) as chaos:
        while True:
            await anyio.sleep(rng.uniform(0.02, 0.25))  # the workload's rhythm
            kind = rng.choices(
                ("kill", "flushall", "restart", "sleep", "pause"), weights=(4, 2, 1, 1, 1)
            )[0]
            if kind == "restart":
                # Not near the end: a restart outlasting the run proves nothing.
                if restarts >= RESTARTS or time.monotonic() > deadline - 1.5:
                    continue
                restarts += 1
            if kind in ("flushall", "restart"):
                await asks.send(kind)
                continue
            try:
                if kind == "kill":
                    await chaos.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                elif kind == "sleep":
                    await chaos.execute_command("DEBUG", "SLEEP", "0.05")
                else:
                    await chaos.execute_command("CLIENT", "PAUSE", "50")
            except UNREACHABLE:
                run.errors["chaos"] += 1
                continue
            run.faults[kind] += 1


async def test_no_read_path_returns_a_value_older_than_its_floor(
    own_server: RedisServer, key: str
) -> None:
    seed = int(SEED) if SEED is not None else random.randrange(2**32)
    print(f"fault run seed {seed} ({SECONDS:g} s)")
    rng = random.Random(seed)
    strings = [f"{key}:s{n}" for n in range(STRINGS)]
    hashes = [f"{key}:h{n}" for n in range(HASHES)]
    run = _Run(seed, strings, hashes, dict.fromkeys(strings + hashes, (0, -1)))
    url = own_server.url
    ask, asked = anyio.create_memory_object_stream[str](10)
    # A short cooldown: the port's paths are tried again soon after a fault.
    config = RedisConfig(url=url, local_cache=True, breaker_cooldown_seconds=0.1)
    async with open_redis_provider(config) as first, open_redis_provider(config) as second:
        deadline = time.monotonic() + SECONDS
        with anyio.move_on_after(SECONDS):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_writer, run, url, own_server, asked, random.Random(rng.random()))
                for cache, count in zip((first, second), READERS, strict=True):
                    for _ in range(count):
                        tasks.start_soon(_reader, run, cache, random.Random(rng.random()))
                tasks.start_soon(_chaos, run, url, ask, random.Random(rng.random()), deadline)
        first_stats, second_stats = first.local_stats, second.local_stats
        client_stats = first.client.local_stats
    print(run.summary())
    print("\n".join(run.stale[:40]))
    print(f"port: {first_stats} / {second_stats}; client: {client_stats}")
    assert run.stale == [], (run.stale[:20], run.summary())
    assert sum(run.checks.values()) >= MIN_CHECKS, run.summary()
    assert run.writes >= MIN_CHECKS // 10, run.summary()
    for path in (
        "client.get",
        "client.hgetall",
        "client.hget",
        "get_many",
        "get_many as a page",
        "remember",
        "get",
    ):
        assert run.local_hits[path] >= 1, (path, run.summary())
    assert run.faults["kill"] + run.faults["flushall"] >= 1, run.summary()
