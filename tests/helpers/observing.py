"""An observer for tests: keeps every event, and says when a refresh ended."""

from __future__ import annotations

import anyio

from beignet_redis_anyio import CacheEvent


class Observed:
    """Pass as ``observer=``; ``events`` holds what arrived, ``refreshed``
    is set once an early refresh has ended (``cache.refresh``)."""

    def __init__(self) -> None:
        self.events: list[CacheEvent] = []
        self.refreshed = anyio.Event()

    def __call__(self, event: CacheEvent) -> None:
        self.events.append(event)
        if event.operation == "cache.refresh":
            self.refreshed.set()
