"""The first read of a key, shared by every caller that wants it now.

Single-flight (``single_flight.py``) merges the computations after a miss;
this merges the reads before them, so that a hundred concurrent ``remember``
calls on one key in one process send one GET, not a hundred. The first
caller reads; the others wait for its answer. If it is cancelled or fails,
they read for themselves — one caller's trouble stays with that caller — and
so they do when the reader says its answer is its own alone: with the local
cache, a read that an invalidation of its key overtook may be older than a
write a later caller has seen acknowledged (``LocalCache.finish``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

__all__ = ["SharedReads"]

A = TypeVar("A")


class SharedReads(Generic[A]):
    """The reads in progress, one per key, each made by ``read``."""

    __slots__ = ("_read", "_reads")

    def __init__(self, read: Callable[[A], Awaitable[tuple[str | None, bool]]]) -> None:
        #: ``read(arg)``: the value, and whether the callers that came while
        #: it was read may have it too.
        self._read = read
        self._reads: dict[str, _Read] = {}

    async def read(self, key: str, arg: A) -> str | None:
        """``read(arg)``, once for every caller that asks for ``key`` meanwhile.

        A named method, not ``__call__``: this is on ``remember``'s hit path,
        and a method call is the cheaper of the two.
        """
        shared = self._reads.get(key)
        if shared is not None:
            value, answered = await shared.result()
            if answered:
                return value
        read = self._reads[key] = _Read()
        try:
            value, shareable = await self._read(arg)
            read.value = value
            read.answered = shareable
            return value
        finally:
            if self._reads.get(key) is read:
                del self._reads[key]
            read.finish()


class _Read:
    """One caller's read of a key, awaited by the others that want it too."""

    __slots__ = ("answered", "done", "value", "waiter")

    def __init__(self) -> None:
        self.value: str | None = None
        self.answered = False  # and the answer may be handed on
        self.done = False
        self.waiter: anyio.Event | None = None  # made only if someone waits

    async def result(self) -> tuple[str | None, bool]:
        if not self.done:
            if self.waiter is None:
                self.waiter = anyio.Event()
            await self.waiter.wait()
        return self.value, self.answered

    def finish(self) -> None:
        self.done = True
        if self.waiter is not None:
            self.waiter.set()
