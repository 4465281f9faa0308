"""``open_redis_provider()``: the cache port's whole life in one ``async with``.

Entering connects and verifies the server (``PING``) — so a wrong host or
password fails at start-up, not on the first request — and yields the port.
Leaving closes every connection and cancels any background work, whether the
block ended normally, by an exception or by cancellation; the close is
shielded and bounded, so leaving can never hang.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
from redis.exceptions import AuthenticationError

from ._cache.breaker import UNAVAILABLE
from ._cache.config import RedisConfig
from ._cache.events import Observer
from ._cache.local import LocalCache
from ._cache.port import RedisCachePort
from ._cache.views.slot import CacheSlot
from ._client.client import RedisClient
from ._client.reply_cache import ReplyCache
from ._net.task_group import background_task_group
from ._topology.urls import ClusterSettings

__all__ = ["RedisProvider", "open_redis_provider", "redis_provider"]

_log = logging.getLogger("beignet_redis_anyio")


@asynccontextmanager
async def open_redis_provider(
    config: RedisConfig | None = None,
    *,
    observer: Observer | None = None,
    bind: CacheSlot | None = None,
) -> AsyncIterator[RedisCachePort]:
    """Connect to Redis and yield the cache port; close everything on exit.

    ``config=None`` reads ``REDIS_*`` from the environment
    (:meth:`RedisConfig.from_env`), raising ``ConfigError`` before any I/O
    when something is missing or malformed. An unreachable server raises
    ``redis.exceptions.ConnectionError`` and bad credentials
    ``AuthenticationError``, within ``connect_timeout``. ``observer`` receives
    one :class:`CacheEvent` per cache operation. ``bind`` is a
    :class:`CacheSlot` the port is bound to while the block runs, and
    unbound from when it ends (``RuntimeError`` at once if the slot is
    already bound), so decorators and namespaces declared on the slot at
    import time use this port.

    Cancellation: leaving the block — normally, by an exception or by
    cancellation — ends every ``remember`` computation and background task,
    then closes every connection, in a shielded scope bounded by a timeout,
    so the exit can never hang. An exception from the block comes out as
    itself, not wrapped in an exception group.
    """
    if config is None:
        config = RedisConfig.from_env()
    settings = config.connection_settings()
    local = None
    if config.local_cache:
        local = LocalCache(
            max_entries=config.local_cache_max_entries,
            max_bytes=config.local_cache_max_bytes,
            ttl=config.local_cache_ttl,
            cluster=isinstance(settings, ClusterSettings),
            stale_if_error=config.local_cache_stale_if_error,
        )
    async with background_task_group() as task_group:
        # With a local cache, the shared connection tracks what it reads: its
        # handshake says CLIENT TRACKING ON, so a server that cannot track
        # fails the PING below with TrackingUnsupportedError (a ResponseError:
        # never bypassed, since it is no outage).
        # cache.client's read-only commands come from memory too, under the
        # same rule, bounded by the same knobs (its replies and the port's
        # entries are kept apart: each within the bounds).
        replies = None
        if config.local_cache:
            replies = ReplyCache(
                max_entries=config.local_cache_max_entries,
                max_bytes=config.local_cache_max_bytes,
                ttl=config.local_cache_ttl,
                cluster=isinstance(settings, ClusterSettings),
            )
        client = RedisClient(
            settings,
            task_group=task_group,
            decode_responses=True,
            legacy_responses=config.legacy_responses,
            tracker=local,
            reply_cache=replies,
        )
        port: RedisCachePort | None = None
        try:
            try:
                await client.ping()
            except UNAVAILABLE as exc:
                # With the bypass policy the app starts even while Redis is
                # down — that is the point of failing open. Wrong credentials
                # are a mistake, not an outage: they always fail.
                if config.failure_policy != "bypass" or isinstance(exc, AuthenticationError):
                    raise
                _log.warning("Redis is unavailable at start-up; bypassing it: %s", exc)
            port = RedisCachePort(client, task_group, config, observer=observer, local=local)
            if bind is None:
                yield port
            else:
                with bind.bound(port):
                    yield port
        finally:
            if port is not None:
                await port.aclose()  # while the connection is still open
            await client.aclose()


@attrs.frozen
class RedisProvider:
    """A provider a bootstrap can list beside others.

    It names the port it installs (``port_name``, ``"cache"``) and opens it::

        async with AsyncExitStack() as stack:
            ports = {}
            for provider in (redis_provider, …):
                ports[provider.port_name] = await stack.enter_async_context(provider.open())

    ``config=None`` reads the environment when opened, not when made.
    """

    name: str = "redis"
    port_name: str = "cache"
    config: RedisConfig | None = None
    observer: Observer | None = None
    #: A :class:`CacheSlot` to bind the port to while it is open.
    bind: CacheSlot | None = None

    def open(self) -> AbstractAsyncContextManager[RedisCachePort]:
        return open_redis_provider(self.config, observer=self.observer, bind=self.bind)

    def with_options(
        self,
        *,
        config: RedisConfig | None = None,
        observer: Observer | None = None,
        bind: CacheSlot | None = None,
    ) -> RedisProvider:
        """A copy with another config, observer or slot (``redis_provider`` is shared)."""
        return attrs.evolve(
            self,
            config=config if config is not None else self.config,
            observer=observer if observer is not None else self.observer,
            bind=bind if bind is not None else self.bind,
        )


#: The provider as the Beignet family names it: ``providers=[redis_provider]``.
redis_provider = RedisProvider()
