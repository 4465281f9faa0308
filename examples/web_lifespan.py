"""The provider in a web framework's lifespan (Starlette; FastAPI is the same).

The cache opens when the app starts and closes when it stops, and the
request handlers use it from ``request.state``:

    pip install 'beignet-redis-anyio[example]' uvicorn
    REDIS_URL=redis://localhost:6379 uvicorn examples.web_lifespan:app

Starlette runs on anyio, so the same app also serves under trio (for
example with hypercorn's ``--worker-class trio``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from beignet_redis_anyio import RedisCachePort, RedisConfig, open_redis_provider


def make_app(config: RedisConfig | None = None) -> Starlette:
    """``config=None`` reads ``REDIS_*`` from the environment at start-up."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_redis_provider(config) as cache:
            yield {"cache": cache}

    async def profile(request: Request) -> JSONResponse:
        cache: RedisCachePort = request.state.cache
        user_id = request.path_params["user_id"]

        async def load() -> str:
            return json.dumps({"id": user_id, "name": f"user {user_id}"})

        body = await cache.remember(f"user:{user_id}:profile", load, ttl_seconds=300)
        return JSONResponse(json.loads(body))

    return Starlette(routes=[Route("/users/{user_id}", profile)], lifespan=lifespan)


app = make_app()
