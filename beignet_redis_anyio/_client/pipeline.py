"""Pipelines: many commands, one write, one round trip.

A pipeline's commands are encoded into one payload and queued on the shared
connection as a single request, so no other task's command can land between
them — which is also what makes ``transaction=True`` (MULTI … EXEC) safe on a
connection that every task shares.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol

from redis.commands import AsyncCoreCommands
from redis.exceptions import DataError, InvalidResponse, RedisError, WatchError

from .._net.commands import DEDICATED, NOT_BLOCKING, Command, command_for
from .._net.redis_compat import EMPTY_RESPONSE, EVENT_DISPATCHER

__all__ = ["Pipeline", "PipelineClient"]


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


class Pipeline(AsyncCoreCommands):
    """Queue commands with redis-py's methods, then ``await execute()``.

    Command methods return the pipeline, so calls chain
    (``pipe.set("a", 1).incr("a")``). ``execute(raise_on_error=True)`` raises
    the first error reply (annotated with its position); with ``False`` the
    errors stand in the result list. The queue is emptied either way.
    """

    _event_dispatcher = EVENT_DISPATCHER

    def __init__(self, client: PipelineClient, *, transaction: bool) -> None:
        self._client = client
        self.transaction = transaction
        self.command_stack: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.reset()

    def __len__(self) -> int:
        return len(self.command_stack)

    def __bool__(self) -> bool:
        return True

    def get_encoder(self) -> Any:
        return self._client.get_encoder()

    def get_connection_kwargs(self) -> dict[str, Any]:
        return self._client.get_connection_kwargs()

    async def reset(self) -> None:  # type: ignore[override]
        """Drop the queued commands (redis-py's pipeline ``reset``; not the
        ``RESET`` command, which the shared connection refuses)."""
        self.command_stack.clear()

    def execute_command(self, *args: Any, **options: Any) -> Pipeline:
        command = command_for(args)
        if (
            not self.transaction
            and command.path is DEDICATED
            and command.block_time(args) != NOT_BLOCKING
        ):
            raise DataError(
                f"{command.name} blocks the connection it runs on; run it on its own "
                "(await client.…) or inside pipeline(transaction=True)"
            )
        command.refuse(args)
        self.command_stack.append((args, options))
        return self

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack, self.command_stack = self.command_stack, []
        if not stack:
            return []
        replies = await self._client._execute_many([args for args, _ in stack], self.transaction)
        if self.transaction:
            replies = self._unwrap_transaction(stack, replies)
        results = [
            self._shape(args, options, reply)
            for (args, options), reply in zip(stack, replies, strict=True)
        ]
        if raise_on_error:
            for number, ((args, _), result) in enumerate(zip(stack, results, strict=True), start=1):
                if isinstance(result, Exception):
                    raise _annotated(result, number, args)
        return results

    def _unwrap_transaction(
        self, stack: list[tuple[tuple[Any, ...], dict[str, Any]]], replies: list[Any]
    ) -> list[Any]:
        queued, outcome = replies[1:-1], replies[-1]
        if isinstance(replies[0], Exception):
            raise replies[0]
        if isinstance(outcome, Exception):
            # EXEC refused the whole batch: report why, as redis-py does, with
            # the first command the server rejected while queueing.
            for number, ((args, _), reply) in enumerate(zip(stack, queued, strict=True), start=1):
                if isinstance(reply, Exception):
                    raise _annotated(reply, number, args) from outcome
            raise outcome
        if outcome is None:  # pragma: no cover - only after WATCH, which we refuse
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


def _annotated(error: Exception, number: int, args: tuple[Any, ...]) -> Exception:
    # Name the command, not its arguments: arguments may hold values or
    # credentials that have no business in an exception message.
    name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
    error.args = (f"Command # {number} ({name.upper()}) of pipeline caused error: {error}",)
    return error
