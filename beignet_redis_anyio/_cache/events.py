"""``CacheEvent``: what the port reports about each operation.

One event per operation, to the ``observer`` given to the provider — the hook
a devtools dashboard's Cache watcher plugs into. An event carries the key,
the outcome and the timing, never the value: cached values are often exactly
what must not leak into a dashboard or a log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import attrs

__all__ = ["CacheEvent", "Observer", "notify"]

Operation = Literal[
    "cache.get",
    "cache.set",
    "cache.delete",
    "cache.has",
    "cache.remember",
    # The batches (``batches.py``): one event per key, see ``batch_size``.
    "cache.get_many",
    "cache.set_many",
    "cache.delete_many",
    "cache.remember_many",
    # Not operations of their own: what the machinery behind them did.
    "cache.refresh",  # an early (XFetch) recompute finished: stored / error
    "cache.lock",  # the cross-process lease: lease_lost / wait_expired
    "cache.breaker",  # the circuit breaker: opened / closed
]
Status = Literal[
    "hit",
    "miss",
    "stored",
    "deleted",
    "not_found",
    "error",
    "cancelled",
    "lease_lost",
    "wait_expired",
    "opened",
    "closed",
]

_log = logging.getLogger("beignet_redis_anyio")


@attrs.frozen
class CacheEvent:
    """One cache operation, as an observer sees it.

    ``status`` is ``"hit"``/``"miss"`` for ``get``, ``has`` and ``remember``;
    ``"stored"`` for ``set``; ``"deleted"``/``"not_found"`` for ``delete``;
    ``"error"`` (with ``error`` naming the exception) or ``"cancelled"`` for
    any operation that did not complete — including one the ``bypass``
    failure policy answered without Redis. Besides the operations:
    ``cache.refresh`` (``stored``/``error``) when an early refresh finishes,
    ``cache.lock`` (``lease_lost``, ``wait_expired``) from the cross-process
    lease, ``cache.breaker`` (``opened``/``closed``, key ``""``) when the
    circuit breaker changes state.

    A batch (``get_many``, ``set_many``, ``delete_many``, ``remember_many``)
    reports one event per distinct key, in the order given, each with the
    status that key had and the whole batch's ``duration_seconds``;
    ``batch_size`` is the number of keys in it and ``batch_index`` the key's
    place (0 first), so an observer that wants one sample per batch (a
    duration histogram) takes the events with ``batch_index == 0``. For a
    single-key operation they are 1 and 0.

    ``local`` tells a hit (or a known-missing key) served from the local
    cache from one Redis answered. ``stale`` marks one served while Redis
    could not be reached (``local_cache_stale_if_error``): the entry was in
    doubt, and ``error`` names what kept Redis from answering.
    """

    operation: Operation
    key: str
    status: Status
    ttl_seconds: float | None = None
    duration_seconds: float = 0.0
    error: str | None = None
    batch_size: int = 1
    batch_index: int = 0
    #: True when the local cache answered (``get``, ``has``, ``remember``,
    #: a key of ``get_many``),
    #: without a round trip to Redis.
    local: bool = False
    #: True when that answer was served in doubt, Redis unreachable.
    stale: bool = False


Observer = Callable[[CacheEvent], object]


def notify(observer: Observer, event: CacheEvent) -> None:
    """Deliver ``event``; an observer that raises never breaks the operation."""
    try:
        observer(event)
    except Exception:
        _log.warning("cache observer failed on %s %s", event.operation, event.status, exc_info=True)
