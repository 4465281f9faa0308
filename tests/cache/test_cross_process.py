"""Cross-process single-flight against a real redis-server, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable
from pathlib import Path

import anyio
import pytest
from redis.exceptions import NoPermissionError

from beignet_redis_anyio import (
    CacheEvent,
    RedisCachePort,
    RedisConfig,
    open_redis_client,
    open_redis_provider,
)
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from helpers.backends import backend_name
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).parents[1] / "helpers" / "remember_worker.py"
ROOTS = (Path(__file__).parents[2], Path(__file__).parents[1])


def _spawn(url: str, key: str, backend: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, key, "--backend", backend, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The repository, and tests/ for the worker's ``helpers`` imports.
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, ROOTS))},
    )


async def _wait_until_blocked(url: str, key: str, processes: int) -> None:
    """Until every worker is connected and waiting for the start signal."""
    async with open_redis_client(url) as client:
        with anyio.fail_after(30):
            while True:  # the server's view of other processes: poll it
                blocked = [c for c in await client.client_list() if c["cmd"] == "blpop"]
                if len(blocked) >= processes:
                    return
                await anyio.sleep(0.02)


async def _kill_once_computing(
    url: str, key: str, backend: str, locks: list[str], *extra: str
) -> None:
    """Start one worker whose factory takes a minute (``extra``: its options),
    and kill it (SIGKILL: no cleanup) once it computes; its leases stay
    behind, renewed by nobody."""
    leader = _spawn(url, key, backend, "--callers", "1", "--factory-seconds", "60", *extra)
    try:
        await _wait_until_blocked(url, key, 1)
        async with open_redis_client(url) as client:
            await client.rpush(f"{key}:go", "go")
            assert await client.blpop([f"{key}:started"], timeout=30) is not None
            leader.send_signal(signal.SIGKILL)
            leader.wait(10)
            assert await client.exists(*locks) == len(locks)
    finally:
        leader.kill()


def _finish(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


async def test_many_processes_many_callers_one_factory_run(
    real_server: RedisServer, anyio_backend: object
) -> None:
    key = f"xproc:{uuid.uuid4().hex[:8]}"
    backend = backend_name(anyio_backend)
    workers = [
        _spawn(real_server.url, key, backend, "--callers", "100", "--factory-seconds", "0.3")
        for _ in range(4)
    ]
    try:
        await _wait_until_blocked(real_server.url, key, 4)
        async with open_redis_client(real_server.url) as client:
            await client.rpush(f"{key}:go", *["go"] * 4)
            results = [_finish(worker) for worker in workers]
            assert await client.get(f"{key}:factory-calls") == "1"
            stored = await client.get(key)
            assert await client.exists(sidecar_key(key, "lock")) == 0  # released
    finally:
        for worker in workers:
            worker.kill()
    values = {value for result in results for value in result["results"]}  # type: ignore[attr-defined]
    assert values == {stored}
    assert sum(result["factory_calls"] for result in results) == 1  # type: ignore[misc]
    assert all(len(result["results"]) == 100 for result in results)  # type: ignore[arg-type]
    assert {result["backend"] for result in results} == {backend}


async def test_a_killed_leader_is_replaced_after_its_lease(
    real_server: RedisServer, anyio_backend: object
) -> None:
    key = f"xproc:{uuid.uuid4().hex[:8]}"
    backend = backend_name(anyio_backend)
    await _kill_once_computing(
        real_server.url, key, backend, [sidecar_key(key, "lock")], "--lease", "0.5"
    )
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        return "from-the-successor"

    config = RedisConfig(url=real_server.url, remember_lock=True, lock_lease_seconds=0.5)
    with anyio.fail_after(10):
        async with open_redis_provider(config) as cache:
            started = anyio.current_time()
            assert await cache.remember(key, factory) == "from-the-successor"
            waited = anyio.current_time() - started
    assert calls == 1
    assert waited < 5  # the lease (0.5 s) and a poll or two, not the lock wait


async def test_many_processes_batching_overlapping_keys_compute_each_key_once(
    real_server: RedisServer, anyio_backend: object
) -> None:
    """Four processes, twenty callers each, all asking ``remember_many`` for
    the same five keys: each key is computed once across the fleet."""
    key = f"xproc:{uuid.uuid4().hex[:8]}"
    backend = backend_name(anyio_backend)
    many = ("--callers", "20", "--factory-seconds", "0.3", "--many", "5")
    workers = [_spawn(real_server.url, key, backend, *many) for _ in range(4)]
    try:
        await _wait_until_blocked(real_server.url, key, 4)
        async with open_redis_client(real_server.url) as client:
            await client.rpush(f"{key}:go", *["go"] * 4)
            results = [_finish(worker) for worker in workers]
            assert await client.get(f"{key}:keys-computed") == "5"
            stored = [await client.get(f"{key}:{index}") for index in range(5)]
            locks = [sidecar_key(f"{key}:{index}", "lock") for index in range(5)]
            assert await client.exists(*locks) == 0  # all released
    finally:
        for worker in workers:
            worker.kill()
    for result in results:
        got: list[str] = result["results"]  # type: ignore[assignment]
        assert len(got) == 20 * 5
        assert [got[i % 5 :: 5] for i in range(5)] == [[stored[i]] * 20 for i in range(5)]


async def test_a_killed_batch_leader_is_replaced_after_its_leases(
    real_server: RedisServer, anyio_backend: object
) -> None:
    key = f"xproc:{uuid.uuid4().hex[:8]}"
    keys = [f"{key}:{index}" for index in range(3)]
    locks = [sidecar_key(k, "lock") for k in keys]
    backend = backend_name(anyio_backend)
    await _kill_once_computing(
        real_server.url, key, backend, locks, "--lease", "0.5", "--many", "3"
    )
    calls: list[list[str]] = []

    async def factory_many(missing: list[str]) -> dict[str, str]:
        calls.append(missing)
        return dict.fromkeys(missing, "from-the-successor")

    config = RedisConfig(url=real_server.url, remember_lock=True, lock_lease_seconds=0.5)
    with anyio.fail_after(10):
        async with open_redis_provider(config) as cache:
            started = anyio.current_time()
            got = await cache.remember_many(keys, factory_many)
            waited = anyio.current_time() - started
    assert got == dict.fromkeys(keys, "from-the-successor")
    assert sorted(calls) == [[k] for k in keys]  # each lease came free on its own
    assert waited < 5  # the lease (0.5 s) and a poll or two, not the lock wait


async def test_a_long_factory_keeps_its_lease_renewed(real_server: RedisServer) -> None:
    key = f"xproc:{uuid.uuid4().hex[:8]}"
    config = RedisConfig(url=real_server.url, remember_lock=True, lock_lease_seconds=0.3)
    calls = 0
    started, release = anyio.Event(), anyio.Event()

    async def slow() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "slow-value"

    events: list[CacheEvent] = []
    async with (
        open_redis_provider(config, observer=events.append) as leader,
        open_redis_provider(config) as follower,  # another "process": its own single-flight
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(leader.remember, key, slow)
        with anyio.fail_after(5):
            await started.wait()
        results: list[str] = []

        async def follow() -> None:
            results.append(await follower.remember(key, slow))

        tasks.start_soon(follow)
        await anyio.sleep(1.0)  # > 3 leases: only renewal keeps it alive
        assert await leader.client.pttl(sidecar_key(key, "lock")) > 0
        release.set()
    assert calls == 1
    assert results == ["slow-value"]
    assert not [e for e in events if e.status == "lease_lost"]


async def test_a_stolen_lease_is_reported_and_the_value_still_returned(
    real_server: RedisServer,
) -> None:
    key = f"xproc:{uuid.uuid4().hex[:8]}"
    config = RedisConfig(url=real_server.url, remember_lock=True, lock_lease_seconds=0.3)
    events: list[CacheEvent] = []
    started, release, lost = anyio.Event(), anyio.Event(), anyio.Event()

    def observe(event: CacheEvent) -> None:
        events.append(event)
        if event.status == "lease_lost":
            lost.set()

    async def factory() -> str:
        started.set()
        await release.wait()
        return "mine"

    async with open_redis_provider(config, observer=observe) as cache:
        async with anyio.create_task_group() as tasks:

            async def call() -> None:
                assert await cache.remember(key, factory) == "mine"

            tasks.start_soon(call)
            await started.wait()
            await cache.client.set(sidecar_key(key, "lock"), "someone-else", px=10_000)
            with anyio.fail_after(5):
                await lost.wait()  # the next renewal finds the token changed
            release.set()
        assert await cache.get(key) == "mine"
    lost = [e for e in events if e.operation == "cache.lock" and e.status == "lease_lost"]
    assert lost and lost[0].key == key


async def test_a_follower_past_its_wait_bound_computes_itself(real_server: RedisServer) -> None:
    key = f"xproc:{uuid.uuid4().hex[:8]}"
    base = RedisConfig(url=real_server.url, remember_lock=True, lock_lease_seconds=30)
    impatient = RedisConfig(
        url=real_server.url, remember_lock=True, lock_lease_seconds=30, lock_wait_seconds=0.3
    )
    gate = anyio.Event()
    started = anyio.Event()

    async def stuck() -> str:
        started.set()
        await gate.wait()
        return "late"

    async def own() -> str:
        return "computed-by-follower"

    events: list[CacheEvent] = []
    async with (
        open_redis_provider(base) as leader,
        open_redis_provider(impatient, observer=events.append) as follower,
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(leader.remember, key, stuck)
        await started.wait()
        with anyio.fail_after(5):
            assert await follower.remember(key, own) == "computed-by-follower"
        assert [e.status for e in events if e.operation == "cache.lock"] == ["wait_expired"]
        gate.set()


async def test_two_providers_share_one_computation(server_url: str) -> None:
    """Two providers stand for two processes (each has its own single-flight);
    on fakeredis too, which needs Lua (lupa) for the lease scripts."""
    key = f"xproc:{uuid.uuid4().hex[:8]}"
    config = RedisConfig(url=server_url, remember_lock=True)
    calls = 0
    started, release = anyio.Event(), anyio.Event()

    async def factory() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "shared"

    results: list[str] = []
    async with (
        open_redis_provider(config) as first,
        open_redis_provider(config) as second,
    ):

        async def ask(cache: RedisCachePort) -> None:
            results.append(await cache.remember(key, factory))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(ask, first)
                await started.wait()
                tasks.start_soon(ask, second)
                await anyio.wait_all_tasks_blocked()
                release.set()
    assert calls == 1
    assert results == ["shared", "shared"]


async def test_lock_can_be_chosen_per_call(server_url: str) -> None:
    key = f"xproc:{uuid.uuid4().hex[:8]}"
    async with open_redis_provider(RedisConfig(url=server_url)) as cache:

        async def factory() -> str:
            assert await cache.client.exists(sidecar_key(key, "lock")) == 1
            return "locked"

        assert await cache.remember(key, factory, lock=True) == "locked"
        assert await cache.client.exists(sidecar_key(key, "lock")) == 0


async def _append(results: list[str], call: Awaitable[str]) -> None:
    results.append(await call)


@pytest.mark.parametrize("failure", ["unencodable", "refused"])
async def test_a_failed_store_gives_the_lease_up_at_once(
    real_server: RedisServer, key: str, failure: str
) -> None:
    """Provider A leads, but its value cannot be stored: a str with no UTF-8
    form (caught before the store), or a store the server refuses (here: an
    ACL user who may take the lease but not write the value). Its lease must
    not outlive the failure: provider B, following, takes over and computes —
    long before the lease (30 s) or B's wait bound (30 s) runs out."""
    lock = sidecar_key(key, "lock")
    leader_url, user = real_server.url, f"nowrite-{uuid.uuid4().hex[:8]}"
    async with open_redis_client(real_server.url) as admin:
        if failure == "refused":
            await admin.execute_command(
                "ACL", "SETUSER", user, "on", ">pw", "~*:beignet:lock", "%R~*", "&*", "+@all"
            )  # fmt: skip
            leader_url = f"redis://{user}:pw@127.0.0.1:{real_server.port}"
        patient = {"remember_lock": True, "lock_lease_seconds": 30.0, "lock_wait_seconds": 30.0}
        started, release = anyio.Event(), anyio.Event()

        async def bad() -> str:
            started.set()
            await release.wait()
            return "\ud800" if failure == "unencodable" else "from-a"

        async def good() -> str:
            return "from-b"

        expected = ValueError if failure == "unencodable" else NoPermissionError
        events: list[CacheEvent] = []
        results: list[str] = []
        try:
            with anyio.fail_after(10):
                async with (
                    open_redis_provider(RedisConfig(url=leader_url, **patient)) as a,
                    open_redis_provider(
                        RedisConfig(url=real_server.url, **patient), observer=events.append
                    ) as b,
                    anyio.create_task_group() as tasks,
                ):

                    async def lead() -> None:
                        with pytest.raises(expected):
                            await a.remember(key, bad)
                        # A's lease is gone the moment A has failed (B may
                        # hold a lease of its own by now).
                        assert await admin.get(lock) != a_token

                    tasks.start_soon(lead)
                    await started.wait()
                    a_token = await admin.get(lock)
                    assert a_token is not None
                    tasks.start_soon(_append, results, b.remember(key, good))
                    while True:  # until B follows (watches A's key): nothing to await
                        if b._lease._notifications.waiting(key):
                            break
                        await anyio.sleep(0.01)
                    release.set()
        finally:
            if failure == "refused":
                await admin.execute_command("ACL", "DELUSER", user)
        assert results == ["from-b"]
        assert not [e for e in events if e.status == "wait_expired"]  # B led; it did not give up
        assert await admin.get(key) == "from-b"
        assert await admin.exists(lock) == 0
