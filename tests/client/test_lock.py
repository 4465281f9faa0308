"""``client.lock()``: redis-py's asyncio ``Lock`` semantics on asyncio and trio.

The first half follows redis-py's own tests/test_asyncio/test_lock.py (its
behaviour is the reference); the second is what redis-py's lock does not
promise: cancellation that leaves nothing held, mutual exclusion under
contention, and a command rate bounded by ``sleep`` while waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest
import redis.asyncio.lock
from redis.exceptions import LockError, LockNotOwnedError, TimeoutError

from beignet_redis_anyio import RedisClient, open_redis_client
from beignet_redis_anyio._client import lock as lock_module
from beignet_redis_anyio._client.lock import Lock
from beignet_redis_anyio._topology.urls import parse_topology
from helpers.targets import RedisCluster, RedisServer, serve_script

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _client(url: str, decode_responses: bool = False) -> AsyncIterator[RedisClient]:
    # Bytes by default, as redis-py's tests compare tokens with bytes.
    async with open_redis_client(url, decode_responses=decode_responses) as client:
        yield client


class Counted(Lock):
    """Records each SET NX attempt: ``True`` when it took the lock."""

    attempts: list[bool]
    tried: anyio.Event

    async def do_acquire(self, token: str | bytes) -> bool:
        taken = await super().do_acquire(token)
        self.attempts.append(taken)
        self.tried.set()
        return taken


def _counted(client: RedisClient, name: str, **options: Any) -> Counted:
    lock = client.lock(name, lock_class=Counted, **options)
    assert isinstance(lock, Counted)
    lock.attempts, lock.tried = [], anyio.Event()
    return lock


async def _held(client: RedisClient, name: str) -> Lock:
    """A lock on ``name``, taken: the others in a test must wait for it."""
    lock = client.lock(name)
    assert await lock.acquire(blocking=False)
    return lock


# -- redis-py's behaviour -----------------------------------------------------


async def test_acquire_sets_a_token_and_release_deletes_it(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        lock = client.lock(key)
        assert isinstance(lock, Lock) and isinstance(lock, redis.asyncio.lock.Lock)
        assert await lock.acquire(blocking=False)
        assert await client.get(key) == lock.local.token
        assert await client.ttl(key) == -1
        await lock.release()
        assert await client.get(key) is None


@pytest.mark.parametrize("thread_local", [True, False])
async def test_a_given_token_is_encoded(server_url: str, key: str, thread_local: bool) -> None:
    async with _client(server_url) as client:
        lock = client.lock(key, thread_local=thread_local)
        assert await lock.acquire(blocking=False, token="test")
        assert await client.get(key) == b"test"
        assert lock.local.token == b"test"
        await lock.release()
        assert await client.get(key) is None
        assert lock.local.token is None


@pytest.mark.parametrize("decode_responses", [False, True])
async def test_locked_and_owned(server_url: str, key: str, decode_responses: bool) -> None:
    async with _client(server_url, decode_responses) as client:
        lock, other = client.lock(key), client.lock(key)
        assert await lock.locked() is False
        assert await lock.owned() is False
        assert await lock.acquire(blocking=False)
        assert await lock.locked() is True
        assert await lock.owned() is True
        assert await other.owned() is False
        assert not await other.acquire(blocking=False)
        await lock.release()
        assert await lock.locked() is False
        assert await lock.owned() is False
        assert await other.acquire(blocking=False)
        assert await other.owned() is True
        assert await lock.owned() is False
        assert not await lock.acquire(blocking=False)
        await other.release()


async def test_timeout_sets_the_keys_ttl(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        lock = client.lock(key, timeout=10)
        assert await lock.acquire(blocking=False)
        assert 8 < await client.ttl(key) <= 10
        await lock.release()
        lock = client.lock(key, timeout=9.5)
        assert await lock.acquire(blocking=False)
        assert 8000 < await client.pttl(key) <= 9500
        await lock.release()


async def test_blocking_is_the_default_and_can_be_turned_off(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        assert client.lock(key).blocking
        assert not client.lock(key, blocking=False).blocking
        holder = await _held(client, key)
        non_blocking = _counted(client, key, blocking=False)
        assert not await non_blocking.acquire()
        assert non_blocking.attempts == [False]  # one try, no retry
        await holder.release()


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry loop's clock and sleep, faked as redis-py's tests do; the
    list holds each sleep's duration, and time moves only by them."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(lock_module, "_now", lambda: sum(sleeps))
    monkeypatch.setattr(lock_module, "_sleep", sleep)
    return sleeps


async def test_blocking_timeout_gives_up_without_oversleeping(
    server_url: str, key: str, fake_clock: list[float]
) -> None:
    async with _client(server_url) as client:
        holder = await _held(client, key)
        waiter = client.lock(key, sleep=0.05, blocking_timeout=0.2)
        assert not await waiter.acquire()
        assert fake_clock == [0.05] * 4
        # A sleep longer than what is left is not taken at all.
        fake_clock.clear()
        assert not await client.lock(key, sleep=60, blocking_timeout=1).acquire()
        assert fake_clock == []
        await holder.release()


async def test_acquire_s_own_sleep_wins_over_the_lock_s(
    server_url: str, key: str, fake_clock: list[float]
) -> None:
    """redis-py 8.2's ``acquire(sleep=)``: this call's pause between tries."""
    async with _client(server_url) as client:
        holder = await _held(client, key)
        waiter = client.lock(key, sleep=0.05, blocking_timeout=0.2)
        assert not await waiter.acquire(sleep=0.1)
        assert fake_clock == [0.1] * 2
        fake_clock.clear()
        assert not await waiter.acquire()  # the lock's own sleep again
        assert fake_clock == [0.05] * 4
        await holder.release()


async def test_blocking_timeout_expires_on_the_real_clock(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        holder = await _held(client, key)
        waiter = _counted(client, key, sleep=0.05)
        with anyio.fail_after(10):
            assert not await waiter.acquire(blocking_timeout=0.2)
        # A bound on attempts (sleeps never end early), not on time.
        assert 1 <= len(waiter.attempts) <= 0.2 / 0.05 + 1
        assert not any(waiter.attempts)
        await holder.release()


async def test_an_expired_lock_can_be_taken_and_no_longer_released(
    server_url: str, key: str
) -> None:
    async with _client(server_url) as client:
        first = client.lock(key, timeout=0.1)
        assert await first.acquire(blocking=False)
        second = client.lock(key, sleep=0.02)
        with anyio.fail_after(10):
            assert await second.acquire()  # possible only once the key expired
        assert not await first.owned()
        with pytest.raises(LockNotOwnedError):
            await first.release()
        assert first.local.token is None
        assert await second.owned()
        await second.release()


async def test_extend(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        lock = client.lock(key, timeout=10)
        assert await lock.acquire(blocking=False)
        assert await lock.extend(10)
        assert 16000 < await client.pttl(key) <= 20000
        assert await lock.extend(10, replace_ttl=True)
        assert 8000 < await client.pttl(key) <= 10000
        await lock.release()
        lock = client.lock(key, timeout=10.5)
        assert await lock.acquire(blocking=False)
        old_ttl = await client.pttl(key)
        assert await lock.extend(10.5)
        assert old_ttl + 10000 < await client.pttl(key) <= old_ttl + 10500
        await lock.release()


async def test_reacquire(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        lock = client.lock(key, timeout=10)
        assert await lock.acquire(blocking=False)
        assert await client.pexpire(key, 5000)
        assert await client.pttl(key) <= 5000
        assert await lock.reacquire()
        assert 8000 < await client.pttl(key) <= 10000
        await lock.release()


async def test_extend_and_reacquire_refuse_what_they_cannot_do(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        unlocked = client.lock(key, timeout=10)
        with pytest.raises(LockError, match="unlocked"):
            await unlocked.extend(10)
        with pytest.raises(LockError, match="unlocked"):
            await unlocked.reacquire()
        forever = client.lock(key)
        assert await forever.acquire(blocking=False)
        with pytest.raises(LockError, match="no timeout"):
            await forever.extend(10)
        with pytest.raises(LockError, match="no timeout"):
            await forever.reacquire()
        await forever.release()
        lock = client.lock(key, timeout=10)
        assert await lock.acquire(blocking=False)
        await client.set(key, "a")  # someone else's token now
        with pytest.raises(LockNotOwnedError):
            await lock.extend(10)
        with pytest.raises(LockNotOwnedError):
            await lock.reacquire()


async def test_release_refuses_what_is_not_ours(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        lock = client.lock(key)
        with pytest.raises(LockError) as caught:
            await lock.release()
        assert not isinstance(caught.value, LockNotOwnedError)
        assert await lock.acquire(blocking=False)
        await client.set(key, "a")
        with pytest.raises(LockNotOwnedError):
            await lock.release()
        assert lock.local.token is None  # cleared even though it failed
        assert await client.get(key) == b"a"  # someone else's lock is left alone


async def test_scripts_survive_a_script_flush(real_server: RedisServer, key: str) -> None:
    async with _client(real_server.url) as client:
        lock = client.lock(key, timeout=10)
        assert await lock.acquire(blocking=False)
        await client.script_flush()
        assert await lock.extend(1)  # NOSCRIPT, then loaded again
        await client.script_flush()
        await lock.release()
        assert await client.get(key) is None


async def test_thread_local_token_is_per_thread(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        per_thread = client.lock(key, thread_local=True)
        shared = client.lock(f"{key}:shared", thread_local=False)
        assert await per_thread.acquire(blocking=False, token="mine")
        assert await shared.acquire(blocking=False, token="ours")

        def tokens_seen_by_another_thread() -> tuple[object, object]:
            return getattr(per_thread.local, "token", None), shared.local.token

        seen = await anyio.to_thread.run_sync(tokens_seen_by_another_thread)
        assert seen == (None, b"ours")
        # Per thread, not per task: another task in this thread sees it.
        seen_by_task: list[object] = []

        async def look() -> None:
            seen_by_task.append(per_thread.local.token)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(look)
        assert seen_by_task == [b"mine"]
        await per_thread.release()
        await shared.release()


async def test_lock_class_builds_any_class(server_url: str, key: str) -> None:
    class MyLock:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.args, self.kwargs = args, kwargs

    async with _client(server_url) as client:
        made: Any = client.lock(key, timeout=3, lock_class=MyLock)  # type: ignore[arg-type]
        assert isinstance(made, MyLock)
        assert made.args == (client, key)
        assert made.kwargs["timeout"] == 3


# -- async with ---------------------------------------------------------------


async def test_async_with_holds_the_lock_inside(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        async with client.lock(key, blocking_timeout=0.2) as lock:
            assert await client.get(key) == lock.local.token
        assert await client.get(key) is None


async def test_async_with_raises_when_it_cannot_acquire(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        await client.set(key, "bar")
        with pytest.raises(LockError, match="Unable to acquire lock"):
            async with client.lock(key, blocking_timeout=0.1):
                pytest.fail("entered a lock someone else holds")


@pytest.mark.parametrize("raise_on_release_error", [True, False])
async def test_async_with_and_a_lock_lost_inside(
    server_url: str, key: str, raise_on_release_error: bool
) -> None:
    async with _client(server_url) as client:

        async def lose_it() -> None:
            async with client.lock(key, raise_on_release_error=raise_on_release_error):
                await client.set(key, "someone else")

        async def release_twice() -> None:
            name = f"{key}:twice"
            async with client.lock(name, raise_on_release_error=raise_on_release_error) as lock:
                await lock.release()

        if raise_on_release_error:
            with pytest.raises(LockNotOwnedError):
                await lose_it()
            with pytest.raises(LockError):
                await release_twice()
        else:
            await lose_it()
            await release_twice()


# -- cancellation -------------------------------------------------------------


async def test_cancelling_the_block_still_releases(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        with anyio.CancelScope() as scope:
            async with client.lock(key) as lock:
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught
        assert await client.get(key) is None
        assert lock.local.token is None


async def test_a_release_error_does_not_replace_a_cancellation(
    server_url: str, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with _client(server_url) as client:
        with anyio.CancelScope() as scope:
            async with client.lock(key):
                await client.set(key, "someone else")
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught  # not LockNotOwnedError
        assert await client.get(key) == b"someone else"
    [record] = [r for r in caplog.records if r.name == lock_module.__name__]
    assert "could not be released on cancellation" in record.getMessage()


async def test_release_in_a_cancelled_scope_still_releases(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        lock = client.lock(key)
        assert await lock.acquire(blocking=False)
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await anyio.sleep_forever()
            finally:
                await lock.release()
        assert lock.local.token is None
        assert await client.get(key) is None


@pytest.mark.parametrize("command_timeout", [0.2, None])
async def test_release_is_bounded_even_when_cancelled(
    own_server: RedisServer,
    key: str,
    command_timeout: float | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shielded is not unbounded: against a frozen server a release in a
    cancelled scope still gives up — at the client's deadline, or at ours
    when commands may wait forever — keeps the token, and can be retried."""
    monkeypatch.setattr(lock_module, "RELEASE_TIMEOUT", 0.2)
    # (open_redis_client reads command_timeout=None as "the default".)
    settings = attrs.evolve(parse_topology(own_server.url), command_timeout=command_timeout)
    async with anyio.create_task_group() as tasks:
        client = RedisClient(settings, task_group=tasks, decode_responses=False)
        try:
            await _release_gives_up_on_a_frozen_server(client, own_server, key)
        finally:
            await client.aclose()


async def _release_gives_up_on_a_frozen_server(
    client: RedisClient, own_server: RedisServer, key: str
) -> None:
    lock = client.lock(key)
    assert await lock.acquire(blocking=False)
    token = lock.local.token
    own_server.freeze()
    try:
        with anyio.fail_after(10), anyio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(TimeoutError):
                await lock.release()
    finally:
        own_server.thaw()
    assert lock.local.token == token
    with anyio.fail_after(10):
        try:
            await lock.release()
        except LockNotOwnedError:
            pass  # the server ran the first release once it was thawed
        assert await client.get(key) is None
    assert lock.local.token is None


async def test_cancelled_while_waiting_holds_nothing(server_url: str, key: str) -> None:
    async with _client(server_url) as client:
        holder = await _held(client, key)
        waiter = _counted(client, key, sleep=0.01)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(waiter.acquire)
                await waiter.tried.wait()
                tasks.cancel_scope.cancel()
        assert waiter.attempts and not any(waiter.attempts)
        await holder.release()
        assert waiter.local.token is None
        assert await client.get(key) is None


async def test_cancelled_while_set_is_in_flight_releases_what_it_took(key: str) -> None:
    """The SET reaches the server, the acquire is cancelled before its reply,
    and the server then says we took it: the acquire must give it back."""
    set_arrived, releasing = anyio.Event(), anyio.Event()
    tokens: dict[str, bytes] = {}

    class Watched(Lock):
        async def do_release(self, expected_token: bytes) -> None:
            releasing.set()
            await super().do_release(expected_token)

    async def server(command: list[bytes]) -> bytes:
        name = command[0].upper()
        if name == b"SET":
            tokens["set"] = command[2]
            set_arrived.set()
            await releasing.wait()  # answer only once the acquire has given up
            return b"+OK\r\n"  # the lock was free: the SET took it
        if name == b"EVALSHA":
            tokens["released"] = command[4]
            return b":1\r\n"  # and the release script deleted it
        return b"+OK\r\n"  # the handshake

    with anyio.fail_after(10):
        async with anyio.create_task_group() as servers:
            port = await servers.start(serve_script, server)
            async with _client(f"redis://127.0.0.1:{port}") as client:
                lock = client.lock(key, lock_class=Watched)
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(lock.acquire)
                    await set_arrived.wait()
                    tasks.cancel_scope.cancel()
            servers.cancel_scope.cancel()
    assert tokens["released"] == tokens["set"]
    assert lock.local.token is None


# -- contention ---------------------------------------------------------------


async def test_fifty_tasks_never_hold_it_together(server_url: str, key: str) -> None:
    holding, most, turns = 0, 0, 0
    async with _client(server_url) as client:

        async def worker() -> None:
            nonlocal holding, most, turns
            async with client.lock(key, sleep=0.01, timeout=60):
                holding += 1
                most = max(most, holding)
                await client.incr(f"{key}:n")  # a round trip inside: others run meanwhile
                holding -= 1
                turns += 1

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for _ in range(50):
                    tasks.start_soon(worker)
        assert await client.get(f"{key}:n") == b"50"
        assert await client.get(key) is None
    assert (most, turns) == (1, 50)


def _set_calls(info: dict[str, Any]) -> int:
    stats = info.get("cmdstat_set", {"calls": 0})
    return int(stats["calls"])


async def test_waiters_send_one_set_per_sleep(own_server: RedisServer, key: str) -> None:
    """While 50 tasks wait for a held lock, the server sees at most about one
    SET per waiter per ``sleep`` — a bound on commands, measured on the server
    over a window timed around it, so a slow machine loosens it, never breaks it."""
    waiters, sleep = 50, 0.05
    async with _client(own_server.url) as client:
        holder = await _held(client, key)
        locks = [_counted(client, key, sleep=sleep) for _ in range(waiters)]
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for lock in locks:
                    tasks.start_soon(lock.acquire)
                for lock in locks:
                    await lock.tried.wait()
                opened = anyio.current_time()
                await client.config_resetstat()
                await anyio.sleep(10 * sleep)  # the holder's work
                sets = _set_calls(await client.info("commandstats"))
                window = anyio.current_time() - opened
                tasks.cancel_scope.cancel()  # (that each gets it in the end is tested above)
        await holder.release()
        assert not any(lock.local.token for lock in locks)
    assert sets >= waiters  # they did retry while it was held
    assert sets <= waiters * (window / sleep + 2)


async def test_a_lock_on_a_cluster(cluster: RedisCluster, key: str) -> None:
    # Decoded: with decode_responses=False the cluster layer cannot yet read
    # its topology (a bug of its own, not the lock's).
    async with _client(cluster.url, decode_responses=True) as client:
        await client.script_flush()  # one primary's scripts, perhaps not the key's
        for index in range(6):  # keys in different slots, so on different primaries
            lock = client.lock(f"{key}:{index}", timeout=10)
            assert await lock.acquire(blocking=False)
            assert await lock.extend(1)
            assert await lock.reacquire()
            await lock.release()
            assert not await lock.locked()
