"""One connection of a :class:`~._client.pubsub.PubSub`, kept subscribed.

It is opened by the first subscribing caller (so a server that is down
fails that call with ``ConnectionError``, as in redis-py) and from then on
read by a task of its own in the client's task group, which puts every
frame in the subscriber's inbox. No caller ever reads the socket, so a
caller cancelled while it waits for a message cannot tear a read.

Callers write their (small) ``SUBSCRIBE`` … commands themselves, one at a
time under a lock, shielded and bounded: a write is never torn by a
cancellation, and a write that cannot finish in time (a peer that stopped
reading) drops the connection rather than hang.

When the connection is lost the reader reconnects in the background, with
the capped, jittered backoff of :func:`~.._net.subscriber.stay_connected`,
and re-sends a subscribe command for everything subscribed at that moment
— redis-py does the same in ``PubSub.on_connect``. What was published in
between is lost (pub/sub is fire-and-forget: the server keeps nothing for
a subscriber that is not connected), so the loss is put in the inbox as a
marker, which the subscriber's next read raises as ``ConnectionError``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup
from redis.exceptions import ConnectionError

from .._net.errors import describe
from .._net.settings import ConnectionSettings
from .._net.subscriber import LOST, stay_connected
from .._net.transport import CLOSE_TIMEOUT, RawConnection, open_connection
from .pubsub_inbox import Inbox, Lost

__all__ = ["PubSubConnection"]

#: How long one subscribe command's write may take before the connection
#: is judged stuck and dropped (then reconnected and re-subscribed).
WRITE_TIMEOUT = 5.0

#: What to send on a fresh connection: the commands that restore every
#: subscription this connection carries.
Resubscribe = Callable[[], list[bytes]]


class PubSubConnection:
    """A connection that stays subscribed; frames go to ``inbox``.

    ``where()`` names the server on every (re)connect; ``resubscribe()`` is
    asked, under this connection's lock, what to send on a new one.
    """

    def __init__(
        self,
        where: Callable[[], Awaitable[ConnectionSettings]],
        *,
        decode: bool,
        inbox: Inbox,
        task_group: TaskGroup,
        resubscribe: Resubscribe,
    ) -> None:
        self._where = where
        self._decode = decode
        self._inbox = inbox
        self._task_group = task_group
        self._resubscribe = resubscribe
        self._lock = anyio.Lock()
        self._connection: RawConnection | None = None
        self._reader: anyio.CancelScope | None = None
        self._reader_done = anyio.Event()
        #: The open connection has been announced to the inbox as up.
        self._up = False
        #: The next loss was asked for (:meth:`disconnect`): no marker.
        self._quiet = False
        self._closed = False

    @property
    def is_connected(self) -> bool:
        """True while a connection is open (False while reconnecting)."""
        return self._connection is not None

    async def connect(self) -> None:
        """Open the connection unless it is open or being reopened.

        Raises ``ConnectionError`` (or ``TimeoutError``) if it cannot be
        opened now; once it has been, losses are the reader's business.
        """
        if self._closed:
            raise ConnectionError("this pub/sub connection was closed")
        if self._reader is not None:
            return
        async with self._lock:
            if self._reader is not None:
                return
            connection = await open_connection(await self._where(), decode=self._decode)
            try:
                with anyio.CancelScope(shield=True), anyio.fail_after(WRITE_TIMEOUT):
                    for command in self._resubscribe():
                        await connection.transport.send(command)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await connection.aclose()
                raise
            # No await from here on: the reader owns the connection at once.
            self._connection, self._up = connection, True
            self._reader = anyio.CancelScope()
            self._task_group.start_soon(
                self._read, connection, self._reader, name="beignet-redis pub/sub reader"
            )

    async def send(self, command: bytes, record: Callable[[], None]) -> None:
        """``record()`` the change to the subscriptions, then write
        ``command``, both under the lock, so a reconnect re-sends either
        everything or everything but this (which then goes on the new
        connection). While reconnecting nothing is written: the reconnect
        re-sends what ``record`` recorded.

        Cancellation: before the lock is taken, nothing happened; after,
        the write completes (shielded, bounded by ``WRITE_TIMEOUT``).
        """
        await self.connect()
        async with self._lock:
            record()
            connection = self._connection
            if connection is None:
                return
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(WRITE_TIMEOUT) as bounded:
                    try:
                        await connection.transport.send(command)
                    except LOST:
                        return  # the reader sees the loss too, and reports it
                if bounded.cancelled_caught:
                    # Half a command may be on the wire: this connection is done.
                    await connection.aclose()

    async def disconnect(self) -> None:
        """Close the current connection; the reader reconnects at once and
        re-subscribes. Unlike a lost connection this raises nothing in the
        subscriber (it asked) — but what is published meanwhile is lost."""
        connection = self._connection
        if connection is None:
            return
        self._connection, self._quiet = None, True
        with anyio.CancelScope(shield=True):
            await connection.aclose()

    async def aclose(self) -> None:
        """Stop the reader and close the connection; shielded, bounded.

        The reader is stopped first: a socket closed under a read that is
        just starting is not a lost connection to asyncio's selector but a
        ``ValueError`` (file descriptor -1), which would end the task group.
        """
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._reader is not None:
                self._reader.cancel()
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    await self._reader_done.wait()
            connection, self._connection = self._connection, None
            if connection is not None:
                await connection.aclose()

    # -- the reader task ------------------------------------------------------

    async def _read(self, first: RawConnection, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                await stay_connected(
                    self._where,
                    decode=self._decode,
                    on_connected=self._connected,
                    on_frame=self._inbox.put,
                    on_down=self._down,
                    first=first,
                )
        finally:
            self._reader_done.set()

    async def _connected(self, connection: RawConnection) -> None:
        async with self._lock:
            with anyio.fail_after(WRITE_TIMEOUT):
                for command in self._resubscribe():
                    await connection.transport.send(command)
            self._connection, self._up = connection, True

    def _down(self, error: BaseException) -> None:
        self._connection = None
        if not self._up or self._closed:
            return  # a reconnect attempt failed: the loss was reported already
        self._up = False
        if self._quiet:
            self._quiet = False
            return
        self._inbox.put_now(
            Lost(
                ConnectionError(
                    f"the pub/sub connection was lost ({describe(error)}); it is "
                    "reconnecting and will re-subscribe, but what was published "
                    "until then is lost"
                )
            )
        )

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "not connected"
        return f"<PubSubConnection {state}>"
