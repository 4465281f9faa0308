"""Outages: nobody sleeps a backoff, a frozen server costs one command timeout,
half-open lets exactly one probe through, and operators can see it all."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

from beignet_redis_anyio import (
    CircuitOpenError,
    ConnectTimeoutError,
    RedisConfig,
    open_redis_client,
    open_redis_provider,
)
from beignet_redis_anyio._net import multiplexer as connection_module
from helpers.targets import FLAVOURS, RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def slow_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries far apart, so that any further connect attempt during a test
    can only have come from a caller."""
    monkeypatch.setattr(connection_module, "BACKOFF_BASE", 60.0)
    monkeypatch.setattr(connection_module, "BACKOFF_CAP", 60.0)


async def _answers_again(client: Any, deadline: float = 10.0) -> None:
    """Reconnecting happens in the background: wait (bounded) until a
    command succeeds. The server's return sends no event we could await."""
    with anyio.fail_after(deadline):
        while True:
            try:
                assert await client.ping() is True
                return
            except ConnectionError:
                await anyio.sleep(0.02)


async def test_concurrent_callers_share_one_connect_attempt_then_fail_at_once(
    own_server: RedisServer, slow_backoff: None
) -> None:
    own_server.stop()
    async with open_redis_client(own_server.url, connect_timeout=1) as client:
        failures: list[BaseException] = []

        async def call() -> None:
            try:
                await client.ping()
            except ConnectionError as exc:
                failures.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for _ in range(20):
                    tasks.start_soon(call)
        assert len(failures) == 20
        assert client._mux.attempts == 1
        # The outage is known now: callers fail at once, without an attempt
        # (let alone a backoff) of their own, and say so.
        for _ in range(100):
            with pytest.raises(ConnectionError, match="reconnecting in the background"):
                await client.get("k")
        assert client._mux.attempts == 1


async def test_reconnecting_goes_on_in_the_background(own_server: RedisServer) -> None:
    own_server.stop()
    async with open_redis_client(own_server.url, connect_timeout=1) as client:
        with pytest.raises(ConnectionError):
            await client.ping()
        attempts = client._mux.attempts
        own_server.start()
        # Nobody calls, yet the client keeps trying and gets there.
        with anyio.fail_after(10):
            while client._mux.outage is not None:  # noqa: ASYNC110 - an external process
                await anyio.sleep(0.02)
        assert client._mux.attempts > attempts
        assert await client.ping() is True


@pytest.fixture
def frozen(own_server: RedisServer) -> Iterator[Any]:
    """SIGSTOP the server on demand; it is always woken again."""
    assert own_server.process is not None
    process = own_server.process
    try:
        yield lambda: process.send_signal(signal.SIGSTOP)
    finally:
        process.send_signal(signal.SIGCONT)


async def test_a_frozen_server_costs_a_caller_one_command_timeout_not_the_connect_timeout(
    own_server: RedisServer, frozen: Any, slow_backoff: None
) -> None:
    # A frozen server still completes TCP handshakes (the kernel does) and
    # then says nothing: a connect attempt would wait all of connect_timeout.
    async with open_redis_client(own_server.url, command_timeout=0.3, connect_timeout=60) as c:
        assert await c.ping() is True
        frozen()
        with anyio.fail_after(5):  # far below connect_timeout
            with pytest.raises(TimeoutError):
                await c.get("k")  # on the old link: the reply never comes
            # The silent link was dropped; this caller's connect attempt gets
            # one command timeout of its wait, and goes on in the background.
            while True:
                try:
                    await c.get("k")
                except ConnectTimeoutError as exc:
                    message = str(exc)
                    break
                except TimeoutError:
                    continue  # the watchdog had not dropped the old link yet
            assert "still trying in the background" in message
            attempts = c._mux.attempts
            for _ in range(50):
                with pytest.raises(ConnectionError, match="reconnecting in the background"):
                    await c.get("k")
            assert c._mux.attempts == attempts
        own_server.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        # The attempt that was under way completes as soon as the server wakes.
        await _answers_again(c)


async def test_half_open_admits_exactly_one_probe(server_url: str) -> None:
    config = RedisConfig(url=server_url, breaker_threshold=1, breaker_cooldown_seconds=5)
    async with open_redis_provider(config) as cache:
        now = [0.0]
        cache._breaker._clock = lambda: now[0]
        cache._breaker.failed(ConnectionError("down"))  # opened
        assert cache.breaker_state == "open"
        now[0] = 6.0  # the cooldown is over
        execute = cache._execute
        reached = 0
        release = anyio.Event()
        held = anyio.Event()

        async def slow_execute(*args: Any) -> Any:
            nonlocal reached
            reached += 1
            held.set()
            await release.wait()
            return await execute(*args)

        cache._execute = slow_execute  # type: ignore[method-assign]
        refused: list[BaseException] = []
        results: list[object] = []

        async def call() -> None:
            try:
                results.append(await cache.get("k"))
            except CircuitOpenError as exc:
                refused.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(call)
                await held.wait()  # the probe is with Redis
                for _ in range(49):
                    tasks.start_soon(call)
                await anyio.wait_all_tasks_blocked()
                assert reached == 1 and len(refused) == 49
                assert all("probing" in str(exc) for exc in refused)
                release.set()
        assert results == [None]
        assert cache.breaker_state == "closed"
        assert await cache.get("k") is None and reached == 2


async def test_a_cancelled_probe_hands_the_turn_to_the_next_call(server_url: str) -> None:
    config = RedisConfig(url=server_url, breaker_threshold=1, breaker_cooldown_seconds=5)
    async with open_redis_provider(config) as cache:
        now = [0.0]
        cache._breaker._clock = lambda: now[0]
        cache._breaker.failed(ConnectionError("down"))
        now[0] = 6.0
        execute = cache._execute
        held = anyio.Event()

        async def hang(*args: Any) -> Any:
            held.set()
            await anyio.sleep_forever()

        cache._execute = hang  # type: ignore[method-assign]
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(cache.get, "k")
                await held.wait()
                tasks.cancel_scope.cancel()  # the probe gives up without an answer
        cache._execute = execute  # type: ignore[method-assign]
        assert await cache.get("k") is None  # this call is the next probe
        assert cache.breaker_state == "closed"


async def test_an_error_reply_counts_as_redis_answering(server_url: str, key: str) -> None:
    config = RedisConfig(url=server_url, breaker_threshold=1, breaker_cooldown_seconds=5)
    async with open_redis_provider(config) as cache:
        now = [0.0]
        cache._breaker._clock = lambda: now[0]
        await cache.client.rpush(key, "a list, not a string")
        cache._breaker.failed(ConnectionError("down"))
        now[0] = 6.0
        with pytest.raises(Exception, match="WRONGTYPE"):
            await cache.get(key)
        assert cache.breaker_state == "closed"


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_the_breaker_logs_opening_and_closing_without_secrets(
    caplog: pytest.LogCaptureFixture, flavour: str
) -> None:
    password = "s3cr3t-P@ss:/%#"
    server = RedisServer(password=password, flavour=flavour)
    try:
        from urllib.parse import quote

        url = f"redis://:{quote(password, safe='')}@127.0.0.1:{server.port}"
        config = RedisConfig(
            url=url, failure_policy="bypass", breaker_threshold=1, command_timeout=0.5
        )
        caplog.set_level(logging.INFO, logger="beignet_redis_anyio")
        events: list[Any] = []
        async with open_redis_provider(config, observer=events.append) as cache:
            now = [0.0]
            cache._breaker._clock = lambda: now[0]
            server.stop()
            with anyio.fail_after(10):
                assert await cache.get("k") is None  # bypassed: Redis is down
            opened = [r for r in caplog.records if "opened" in r.getMessage()]
            assert [r.levelno for r in opened] == [logging.WARNING]
            assert "bypasses Redis" in opened[0].getMessage()
            server.start()
            await _answers_again(cache.client)
            now[0] = 1000.0
            assert await cache.get("k") is None  # the probe: Redis answers
            assert cache.breaker_state == "closed"
        closed = [r for r in caplog.records if "closed" in r.getMessage()]
        assert logging.INFO in [r.levelno for r in closed]
        text = caplog.text + repr([e.error for e in events])
        for secret in (password, quote(password, safe=""), "s3cr3t"):
            assert secret not in text
    finally:
        server.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_maxclients_is_an_outage_not_bad_credentials(flavour: str) -> None:
    server = RedisServer("--maxclients", "1", password="pw", flavour=flavour)
    hog = socket.create_connection(("127.0.0.1", server.port))  # the one slot
    try:
        hog.sendall(b"AUTH pw\r\n")
        assert hog.recv(64).startswith(b"+OK")
        url = f"redis://:pw@127.0.0.1:{server.port}"
        with anyio.fail_after(10):
            with pytest.raises(ConnectionError) as raised:
                async with open_redis_provider(RedisConfig(url=url)):
                    pass
            assert not isinstance(raised.value, AuthenticationError)
            assert "max number of clients" in str(raised.value)
            # Under bypass, an outage at start-up is no reason not to start.
            config = RedisConfig(url=url, failure_policy="bypass")
            async with open_redis_provider(config) as cache:
                assert await cache.get("k") is None
    finally:
        hog.close()
        server.close()


async def test_wrong_credentials_still_fail_as_credentials(password_server: RedisServer) -> None:
    url = f"redis://:wrong@127.0.0.1:{password_server.port}"
    with anyio.fail_after(10):
        with pytest.raises(AuthenticationError):
            async with open_redis_provider(RedisConfig(url=url, failure_policy="bypass")):
                pass


@pytest.mark.parametrize("policy", ["raise", "bypass"])
async def test_failing_fast_is_still_a_checkpoint(own_server: RedisServer, policy: str) -> None:
    """A caller that retries in a tight loop while Redis is down must not
    starve every other task: each fast failure (or bypass) still yields."""
    config = RedisConfig(
        url=own_server.url,
        failure_policy=policy,  # type: ignore[arg-type]
        breaker_threshold=1,
        breaker_cooldown_seconds=60,
    )
    async with open_redis_provider(config) as cache:
        own_server.stop()
        for _ in range(2):  # the first opens the breaker, the second meets it
            try:
                await cache.get("k")
            except ConnectionError:
                pass
        assert cache.breaker_state == "open"
        others_ran = False
        loops = 0

        async def retry_in_a_tight_loop() -> None:
            nonlocal loops
            while not others_ran and loops < 10_000:
                loops += 1
                try:
                    await cache.get("k")
                except ConnectionError:
                    pass

        async def another_task() -> None:
            nonlocal others_ran
            others_ran = True

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(retry_in_a_tight_loop)
                tasks.start_soon(another_task)
            assert others_ran and loops < 10_000
            # The connection fails fast the same way, breaker or not.
            others_ran, loops = False, 0
            cache.get = cache.client.get  # type: ignore[method-assign]
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(retry_in_a_tight_loop)
                tasks.start_soon(another_task)
            assert others_ran and loops < 10_000


async def test_the_breaker_ends_its_pause_once_redis_is_heard_from_again(
    own_server: RedisServer,
) -> None:
    """The breaker holds every caller back, so the connection reconnects by
    itself; the first sign of life ends the pause, not the whole cooldown."""
    config = RedisConfig(url=own_server.url, breaker_threshold=1, breaker_cooldown_seconds=3600)
    async with open_redis_provider(config) as cache:
        assert await cache.get("k") is None
        own_server.stop()
        with anyio.fail_after(10):
            with pytest.raises(ConnectionError):
                await cache.get("k")
            assert cache.breaker_state == "open"
            heard = cache.client.last_heard
            own_server.start()
            # Nobody calls Redis meanwhile: the breaker refuses them all.
            while cache.client.last_heard == heard:  # noqa: ASYNC110 - an external process
                await anyio.sleep(0.02)
            assert await cache.get("k") is None  # the probe, long before the cooldown
        assert cache.breaker_state == "closed"


async def test_blocking_commands_fail_fast_during_a_known_outage_too(
    own_server: RedisServer, frozen: Any, slow_backoff: None
) -> None:
    async with open_redis_client(own_server.url, command_timeout=0.3, connect_timeout=60) as c:
        frozen()
        with anyio.fail_after(5):  # far below connect_timeout
            with pytest.raises(ConnectTimeoutError):
                await c.ping()  # learns of the outage
            # Even a block without a deadline does not queue behind a connect.
            with pytest.raises(ConnectionError, match="reconnecting in the background"):
                await c.blpop(["q"], timeout=0)
