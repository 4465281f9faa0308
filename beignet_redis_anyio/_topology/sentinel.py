"""Sentinel: find the current master, and follow it through failovers.

The master is looked up on every (re)connect — ``SENTINEL
GET-MASTER-ADDR-BY-NAME`` on the first sentinel that answers — and the
connection's handshake checks with ``ROLE`` that the server really is a
master (a failover may have demoted it since the sentinel answered).

A watcher subscribes to a sentinel's ``+switch-master`` messages and drops our
connections the moment the master changes, so the next command goes to the
new master. A connection loss does the same. Commands caught in the switch
fail fast with ``ConnectionError`` — never replayed, never left hanging.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import anyio
from redis.exceptions import ConnectionError

from .._net.settings import ConnectionSettings
from .._net.subscriber import stay_subscribed
from .._net.transport import open_connection
from .._net.wire import encode_command
from .urls import SentinelSettings

__all__ = ["SentinelResolver", "watch_for_switches"]


class SentinelResolver:
    """Callable: the current master's connection settings."""

    def __init__(self, settings: SentinelSettings) -> None:
        self._settings = settings
        self._sentinels = list(settings.sentinels)

    async def _ask(self, host: str, port: int) -> tuple[str, int] | None:
        connection = await open_connection(self._settings.for_sentinel(host, port), decode=True)
        try:
            with anyio.fail_after(self._settings.node.connect_timeout):
                await connection.transport.send(
                    encode_command(
                        ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self._settings.service_name)
                    )
                )
                reply = await connection.read_reply()
        finally:
            await connection.aclose()
        if isinstance(reply, Exception):
            raise ConnectionError(f"sentinel {host}:{port} answered: {reply}")
        if not reply:
            return None
        return str(reply[0]), int(reply[1])

    async def __call__(self) -> ConnectionSettings:
        reasons: list[str] = []
        for host, port in list(self._sentinels):
            try:
                master = await self._ask(host, port)
            except (ConnectionError, OSError, TimeoutError) as exc:
                reasons.append(f"{host}:{port}: {exc}")
                continue
            if master is None:
                reasons.append(f"{host}:{port} does not know {self._settings.service_name!r}")
                continue
            # Ask the sentinel that answered first next time.
            self._sentinels.remove((host, port))
            self._sentinels.insert(0, (host, port))
            return self._settings.for_master(*master)
        raise ConnectionError(
            f"no sentinel could name the master {self._settings.service_name!r}: "
            + "; ".join(reasons)
        )


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
