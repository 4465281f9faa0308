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

Held connections (:meth:`DedicatedConnections.hold`): a WATCH … EXEC needs
one connection for several commands, with the caller's own code running in
between. A :class:`HeldConnection` takes a turn and a connection from the same
bounded set (a held connection counts against ``max_blocking_connections``
like a blocking command does, so the bound stays the bound on the sockets we
open), waiting at most ``command_timeout`` for them. Each command sent on it
has its own deadline of ``command_timeout`` (plus its block time, if it
blocks). Releasing returns it to the set only when its user says it is in a
clean state (nothing watched, no MULTI open) and no command on it was ever
interrupted; otherwise — cancelled mid-command, a timeout, a lost
connection, an error its user could not clean up after — it is closed, which
drops whatever the server held for it (its WATCH included). Closing the set
closes held connections too; their next command fails with
``ConnectionError``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import hiredis
from anyio.lowlevel import checkpoint_if_cancelled
from redis.exceptions import ConnectionError, TimeoutError

from .._exceptions import ConnectTimeoutError
from .errors import connection_lost, unavailable
from .settings import ConnectionSettings
from .transport import CLOSE_TIMEOUT, RawConnection, open_connection

__all__ = ["DedicatedConnections", "HeldConnection"]

_T = TypeVar("_T")

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
        return await self._as_caller(lambda: self._run(payload, wait, decode))

    def hold(self) -> HeldConnection:
        """A connection of one's own for several commands (see the module
        docstring): ``async with pool.hold() as held: await held.request(…)``."""
        return HeldConnection(self)

    async def _as_caller(self, job: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``job`` so that :meth:`aclose` can wake it in its own task:
        it then raises ``ConnectionError("… the client was closed")``."""
        if self._closed:
            raise self._closed_error()
        with anyio.CancelScope() as closing:
            self._callers.add(closing)
            try:
                return await job()
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

    async def _check_out(self) -> tuple[int, RawConnection]:
        """A turn and a connection, within ``command_timeout``; the caller
        must :meth:`_check_in` it. Cancelled, it holds nothing."""
        deadline = _deadline(0.0, self._settings.command_timeout)
        stage = _TURN
        with anyio.move_on_after(deadline) as timer:
            await self._limit.acquire()
            try:
                if self._closed:
                    raise self._closed_error()
                generation = self._generation
                stage = _CONNECT
                connection = await self._take()
            except BaseException:
                self._limit.release()
                raise
            self._busy.add(connection)
            return generation, connection
        assert timer.cancelled_caught
        raise self._timeout_error(stage, deadline)

    async def _exchange(
        self, connection: RawConnection, payload: bytes, count: int, wait: float | None
    ) -> list[Any]:
        """Send ``payload`` on a held connection and read ``count`` replies,
        within the command timeout (plus ``wait``, the block time)."""
        # A command in a scope already cancelled is never sent (as on the
        # shared connection): the caller then closes the connection instead.
        await checkpoint_if_cancelled()
        deadline = _deadline(wait, self._settings.command_timeout)
        with anyio.move_on_after(deadline) as timer:
            try:
                await connection.transport.send(payload)
                replies: list[Any] = []
                while len(replies) < count:
                    reply = await connection.read_reply(self._decode)
                    if not isinstance(reply, hiredis.PushNotification):  # RESP3 push: not ours
                        replies.append(reply)
                return replies
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                raise connection_lost(self._settings.address, exc) from None
        assert timer.cancelled_caught
        raise TimeoutError(
            f"Timeout reading from {self._settings.address} after {deadline:g}s "
            "(a held connection's command)"
        )

    async def _check_in(self, generation: int, connection: RawConnection, reusable: bool) -> None:
        """Give back a checked-out connection: kept when ``reusable`` (and
        still current), closed otherwise. Shielded; closing is bounded."""
        with anyio.CancelScope(shield=True):
            self._busy.discard(connection)
            try:
                if reusable and not self._closed and generation == self._generation:
                    self._idle.append((generation, connection))
                else:
                    await connection.aclose()
            finally:
                self._limit.release()

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


class HeldConnection:
    """One dedicated connection, held across several commands (a WATCH …
    EXEC with the caller's code in between); see the module docstring.

    :meth:`open` takes it (an ``async with`` does that and :meth:`release`);
    :meth:`request` sends commands on it; set :attr:`clean` when the server
    holds no state for it any more, and :meth:`release` gives it back. Not
    bound to one task or one cancel scope: a pipeline opens it in ``watch()``
    and releases it in ``execute()`` or ``reset()``.
    """

    __slots__ = ("_connection", "_generation", "_interrupted", "_pool", "clean")

    def __init__(self, pool: DedicatedConnections) -> None:
        self._pool = pool
        self._connection: RawConnection | None = None
        self._generation = 0
        #: A command did not finish: the stream may hold a reply we never read.
        self._interrupted = False
        #: Its user says the server holds nothing for it (no WATCH, no MULTI).
        self.clean = False

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    @property
    def interrupted(self) -> bool:
        """A command on it did not finish: it must not carry another."""
        return self._interrupted

    async def open(self) -> None:
        """Take a turn and a connection, waiting at most ``command_timeout``
        (``TimeoutError`` says for what). Cancelled, nothing is held."""
        if self._connection is not None:
            return
        taken = await self._pool._as_caller(self._pool._check_out)
        self._generation, self._connection = taken
        self._interrupted = False
        self.clean = False

    async def request(self, payload: bytes, count: int, *, wait: float | None = 0.0) -> list[Any]:
        """Send ``payload`` (``count`` commands) and return their replies,
        error replies as exception values. ``wait`` is how long a blocking
        command may block (``None``: forever).

        A command that does not finish — cancelled, timed out, connection
        lost — marks the connection never to be reused.
        """
        connection = self._connection
        if connection is None or self._interrupted:
            raise ConnectionError("the held connection was released, or a command on it failed")
        self._interrupted = True
        replies = await self._pool._as_caller(
            lambda: self._pool._exchange(connection, payload, count, wait)
        )
        self._interrupted = False
        return replies

    async def release(self) -> None:
        """Give the connection back: to the pool if :attr:`clean` and no
        command was interrupted, else closed. Shielded and bounded; does
        nothing if nothing is held."""
        connection, self._connection = self._connection, None
        if connection is not None:
            reusable = self.clean and not self._interrupted
            await self._pool._check_in(self._generation, connection, reusable)

    async def __aenter__(self) -> HeldConnection:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


def _deadline(wait: float | None, command_timeout: float | None) -> float:
    if wait is None or command_timeout is None:
        return float("inf")
    return wait + command_timeout
