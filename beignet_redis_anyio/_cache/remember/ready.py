"""Followers hear when a value is ready — and only the followers of that key.

Each key has a channel of its own, ``sidecar_key(key, "ready")``: it carries
the key's hash tag, so it lives in the key's slot. A process subscribes to it
only while one of its followers waits for that key (reference-counted per
key) and unsubscribes when the last one stops, so a leader's notification
reaches exactly the processes that wait for it; a fleet of N providers costs
the server the same per computed key as one.

Sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``, Redis/Valkey 7+, fakeredis)
keeps the traffic on the shard that owns the key: on a cluster the
subscription goes to the slot's primary and the publish is not broadcast over
the cluster bus. The fallback, for servers without it (Redis 6): the first
error reply to an ``SSUBSCRIBE`` switches this provider to classic
``SUBSCRIBE`` on the same per-key channels, and the scripts (``scripts.py``)
fall back to ``PUBLISH`` when ``SPUBLISH`` fails — both sides decide by the
same fact, what the server knows.

The leader publishes ``"v" + value`` when it stores the value (so a follower
needs no ``GET`` after it) and ``"r"`` when it gives the lease up without one
(the followers look again; one takes over).

Order matters: a message published before our subscription is active is
missed. So :meth:`ReadyNotifications.watch` subscribes and *awaits the
server's confirmation* before it hands the watch over, and the follower reads
the value after that. A confirmation that does not come within the wait (a
slow or refused connection) only means the follower relies on its bounded,
jittered poll: a lost message — a dropped connection, a reconnect's gap (the
``ConnectionError`` the pub/sub reports once), a confirmation mistaken for a
later one's — slows a follower down; it never makes one hang.

All of it runs on one :class:`~.._client.pubsub.PubSub` per provider, created
— and its connection opened in the background — on the first use of the
lease, and read by one task in the provider's task group from the first
subscribe on. (On a cluster, the connection to each primary opens with the
first subscribe to one of its slots.)

When the client-side cache (``CLIENT TRACKING``) lands, a follower that has
just read the key can wait for the key's tracking invalidation instead: the
same signal, per key and free. It plugs in at :meth:`ReadyNotifications.watch`
(a watch woken by the invalidation of its key).

Cancellation: a cancelled ``watch`` entry leaves the reference count as it
was; the unsubscribe on the way out is shielded and bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup
from redis.exceptions import ConnectionError, ResponseError

from ..._client.pubsub import PubSub
from ..._net.transport import CLOSE_TIMEOUT
from .keys import sidecar_key

__all__ = ["ReadyNotifications", "Watch", "ready_channel"]

_STORED, _RELEASED = "v", "r"


def ready_channel(full_key: str) -> str:
    """The channel a key's notifications go to (in the key's slot)."""
    return sidecar_key(full_key, "ready")


class Watch:
    """One follower's view of the notifications for one key."""

    __slots__ = ("_event", "_value", "waiting")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._value: str | None = None
        #: Inside :meth:`wait` now (it has read the key and found nothing).
        self.waiting = False

    def tell(self, value: str | None) -> None:
        self._value = value
        self._event.set()

    async def wait(self, within: float) -> str | None:
        """The value, if a message carrying it came within ``within``
        seconds; ``None`` when told to look again, or on timeout. Re-arms."""
        self.waiting = True
        try:
            with anyio.move_on_after(within):
                await self._event.wait()
        finally:
            self.waiting = False
        value, self._value = self._value, None
        if self._event.is_set():
            self._event = anyio.Event()
        return value


class _Channel:
    """The watches of one key, and whether the server has confirmed the
    subscription that serves them."""

    __slots__ = ("confirmed", "sent", "sharded", "watches")

    def __init__(self, sharded: bool) -> None:
        self.watches: set[Watch] = set()
        self.confirmed = anyio.Event()
        self.sharded = sharded
        self.sent = False


class ReadyNotifications:
    def __init__(self, open_pubsub: Callable[[], PubSub], task_group: TaskGroup) -> None:
        self._open_pubsub = open_pubsub
        self._task_group = task_group
        self._pubsub: PubSub | None = None
        self._reading = False
        self._sharded = True
        self._channels: dict[str, _Channel] = {}
        #: Confirmations still to come for subscriptions given up before
        #: theirs arrived: the next one for that channel is not the new one's.
        self._stale: dict[str, int] = {}
        #: Messages (not confirmations) this provider's subscriber has got.
        self.messages_received = 0

    def warm(self) -> None:
        """Open the subscriber's connection now, in the background, unless
        it is open already: called on every use of the lease, so that the
        first follower here does not wait for a connection (and its
        ``CLIENT SETNAME``) before its ``SSUBSCRIBE``. An idle subscriber
        costs the server nothing per computed key. A connection that cannot
        be opened is left to the first subscribe, which tries again."""
        if self._pubsub is None:
            self._pubsub = self._open_pubsub()
            self._task_group.start_soon(
                self._connect, self._pubsub, name="beignet-redis ready connection"
            )

    @staticmethod
    async def _connect(pubsub: PubSub) -> None:
        try:
            await pubsub.connect()
        except (ConnectionError, OSError, TimeoutError):
            pass

    def waiting(self, full_key: str) -> bool:
        """True while a follower here waits to be told about ``full_key``
        (subscribed, and the key read after that)."""
        entry = self._channels.get(ready_channel(full_key))
        return entry is not None and any(watch.waiting for watch in entry.watches)

    @asynccontextmanager
    async def watch(self, full_key: str, within: float) -> AsyncIterator[Watch]:
        """Be told about ``full_key`` while inside the block.

        Subscribes (unless another follower here already is) and waits up to
        ``within`` seconds for the server to confirm it; read the value only
        after this returns.
        """
        channel = ready_channel(full_key)
        entry = self._channels.get(channel)
        if entry is None:
            entry = self._channels[channel] = _Channel(self._sharded)
        watch = Watch()
        entry.watches.add(watch)
        try:
            with anyio.move_on_after(within):
                if not entry.sent:
                    entry.sent = True
                    await self._subscribe(channel, entry)
                await entry.confirmed.wait()
            yield watch
        finally:
            entry.watches.discard(watch)
            if not entry.watches and self._channels.get(channel) is entry:
                del self._channels[channel]
                await self._unsubscribe(channel, entry)

    async def _subscribe(self, channel: str, entry: _Channel) -> None:
        if self._pubsub is None:
            self._pubsub = self._open_pubsub()
        try:
            if entry.sharded:
                await self._pubsub.ssubscribe(channel)
            else:
                await self._pubsub.subscribe(channel)
        except (ConnectionError, OSError, TimeoutError):
            entry.confirmed.set()  # cannot subscribe now: poll
            return
        if not self._reading:
            self._reading = True
            self._task_group.start_soon(self._read, name="beignet-redis ready notifications")

    async def _unsubscribe(self, channel: str, entry: _Channel) -> None:
        pubsub = self._pubsub
        if pubsub is None or not entry.sent:
            return
        subscribed = pubsub.shard_channels if entry.sharded else pubsub.channels
        if channel not in subscribed:
            return  # never got as far as the server (or a close forgot it)
        if not entry.confirmed.is_set():
            self._stale[channel] = self._stale.get(channel, 0) + 1
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            try:
                if entry.sharded:
                    await pubsub.sunsubscribe(channel)
                else:
                    await pubsub.unsubscribe(channel)
            except (ConnectionError, OSError):
                pass  # the connection is gone, and the subscription with it

    # -- the reader task ------------------------------------------------------

    async def _read(self) -> None:
        """Hand every frame of the provider's subscriber to its key's
        followers, for the provider's life (ends when its group is
        cancelled, or when the client closes the pub/sub)."""
        pubsub = self._pubsub
        assert pubsub is not None
        try:
            while True:
                try:
                    message = await pubsub.get_message(timeout=None)
                except ConnectionError:
                    self._lost()
                    continue
                except ResponseError:
                    self._refused()
                    continue
                if message is not None:
                    self._frame(message)
        except RuntimeError:
            pass  # the client closed the pub/sub under us
        finally:
            self._reading = False
            if self._pubsub is pubsub:
                self._pubsub = None

    def _frame(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode(errors="replace")
        if kind in ("ssubscribe", "subscribe"):
            stale = self._stale.get(channel, 0)
            if stale:
                if stale == 1:
                    del self._stale[channel]
                else:
                    self._stale[channel] = stale - 1
                return
            entry = self._channels.get(channel)
            if entry is not None:
                entry.confirmed.set()
        elif kind in ("smessage", "message"):
            self.messages_received += 1
            entry = self._channels.get(channel)
            if entry is None:
                return
            data = message["data"]
            if isinstance(data, bytes):
                data = data.decode(errors="replace")
            value = data[1:] if isinstance(data, str) and data[:1] == _STORED else None
            for watch in entry.watches:
                watch.tell(value)

    def _wake_everyone(self) -> None:
        """Every follower stops waiting for a confirmation or a message and
        looks for itself now."""
        for entry in self._channels.values():
            entry.confirmed.set()
            for watch in entry.watches:
                watch.tell(None)

    def _lost(self) -> None:
        # A message may have been lost with the connection; the reconnect
        # re-subscribes, and confirmations from the old one will not come.
        self._stale.clear()
        self._wake_everyone()

    def _refused(self) -> None:
        # An error reply: on a server without sharded pub/sub, to our
        # SSUBSCRIBE. From now on, classic SUBSCRIBE (the scripts fall back
        # to PUBLISH on such a server).
        self._sharded = False
        self._wake_everyone()
