"""Sentinel: find the current master, and follow it through failovers.

The master is looked up on every (re)connect — ``SENTINEL
GET-MASTER-ADDR-BY-NAME`` on the first sentinel that answers — and the
connection's handshake checks with ``ROLE`` that the server really is a
master (a failover may have demoted it since the sentinel answered).

A watcher subscribes to a sentinel's ``+switch-master`` messages and drops our
connections the moment the master changes, so the next command goes to the
new master. A connection loss does the same. Commands caught in the switch
fail fast with ``ConnectionError`` — never replayed, never left hanging.

With ``read_from`` other than ``"primary"``, :class:`SentinelReplicas` sends
the read-only commands to the master's replicas, as ``SENTINEL REPLICAS``
names them (skipping those flagged down or disconnected, or whose link to
the master is not ``ok``); each connection checks with ``ROLE`` that its
server is a replica. The sentinels are asked again, in the background, at
each ``+switch-master``, when a replica's connection fails, and when their
answer is older than :data:`REPLICAS_MAX_AGE`.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from redis.exceptions import ConnectionError

from .._net.settings import ConnectionSettings
from .._net.subscriber import stay_subscribed
from .._net.transport import open_connection
from .._net.wire import encode_command
from .replicas import ReplicaNodes
from .urls import SentinelSettings

__all__ = ["SentinelReplicas", "SentinelResolver", "watch_for_switches"]

Address = tuple[str, int]
#: How soon the sentinels are asked again after none could name the replicas.
_REASK_AFTER = 1.0
#: How old their answer may be before a read asks again (in the background):
#: a replica that was resyncing, or a demoted master, joins within this.
REPLICAS_MAX_AGE = 5.0


class SentinelResolver:
    """Callable: the current master's connection settings."""

    def __init__(self, settings: SentinelSettings) -> None:
        self._settings = settings
        self._sentinels = list(settings.sentinels)

    async def _ask(self, host: str, port: int, question: str) -> Any:
        """A sentinel's answer to ``SENTINEL <question> <our master>``."""
        connection = await open_connection(self._settings.for_sentinel(host, port), decode=True)
        try:
            with anyio.fail_after(self._settings.node.connect_timeout):
                await connection.transport.send(
                    encode_command(("SENTINEL", question, self._settings.service_name))
                )
                reply = await connection.read_reply()
        finally:
            await connection.aclose()
        if isinstance(reply, Exception):
            raise ConnectionError(f"sentinel {host}:{port} answered: {reply}")
        return reply

    async def _first_answer(self, question: str, what: str) -> Any:
        """The first sentinel's answer that is not empty, trying each in turn."""
        reasons: list[str] = []
        for host, port in list(self._sentinels):
            try:
                reply = await self._ask(host, port, question)
            except (ConnectionError, OSError, TimeoutError) as exc:
                reasons.append(f"{host}:{port}: {exc}")
                continue
            if not reply:
                reasons.append(f"{host}:{port} does not know {self._settings.service_name!r}")
                continue
            # Ask the sentinel that answered first next time.
            self._sentinels.remove((host, port))
            self._sentinels.insert(0, (host, port))
            return reply
        raise ConnectionError(
            f"no sentinel could name the {what} {self._settings.service_name!r}: "
            + "; ".join(reasons)
        )

    async def __call__(self) -> ConnectionSettings:
        reply = await self._first_answer("GET-MASTER-ADDR-BY-NAME", "master")
        return self._settings.for_master(str(reply[0]), int(reply[1]))

    async def replicas(self) -> list[Address]:
        """The master's replicas that serve reads now, as a sentinel sees them."""
        reply = await self._first_answer("REPLICAS", "replicas of")
        found: list[Address] = []
        for entry in reply:
            info = dict(zip(entry[::2], entry[1::2], strict=False))
            flags = set(str(info.get("flags", "")).split(","))
            if flags & {"s_down", "o_down", "disconnected"}:
                continue
            if info.get("master-link-status") != "ok":
                continue
            found.append((str(info["ip"]), int(info["port"])))
        return found


class SentinelReplicas:
    """The read-only commands' way to the master's replicas (see the
    module's docstring); a read no replica can take goes to the master."""

    def __init__(
        self,
        settings: SentinelSettings,
        resolver: SentinelResolver,
        task_group: TaskGroup,
        *,
        decode: bool,
    ) -> None:
        self._settings = settings
        self._resolver = resolver
        self._task_group = task_group
        self._replicas: tuple[Address, ...] = ()
        readers = ReplicaNodes.reading(settings, task_group, decode=decode)
        assert readers is not None, "made only when reading from replicas"
        self._readers = readers
        #: Asked once, stale since (a switch, a lost replica), an ask under way.
        self._asked = False
        self._asked_at = 0.0
        self._stale = True
        self._asking = False
        self._closed = False

    @property
    def replicas(self) -> tuple[Address, ...]:
        """The replicas reads go to, as the sentinels last named them."""
        return self._replicas

    def stale(self) -> None:
        """The master switched, or a replica was lost: ask the sentinels again."""
        self._stale = True

    async def _ask(self, *, background: bool) -> None:
        """Ask the sentinels for the replicas (one ask at a time). None
        answering leaves the list as it was; in the background, for
        :data:`_REASK_AFTER` at least."""
        try:
            try:
                replicas = tuple(await self._resolver.replicas())
            except Exception:  # no sentinel answered (or answered nonsense): reads go to the master
                if background:
                    await anyio.sleep(_REASK_AFTER)
                return
            self._stale = False
            self._asked_at = time.monotonic()
            self._readers.keep_only(replicas)
            self._replicas = replicas
        finally:
            self._asked = True
            self._asking = False

    async def read(self, commands: list[tuple[Any, ...]], decode: bool) -> list[Any] | None:
        """The replies of read-only ``commands`` from a replica, or ``None``:
        send them to the master."""
        if not self._stale and time.monotonic() - self._asked_at > REPLICAS_MAX_AGE:
            self._stale = True
        if self._stale and not self._asking and not self._closed:
            self._asking = True
            if self._asked:
                self._task_group.start_soon(
                    lambda: self._ask(background=True), name="beignet-redis sentinel replicas"
                )
            else:
                await self._ask(background=False)  # the first read waits for the answer
        return await self._readers.read(self._replicas, commands, decode, self.stale)

    async def aclose(self) -> None:
        """Close every replica's connections (shielded, each bounded)."""
        self._closed = True
        await self._readers.aclose()


async def watch_for_switches(settings: SentinelSettings, on_switch: Callable[[str], None]) -> None:
    """Run for the client's life: call ``on_switch(reason)`` at each
    ``+switch-master`` for our master, from whichever sentinel answers
    (each reconnect asks the next one, in a shuffled order)."""
    order = itertools.cycle(random.sample(settings.sentinels, len(settings.sentinels)))

    async def next_sentinel() -> ConnectionSettings:
        return settings.for_sentinel(*next(order))

    def message(channel: str, data: object) -> None:
        fields = str(data).split()
        if fields and fields[0] == settings.service_name:
            on_switch(
                f"master {settings.service_name!r} moved to "
                f"{' '.join(fields[3:5]).replace(' ', ':')}"
            )

    await stay_subscribed(next_sentinel, ["+switch-master"], message)
