"""One connection, shared by every task: the multiplexer.

Why one connection: Redis answers in order, so many tasks can share a socket
if we keep the order straight. That buys coalesced writes (a hundred tasks'
GETs leave in one ``send``) and no pool to size or starve.

How order is kept, and why cancellation cannot break it:

* A caller never writes part of a command. It appends its encoded command and
  its :class:`_Request` to the link in one synchronous step — no ``await`` in
  between — so the byte order on the wire is the order of ``pending``. On an
  idle line it writes the bytes itself with a non-blocking ``send`` (a
  synchronous call: nothing to cancel half-way); otherwise the writer task
  sends them, coalesced with everyone else's.
* Replies are handed to the head of ``pending``, in order. A caller that
  stopped waiting (cancelled, timed out) leaves its request in the queue; its
  reply is read and dropped like any other. Replies can never shift onto the
  wrong caller.
* Who reads: a caller whose request is alone on an idle line reads its own
  reply straight from the socket — no task switch, which is what makes one
  task's sequential commands fast. It looks for the reply between a few
  scheduler turns before it parks on readiness, since a nearby server usually
  answers within them (see :data:`SPIN_TURNS`). Whenever others are waiting
  (or that caller is cancelled) the reader task reads instead. On a link
  that receives pushes (client-side caching) the reader task reads whenever
  no caller does, pushes on an idle line included, and stands back while a
  caller alone reads (see :data:`STAND_BACK`); if it was already waiting on
  the socket, that caller leaves the reading to it after its turns: two
  tasks may not wait on one socket. Reading is
  cancellation-safe either way: we wait for readiness, then ``recv``
  synchronously, so a cancelled wait consumes nothing.
* Who waits on what: callers whose commands leave in the same write share
  one event. Their replies usually come back in one read, so one ``set``
  wakes them all — instead of making, waiting on and setting an event per
  command, a large share of a concurrent ``GET``'s cost. A caller
  woken before its own reply arrived (its write was answered in parts, or a
  neighbour timed out) waits again on an event of its own: at most one
  spurious wake-up per command, and nobody waits for a neighbour's reply.

The link's tasks run in the task group the client's owner provides. When the
link fails (EOF, reset, a write error, a silent server), every request still
waiting fails with ``redis.exceptions.ConnectionError`` — none is replayed,
since a ``SET`` or ``INCR`` may already have applied — and a new link is
opened in the background at once (see :class:`Multiplexer`: while that fails,
callers fail fast instead of waiting out a connect or a backoff).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import hiredis
from anyio.abc import TaskGroup
from redis.exceptions import ConnectionError, TimeoutError

from .._exceptions import ConnectTimeoutError
from .errors import connection_lost, unavailable
from .primitives import Waiter, loop_primitives
from .settings import ConnectionSettings
from .transport import RawConnection, SocketTransport, open_connection
from .wire import as_strict_text

__all__ = ["Multiplexer", "Tracker"]

BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
#: A link quiet for longer than this is checked (MSG_PEEK) before reuse: a
#: server's idle timeout, a restart or CLIENT KILL close connections that sit
#: idle. One that answered within the last second is taken as it is — a close
#: in that window fails the next command, as it would a moment after a check.
IDLE_CHECK_AFTER = 1.0

#: A caller alone on an idle line (see ``_Link.read_for``) takes up to this
#: many turns of the scheduler, looking for its reply after each, before it
#: parks on the socket's readiness. A nearby server's reply usually lands
#: within them, and parking costs more than the turns: a blocking poll and a
#: wake-up — on a virtual machine, a trip through the host — and on asyncio
#: registering the socket with the selector and unregistering it again. A
#: crowd's round (a hundred commands in one write) takes the server longer
#: than one command, so the turns are enough for that too — counted in turns,
#: not time, so the cheaper a turn (uvloop's), the more of them a crowd's
#: round needs. ``bench_client``'s one-task rows and ``bench_ceiling``'s
#: hundred-task rows measure them.
SPIN_TURNS = 32
#: A caller alone, holding its command for a crowd to join (see
#: ``_Link.submit``), sends it after at most this many turns: one for the
#: crowd to run, and one more as trio may run the holder first in a turn.
HOLD_TURNS = 2
#: After this many replies in a row that the turns did not catch (a distant
#: server, where they only burn CPU), a link parks after a single turn and
#: tries the full turns again only on every SPIN_PROBE_EVERY-th read.
SPIN_GIVE_UP = 8
SPIN_PROBE_EVERY = 64

#: On a link with pushes, the reader task stands back while a caller alone
#: reads its own replies, and the caller wakes it when done, so that pushes
#: arriving while nobody reads are read at once. When one task's commands
#: follow each other back to back, that wake-up would cost every command a
#: task switch: then the reader stands back for this long instead, unwoken,
#: and again while commands keep coming. Only a push that arrives just after
#: such a burst waits (at most twice this long: the rest of the window in
#: which the burst ended, and one window with no command); a reply read
#: after a push still applies the push first.
STAND_BACK = 0.001

#: Deadlines and silence are measured on the monotonic clock, not the event
#: loop's: the watchdog only ever sleeps for differences, and this costs no
#: backend lookup on the hot path.
_now = time.monotonic

_STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

#: A RESP3 push frame (pub/sub message, invalidation): no caller's reply.
_Push = hiredis.PushNotification

#: Who gets the push frames a link reads: called synchronously, in order.
PushHandler = Callable[[list[Any]], None]


class Tracker(Protocol):
    """What a client-side cache gives the shared connection to stay right.

    With one, every link sends ``CLIENT TRACKING ON`` in its handshake, its
    push frames (invalidations) go to :meth:`on_push` in wire order with the
    replies, and — synchronously, before anything else can use or miss it —
    :meth:`lost` is called when a link is lost and :meth:`reset` when a new
    one opens: invalidations sent to a dead connection are never seen, so
    whatever was read through it is in doubt. (Told apart because a value
    in doubt may still be worth serving while the server cannot be reached,
    and not once it can.)
    """

    def on_push(self, frame: list[Any]) -> None: ...

    def lost(self) -> None: ...

    def reset(self) -> None: ...


def _drop_push(frame: list[Any]) -> None:
    """Nobody listens for pushes: nothing on the shared connection
    subscribes or tracks unless a listener asked for it."""


class _Request:
    """What a caller waits on: ``expected`` replies, or an error.

    ``waiter`` is set only for a caller that waits for someone else to read
    its reply — its write's shared event, or one of its own — and a caller
    reading for itself just checks ``finished``.
    """

    __slots__ = ("deadline", "decode", "error", "expected", "finished", "replies", "waiter")

    def __init__(self, expected: int, decode: bool, deadline: float) -> None:
        self.expected = expected
        self.decode = decode
        self.deadline = deadline
        self.replies: list[Any] = []
        self.error: Exception | None = None
        self.finished = False
        self.waiter: Waiter | None = None

    def finish(self, error: Exception | None = None) -> None:
        if error is not None:
            self.error = error
        self.finished = True
        if self.waiter is not None:
            self.waiter.set()


class _Spin:
    """How many scheduler turns a caller reading for itself takes before it
    parks (see :data:`SPIN_TURNS`), learnt from how the last ones went."""

    __slots__ = ("misses", "reads")

    def __init__(self) -> None:
        self.misses = 0  # replies in a row that the full turns did not catch
        self.reads = 0

    def turns(self) -> int:
        self.reads += 1
        if self.misses < SPIN_GIVE_UP or self.reads % SPIN_PROBE_EVERY == 0:
            return SPIN_TURNS
        return 1

    def record(self, turns: int, caught: bool) -> None:
        if caught:
            self.misses = 0
        elif turns == SPIN_TURNS:
            self.misses += 1


class _UnexpectedReply(Exception):
    pass


class _Link:
    """One physical connection and the tasks that serve it.

    * reader — reads when a caller is not reading for itself;
    * writer — sends what could not be written at once (a full socket buffer,
      TLS, or commands queued while others are in flight, coalesced);
    * watchdog — fails requests past their deadline (so callers need no
      cancel scope of their own on the hot path) and drops the link when the
      server has gone silent.
    """

    def __init__(
        self,
        connection: RawConnection,
        command_timeout: float | None,
        on_push: PushHandler | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.connection = connection
        self.on_lost = on_lost
        self.transport = connection.transport
        self.reader = connection.reader
        self.strict_text = connection.strict_text
        self.address = connection.settings.address
        self.command_timeout = command_timeout
        self.on_push = on_push or _drop_push
        # Only a socket we drive ourselves lets a caller read for itself —
        # and only while nobody listens for pushes, which may arrive when no
        # caller is reading: then the reader task reads whenever none does.
        self.callers_read = connection.transport.direct and on_push is None
        # With pushes on a socket, a caller alone still reads its own reply,
        # while the reader task stands back: woken for replies a caller had
        # already read, it would cost every command a task switch.
        self.callers_spin = connection.transport.direct and on_push is not None
        self.pending: deque[_Request] = deque()
        self.outbox: list[bytes | memoryview] = []
        self.writing = False
        self.caller_reading = False
        #: With pushes (callers_spin): the reader task waits on the socket;
        #: or stands back for a while, not to be woken when a caller is done.
        self.reader_parked = False
        self.reader_lazy = False
        self.spin = _Spin()
        #: Commands submitted so far, and whether others joined while the
        #: last caller alone read its reply (see ``submit``).
        self.submitted = 0
        self.crowded = False
        #: The caller reading for itself holds its command in ``outbox`` for
        #: one turn, for others to join, and then sends them all itself.
        self.caller_flushes = False
        self.held_at = 0  # ``submitted`` when it did
        #: The event shared by the callers whose commands wait in ``outbox``
        #: to leave in the next write; a new one for each write.
        self.write_wakeup: Waiter | None = None
        self.reader_wakeup: Waiter | None = None
        self.writer_wakeup: Waiter | None = None
        self.watchdog_wakeup: Waiter | None = None
        self.failed: Exception | None = None
        self.last_received = _now()
        self.scope = anyio.CancelScope()
        # Every command waits on an event and passes a checkpoint: take the
        # loop's own once, not anyio's lookup per call (see primitives).
        primitives = loop_primitives()
        self.new_event = primitives.new_event
        self.checkpoint_if_cancelled = primitives.checkpoint_if_cancelled
        self.turn = primitives.turn

    def idle_and_sound(self) -> bool:
        """Before reusing an idle link: has the server closed it meanwhile?

        No task watches an idle socket (a caller may want to read it itself),
        so a close is noticed here, before we write into a dead connection.
        """
        if self.pending or not self.callers_read or self.transport.looks_alive():
            return True
        self.fail(ConnectionError(f"Connection to {self.address} closed by the server"))
        return False

    def submit(self, payload: bytes, request: _Request) -> bool:
        """Queue ``payload`` and its request together — synchronously, so
        that the order of bytes on the wire is the order of ``pending``.

        Returns True when the caller should read its own reply.
        """
        alone = not self.pending
        self.pending.append(request)
        self.submitted += 1
        if self.watchdog_wakeup is not None:
            self.watchdog_wakeup.set()
            self.watchdog_wakeup = None
        if alone and not self.outbox and not self.writing:
            if self.crowded and not self.caller_reading:
                # Others joined the last caller alone while it read, so they
                # will likely join us too: hold our command for them, and
                # send the lot after one turn (see read_for) — one write,
                # answered in one read, not ours first and theirs after.
                self.outbox.append(payload)
                self.caller_flushes = True
                self.held_at = self.submitted
            else:
                # Alone on an idle line: write now, no task switch.
                try:
                    sent = self.transport.send_now(payload)
                except OSError as exc:
                    self.fail(connection_lost(self.connection.settings.address, exc))
                    return False
                if sent < len(payload):
                    # A view, not a slice: a large value is not copied again.
                    self.outbox.append(memoryview(payload)[sent:] if sent else payload)
                    self._wake_writer()
        else:
            # Others are waiting too: let the writer coalesce us with them —
            # or the caller holding the line's first command, which sends it.
            # (_wake_writer and _wake_reader inlined: this runs per command.)
            self.outbox.append(payload)
            wakeup = self.writer_wakeup
            if wakeup is not None and not self.caller_flushes:
                self.writer_wakeup = None
                wakeup.set()
        if self.caller_reading:
            return False
        if alone and (self.callers_read or self.callers_spin):
            return True
        wakeup = self.reader_wakeup
        if wakeup is not None:
            self.reader_wakeup = None
            wakeup.set()
        return False

    def _flush(self) -> None:
        """Send what waits in ``outbox`` now (a caller's turn is over):
        synchronously, as ``submit`` does; the writer sends what the kernel
        does not take."""
        self.caller_flushes = False
        outbox = self.outbox
        if self.failed is not None or not outbox:
            return
        data = b"".join(outbox) if len(outbox) > 1 else outbox[0]
        outbox.clear()
        self.write_wakeup = None  # later callers share the next write's
        try:
            sent = self.transport.send_now(data)
        except OSError as exc:
            self.fail(connection_lost(self.connection.settings.address, exc))
            return
        if sent < len(data):
            outbox.append(memoryview(data)[sent:] if sent else data)
            self._wake_writer()

    def _wake_writer(self) -> None:
        if self.writer_wakeup is not None:
            self.writer_wakeup.set()
            self.writer_wakeup = None

    def _wake_reader(self) -> None:
        if self.reader_wakeup is not None and not self.caller_reading:
            self.reader_wakeup.set()
            self.reader_wakeup = None

    async def read_for(self, request: _Request) -> None:
        """Read from the socket ourselves until ``request`` is answered.

        First a few turns of the scheduler, looking for the reply after each
        (:data:`SPIN_TURNS`); then park on the socket's readiness. The turns
        let every other ready task run. A cancellation is noticed at a turn
        (asyncio) or once we park, at most ``SPIN_TURNS`` turns later (trio,
        whose cheapest turn is shielded); either way the way out below is
        the same as from the park.

        Replies for requests queued behind ours are handed out too. On the
        way out — answered, failed or cancelled — reading passes to the reader
        task if anyone is still waiting. On a link with pushes
        (``callers_spin``) the reader task may be parked on the socket when we
        come (the line was idle): then after the turns we wait for it to hand
        us the reply instead, and on the way out we hand it the socket back.
        """
        self.caller_reading = True
        submitted = self.submitted
        try:
            turns = self.spin.turns()
            for turn in range(turns):
                await self.turn()
                if self.caller_flushes:
                    # Others joined (in the first turn, usually; trio may run
                    # us first in it): send us all, and look for the reply
                    # from the next turn on. Nobody in two turns: just us.
                    if self.submitted != self.held_at or turn >= HOLD_TURNS - 1:
                        self._flush()
                    continue
                if request.finished:  # failed meanwhile
                    break
                data = self.transport.receive_now()
                if data is not None:
                    self._dispatch(data)
                    if request.finished:
                        break
            if self.caller_flushes:
                self._flush()  # nobody joined after all
            self.spin.record(turns, caught=request.finished)
            if self.reader_parked:
                # The reader task was already waiting on the socket when we
                # came (callers_spin): two tasks must not, so leave the rest
                # to it — and let it read while we wait.
                self.caller_reading = False
                while not request.finished:
                    waiter = request.waiter = self.new_event()
                    await waiter.wait()
                return
            while not request.finished:
                self._dispatch(await self.transport.receive())
        except _STREAM_ERRORS as exc:
            self.fail(connection_lost(self.connection.settings.address, exc))
        except Exception as exc:  # a protocol error: the stream is unreadable
            self.fail(ConnectionError(f"Connection to {self.address} broke: {exc}"))
        finally:
            if self.caller_flushes:
                self._flush()
            self.caller_reading = False
            self.crowded = self.submitted != submitted
            if self.pending or (self.callers_spin and not self.reader_lazy):
                self._wake_reader()  # to read for the others, or watch for pushes

    def _dispatch(self, data: bytes) -> None:
        """Parse ``data`` and hand each complete reply to the head of the queue."""
        self.last_received = _now()
        reader = self.reader
        pending = self.pending
        strict_text = self.strict_text
        reader.feed(data)
        # Callers whose commands left in one write share an event: set it
        # once, not once per reply (finish() inlined, as this runs per reply).
        woken = None
        while pending:
            head = pending[0]
            decode = head.decode
            try:
                reply = reader.gets(decode)
            except UnicodeDecodeError as exc:
                # hiredis raises only once the whole reply is parsed, so the
                # stream is still in step: the error is this caller's reply.
                reply = exc
            if reply is False:
                return
            kind = type(reply)
            if kind is _Push:
                self.on_push(reply)
                continue
            # Most replies are ASCII text or a number: nothing to check.
            if (
                strict_text
                and decode
                and kind is not int
                and (kind is not str or not reply.isascii())
            ):
                reply = as_strict_text(reply)
            replies = head.replies
            replies.append(reply)
            if len(replies) == head.expected:
                pending.popleft()
                if not head.finished:  # not already timed out
                    head.finished = True
                    waiter = head.waiter
                    if waiter is not None and waiter is not woken:
                        waiter.set()
                        woken = waiter
        while (extra := reader.gets(self.connection.decode)) is not False:
            if type(extra) is not _Push:
                raise _UnexpectedReply(f"{self.address} sent a reply nobody asked for")
            self.on_push(extra)

    def fail(self, error: Exception) -> None:
        """Fail every waiting request and stop the tasks. Idempotent."""
        if self.failed is not None:
            return
        self.failed = error
        self.caller_flushes = False
        if self.on_lost is not None:
            self.on_lost()  # before any failed caller runs again
        self.outbox.clear()
        while self.pending:
            request = self.pending.popleft()
            if not request.finished:
                request.finish(error)
        if self.caller_reading:
            # Wake a caller blocked on this socket; the link task closes it.
            self.transport.notify_closing()
        self.scope.cancel()

    async def run(self) -> None:
        """The link's life: its tasks, then closing the connection."""
        try:
            with self.scope:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._write_loop)
                    if self.command_timeout is not None:
                        tasks.start_soon(self._watchdog, self.command_timeout)
                    await self._read_loop()
        finally:
            self.fail(ConnectionError(f"Connection to {self.address} closed"))
            with anyio.CancelScope(shield=True):
                await self.transport.aclose()

    async def _write_loop(self) -> None:
        try:
            while True:
                if not self.outbox:
                    wakeup = self.writer_wakeup = self.new_event()
                    await wakeup.wait()
                    continue
                data = b"".join(self.outbox) if len(self.outbox) > 1 else self.outbox[0]
                self.outbox.clear()
                self.write_wakeup = None  # later callers share the next write's
                self.writing = True
                await self.transport.send(data)
                self.writing = False
        except _STREAM_ERRORS as exc:
            self.fail(connection_lost(self.connection.settings.address, exc))

    async def _read_loop(self) -> None:
        back_to_back = False
        try:
            while True:
                # With a socket callers may read themselves, stand back while
                # one does, and while nobody waits. Otherwise (TLS) keep
                # reading, so a close on an idle connection is seen at once.
                if self.callers_spin and (self.caller_reading or self.reader_lazy):
                    # A caller reads for itself: stand back rather than wake
                    # for its replies; it wakes us when done. Found reading
                    # again when woken, its commands come back to back: then
                    # it need not wake us each time (see STAND_BACK).
                    wakeup = self.reader_wakeup = self.new_event()
                    if back_to_back:
                        self.reader_lazy = True
                        submitted = self.submitted
                        with anyio.move_on_after(STAND_BACK):
                            await wakeup.wait()
                        # Commands came meanwhile and nobody needed us: they
                        # still come back to back, whether or not one is being
                        # read this instant. Stand back again, or the next one
                        # finds us on the socket and waits for us to hand
                        # over its reply.
                        self.reader_lazy = back_to_back = (
                            not wakeup.is_set() and self.submitted != submitted
                        )
                    else:
                        await wakeup.wait()
                        back_to_back = True
                    continue
                back_to_back = False
                if self.callers_read and (not self.pending or self.caller_reading):
                    wakeup = self.reader_wakeup = self.new_event()
                    await wakeup.wait()
                    continue
                if not self.callers_spin:
                    self._dispatch(await self.transport.receive())
                    continue
                # Pushes: our own reading, so that a caller can see whether we
                # wait on the socket (reader_parked) and not wait there too.
                transport = self.transport
                assert isinstance(transport, SocketTransport)  # callers_spin
                if transport.drained:
                    self.reader_parked = True
                    try:
                        await transport.wait_readable()
                    finally:
                        self.reader_parked = False
                data = transport.receive_now()
                if data is not None:
                    self._dispatch(data)
        except _STREAM_ERRORS as exc:
            self.fail(connection_lost(self.connection.settings.address, exc))
        except Exception as exc:  # a protocol error: the stream is unreadable
            self.fail(ConnectionError(f"Connection to {self.address} broke: {exc}"))

    async def _watchdog(self, limit: float) -> None:
        pending = self.pending
        while True:
            if not pending:
                wakeup = self.watchdog_wakeup = self.new_event()
                await wakeup.wait()
                continue
            now = _now()
            next_deadline = None
            for request in pending:  # oldest first, so deadlines ascend
                if request.finished:
                    continue  # timed out earlier; its reply is still owed
                if request.deadline > now:
                    next_deadline = request.deadline
                    break
                request.finish(
                    TimeoutError(f"Timeout reading from {self.address} after {limit:g}s")
                )
            if now - self.last_received >= limit and any(
                request.deadline <= now for request in pending
            ):
                # A slow command is not a dead connection — but one that has
                # said nothing for a whole timeout while owing replies is (a
                # half-open TCP connection, a frozen server). Drop it so the
                # next command reconnects instead of queueing behind it.
                self.fail(
                    ConnectionError(
                        f"{self.address} sent nothing for {limit:g}s; connection closed"
                    )
                )
                return
            await anyio.sleep((next_deadline if next_deadline is not None else now + limit) - now)


#: Where to connect, asked on every (re)connect: Sentinel's answer changes
#: after a failover.
Resolver = Callable[[], Awaitable[ConnectionSettings]]


class _Attempt:
    """One connect attempt, awaited by the callers that arrived while it ran."""

    __slots__ = ("done", "error", "link")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.link: _Link | None = None
        self.error: Exception | None = None


class Multiplexer:
    """The shared connection, (re)opened on demand inside ``task_group``.

    Connecting happens in the background, never in a caller's own time:

    * The first caller that finds no usable link starts a connect attempt as
      a task of ``task_group``; it and the callers that arrive meanwhile wait
      for it, each at most its command timeout (a frozen server accepts TCP
      connections and then says nothing until ``connect_timeout``).
    * Once an attempt has failed — or taken longer than a caller could wait —
      Redis counts as *unavailable*: every caller fails at once with a
      ``ConnectionError`` naming the last failure, while the same task keeps
      trying with a capped, jittered backoff. Nobody sleeps a backoff, and
      nobody queues behind the connect timeout.
    * The first attempt that succeeds ends the outage for everyone.
    * A link that fails starts an attempt at once, caller or not: a circuit
      breaker above may be holding every caller back.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        task_group: TaskGroup,
        *,
        decode: bool,
        resolve: Resolver | None = None,
        on_push: PushHandler | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self._settings = settings
        self._tracker = tracker
        self._on_push = tracker.on_push if tracker is not None else on_push
        self._resolve = resolve
        self._task_group = task_group
        self._decode = decode
        self._link: _Link | None = None
        self._attempt: _Attempt | None = None
        #: Set while Redis is unavailable: what callers fail with at once.
        self._outage: Exception | None = None
        #: Connect attempts started so far (tests count them).
        self.attempts = 0
        #: The connecting task's scope, so that closing stops it (its task
        #: group may be the user's, and outlive us).
        self._connecting: anyio.CancelScope | None = None
        self._closed = False

    @property
    def last_heard(self) -> float:
        """When the server last sent us anything (monotonic seconds; a new
        connection counts): a circuit breaker ends its pause early on news."""
        link = self._link
        return link.last_received if link is not None else 0.0

    @property
    def outage(self) -> Exception | None:
        """Why Redis is unavailable now (reconnecting in the background), or None."""
        return self._outage

    def stalled(self, after: float, now: float | None = None) -> bool:
        """Whether the server has owed us a reply for ``after`` seconds
        without sending anything, or cannot be reached now: a frozen or
        vanished server, seen without waiting out a command timeout. (Read
        from the oldest request's deadline, so it needs a command timeout.)
        ``now``: the monotonic clock, if the caller has just read it."""
        if self._outage is not None:
            return True
        link = self._link
        timeout = self._settings.command_timeout
        if link is None or not link.pending or timeout is None:
            return False
        quiet_since = link.pending[0].deadline - timeout  # when the oldest was sent
        if link.last_received > quiet_since:
            quiet_since = link.last_received
        return (_now() if now is None else now) - quiet_since >= after

    async def request(self, payload: bytes, expected: int, decode: bool) -> list[Any]:
        """Send ``payload`` (holding ``expected`` commands) and return their replies.

        Error replies come back as exception values in the list; a failed
        connection raises ``ConnectionError`` and a missed deadline
        ``TimeoutError`` — at most one command timeout after the call began,
        connecting included. Cancellation is safe at every point: the request
        may still reach the server (and apply), but its replies are discarded;
        a scope cancelled before the call sends nothing.
        """
        link = self._link
        now = _now()
        if (
            link is None
            or link.failed is not None
            or (now - link.last_received > IDLE_CHECK_AFTER and not link.idle_and_sound())
        ):
            link = await self._connected_link()
        # Once queued, a command is sent — by us at once on an idle line, or
        # by the writer task, which may run before our wait below notices a
        # cancellation. So a scope cancelled already must stop us here, as
        # trio's own socket send does.
        await link.checkpoint_if_cancelled()
        timeout = self._settings.command_timeout
        request = _Request(expected, decode, now + timeout if timeout is not None else 0.0)
        if link.submit(payload, request):
            await link.read_for(request)
        elif not request.finished:
            waiter = link.write_wakeup
            if waiter is None:
                waiter = link.write_wakeup = link.new_event()
            request.waiter = waiter
            await waiter.wait()
            while not request.finished:
                # Woken with the others of our write, before our own reply.
                waiter = request.waiter = link.new_event()
                await waiter.wait()
        if request.error is not None:
            raise type(request.error)(*request.error.args)
        return request.replies

    async def _connected_link(self) -> _Link:
        if self._closed or self._outage is not None:
            # Failing fast is still a checkpoint: a caller that retries in a
            # loop must let the other tasks (and its own deadline) run.
            await anyio.lowlevel.checkpoint()
            if self._closed:
                raise ConnectionError("the client is closed")
            if self._outage is not None:
                raise unavailable(self._settings.address, self._outage)
        link = self._link
        if link is not None and link.failed is None:
            return link
        attempt = self._attempt or self._start_connecting()
        with anyio.move_on_after(self._settings.command_timeout):
            await attempt.done.wait()
        if attempt.link is not None:
            return attempt.link
        if attempt.error is not None:
            raise type(attempt.error)(*attempt.error.args)
        # Still connecting after a whole command timeout: callers after us
        # fail at once instead of each waiting as long.
        timeout = self._settings.command_timeout
        if self._outage is None:
            self._outage = ConnectTimeoutError(
                f"connecting to {self._settings.address} took longer than "
                f"the command timeout ({timeout:g}s)"
            )
        raise ConnectTimeoutError(
            f"Timeout connecting to {self._settings.address}: no answer within "
            f"the command timeout ({timeout:g}s); still trying in the background"
        )

    def _start_connecting(self) -> _Attempt:
        attempt = self._attempt = _Attempt()
        self._task_group.start_soon(
            self._connect, attempt, name=f"beignet-redis connect {self._settings.address}"
        )
        return attempt

    async def _serve(self, link: _Link) -> None:
        """Run ``link``; when it fails, start reconnecting at once. Callers
        held off by a circuit breaker would otherwise never try, and nobody
        would learn that Redis is back."""
        await link.run()
        if not self._closed and self._link is link and self._attempt is None:
            self._start_connecting()

    async def _connect(self, attempt: _Attempt) -> None:
        """Connect, retrying with backoff until a link is up or we close.

        Runs in the client's task group. Only the first attempt is awaited by
        anyone; after it fails, callers fail fast on ``_outage`` until a
        later attempt succeeds.
        """
        failures = 0
        try:
            with anyio.CancelScope() as self._connecting:
                while not self._closed:
                    self.attempts += 1
                    try:
                        settings = (
                            self._settings if self._resolve is None else await self._resolve()
                        )
                        connection = await open_connection(
                            settings, decode=self._decode, tracking=self._tracker is not None
                        )
                    except Exception as exc:
                        failures += 1
                        self._outage = exc
                        if not attempt.done.is_set():
                            attempt.error = exc
                            attempt.done.set()
                        backoff = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1))
                        await anyio.sleep(backoff * random.uniform(0.5, 1.0))
                        continue
                    tracker = self._tracker
                    if tracker is not None:
                        tracker.reset()  # nothing read before this link is vouched for
                    link = self._link = _Link(
                        connection,
                        self._settings.command_timeout,
                        self._on_push,
                        tracker.lost if tracker is not None else None,
                    )
                    self._task_group.start_soon(
                        self._serve, link, name=f"beignet-redis link {self._settings.address}"
                    )
                    self._outage = None
                    attempt.link = link
                    return
        finally:
            self._attempt = self._connecting = None
            if not attempt.done.is_set():
                attempt.error = ConnectionError("the client was closed")
            attempt.done.set()

    def drop(self, reason: str) -> None:
        """Fail the current connection now (its server stopped being the one
        to talk to); the next command connects afresh."""
        link = self._link
        if link is not None:
            link.fail(ConnectionError(reason))

    async def aclose(self) -> None:
        """Fail what is in flight, stop reconnecting, close the connection."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        link = self._link
        if link is not None:
            # The link's own task closes the socket as it stops.
            link.fail(ConnectionError("the client was closed"))
