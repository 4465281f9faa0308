"""The frames a subscriber has received and not yet taken: a bounded queue
that a cancelled reader can never tear.

The connection's reader task puts frames in; ``get_message`` takes them out.
Taking is a plain ``popleft`` with no await between looking and taking, so
a caller cancelled while it waits has taken nothing, and the next caller
gets the very frame it would have had. When the queue is full the reader
task waits for room, and so stops reading: the kernel's socket buffers fill
and then the server holds the rest, up to its ``client-output-buffer-limit
pubsub`` (by default it closes a subscriber that stays 8 MB behind for a
minute, or 32 MB behind at all) — we never grow without bound.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio

__all__ = ["DEFAULT_MAX_BUFFERED", "Inbox", "Lost"]

#: How many frames a subscriber may hold unread before its reader pauses.
DEFAULT_MAX_BUFFERED = 10_000


class Lost:
    """A marker in the queue: the connection was lost here, so messages
    published from now until the re-subscribe confirmations are gone."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class Inbox:
    """A FIFO of frames, at most ``limit`` of them (markers aside)."""

    __slots__ = ("_arrived", "_frames", "_limit", "_room")

    def __init__(self, limit: int = DEFAULT_MAX_BUFFERED) -> None:
        if limit < 1:
            raise ValueError("max_buffered must be at least 1")
        self._frames: deque[Any] = deque()
        self._limit = limit
        self._arrived = anyio.Event()
        self._room = anyio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    async def put(self, frame: Any) -> None:
        """Add a frame, first waiting for room if the queue is full."""
        while len(self._frames) >= self._limit:
            if self._room.is_set():
                self._room = anyio.Event()
            await self._room.wait()
        self.put_now(frame)

    def put_now(self, frame: Any) -> None:
        """Add a frame (or a :class:`Lost` marker) whatever the limit."""
        self._frames.append(frame)
        self._arrived.set()

    def take_now(self) -> tuple[bool, Any]:
        """``(True, frame)`` for the oldest frame, ``(False, None)`` if none."""
        if not self._frames:
            return False, None
        frame = self._frames.popleft()
        if len(self._frames) < self._limit:
            self._room.set()
        return True, frame

    async def take(self, within: float | None) -> tuple[bool, Any]:
        """The oldest frame, waiting up to ``within`` seconds (``None``:
        for ever) for one to arrive. Cancellation takes nothing."""
        found = self.take_now()
        if found[0] or (within is not None and within <= 0):
            return found
        with anyio.move_on_after(within):
            while not self._frames:
                if self._arrived.is_set():
                    self._arrived = anyio.Event()
                await self._arrived.wait()
        return self.take_now()

    def clear(self) -> None:
        self._frames.clear()
        self._room.set()
