"""Dedicated connections for commands that block on the server.

``BLPOP queue 0`` parks the connection it was sent on until a value arrives.
On the shared connection that would stall every other task's replies behind
it, so blocking commands each borrow a connection of their own from a small,
bounded set (callers beyond the bound wait their turn).

Cancelling a blocking command closes its connection: the server then drops
the block, so a value pushed afterwards goes to the next reader instead of to
a connection nobody reads any more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from redis.exceptions import ConnectionError, TimeoutError

from ._settings import ConnectionSettings
from ._transport import RawConnection, connection_lost, open_connection

__all__ = ["DedicatedConnections"]


class DedicatedConnections:
    """At most ``settings.max_blocking_connections`` at once; idle ones kept."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        decode: bool,
        resolve: Callable[[], Awaitable[ConnectionSettings]] | None = None,
    ) -> None:
        self._settings = settings
        self._resolve = resolve
        self._decode = decode
        self._limit = anyio.Semaphore(settings.max_blocking_connections)
        self._idle: list[tuple[int, RawConnection]] = []
        self._generation = 0
        self._closed = False

    async def run(self, payload: bytes, wait: float | None, decode: bool) -> Any:
        """Send one blocking command and return its reply.

        The deadline is the command's own block time plus the command timeout;
        a command that blocks forever (timeout 0) has none.
        """
        async with self._limit:
            generation = self._generation
            connection = await self._take()
            reusable = False
            try:
                deadline = _deadline(wait, self._settings.command_timeout)
                with anyio.move_on_after(deadline) as scope:
                    await connection.transport.send(payload)
                    reply = await connection.read_reply(decode)
                    reusable = True
                if scope.cancelled_caught:
                    raise TimeoutError(
                        f"Timeout waiting for a blocking command on {self._settings.address} "
                        f"after {deadline:g}s"
                    )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise connection_lost(self._settings, exc) from None
            finally:
                if reusable and not self._closed:
                    self._idle.append((generation, connection))
                else:
                    await connection.aclose()
            return reply

    async def _take(self) -> RawConnection:
        while self._idle:
            generation, connection = self._idle.pop()
            if generation == self._generation and connection.looks_alive():
                return connection
            await connection.aclose()
        if self._closed:
            raise ConnectionError("the client is closed")
        settings = self._settings if self._resolve is None else await self._resolve()
        return await open_connection(settings, decode=self._decode)

    def retire_idle(self) -> None:
        """Never reuse today's idle connections: they point at a server we
        left (a Sentinel failover). They are closed when next looked at."""
        self._generation += 1

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for _, connection in idle:
            await connection.aclose()


def _deadline(wait: float | None, command_timeout: float | None) -> float:
    if wait is None or command_timeout is None:
        return float("inf")
    return wait + command_timeout
