"""The examples run, as a new user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.exceptions import ConnectionError

from beignet_redis_anyio import RedisConfig
from beignet_redis_anyio.testing import MemoryCachePort
from beignet_redis_anyio.testing.asgi import RunningApp, run_asgi_lifespan

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
    server_url: str,
    asgi_lifespan: Callable[[Any], AbstractAsyncContextManager[RunningApp]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import web_lifespan
    from web_lifespan import cache, make_app

    monkeypatch.setattr(web_lifespan, "USERS", {"7": {"id": "7", "name": "user 7"}})

    app = make_app(RedisConfig(url=server_url, key_prefix=f"web:{uuid.uuid4().hex}:"))
    with anyio.fail_after(10):
        async with asgi_lifespan(app) as running:
            response = await running.request("GET", "/users/7")
            assert (response.status, response.json()) == (200, {"id": "7", "name": "user 7"})
            port = running.state["cache"]
            assert cache.port is port  # the lifespan bound the slot
            assert await port.json.get("user:7:profile") == {"id": "7", "name": "user 7"}
            renamed = await running.request("PUT", "/users/7", json={"name": "Ada"})
            assert renamed.json() == {"id": "7", "name": "Ada"}
            assert (await running.request("GET", "/users/7")).json()["name"] == "Ada"
            listed = await running.request("GET", "/products", params={"ids": "1,2,999"})
            assert [p["id"] for p in listed.json()] == ["1", "2"]
            assert await port.json.get("product:999") is None and await port.has("product:999")
    assert not cache.is_bound  # and unbound it on shutdown
    assert port.in_flight == 0
    with pytest.raises(ConnectionError, match="closed"):
        await port.client.ping()  # the lifespan's shutdown closed the provider


@pytest.mark.anyio
async def test_web_lifespan_handlers_take_a_memory_cache_port_in_tests() -> None:
    from web_lifespan import cache, make_app

    app = make_app(RedisConfig(url="redis://127.0.0.1:1"))  # never reached
    memory = MemoryCachePort()
    # No lifespan: the handlers need nothing but a port bound to the slot.
    with cache.bound(memory):
        response = await RunningApp(app, {}).request("GET", "/users/7")
        listed = await RunningApp(app, {}).request("GET", "/products", params={"ids": "3,4"})
    assert (response.status, response.json()) == (200, {"id": "7", "name": "user 7"})
    assert [p["id"] for p in listed.json()] == ["3", "4"]
    assert sorted(memory.keys()) == ["product:3", "product:4", "user:7:profile"]


@pytest.mark.anyio
async def test_web_lifespan_answers_an_outage_with_503s(own_server: Any) -> None:
    from web_lifespan import cache, make_app

    app = make_app(RedisConfig(url=own_server.url, key_prefix="web:", connect_timeout=1))
    with anyio.fail_after(20):
        async with run_asgi_lifespan(app) as running:
            assert (await running.request("GET", "/users/7")).status == 200
            own_server.stop()
            for path, params in (("/users/8", None), ("/products", {"ids": "1,2"})):
                response = await running.request("GET", path, params=params)
                assert response.status == 503, (path, response.body)
                assert (b"retry-after", b"1") in response.headers
                assert b"127.0.0.1" not in response.body  # no host, no message
    assert not cache.is_bound
