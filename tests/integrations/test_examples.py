"""The examples run, as a new user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.exceptions import ConnectionError

from beignet_redis_anyio import RedisConfig
from beignet_redis_anyio.testing import MemoryCachePort
from beignet_redis_anyio.testing.asgi import RunningApp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))


def _run_example(script: str, backend: str) -> str:
    """``examples/<script>`` as a new user runs it: no ``REDIS_URL``; its output."""
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--backend", backend],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_client_demo_runs_on_an_embedded_redis(backend: str) -> None:
    stdout = _run_example("client_demo.py", backend)
    assert "using an embedded fakeredis server" in stdout
    assert "GET    hello from beignet-redis-anyio" in stdout
    assert "HGETALL {'name': 'Ada', 'lang': 'python'}" in stdout
    assert "MULTI  [2, True, 60]" in stdout
    assert "1000 concurrent GETs in" in stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_app_runs_on_an_embedded_redis(backend: str) -> None:
    stdout = _run_example("app.py", backend)
    assert "starting an embedded Redis" in stdout
    assert "factory ran 1 time(s), 1 distinct value(s)" in stdout
    assert "incr     1" in stdout


@pytest.mark.anyio
async def test_web_lifespan_opens_serves_and_closes(
    server_url: str, asgi_lifespan: Callable[[Any], AbstractAsyncContextManager[RunningApp]]
) -> None:
    from web_lifespan import make_app

    app = make_app(RedisConfig(url=server_url, key_prefix="web:"))
    with anyio.fail_after(10):
        async with asgi_lifespan(app) as running:
            response = await running.request("GET", "/users/7")
            assert (response.status, response.json()) == (200, {"id": "7", "name": "user 7"})
            cache = running.state["cache"]
            assert await cache.get("user:7:profile") is not None
            await cache.delete("user:7:profile")
    assert cache.in_flight == 0
    with pytest.raises(ConnectionError, match="closed"):
        await cache.client.ping()  # the lifespan's shutdown closed the provider


@pytest.mark.anyio
async def test_web_lifespan_handlers_take_a_memory_cache_port_in_tests() -> None:
    from web_lifespan import get_cache, make_app

    app = make_app(RedisConfig(url="redis://127.0.0.1:1"))  # never reached
    memory = MemoryCachePort()
    app.dependency_overrides[get_cache] = lambda: memory
    # No lifespan: the handler needs nothing but the overridden dependency.
    response = await RunningApp(app, {}).request("GET", "/users/7")
    assert (response.status, response.json()) == (200, {"id": "7", "name": "user 7"})
    assert memory.keys() == ["user:7:profile"]
