"""Pipelines: many commands, one write, one round trip — and WATCH.

A pipeline's commands are encoded into one payload and queued on the shared
connection as a single request, so no other task's command can land between
them — which is also what makes ``transaction=True`` (MULTI … EXEC) safe on a
connection that every task shares.

WATCH is different: it marks the connection it runs on, and the caller's own
code runs between it and EXEC. So ``await pipe.watch(key)`` checks out a
dedicated connection (``_net.dedicated.HeldConnection``; it counts against
``max_blocking_connections``) and the pipeline holds it until ``execute()``,
``reset()``/``aclose()`` or the end of its ``async with`` — WATCH never runs
on the shared connection. While watching, commands run at once on that
connection and return their results (redis-py's "immediate mode"); ``multi()``
switches back to buffering, and ``execute()`` sends MULTI … EXEC there. EXEC's
null reply (a watched key changed) raises ``WatchError("Watched variable
changed.")``. On a cluster every watched key, and every command sent while
watching, must map to one slot (``CrossSlotTransactionError`` before anything
is sent otherwise); a MOVED/ASK reply while watching raises
``WatchError("Slot rebalancing occurred while watching keys")``, as redis-py's
cluster pipeline does, so ``client.transaction()`` retries on the new owner.
A lost connection or a timeout while watching stays a ``ConnectionError`` /
``TimeoutError`` (never turned into a retry: a command may have applied).

Cancellation: a command on the held connection that does not finish
(cancelled, timed out) closes that connection when the pipeline lets go of
it, which drops its WATCH on the server; the connection goes back to the pool
only when it is known clean (after EXEC, or an UNWATCH that was answered).
``reset()`` sends that UNWATCH unshielded: cancelled there, the connection is
closed instead. Releasing itself is shielded and bounded.

Errors read as redis-py's do — ``Command # 3 (LPUSH c 3) of pipeline caused
error: …``, the command and its arguments as redis-py shows them (values
included, as redis-py does) — except commands that carry credentials
(``AUTH``, ``HELLO … AUTH``, ``MIGRATE … AUTH/AUTH2``, ``ACL SETUSER``,
``CONFIG SET requirepass/masterauth``, ``SENTINEL`` settings), whose
arguments are replaced by ``<REDACTED>``.

Scripts (``client.register_script``) run in a pipeline as EVALSHA: before the
pipeline is sent, the scripts it uses are checked with SCRIPT EXISTS and the
missing ones loaded, as redis-py does, so a SCRIPT FLUSH never fails it.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any, Protocol

from redis.commands import AsyncCoreCommands
from redis.exceptions import (
    AskError,
    CrossSlotTransactionError,
    DataError,
    ExecAbortError,
    InvalidResponse,
    MovedError,
    RedisError,
    WatchError,
)

from .._net.commands import DEDICATED, NOT_BLOCKING, Command, command_for
from .._net.dedicated import HeldConnection
from .._net.redis_compat import (
    EMPTY_RESPONSE,
    EVENT_DISPATCHER,
    annotate_pipeline_error,
    safe_str,
)
from .._net.wire import encode_command, encode_commands
from .._topology.cluster import command_slot

__all__ = ["Pipeline", "PipelineClient", "PipelineScript"]

Stack = list[tuple[tuple[Any, ...], dict[str, Any]]]

#: Commands whose success leaves the connection watching nothing.
_UNWATCHES = frozenset({"EXEC", "DISCARD", "UNWATCH"})
#: Commands the pipeline sends itself; queued by hand they would leave a
#: connection in MULTI or watching. DISCARD may be queued (as redis-py does).
_OWN_WORDS = {
    "MULTI": "call pipe.multi()",
    "EXEC": "await pipe.execute()",
    "WATCH": "await pipe.watch(*keys)",
    "UNWATCH": "await pipe.unwatch()",
}
_MOVED = "Slot rebalancing occurred while watching keys"


class PipelineScript(Protocol):
    """What a pipeline needs of a script: its SHA1 and its text."""

    sha: str
    script: Any


class PipelineClient(Protocol):
    """What a pipeline needs of its client (``RedisClient`` is one), so the
    pipeline depends on this and not on the client module, which makes
    pipelines."""

    def get_encoder(self) -> Any: ...

    def get_connection_kwargs(self) -> dict[str, Any]: ...

    async def _execute_many(self, commands: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
        """The raw replies to ``commands``, sent in one write (error replies
        as exception values; a transaction's wrapped in MULTI … EXEC)."""
        ...

    def _shape(self, command: Command, reply: Any, options: dict[str, Any]) -> Any:
        """One reply as the client would return it; raises an error reply."""
        ...

    async def _watch_connection(self, keys: Sequence[Any]) -> tuple[HeldConnection, int | None]:
        """An open held connection to the server of ``keys``, and (on a
        cluster) their one slot; raises ``CrossSlotTransactionError`` first
        when they span slots."""
        ...

    def _redirected(self, error: Exception) -> None:
        """A MOVED/ASK arrived on a held connection: look the slot up again."""
        ...

    async def _load_scripts(self, scripts: Sequence[PipelineScript]) -> None:
        """Make sure every server a pipeline may run ``scripts`` on has them."""
        ...


class Pipeline(AsyncCoreCommands):
    """Queue commands with redis-py's methods, then ``await execute()``.

    Command methods return the pipeline, so calls chain
    (``pipe.set("a", 1).incr("a")``). ``execute(raise_on_error=True)`` raises
    the first error reply, annotated as redis-py does; with ``False`` the
    errors stand in the result list. The pipeline is reset either way.

    ``await pipe.watch(*keys)`` starts watching (see the module docstring):
    then commands run at once (``await pipe.get(k)``) until ``pipe.multi()``.
    ``async with client.pipeline() as pipe:`` resets it on exit, releasing a
    held connection; so do ``reset()`` and ``aclose()``.
    """

    _event_dispatcher = EVENT_DISPATCHER

    def __init__(self, client: PipelineClient, *, transaction: bool) -> None:
        self._client = client
        self.transaction = transaction
        self.command_stack: Stack = []
        #: Scripts (``register_script``) queued here, loaded before execute.
        self.scripts: set[PipelineScript] = set()
        #: A WATCH is in force on the held connection.
        self.watching = False
        #: ``multi()`` was called: buffer, and execute as a transaction.
        self.explicit_transaction = False
        self._held: HeldConnection | None = None
        #: On a cluster, the slot of the watched keys.
        self._slot: int | None = None

    @property
    def is_transaction(self) -> bool:
        """redis-py's name for ``transaction``."""
        return self.transaction

    async def __aenter__(self) -> Pipeline:
        """The pipeline itself; nothing is sent. Raises nothing. Cancellation: nothing to undo."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Reset: the queue is dropped unsent, and a held connection is given back (after an
        ``UNWATCH``) or closed. Raises nothing of the reset's own. Cancellation: a connection
        whose ``UNWATCH`` is cancelled is closed instead, so no ``WATCH`` outlives the block."""
        await self.reset()

    def __await__(self) -> Generator[Any, None, Pipeline]:
        # ``await client.pipeline()`` and ``await pipe.set(…)`` (what a
        # redis-py script object does with its client) give the pipeline.
        return self._async_self().__await__()

    async def _async_self(self) -> Pipeline:
        return self

    def __len__(self) -> int:
        return len(self.command_stack)

    def __bool__(self) -> bool:
        return True

    def get_encoder(self) -> Any:
        return self._client.get_encoder()

    def get_connection_kwargs(self) -> dict[str, Any]:
        return self._client.get_connection_kwargs()

    # -- state ----------------------------------------------------------------

    async def reset(self) -> None:  # type: ignore[override]
        """Drop the queued commands and scripts, stop watching and give the
        held connection back (redis-py's pipeline ``reset``; not the
        ``RESET`` command, which the shared connection refuses).

        A held connection not known clean gets an UNWATCH first; if that
        fails or is cancelled, the connection is closed instead (the server
        then drops the watch). Errors of that UNWATCH are not raised."""
        held = self._held
        if held is not None and held.is_open and not held.clean and not held.interrupted:
            try:
                (reply,) = await held.request(encode_command(("UNWATCH",)), 1)
            except RedisError:
                pass  # the connection is closed below, which unwatches too
            else:
                held.clean = not isinstance(reply, Exception)
            finally:
                await self._forget()
        else:
            await self._forget()

    async def _forget(self) -> None:
        """Clear every state and release the held connection (kept only if
        clean). Shielded and bounded, through the release."""
        self.command_stack = []
        self.scripts = set()
        self.watching = False
        self.explicit_transaction = False
        self._slot = None
        held, self._held = self._held, None
        if held is not None:
            await held.release()

    async def aclose(self) -> None:
        """The same as :meth:`reset`.

        Raises and cancels as :meth:`reset`.
        """
        await self.reset()

    def multi(self) -> None:
        """Start buffering the transaction after ``watch()``; end it with
        ``execute()``."""
        if self.explicit_transaction:
            raise RedisError("Cannot issue nested calls to MULTI")
        if self.command_stack:
            raise RedisError("Commands without an initial WATCH have already been issued")
        self.explicit_transaction = True

    async def watch(self, *names: Any) -> Any:  # type: ignore[override]
        """Watch keys ``names`` on a connection of this pipeline's own
        (checked out now); EXEC fails with ``WatchError`` if any changes.

        Raises ``ConnectionError``/``TimeoutError`` when no connection can be checked out or the
        ``WATCH`` fails, and ``CrossSlotTransactionError`` on a cluster when the keys span
        slots. Cancellation: a ``WATCH`` that does not finish closes its connection when the
        pipeline lets go of it, which drops the ``WATCH`` on the server.
        """
        if self.explicit_transaction:
            raise RedisError("Cannot issue a WATCH after a MULTI")
        return await self.immediate_execute_command("WATCH", *names)

    async def unwatch(self) -> Any:  # type: ignore[override]
        """Stop watching (UNWATCH, when something is watched) and give the
        held connection back; ``True``.

        Raises ``ConnectionError``/``TimeoutError`` when the ``UNWATCH`` fails; the connection
        is then closed. Cancellation: the connection is closed instead of given back.
        """
        return (self.watching and await self.immediate_execute_command("UNWATCH")) or True

    async def discard(self) -> None:
        """Queue a DISCARD, as redis-py does: in a transaction it ends the
        MULTI early, so ``execute()`` then fails (``EXEC without MULTI``).

        Raises, while watching, what the held connection's ``DISCARD`` raises. Cancellation: as
        any command on the held connection (it is closed when the pipeline lets go).
        """
        await self.execute_command("DISCARD")

    # -- commands ---------------------------------------------------------------

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Queue a command (returns the pipeline), or run it at once while
        watching (returns an awaitable of its result)."""
        if (self.watching or command_for(args).name == "WATCH") and not self.explicit_transaction:
            return self.immediate_execute_command(*args, **options)
        return self.pipeline_execute_command(*args, **options)

    def pipeline_execute_command(self, *args: Any, **options: Any) -> Pipeline:
        """Queue a command for :meth:`execute`; returns the pipeline."""
        command = command_for(args)
        if command.name in _OWN_WORDS:
            raise DataError(
                f"{command.name} is sent by the pipeline itself: {_OWN_WORDS[command.name]}"
            )
        if (
            not (self.transaction or self.explicit_transaction)
            and command.path is DEDICATED
            and command.block_time(args) != NOT_BLOCKING
        ):
            raise DataError(
                f"{command.name} blocks the connection it runs on; run it on its own "
                "(await client.…) or inside pipeline(transaction=True)"
            )
        if command.name != "DISCARD":
            command.refuse(args)
        self.command_stack.append((args, options))
        return self

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command now on the held connection (checked out by the
        first, which is a WATCH) and return its result.

        Raises the command's error reply as redis-py's class, and
        ``ConnectionError``/``TimeoutError``. Cancellation: a command that does not finish
        closes the held connection when the pipeline lets go of it.
        """
        command = command_for(args)
        name = command.name
        if name in ("MULTI", "EXEC"):
            raise DataError(
                f"{name} while watching: call pipe.multi(), queue the commands, "
                "then await pipe.execute()"
            )
        if name not in _UNWATCHES and name != "WATCH":
            command.refuse(args)
        held = self._held
        if held is None:
            if name != "WATCH":
                raise RedisError(f"{name} runs at once only while watching; call watch() first")
            held, self._slot = await self._client._watch_connection(command.keys(args))
            self._held = held
        else:
            self._check_slot(command, args)
        wait = command.block_time(args)
        try:
            (reply,) = await held.request(
                encode_command(args), 1, wait=0.0 if wait == NOT_BLOCKING else wait
            )
        except BaseException:
            await self._forget()  # interrupted: the connection is closed
            raise
        if isinstance(reply, (MovedError, AskError)):
            self._client._redirected(reply)
            await self._forget()
            raise WatchError(_MOVED)
        if not isinstance(reply, Exception):
            if name == "WATCH":
                self.watching = True
            elif name in _UNWATCHES:
                # Nothing watched any more: the connection is clean, and the
                # pipeline has no more use for it.
                held.clean = True
                await self._forget()
        return self._client._shape(command, reply, dict(options))

    def _check_slot(self, command: Command, args: tuple[Any, ...]) -> None:
        if self._slot is None:
            return
        slot = command_slot(command, args)
        if slot is not None and slot != self._slot:
            raise CrossSlotTransactionError(  # type: ignore[no-untyped-call, unused-ignore]
                f"{command.name}'s keys are not in the slot of the watched keys: while "
                "watching, every key must share one cluster slot (give them a hash tag)"
            )

    async def load_scripts(self) -> None:
        """Load the queued scripts the server(s) lack (SCRIPT EXISTS, then
        SCRIPT LOAD), on the held connection while watching.

        Raises the server's error replies (``ResponseError``) and
        ``ConnectionError``/``TimeoutError``. Cancellation: as any command on the held
        connection.
        """
        scripts = list(self.scripts)
        held = self._held
        if held is None:
            await self._client._load_scripts(scripts)
            return
        (exists,) = await held.request(
            encode_command(("SCRIPT", "EXISTS", *[s.sha for s in scripts])), 1
        )
        if isinstance(exists, Exception):
            raise exists
        missing = [s for s, exist in zip(scripts, exists, strict=True) if not exist]
        if missing:
            loads = [("SCRIPT", "LOAD", s.script) for s in missing]
            for reply in await held.request(encode_commands(loads), len(loads)):
                if isinstance(reply, Exception):
                    raise reply

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send the queued commands and return their results in order; then
        reset. A transaction whose watched keys changed raises ``WatchError``.

        Raises the first command's error annotated as redis-py's (``Command # n (…) of pipeline
        caused error: …``) unless ``raise_on_error=False``, ``ConnectionError``/``TimeoutError``
        (never retried: a command may have applied), and ``CrossSlotTransactionError`` before
        anything is sent on a cluster. Cancellation: the commands may or may not have been
        applied; their replies are read and dropped on the shared connection, and a held
        connection is closed.
        """
        stack = self.command_stack
        if not stack and not self.watching:
            return []
        self.command_stack = []
        transactional = self.transaction or self.explicit_transaction
        try:
            if self.scripts:
                await self.load_scripts()
            # Commands with a ready answer for no arguments (MGET of no keys)
            # are not sent in a transaction: their error would abort it.
            sent = [entry for entry in stack if not (transactional and EMPTY_RESPONSE in entry[1])]
            commands = [args for args, _ in sent]
            if self._held is not None:
                replies = await self._on_held(self._held, commands, transactional)
            elif commands or transactional:
                replies = await self._client._execute_many(commands, transactional)
            else:
                replies = []
            if transactional:
                replies = self._unwrap_transaction(sent, replies)
            answers = iter(replies)
            results = [
                options[EMPTY_RESPONSE]
                if transactional and EMPTY_RESPONSE in options
                else self._shape(args, options, next(answers))
                for args, options in stack
            ]
            if raise_on_error:
                for number, ((args, _), result) in enumerate(zip(stack, results, strict=True), 1):
                    if isinstance(result, Exception):
                        raise annotate_exception(result, number, args)
            return results
        finally:
            await self.reset()

    async def _on_held(
        self, held: HeldConnection, commands: list[tuple[Any, ...]], transactional: bool
    ) -> list[Any]:
        for args in commands:
            self._check_slot(command_for(args), args)
        if transactional:
            commands = [("MULTI",), *commands, ("EXEC",)]
        if not commands:
            return []
        replies = await held.request(encode_commands(commands), len(commands))
        if transactional:
            outcome = replies[-1]
            # EXEC ends the WATCH whatever it answers, unless there was no
            # MULTI to execute (a queued DISCARD ended it early).
            held.clean = not isinstance(outcome, Exception) or isinstance(outcome, ExecAbortError)
        self.watching = False
        if any(isinstance(reply, (MovedError, AskError)) for reply in replies):
            self._client._redirected(next(r for r in replies if isinstance(r, Exception)))
            raise WatchError(_MOVED)
        return replies

    def _unwrap_transaction(self, stack: Stack, replies: list[Any]) -> list[Any]:
        queued, outcome = replies[1:-1], replies[-1]
        if isinstance(replies[0], Exception):
            raise replies[0]
        if isinstance(outcome, Exception):
            # EXEC refused the whole batch: report why, as redis-py does, with
            # the first command the server rejected while queueing.
            for number, ((args, _), reply) in enumerate(zip(stack, queued, strict=True), start=1):
                if isinstance(reply, Exception):
                    raise annotate_exception(reply, number, args) from outcome
            raise outcome
        if outcome is None:
            raise WatchError("Watched variable changed.")
        if len(outcome) != len(stack):
            raise InvalidResponse("EXEC returned a different number of replies than were queued")
        return list(outcome)

    def _shape(self, args: tuple[Any, ...], options: dict[str, Any], reply: Any) -> Any:
        if isinstance(reply, Exception):
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            return reply
        try:
            return self._client._shape(command_for(args), reply, dict(options))
        except RedisError as exc:  # pragma: no cover - callbacks rarely raise
            return exc


# -- error wording ------------------------------------------------------------

#: ``CONFIG SET`` parameters that are credentials.
_SECRET_PARAMETERS = frozenset({"REQUIREPASS", "MASTERAUTH", "MASTERUSER"})
#: Options after which ``HELLO`` and ``MIGRATE`` carry credentials.
_AUTH_WORDS = frozenset({"AUTH", "AUTH2"})
#: redis-py 8.2 writes the same placeholder, so the wording does not change with its release.
_REDACTED = "<REDACTED>"


def _redacted(args: Sequence[Any]) -> list[str]:
    """``args`` as redis-py shows them, with any credential replaced."""
    words = [safe_str(arg) for arg in args]
    if not words:
        return words
    upper = [word.upper() for word in words]
    tokens = [token for word in upper[:2] for token in word.split()]
    name, sub = tokens[0] if tokens else "", tokens[1] if len(tokens) > 1 else ""
    # How many words name the command and its subcommand: redis-py sends
    # ``"ACL SETUSER"`` as one word, a caller may send two.
    named = 1 if len(upper[0].split()) > 1 else 2
    if name == "AUTH":
        return [words[0], _REDACTED] if len(words) > 1 else words
    secret = (
        (name, sub) == ("ACL", "SETUSER")
        or (name == "CONFIG" and any(word in _SECRET_PARAMETERS for word in upper))
        or (name == "SENTINEL" and any("PASS" in word or "AUTH" in word for word in upper))
    )
    if secret:
        return [*words[:named], _REDACTED]
    if name in ("HELLO", "MIGRATE"):
        for index, word in enumerate(upper[1:], start=1):
            if word in _AUTH_WORDS:
                return [*words[: index + 1], _REDACTED]
    return words


def annotate_exception(error: Exception, number: int, args: Sequence[Any]) -> Exception:
    """Word ``error`` as the installed redis-py's pipeline does (``Command # 2
    (LPUSH c 3) of pipeline caused error: …``), credentials redacted; returns it."""
    annotate_pipeline_error(error, number, _redacted(args))
    return error
