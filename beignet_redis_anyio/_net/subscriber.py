"""Stay connected (and subscribed) to a server, for as long as a task runs.

The lease's ready notifications, Sentinel's ``+switch-master`` watcher and
the client's pub/sub all need the same thing: a connection of their own
that, once open, says what it wants (``SUBSCRIBE`` …), hands on every frame
the server sends, and — when the connection is lost or cannot be opened —
reconnects after a capped, jittered backoff, forever. A message sent while
we were away is lost, so ``on_down`` lets the owner react (wake everyone,
look for itself, stop waiting for us, tell its reader).

Cancellation: the loop ends only by cancelling its task; the connection is
closed shielded on the way out.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import anyio
from redis.exceptions import ConnectionError

from .settings import ConnectionSettings
from .transport import RawConnection, open_connection
from .wire import encode_command

__all__ = ["LOST", "stay_connected", "stay_subscribed"]

RETRY_MIN, RETRY_MAX = 0.1, 2.0

#: What a lost (or unopenable) connection raises. ``ClosedResourceError``:
#: the owner closed the connection under the reader, to make it reconnect.
LOST = (
    ConnectionError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


def _nothing() -> None:
    pass


async def stay_connected(
    where: Callable[[], Awaitable[ConnectionSettings]],
    *,
    decode: bool,
    on_connected: Callable[[RawConnection], Awaitable[None]],
    on_frame: Callable[[Any], Awaitable[None]],
    on_down: Callable[[BaseException], None],
    first: RawConnection | None = None,
) -> NoReturn:
    """Keep a connection to the server ``where()`` names (asked on every
    connect) and await ``on_frame(frame)`` for each frame it sends.

    ``first``, if given, is an open connection to start with (its owner has
    already said what it wants on it); every later one gets
    ``on_connected(connection)`` before its first frame is read. An error
    reply is a frame (an exception *value*), not a loss. ``on_down(error)``
    runs when a connect attempt fails or an open connection is lost; the
    backoff starts again from its minimum once a connection has been heard
    from. ``on_frame`` may wait (backpressure): meanwhile nothing is read.
    """
    delay = RETRY_MIN
    connection = first
    while True:
        try:
            if connection is None:
                connection = await open_connection(await where(), decode=decode)
                await on_connected(connection)
            frame = await connection.read_reply(decode)
            delay = RETRY_MIN
            while True:
                await on_frame(frame)
                frame = await connection.read_reply(decode)
        except LOST as exc:
            on_down(exc)
        finally:
            if connection is not None:
                with anyio.CancelScope(shield=True):
                    await connection.aclose()
            connection = None
        await anyio.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(RETRY_MAX, delay * 2)


async def stay_subscribed(
    where: Callable[[], Awaitable[ConnectionSettings]],
    channels: Sequence[str],
    on_message: Callable[[str, object], None],
    *,
    on_subscribed: Callable[[], None] = _nothing,
    on_down: Callable[[], None] = _nothing,
) -> NoReturn:
    """Subscribe to ``channels`` on the server ``where()`` names (asked on
    every connect) and call ``on_message(channel, data)`` for each message.

    ``on_subscribed`` runs when the server confirms a subscription,
    ``on_down`` when a connect attempt fails or an open connection is lost.
    """
    subscribe = encode_command(("SUBSCRIBE", *channels))

    async def connected(connection: RawConnection) -> None:
        await connection.transport.send(subscribe)

    async def frame(reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return  # not a pub/sub frame (or one we could not decode)
        if reply[0] == "subscribe":
            on_subscribed()
        elif reply[0] == "message":
            on_message(str(reply[1]), reply[2])

    await stay_connected(
        where,
        decode=True,
        on_connected=connected,
        on_frame=frame,
        on_down=lambda _: on_down(),
    )
