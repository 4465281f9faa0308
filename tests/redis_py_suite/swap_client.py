"""pytest plugin loaded (``-p swap_client``) into redis-py's own test suite.

It does two things:

* Always: records each test's outcome, and the first line of its error, in a
  JSON file (``--beignet-results``), so ``run.py`` can compare a run with
  redis-py's client against a run with ours test by test.
* With ``--beignet-client ours``: redis-py's ``create_redis`` fixture (the one
  behind ``r``, ``r2``, ``decoded_r`` and every ``create_redis(...)`` call in
  tests/test_asyncio) yields *our* ``RedisClient`` instead of
  ``redis.asyncio.Redis``. It also records, per test, whether our client was
  made and whether the test built a ``redis.asyncio.Redis`` of its own: a test
  that never got our client does not test us, and ``run.py`` reports it
  apart.

How the fixture is swapped: pytest-asyncio reads ``fixturedef.func`` when it
sets a fixture up; a ``pytest_fixture_setup`` wrapper that runs before its
own (``tryfirst``) puts our function there for that one call. redis-py's
conftest is otherwise untouched.

Why a host task: our client's background tasks need an anyio task group that
is entered and exited in one task, but pytest-asyncio runs a fixture's setup
and its teardown as two different tasks. So each client's task group lives
in a host task made for it on the test's event loop (the one ``asyncio``
call here: pytest-asyncio, and so this whole suite, is asyncio-only). The
host is not detached: the fixture's teardown closes the client, tells the
host to leave its task group, and awaits it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import anyio
import pytest
from anyio.abc import TaskGroup

from beignet_redis_anyio._client.client import RedisClient
from beignet_redis_anyio.testing.servers import command

#: create_redis(...) keywords and the RedisClient setting each one means.
RENAMED = {
    "decode_responses": "decode_responses",
    "legacy_responses": "legacy_responses",
    "username": "username",
    "password": "password",
    "db": "db",
    "client_name": "client_name",
    "encoding_errors": "encoding_errors",
    "socket_timeout": "command_timeout",
    "socket_connect_timeout": "connect_timeout",
}
#: Connection-pool tuning with no equivalent (one multiplexed connection,
#: its own reconnect policy): accepted and ignored, as a pool size would be.
IGNORED = {"single_connection_client", "retry", "retry_on_timeout", "health_check_interval"}

_results: dict[str, dict[str, Any]] = {}
_current: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("beignet", "beignet-redis-anyio comparison harness")
    group.addoption("--beignet-client", choices=["redis-py", "ours"], default="redis-py")
    group.addoption("--beignet-results", default=None, help="write outcomes to this JSON file")


def _ours(config: pytest.Config) -> bool:
    return bool(config.getoption("--beignet-client") == "ours")


def pytest_configure(config: pytest.Config) -> None:
    if not _ours(config):
        return
    import redis.asyncio.client

    original_init = redis.asyncio.client.Redis.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        # A redis.asyncio.Redis made while a test runs is the test's own:
        # our harness never makes one.
        if _current:
            _entry(_current[-1])["redis_py_clients"] += 1
        original_init(self, *args, **kwargs)

    redis.asyncio.client.Redis.__init__ = counting_init  # type: ignore[method-assign]


def _entry(nodeid: str) -> dict[str, Any]:
    return _results.setdefault(
        nodeid,
        {"outcome": None, "error": None, "ours_clients": 0, "redis_py_clients": 0},
    )


def _patch_protocol_helpers() -> None:
    # redis-py's tests ask tests.conftest which protocol a client speaks, and
    # (redis-py 8) whether it gives legacy or unified shapes, to pick the
    # expected reply shape; it answers from connection_pool, which only
    # redis-py's clients have. Answer for ours from what it says of itself.
    import tests.conftest as conftest

    if getattr(conftest, "_beignet_patched", False):
        return

    def ask_ours(name: str, key: str, default: Any) -> None:
        original = getattr(conftest, name, None)
        if original is None:  # an older suite without this helper
            return

        def helper(r: Any) -> Any:
            if isinstance(r, RedisClient):
                return r.get_connection_kwargs().get(key, default)
            return original(r)

        setattr(conftest, name, helper)

    ask_ours("_get_raw_protocol", "protocol", None)
    ask_ours("get_legacy_responses", "legacy_responses", True)
    conftest._beignet_patched = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _entry(item.nodeid)
    _current.append(item.nodeid)
    try:
        return (yield)
    finally:
        _current.pop()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _entry(report.nodeid)
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"
    elif report.skipped:
        outcome = "skipped"
    else:
        outcome = "passed"
    # The worst phase wins: a teardown error after a pass is an error.
    rank = ["passed", "xfailed", "skipped", "xpassed", "failed", "error"]
    previous = entry["outcome"]
    if previous is None or rank.index(outcome) > rank.index(previous):
        entry["outcome"] = outcome
        if outcome in ("failed", "error", "skipped"):
            entry["error"] = _first_line(report)
            entry["when"] = report.when


def _first_line(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--beignet-results")
    if path:
        Path(path).write_text(json.dumps(_results, indent=1, sort_keys=True))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Iterator[object]:
    if fixturedef.argname != "create_redis" or not _ours(request.config):
        return (yield)
    _patch_protocol_helpers()
    original = fixturedef.func
    fixturedef.func = create_ours
    try:
        return (yield)
    finally:
        fixturedef.func = original


class _Host:
    """One task group in one task, for one client's background tasks."""

    def __init__(self) -> None:
        self.ready = anyio.Event()
        self.leave = anyio.Event()
        self.task_group: TaskGroup | None = None

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                self.task_group = task_group
                self.ready.set()
                await self.leave.wait()
                task_group.cancel_scope.cancel()
        finally:
            self.ready.set()


async def create_ours(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """redis-py's create_redis, making our RedisClient (same parameters)."""
    nodeid = request.node.nodeid
    protocol_opt = request.config.getoption("--protocol")
    made: list[tuple[RedisClient, _Host, asyncio.Task[None], bool]] = []

    async def client_factory(
        url: str = request.config.getoption("--redis-url"),
        cls: Any = None,
        flushdb: bool = True,
        **kwargs: Any,
    ) -> RedisClient:
        # Counted when asked for, so a client we cannot even construct
        # counts against us.
        _entry(nodeid)["ours_clients"] += 1
        if cls is not None:
            raise NotImplementedError("harness: create_redis(cls=...) has no equivalent")
        settings: dict[str, Any] = {"decode_responses": False}  # redis-py's default
        protocol = kwargs.pop("protocol", None)
        if protocol is None and "protocol" not in url and protocol_opt:
            protocol = protocol_opt
        if protocol is not None and int(protocol) != 2:
            settings["protocol"] = int(protocol)
        for key, value in kwargs.items():
            if key in RENAMED:
                settings[RENAMED[key]] = value
            elif key not in IGNORED:
                raise TypeError(f"harness: create_redis({key}=...) has no equivalent in ours")
        host = _Host()
        task = asyncio.get_running_loop().create_task(host.run())
        await host.ready.wait()
        if host.task_group is None:
            await task
            raise RuntimeError("harness: the host task ended before its task group opened")
        decode = settings.pop("decode_responses")
        try:
            client = RedisClient.from_url(
                url, task_group=host.task_group, decode_responses=decode, **settings
            )
        except BaseException:
            host.leave.set()
            await task
            raise
        made.append((client, host, task, flushdb and "username" not in kwargs))
        return client

    yield client_factory

    port = urlparse(request.config.getoption("--redis-url")).port
    flush = False
    for client, host, task, flushdb in made:
        flush = flush or flushdb
        try:
            with anyio.fail_after(10):
                await client.aclose()
        finally:
            host.leave.set()
            await task
    if flush and port is not None:
        # Raw, not through our client: a test may have broken it, and the
        # next test must start on an empty server either way.
        command(port, "FLUSHALL")
