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

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio
from anyio.abc import TaskGroup

from .._net.settings import ConnectionSettings
from .._net.subscriber import stay_subscribed

__all__ = ["ReadyNotifications", "Watch"]


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
        #: Set by the first outcome — subscribed, or could not be — after
        #: which nobody waits for the subscription again: while it is down,
        #: followers poll instead (an outage never makes a caller sleep).
        self._settled = anyio.Event()
        self._down = False
        self._started = False

    async def subscribed(self, within: float) -> bool:
        """Make sure the subscription is live (starting it on first use).

        Only the first use waits — at most ``within`` seconds, for the first
        attempt's outcome. After that, a subscription that is down (it
        reconnects in the background) returns False at once, and followers
        rely on polling.
        """
        if not self._started:
            self._started = True
            self._task_group.start_soon(self._listen, name="beignet-redis ready notifications")
        if not self._live.is_set() and not self._down:
            with anyio.move_on_after(within):
                await self._settled.wait()
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
        """Stay subscribed for the provider's life (see ``stay_subscribed``)."""
        await stay_subscribed(
            self._resolve,
            [self.channel],
            self._message,
            on_subscribed=self._subscribed,
            on_down=self._lost,
        )

    def _subscribed(self) -> None:
        self._live.set()  # the current event: _lost replaces it
        self._down = False
        self._settled.set()

    def _message(self, channel: str, data: object) -> None:
        if isinstance(data, str):
            self._notify(data)

    def _lost(self) -> None:
        if self._live.is_set():
            self._live = anyio.Event()
        self._down = True
        self._settled.set()
        self._wake_everyone()
