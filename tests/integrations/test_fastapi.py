"""beignet_redis_anyio.fastapi: every Redis outage a 503 with Retry-After."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError, TimeoutError

from beignet_redis_anyio import BatchUnavailableError, CircuitOpenError, ConnectTimeoutError
from beignet_redis_anyio.fastapi import add_cache_unavailable_handler
from beignet_redis_anyio.testing.asgi import RunningApp

pytestmark = pytest.mark.anyio

RAISED = {
    "connection": ConnectionError("10.0.0.5:6379 is unavailable (password=hunter2)"),
    "timeout": TimeoutError("Timeout reading from 10.0.0.5:6379"),
    "circuit": CircuitOpenError("the breaker is open"),
    "connect": ConnectTimeoutError("connect timed out"),
    "batch": BatchUnavailableError("remember_many", {"a": "1"}, {"b": ConnectionError("gone")}),
}


def _app(retry_after: int = 1) -> FastAPI:
    app = FastAPI()
    add_cache_unavailable_handler(app, retry_after_seconds=retry_after)

    @app.get("/{kind}")
    async def fail(kind: str) -> None:
        if kind == "other":
            raise LookupError("not an outage")
        raise RAISED[kind]

    return app


@pytest.mark.parametrize("kind", sorted(RAISED))
async def test_each_outage_is_a_503_that_says_nothing_of_the_server(kind: str) -> None:
    response = await RunningApp(_app(retry_after=5), {}).request("GET", f"/{kind}")
    assert response.status == 503
    assert (b"retry-after", b"5") in response.headers
    assert response.json() == {"detail": "the cache is unavailable, retry shortly"}
    assert b"10.0.0.5" not in response.body and b"hunter2" not in response.body


async def test_other_errors_are_left_to_the_app() -> None:
    with pytest.raises(LookupError):
        await RunningApp(_app(), {}).request("GET", "/other")


def test_retry_after_must_be_whole_seconds() -> None:
    with pytest.raises(TypeError):
        add_cache_unavailable_handler(FastAPI(), retry_after_seconds=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        add_cache_unavailable_handler(FastAPI(), retry_after_seconds=True)
    with pytest.raises(ValueError):
        add_cache_unavailable_handler(FastAPI(), retry_after_seconds=-1)
