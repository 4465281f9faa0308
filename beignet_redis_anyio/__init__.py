"""A Redis cache provider for asyncio and trio applications.

    async with open_redis_provider() as cache:     # REDIS_URL, REDIS_DB, …
        profile = await cache.remember("user:1:profile", load_profile, ttl_seconds=300)

Layers, bottom up: the wire (RESP via hiredis) → one multiplexed connection
→ :class:`RedisClient` (redis-py's command vocabulary) → the cache port
(:class:`RedisCachePort`) → the provider (:func:`open_redis_provider`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._breaker import CircuitOpenError
from ._client import RedisClient, open_redis_client
from ._config import ConfigError, RedisConfig
from ._events import CacheEvent, Observer
from ._pipeline import Pipeline
from ._port import CachePort, RedisCachePort
from ._provider import RedisProvider, open_redis_provider, redis_provider
from ._settings import ConnectionSettings, TLSOptions
from ._transport import ConnectTimeoutError

__all__ = [
    "CacheEvent",
    "CachePort",
    "CircuitOpenError",
    "ConfigError",
    "ConnectTimeoutError",
    "ConnectionSettings",
    "Observer",
    "Pipeline",
    "RedisCachePort",
    "RedisClient",
    "RedisConfig",
    "RedisProvider",
    "TLSOptions",
    "__version__",
    "open_redis_client",
    "open_redis_provider",
    "redis_provider",
]
