"""Stay subscribed to a few pub/sub channels, for as long as a task runs.

Both the lease's ready notifications and Sentinel's ``+switch-master``
watcher need the same thing: a connection of their own that sends
``SUBSCRIBE``, hands each message on, and — when the connection is lost or
cannot be opened — reconnects after a capped, jittered backoff, forever.
A message sent while we were away is lost, so ``on_down`` lets the owner
react (wake everyone, look for itself, stop waiting for us).

Cancellation: the loop ends only by cancelling its task; the connection is
closed shielded on the way out.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import anyio
from redis.exceptions import ConnectionError

from .settings import ConnectionSettings
from .transport import RawConnection, open_connection
from .wire import encode_command

__all__ = ["stay_subscribed"]

RETRY_MIN, RETRY_MAX = 0.1, 2.0

_LOST = (ConnectionError, OSError, anyio.BrokenResourceError, anyio.EndOfStream)


def _nothing() -> None:
    pass


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
    delay = RETRY_MIN
    while True:
        connection: RawConnection | None = None
        try:
            connection = await open_connection(await where(), decode=True)
            await connection.transport.send(encode_command(("SUBSCRIBE", *channels)))
            while True:
                reply = await connection.read_reply()
                if not isinstance(reply, list) or len(reply) < 3:
                    continue  # not a pub/sub frame (or one we could not decode)
                if reply[0] == "subscribe":
                    delay = RETRY_MIN
                    on_subscribed()
                elif reply[0] == "message":
                    on_message(str(reply[1]), reply[2])
        except _LOST:
            on_down()
        finally:
            if connection is not None:
                with anyio.CancelScope(shield=True):
                    await connection.aclose()
        await anyio.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(RETRY_MAX, delay * 2)
