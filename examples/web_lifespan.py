"""A FastAPI service: cached functions declared at import time, a batch
endpoint, and Redis outages answered with 503s.

The cache is a ``CacheSlot``: the decorators go on the functions where they
are defined, and the app's lifespan binds the provider's port to the slot
while the app runs. A test binds a ``MemoryCachePort`` instead
(``with cache.bound(MemoryCachePort()):``) and needs no Redis:

    pip install 'beignet-redis-anyio[example]' uvicorn
    REDIS_URL=redis://localhost:6379 uvicorn examples.web_lifespan:app

FastAPI (like Starlette under it) runs on anyio, so the same app also serves
under trio (for example with hypercorn's ``--worker-class trio``).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from beignet_redis_anyio import CacheSlot, RedisConfig, open_redis_provider
from beignet_redis_anyio.fastapi import add_cache_unavailable_handler

cache = CacheSlot()

#: Stands in for your database.
PRODUCTS = {str(n): {"id": str(n), "name": f"product {n}", "price": n * 1.5} for n in range(1, 200)}
USERS = {"7": {"id": "7", "name": "user 7"}}


@cache.cached(key="user:{user_id}:profile", ttl_seconds=300)
async def load_profile(user_id: str) -> dict[str, Any] | None:
    return USERS.get(user_id)  # None is cached too: a missing user is one query


async def load_products(missing: list[str]) -> dict[str, Any]:
    """One query for every product the cache did not hold."""
    return {key: PRODUCTS.get(key.removeprefix("product:")) for key in missing}


def make_app(config: RedisConfig | None = None) -> FastAPI:
    """``config=None`` reads ``REDIS_*`` from the environment at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_redis_provider(config, bind=cache) as port:
            yield {"cache": port}

    app = FastAPI(lifespan=lifespan)
    add_cache_unavailable_handler(app)  # Redis unreachable: 503 + Retry-After

    @app.get("/users/{user_id}")
    async def profile(user_id: str) -> Any:
        return await load_profile(user_id)

    @app.put("/users/{user_id}")
    async def rename(user_id: str, change: dict[str, str]) -> Any:
        USERS[user_id] = {**USERS.get(user_id, {"id": user_id}), **change}
        await load_profile.invalidate(user_id)
        return USERS[user_id]

    @app.get("/products")
    async def page(ids: str) -> Any:
        keys = [f"product:{id}" for id in ids.split(",")]
        found = await cache.json.remember_many(keys, load_products, ttl_seconds=60)
        return [value for value in found.values() if value is not None]

    return app


app = make_app()
