"""One process of the cold-key stampede benchmark (driven by ``bench_stampede.py``).

The worker opens ONE contender's cache against the given Redis, warms it up
with a burst on a private key, then parks on ``BLPOP <key>:go`` on a separate
*harness* connection (named ``bench-harness``; the parent excludes its
commands). When released it starts ``--callers`` concurrent tasks that all
ask the contender for ``<key>`` through its stampede protection, prints one
JSON line with what happened, and waits on ``BLPOP <key>:done`` before
closing the cache — so its connections are still open (and attributable)
while the parent reads the server's statistics.

The factory sleeps ``--factory-ms`` and returns a string unique to the
process and call, so "all callers got the same value" means exactly one
computation served everyone.

Usage (internal)::

    python bench/stampede_worker.py --contender NAME --url redis://HOST:PORT/0 --key KEY
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import _harness  # noqa: F401 - first, so the checkout's package is the one imported
import anyio

from beignet_redis_anyio.testing.servers import encode_command

#: Contender name -> (event-loop backend, how its stampede protection is used).
CONTENDERS: dict[str, tuple[str, str]] = {
    "beignet-asyncio": (
        "asyncio",
        "cache.remember(key, factory, ttl_seconds=60) with "
        "RedisConfig(remember_lock=True) (lease 10 s, wait 10 s)",
    ),
    "beignet-trio": (
        "trio",
        "cache.remember(key, factory, ttl_seconds=60) with "
        "RedisConfig(remember_lock=True) (lease 10 s, wait 10 s)",
    ),
    "cashews": (
        "asyncio",
        '@cache(ttl=60, key="{key}", lock=True) on a Cache() set up with '
        "cache.setup(redis_url) (thunder protection on by default)",
    ),
    "cashews-locked": (
        "asyncio",
        '@cache(ttl=60, key="{key}") over @cache.locked(ttl=10, key="{key}", '
        "check_interval=0.05) (the README's 'combine locked with a cache decorator')",
    ),
    "aiocache": (
        "asyncio",
        "@cached_stampede(cache=Cache.REDIS, lease=10, ttl=60, key_builder=key) (RedLock inside)",
    ),
}

TTL_SECONDS = 60
FACTORY_MS = 200.0
LEASE_SECONDS = 10
HARNESS_NAME = "bench-harness"
SIGNAL_TIMEOUT_S = 120  # BLPOP timeouts: a lost parent cannot leave a worker behind
STAMPEDE_TIMEOUT_S = 60.0

Get = Callable[[str], Awaitable[str]]


class Factory:
    """The expensive computation: counts its runs, sleeps, returns a unique string."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        call = self.calls
        await anyio.sleep(self.seconds)
        return f"computed by pid {os.getpid()} (call {call})"


# --------------------------------------------------------------------------
# Contenders: each yields ``get(key) -> value`` through its stampede protection.
# --------------------------------------------------------------------------


@asynccontextmanager
async def open_beignet(url: str, factory: Factory) -> AsyncIterator[Get]:
    from beignet_redis_anyio import RedisConfig, open_redis_provider

    config = RedisConfig(url=url, remember_lock=True)
    async with open_redis_provider(config) as cache:

        async def get(key: str) -> str:
            return await cache.remember(key, factory, ttl_seconds=TTL_SECONDS)

        yield get


@asynccontextmanager
async def open_cashews(url: str, factory: Factory, *, locked: bool) -> AsyncIterator[Get]:
    from cashews import Cache

    cache = Cache()
    cache.setup(url)

    async def compute(key: str) -> str:
        return await factory()

    if locked:
        # The README: "@cache.locked ... will not cache the result. To do it
        # you can combine this decorator with any cache decorator".
        inner = cache.locked(ttl=LEASE_SECONDS, key="{key}", check_interval=0.05)(compute)
        get = cache(ttl=TTL_SECONDS, key="{key}")(inner)
    else:
        get = cache(ttl=TTL_SECONDS, key="{key}", lock=True)(compute)
    try:
        yield get
    finally:
        await cache.close()


@asynccontextmanager
async def open_aiocache(url: str, factory: Factory) -> AsyncIterator[Get]:
    from aiocache import Cache  # type: ignore[import-untyped]
    from aiocache.decorators import cached_stampede  # type: ignore[import-untyped]

    parts = urlsplit(url)

    async def compute(key: str) -> str:
        return await factory()

    get = cached_stampede(
        lease=LEASE_SECONDS,
        ttl=TTL_SECONDS,
        cache=Cache.REDIS,
        endpoint=parts.hostname,
        port=parts.port,
        key_builder=lambda func, key: key,
    )(compute)
    try:
        yield get
    finally:
        await get.cache.close()


def open_contender(name: str, url: str, factory: Factory) -> Any:
    if name.startswith("beignet-"):
        return open_beignet(url, factory)
    if name == "cashews":
        return open_cashews(url, factory, locked=False)
    if name == "cashews-locked":
        return open_cashews(url, factory, locked=True)
    if name == "aiocache":
        return open_aiocache(url, factory)
    raise ValueError(f"unknown contender {name!r}")


# --------------------------------------------------------------------------
# The harness connection and the stampede itself.
# --------------------------------------------------------------------------


class Harness:
    """A raw RESP connection for the start/finish signals, outside every library."""

    def __init__(self, stream: Any) -> None:
        import hiredis

        self._stream = stream
        self._reader = hiredis.Reader()

    @classmethod
    async def connect(cls, url: str) -> Harness:
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            raise ValueError(f"expected redis://HOST:PORT/..., got {url!r}")
        harness = cls(await anyio.connect_tcp(parts.hostname, parts.port))
        await harness.command("CLIENT", "SETNAME", HARNESS_NAME)
        return harness

    async def command(self, *args: str) -> object:
        await self._stream.send(encode_command(*args))
        while (reply := self._reader.gets()) is False:
            self._reader.feed(await self._stream.receive())
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def wait_for(self, key: str) -> None:
        if await self.command("BLPOP", key, str(SIGNAL_TIMEOUT_S)) is None:
            raise TimeoutError(f"no {key!r} signal within {SIGNAL_TIMEOUT_S}s")

    async def aclose(self) -> None:
        await self._stream.aclose()


async def stampede(get: Get, key: str, callers: int) -> tuple[dict[str, int], dict[str, int]]:
    """``callers`` concurrent ``get(key)``; returns value counts and error counts."""
    values: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()

    async def caller() -> None:
        try:
            values[str(await get(key))] += 1
        except Exception as exc:
            errors[f"{type(exc).__name__}: {exc}"] += 1

    with anyio.fail_after(STAMPEDE_TIMEOUT_S):
        async with anyio.create_task_group() as tg:
            for _ in range(callers):
                tg.start_soon(caller)
    return dict(values), dict(errors)


async def worker(args: argparse.Namespace) -> None:
    factory = Factory(args.factory_ms / 1000)
    async with open_contender(args.contender, args.url, factory) as get:
        # Warm-up: the same burst on a private key, so pools are grown,
        # scripts cached and subscriptions open — the stampede below is a
        # cold KEY in a warm process.
        warm_values, warm_errors = await stampede(
            get, f"{args.key}:warm:{os.getpid()}", args.callers
        )
        if warm_errors:
            raise RuntimeError(f"warm-up failed: {warm_errors}")
        warm_factory_calls, factory.calls = factory.calls, 0

        harness = await Harness.connect(args.url)
        try:
            await harness.wait_for(f"{args.key}:go")
            released = time.monotonic()
            values, errors = await stampede(get, args.key, args.callers)
            finished = time.monotonic()
            result = {
                "pid": os.getpid(),
                "contender": args.contender,
                "factory_calls": factory.calls,
                "values": values,
                "errors": errors,
                "released": released,
                "finished": finished,
                "warm_up": {"factory_calls": warm_factory_calls, "distinct": len(warm_values)},
            }
            print(json.dumps(result), flush=True)
            await harness.wait_for(f"{args.key}:done")
        finally:
            await harness.aclose()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--contender", required=True, choices=sorted(CONTENDERS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--factory-ms", type=float, default=FACTORY_MS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backend = CONTENDERS[args.contender][0]
    if args.contender.startswith("beignet-"):
        anyio.run(worker, args, backend=backend)
    else:
        asyncio.run(worker(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
