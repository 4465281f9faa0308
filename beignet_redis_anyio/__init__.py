"""A Redis cache provider for asyncio and trio applications.

Layers, bottom up: the wire (RESP via hiredis) → one multiplexed connection
→ :class:`RedisClient` (redis-py's command vocabulary) → the cache port →
the provider.
"""

from __future__ import annotations

from ._client import RedisClient, open_redis_client
from ._pipeline import Pipeline
from ._settings import ConnectionSettings, TLSOptions
from ._transport import ConnectTimeoutError

__all__ = [
    "ConnectTimeoutError",
    "ConnectionSettings",
    "Pipeline",
    "RedisClient",
    "TLSOptions",
    "open_redis_client",
]
