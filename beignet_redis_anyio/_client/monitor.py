"""``client.monitor()``: watch every command the server runs, as redis-py does.

``MONITOR`` turns a connection into a one-way stream of lines, so it gets a
connection of its own, opened on entry and closed on exit; the shared
connection never sees it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import attrs
from redis.exceptions import RedisError

from .._net.settings import ConnectionSettings
from .._net.transport import RawConnection, open_connection
from .._net.wire import encode_command

__all__ = ["Monitor"]

_LINE = re.compile(r"\[(\d+) (.*?)\] (.*)")
_ARGUMENT = re.compile(r'"(.*?)(?<!\\)"')


class Monitor:
    """``async with client.monitor() as m:`` then ``await m.next_command()``
    or ``async for info in m.listen()``; each command is redis-py's dict
    (``time``, ``db``, ``client_address``, ``client_port``, ``client_type``,
    ``command``).

    Cancellation: a cancelled ``next_command`` consumes nothing that it does
    not return — what it had read of a line stays buffered for the next
    call. Leaving the block closes the connection (shielded, bounded), which
    ends ``MONITOR`` on the server.
    """

    def __init__(self, where: Callable[[], Awaitable[ConnectionSettings]]) -> None:
        self._where = where
        self._connection: RawConnection | None = None

    async def __aenter__(self) -> Monitor:
        # A line of text whatever the protocol; RESP2 keeps it one.
        """Open the monitor's own connection and send ``MONITOR``. Raises redis-py's
        ``ConnectionError``/``TimeoutError``/``AuthenticationError`` when the connection cannot
        be opened, and ``RedisError`` when the server refuses ``MONITOR``. Cancellation: what
        was opened is closed, shielded, before the cancellation propagates."""
        settings = attrs.evolve(await self._where(), protocol=2)
        connection = await open_connection(settings, decode=True)
        try:
            await connection.transport.send(encode_command(("MONITOR",)))
            with anyio.fail_after(settings.connect_timeout):
                reply = await connection.read_reply()
            if reply != "OK":
                raise RedisError(f"MONITOR failed: {reply}")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await connection.aclose()
            raise
        self._connection = connection
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the monitor's connection, shielded. Raises nothing of its own. Cancellation: the
        close still runs."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.aclose()

    async def next_command(self) -> dict[str, Any]:
        """The next command the server ran (waits for one).

        Raises ``RedisError`` outside ``async with``, or for a line it cannot parse, and
        ``ConnectionError`` when the connection is lost. Cancellation: the wait is abandoned;
        the next call reads the next line.
        """
        if self._connection is None:
            raise RedisError("use the monitor inside `async with client.monitor() as m:`")
        line = await self._connection.read_reply()
        if isinstance(line, Exception):
            raise line
        return parse_monitor_line(str(line))

    async def listen(self) -> AsyncIterator[dict[str, Any]]:
        """Every command the server runs, until the block ends.

        Raises as :meth:`next_command`. Cancellation: as :meth:`next_command`.
        """
        while True:
            yield await self.next_command()


def parse_monitor_line(line: str) -> dict[str, Any]:
    """One ``MONITOR`` line as redis-py's ``Monitor.next_command`` returns it."""
    command_time, _, command_data = line.partition(" ")
    match = _LINE.match(command_data)
    if match is None:
        raise RedisError(f"unexpected MONITOR line: {line[:80]!r}")
    db_id, client_info, command = match.groups()
    command = " ".join(_ARGUMENT.findall(command)).replace('\\"', '"')
    if client_info == "lua":
        address, port, kind = "lua", "", "lua"
    elif client_info.startswith("unix"):
        address, port, kind = "unix", client_info[5:], "unix"
    else:
        address, _, port = client_info.rpartition(":")  # IPv6 holds colons
        kind = "tcp"
    return {
        "time": float(command_time),
        "db": int(db_id),
        "client_address": address,
        "client_port": port,
        "client_type": kind,
        "command": command,
    }
