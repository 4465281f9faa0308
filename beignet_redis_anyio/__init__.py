"""A Redis cache provider for asyncio and trio applications.

    async with open_redis_provider() as cache:     # REDIS_URL, REDIS_DB, …
        profile = await cache.remember("user:1:profile", load_profile, ttl_seconds=300)

Layers, bottom up: the wire (RESP via hiredis) → one multiplexed connection
→ :class:`RedisClient` (redis-py's command vocabulary) → the cache port
(:class:`RedisCachePort`) → the provider (:func:`open_redis_provider`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._cache.config import RedisConfig
from ._cache.events import CacheEvent, Observer
from ._cache.port import RedisCachePort
from ._cache.protocol import CachePort
from ._cache.views.codecs import Codec, JsonValue
from ._cache.views.decorator import CachedFunction
from ._cache.views.namespace import CacheConveniences, Namespace
from ._cache.views.slot import CacheSlot
from ._cache.views.typed import TypedCache
from ._client.client import RedisClient, open_redis_client
from ._client.local_stats import LocalStats
from ._client.lock import Lock
from ._client.monitor import Monitor
from ._client.pipeline import Pipeline
from ._client.pubsub import PubSub
from ._exceptions import (
    BatchError,
    BatchUnavailableError,
    CacheDecodeError,
    CircuitOpenError,
    ConfigError,
    ConnectTimeoutError,
    ServerNotFound,
    TrackingUnsupportedError,
)
from ._net.settings import ConnectionSettings, TLSOptions
from ._provider import RedisProvider, open_redis_provider, redis_provider

__all__ = [
    "BatchError",
    "BatchUnavailableError",
    "CacheConveniences",
    "CacheDecodeError",
    "CacheEvent",
    "CachePort",
    "CacheSlot",
    "CachedFunction",
    "CircuitOpenError",
    "Codec",
    "ConfigError",
    "ConnectTimeoutError",
    "ConnectionSettings",
    "JsonValue",
    "LocalStats",
    "Lock",
    "Monitor",
    "Namespace",
    "Observer",
    "Pipeline",
    "PubSub",
    "RedisCachePort",
    "RedisClient",
    "RedisConfig",
    "RedisProvider",
    "ServerNotFound",
    "TLSOptions",
    "TrackingUnsupportedError",
    "TypedCache",
    "__version__",
    "open_redis_client",
    "open_redis_provider",
    "redis_provider",
]
