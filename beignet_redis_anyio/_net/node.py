"""One server, as this library talks to it: a shared connection and a few
dedicated ones.

A node owns the multiplexed connection every task shares and the bounded set
of dedicated connections for blocking commands, so the two are made, judged
and closed together: the dedicated set fails fast while the shared
connection knows the server is unavailable, a Sentinel failover retires both,
and closing the node ends both. The single-server client has one node, a
Sentinel client one whose address is asked on every connect, a cluster one
per primary (as rueidis has one ``mux`` per node).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from .dedicated import DedicatedConnections
from .multiplexer import Multiplexer, Tracker
from .settings import ConnectionSettings

__all__ = ["Node"]


class Node:
    """The connections to one server, opened lazily inside ``task_group``."""

    __slots__ = ("dedicated", "shared")

    def __init__(
        self,
        settings: ConnectionSettings,
        task_group: TaskGroup,
        *,
        decode: bool,
        resolve: Callable[[], Awaitable[ConnectionSettings]] | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.shared = Multiplexer(
            settings, task_group, decode=decode, resolve=resolve, tracker=tracker
        )
        self.dedicated = DedicatedConnections(
            settings, decode=decode, resolve=resolve, outage=self._outage
        )

    def _outage(self) -> Exception | None:
        return self.shared.outage

    def left(self, reason: str) -> None:
        """The server stopped being the one to talk to (a failover): fail
        the shared connection now and never reuse today's idle dedicated
        ones; the next command connects afresh."""
        self.shared.drop(reason)
        self.dedicated.retire_idle()

    async def aclose(self) -> None:
        """Close both: in-flight commands, blocking ones included, fail with
        ``ConnectionError``. Shielded; each part bounds its own close."""
        with anyio.CancelScope(shield=True):
            await self.shared.aclose()
            await self.dedicated.aclose()
