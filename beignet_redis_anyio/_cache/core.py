"""``PortCore``: the plumbing the port's operations and its batches share.

One command through the circuit breaker (``guarded``), TTL jitter, the
failure policy, the reporter, the single-flight table of ``remember``'s
runs, and the local cache. ``RedisCachePort`` makes one and hands it to
``Batches``, so the batch operations use exactly the port's plumbing while
neither module imports the other.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.lowlevel
from anyio.abc import TaskGroup

from .._client.client import RedisClient
from .._exceptions import CircuitOpenError
from .breaker import UNAVAILABLE, CircuitBreaker
from .config import RedisConfig
from .events import Observer
from .local import LocalCache
from .remember.single_flight import SingleFlight
from .reporting import Reporter

__all__ = ["PortCore"]


class PortCore:
    """What every operation of one port shares; made by the port."""

    __slots__ = (
        "breaker",
        "bypass",
        "client",
        "config",
        "execute",
        "flights",
        "key_prefix",
        "local",
        "observer",
        "report",
    )

    def __init__(
        self,
        client: RedisClient,
        task_group: TaskGroup,
        config: RedisConfig,
        observer: Observer | None,
        local: LocalCache | None,
    ) -> None:
        self.client = client
        self.config = config
        self.key_prefix = config.key_prefix
        self.observer = observer
        #: The local cache (``local_cache=True``): the tracker of ``client``'s
        #: shared connection, made with it by the provider.
        self.local = local
        #: One ``remember`` run per key (the batches join the same runs).
        self.flights: SingleFlight[str] = SingleFlight(task_group)
        self.execute = client.execute_command
        self.bypass = config.failure_policy == "bypass"
        self.report = Reporter(
            observer, bypass=self.bypass, breaker_cooldown=config.breaker_cooldown_seconds
        )
        self.breaker = CircuitBreaker(
            threshold=config.breaker_threshold,
            cooldown=config.breaker_cooldown_seconds,
            on_change=self.report.breaker_changed,
            last_heard=lambda: client.last_heard,
        )

    async def guarded(self, send: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``await send(*args)`` through the circuit breaker: anything that
        talks to Redis. The operations pass the client's ``execute_command``
        and their arguments, so the hot path has no extra layer."""
        try:
            self.breaker.check()
        except CircuitOpenError:
            await anyio.lowlevel.checkpoint()  # failing fast still lets others run
            raise
        try:
            result = await send(*args)
        except UNAVAILABLE as exc:
            self.breaker.failed(exc)
            raise
        except BaseException as exc:
            self.breaker.settle(exc)
            raise
        self.breaker.succeeded()
        return result

    def jittered(self, ttl_ms: int | None) -> int | None:
        """``ttl_ms`` spread by ``ttl_jitter`` (never below 1 ms)."""
        jitter = self.config.ttl_jitter
        if ttl_ms is None or not jitter:
            return ttl_ms
        return max(1, round(ttl_ms * random.uniform(1 - jitter, 1 + jitter)))
