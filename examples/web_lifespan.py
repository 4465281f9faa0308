"""The provider in a web framework's lifespan, handed to handlers with ``Depends``.

The cache opens when the app starts and closes when it stops. Handlers ask
for it with a FastAPI dependency, typed against the ``CachePort`` protocol,
so a test can swap in ``MemoryCachePort`` with one line
(``app.dependency_overrides[get_cache] = ...``):

    pip install 'beignet-redis-anyio[example]' uvicorn
    REDIS_URL=redis://localhost:6379 uvicorn examples.web_lifespan:app

FastAPI (like Starlette under it) runs on anyio, so the same app also serves
under trio (for example with hypercorn's ``--worker-class trio``).
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from beignet_redis_anyio import CachePort, RedisConfig, open_redis_provider


def get_cache(request: Request) -> CachePort:
    """The app's cache port: what the lifespan opened (its state reaches
    each request as ``request.state``). Override it in tests."""
    cache: CachePort = request.state.cache
    return cache


Cache = Annotated[CachePort, Depends(get_cache)]


def make_app(config: RedisConfig | None = None) -> FastAPI:
    """``config=None`` reads ``REDIS_*`` from the environment at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_redis_provider(config) as cache:
            yield {"cache": cache}

    app = FastAPI(lifespan=lifespan)

    @app.get("/users/{user_id}")
    async def profile(user_id: str, cache: Cache) -> Any:
        async def load() -> str:
            return json.dumps({"id": user_id, "name": f"user {user_id}"})

        body = await cache.remember(f"user:{user_id}:profile", load, ttl_seconds=300)
        return json.loads(body)

    return app


app = make_app()
