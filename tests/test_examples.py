"""The examples run, as a new user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from beignet_redis_anyio import RedisConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_app_runs_on_an_embedded_redis(backend: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "app.py"), "--backend", backend],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    assert "starting an embedded Redis" in result.stdout
    assert "factory ran 1 time(s), 1 distinct value(s)" in result.stdout
    assert "incr     1" in result.stdout


@pytest.mark.anyio
async def test_web_lifespan_opens_serves_and_closes(server_url: str) -> None:
    from web_lifespan import make_app

    app = make_app(RedisConfig(url=server_url, key_prefix="web:"))
    state: dict[str, Any] = {}
    lifespan_in: list[dict[str, Any]] = [
        {"type": "lifespan.startup"},
        {"type": "lifespan.shutdown"},
    ]
    lifespan_out: list[dict[str, Any]] = []
    startup_done, shutdown_go = anyio.Event(), anyio.Event()

    async def lifespan_receive() -> dict[str, Any]:
        if len(lifespan_out) == 1:
            await shutdown_go.wait()
        return lifespan_in.pop(0)

    async def lifespan_send(message: dict[str, Any]) -> None:
        lifespan_out.append(message)
        if message["type"] == "lifespan.startup.complete":
            startup_done.set()

    async def request(path: str) -> tuple[int, Any]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": [],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": dict(state),
        }  # fmt: skip
        await app(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
            tasks.start_soon(app, scope, lifespan_receive, lifespan_send)
            await startup_done.wait()
            assert await request("/users/7") == (200, {"id": "7", "name": "user 7"})
            cache = state["cache"]
            assert await cache.get("user:7:profile") is not None
            await cache.delete("user:7:profile")
            shutdown_go.set()
    assert [m["type"] for m in lifespan_out] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
