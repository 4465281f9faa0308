"""Dedicated connections for commands that block on the server.

``BLPOP queue 0`` parks the connection it was sent on until a value arrives.
On the shared connection that would stall every other task's replies behind
it, so blocking commands each borrow a connection of their own from a small,
bounded set (callers beyond the bound wait their turn).

One deadline bounds a blocking command from the moment it is issued: its own
block time plus the command timeout. Waiting for a free connection, opening a
new one and waiting for the reply all count against it, so a full set or a
frozen server can never stretch ``BLPOP q 1`` past that. A command that blocks
forever (timeout 0) has no deadline, and may also wait forever for its turn.
While the node's shared connection finds Redis unavailable (it reconnects in
the background), a command that needs a new connection fails at once.

Cancelling a blocking command closes its connection: the server then drops
the block, so a value pushed afterwards goes to the next reader instead of to
a connection nobody reads any more.

Closing (:meth:`DedicatedConnections.aclose`) ends every blocking command in
flight, whatever it is waiting for — a turn, a connect, or the server's reply:
each fails with ``ConnectionError("… the client was closed")`` in its own
task, and its connection is closed, so the server holds no block of ours and
a value pushed afterwards stays in the list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
from anyio.lowlevel import checkpoint_if_cancelled
from redis.exceptions import ConnectionError, TimeoutError

from .errors import ConnectTimeoutError, connection_lost, unavailable
from .settings import ConnectionSettings
from .transport import CLOSE_TIMEOUT, RawConnection, open_connection

__all__ = ["DedicatedConnections"]

#: What a blocking command is doing, for the message when its deadline passes.
_TURN, _CONNECT, _REPLY = "turn", "connect", "reply"


class DedicatedConnections:
    """At most ``settings.max_blocking_connections`` at once; idle ones kept."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        decode: bool,
        resolve: Callable[[], Awaitable[ConnectionSettings]] | None = None,
        outage: Callable[[], Exception | None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._resolve = resolve
        #: Why the node's shared connection finds Redis unavailable, if it
        #: does: then a new dedicated connection is not even tried.
        self._outage = outage
        self._decode = decode
        self._limit = anyio.Semaphore(settings.max_blocking_connections)
        self._idle: list[tuple[int, RawConnection]] = []
        #: Connections with a command on them: closing must close these too.
        self._busy: set[RawConnection] = set()
        #: One scope per command in flight, so closing can wake each in its
        #: own task, whether it waits for a turn, a connect or a reply.
        self._callers: set[anyio.CancelScope] = set()
        self._all_left: anyio.Event | None = None
        self._generation = 0
        self._closed = False

    async def run(self, payload: bytes, wait: float | None, decode: bool) -> Any:
        """Send one blocking command and return its reply.

        The deadline is the command's own block time plus the command timeout,
        counted from now; a command that blocks forever (timeout 0) has none.
        Waiting for a free connection and connecting count against it: when it
        passes, ``TimeoutError`` says which of them it was waiting for.

        Raises ``ConnectionError`` at once on a closed client, and when the
        client is closed while this waits (this task is woken, never
        cancelled). Cancelled while waiting, the command's connection is
        closed and never reused (the server drops the block); cancelled while
        waiting for a turn, it simply leaves the queue.
        """
        if self._closed:
            raise self._closed_error()
        with anyio.CancelScope() as closing:
            self._callers.add(closing)
            try:
                return await self._run(payload, wait, decode)
            except (ConnectionError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                if self._closed:
                    # Our socket was closed under us by aclose: say so.
                    raise self._closed_error() from None
                raise
            finally:
                self._callers.discard(closing)
                if self._all_left is not None and not self._callers:
                    self._all_left.set()
        # Only aclose cancels ``closing``. A cancellation of the caller's own
        # that arrived meanwhile wins over our error.
        await checkpoint_if_cancelled()
        raise self._closed_error()

    async def _run(self, payload: bytes, wait: float | None, decode: bool) -> Any:
        deadline = _deadline(wait, self._settings.command_timeout)
        stage = _TURN
        with anyio.move_on_after(deadline) as timer:
            async with self._limit:
                if self._closed:
                    raise self._closed_error()
                generation = self._generation
                stage = _CONNECT
                connection = await self._take()
                stage = _REPLY
                self._busy.add(connection)
                reusable = False
                try:
                    await connection.transport.send(payload)
                    reply = await connection.read_reply(decode)
                    reusable = True
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    raise connection_lost(self._settings.address, exc) from None
                finally:
                    self._busy.discard(connection)
                    if reusable and not self._closed:
                        self._idle.append((generation, connection))
                    else:
                        await connection.aclose()
                return reply
        assert timer.cancelled_caught
        raise self._timeout_error(stage, deadline)

    async def _take(self) -> RawConnection:
        while self._idle:
            generation, connection = self._idle.pop()
            if generation == self._generation and connection.looks_alive():
                return connection
            await connection.aclose()
        if (cause := self._outage()) is not None:
            await anyio.lowlevel.checkpoint()  # failing fast is still a checkpoint
            raise unavailable(self._settings.address, cause)
        settings = self._settings if self._resolve is None else await self._resolve()
        return await open_connection(settings, decode=self._decode)

    def retire_idle(self) -> None:
        """Never reuse today's idle connections: they point at a server we
        left (a Sentinel failover). They are closed when next looked at."""
        self._generation += 1

    async def aclose(self) -> None:
        """Close every connection and fail every blocking command in flight.

        Each waiting command is woken in its own task (its socket's waiters
        notified, its scope cancelled) and raises ``ConnectionError``; a
        caller in a task group of its own is not cancelled. Busy connections
        are closed here, before the callers even run, so the server drops
        their blocks at once. Then we wait for the callers to leave (they
        close connections still being opened). Shielded, and bounded by
        ``CLOSE_TIMEOUT``: closing never hangs, and later commands fail at
        once.
        """
        self._closed = True
        with anyio.CancelScope(shield=True):
            for scope in list(self._callers):
                scope.cancel()
            doomed = [connection for _, connection in self._idle] + list(self._busy)
            self._idle = []
            for connection in self._busy:
                connection.transport.notify_closing()
            async with anyio.create_task_group() as closing:
                for connection in doomed:
                    closing.start_soon(connection.aclose)
            if self._callers:
                self._all_left = anyio.Event()
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    await self._all_left.wait()

    def _closed_error(self) -> ConnectionError:
        return ConnectionError(
            f"Blocking command on {self._settings.address} failed: the client was closed"
        )

    def _timeout_error(self, stage: str, deadline: float) -> TimeoutError:
        address = self._settings.address
        if stage == _TURN:
            limit = self._settings.max_blocking_connections
            return TimeoutError(
                f"Timeout waiting for a dedicated connection to {address} after "
                f"{deadline:g}s: all {limit} dedicated connections for blocking commands "
                "are busy (raise max_blocking_connections, or "
                "REDIS_MAX_BLOCKING_CONNECTIONS, to allow more)"
            )
        if stage == _CONNECT:
            return ConnectTimeoutError(
                f"Timeout connecting to {address} for a blocking command: "
                f"its deadline of {deadline:g}s passed"
            )
        return TimeoutError(
            f"Timeout waiting for a blocking command on {address} after {deadline:g}s"
        )


def _deadline(wait: float | None, command_timeout: float | None) -> float:
    if wait is None or command_timeout is None:
        return float("inf")
    return wait + command_timeout
