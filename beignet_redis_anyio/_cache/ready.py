"""Followers hear when a value is ready instead of polling for it.

One subscriber connection per provider, on one channel per database
(``beignet:ready:<db>``), opened the first time a follower needs it and kept
for the provider's life in its task group. A leader that stores a value (or
gives up) publishes the key; every process waiting for that key wakes and
reads it. Followers still poll now and then (bounded, jittered) in case a
message is lost with a connection — the notification is for speed; nothing
depends on it for correctness.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio
from anyio.abc import TaskGroup
from redis.exceptions import ConnectionError

from .._net.settings import ConnectionSettings
from .._net.transport import open_connection
from .._net.wire import encode_command

__all__ = ["ReadyNotifications", "Watch"]

_RETRY_MIN, _RETRY_MAX = 0.1, 2.0


class Watch:
    """One follower's view of the notifications for one key."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = anyio.Event()

    async def wait(self, within: float) -> bool:
        """True when notified within ``within`` seconds; re-arms either way."""
        with anyio.move_on_after(within):
            await self.event.wait()
        notified = self.event.is_set()
        if notified:
            self.event = anyio.Event()
        return notified


class ReadyNotifications:
    def __init__(
        self,
        resolve: Callable[[], Awaitable[ConnectionSettings]],
        db: int,
        task_group: TaskGroup,
    ) -> None:
        self._resolve = resolve
        self._task_group = task_group
        self.channel = f"beignet:ready:{db}"
        self._watches: dict[str, set[Watch]] = {}
        self._live = anyio.Event()
        self._started = False

    async def subscribed(self, within: float) -> bool:
        """Make sure the subscription is live (starting it on first use).

        Returns False if it is not live within ``within`` seconds; followers
        then rely on polling.
        """
        if not self._started:
            self._started = True
            self._task_group.start_soon(self._listen, name="beignet-redis ready notifications")
        if not self._live.is_set():
            with anyio.move_on_after(within):
                await self._live.wait()
        return self._live.is_set()

    @contextmanager
    def watch(self, key: str) -> Iterator[Watch]:
        """Be told about ``key`` while inside the block."""
        watch = Watch()
        self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[key]

    def _notify(self, key: str) -> None:
        for watch in self._watches.get(key, ()):
            watch.event.set()

    def _wake_everyone(self) -> None:
        # The subscription dropped: a message may have been lost. Waking
        # every follower makes each look for itself now.
        for watches in self._watches.values():
            for watch in watches:
                watch.event.set()

    async def _listen(self) -> None:
        """Stay subscribed for the provider's life, reconnecting with backoff."""
        delay = _RETRY_MIN
        while True:
            try:
                connection = await open_connection(await self._resolve(), decode=True)
            except (ConnectionError, OSError):
                await anyio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(_RETRY_MAX, delay * 2)
                continue
            try:
                await connection.transport.send(encode_command(("SUBSCRIBE", self.channel)))
                while True:
                    reply = await connection.read_reply()
                    if not isinstance(reply, list) or len(reply) < 3:
                        continue
                    if reply[0] == "subscribe":
                        self._live.set()
                        delay = _RETRY_MIN
                    elif reply[0] == "message" and isinstance(reply[2], str):
                        self._notify(reply[2])
            except (ConnectionError, OSError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass
            finally:
                if self._live.is_set():
                    self._live = anyio.Event()
                self._wake_everyone()
                with anyio.CancelScope(shield=True):
                    await connection.aclose()
            await anyio.sleep(delay * random.uniform(0.5, 1.0))
