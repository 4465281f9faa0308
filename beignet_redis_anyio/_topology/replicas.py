"""Reading from replicas: the ``read_from`` policy, and which replica to ask.

``read_from`` says where the read-only commands of the command table
(``Command.read_only``) go:

* ``"primary"`` (the default): to the primary, like every other command; no
  replica connection is ever opened.
* ``"prefer_replica"``: to a healthy replica of the key's primary, round
  robin among them, and to the primary when none is healthy.
* ``"az_affinity"``: the same, but the replicas in the client's zone
  (``client_az``) first, as Valkey 8 reports a node's ``availability_zone``.

A replica is *down* from the moment it fails us — its connection fails or a
read to it times out, or it owes replies and has said nothing for
:data:`STALL_AFTER` seconds (frozen), or it cannot be connected to — until a
``PING`` in the background answers. Reads skip it meanwhile, so a frozen
replica costs the reads already in flight to it, once: no later read is
sent to find out whether it is back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

import anyio
from anyio.abc import TaskGroup
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from .._exceptions import ConfigError
from .._net.multiplexer import Multiplexer
from .._net.node import Node
from .._net.settings import ConnectionSettings
from .._net.wire import encode_command, encode_commands

__all__ = [
    "LOCAL_CACHE_AND_REPLICAS",
    "READ_FROM",
    "STALL_AFTER",
    "ReadFrom",
    "ReplicaHealth",
    "ReplicaNodes",
    "check_read_from",
    "not_served",
]

ReadFrom = Literal["primary", "prefer_replica", "az_affinity"]
READ_FROM: tuple[ReadFrom, ...] = ("primary", "prefer_replica", "az_affinity")

#: Why a local cache and reads from replicas are refused together, for
#: ``setting`` (the local cache's) and ``reads`` (read_from's).
LOCAL_CACHE_AND_REPLICAS = (
    "{setting} cannot be combined with {reads} other than 'primary': reads from replicas "
    "and the local cache are not offered together yet: the replicas' connections do not "
    "track keys, so entries read there would not be invalidated"
)

#: A replica that owes a reply and has sent nothing for this long (or for
#: the command timeout, if shorter) counts as down: a healthy one answers a
#: cache's reads in well under a millisecond. A slow command on a live one
#: costs only this: its probe answers once the command is done.
STALL_AFTER = 1.0
_PROBE_BACKOFF_BASE, _PROBE_BACKOFF_CAP = 0.05, 1.0

Address = tuple[str, int]


def check_read_from(
    read_from: object,
    client_az: object,
    *,
    names: tuple[str, str] = ("read_from", "client_az"),
) -> ReadFrom:
    """``read_from``, checked with ``client_az``; a :class:`ConfigError`
    naming the setting (``names``: the argument's or the variable's) otherwise."""
    setting, zone_setting = names
    known = next((value for value in READ_FROM if value == read_from), None)
    if known is None or not isinstance(read_from, str):
        raise ConfigError(
            f"{setting} must be 'primary', 'prefer_replica' or 'az_affinity', got {read_from!r}"
        )
    if client_az is not None:
        if not isinstance(client_az, str) or not client_az.strip():
            raise ConfigError(f"{zone_setting} must be a zone's name, got {client_az!r}")
        if client_az != client_az.strip() or not client_az.isprintable():
            # A zone must equal a replica's ``availability_zone`` exactly, as
            # read off one line of INFO: padded or with a line break in it, it
            # never would, and every replica would silently count as another
            # zone's.
            raise ConfigError(
                f"{zone_setting} must be a zone's name as the servers report it, with no "
                f"spaces around it and no control characters, got {client_az!r}"
            )
    if known == "az_affinity" and client_az is None:
        raise ConfigError(
            f"{setting}='az_affinity' needs the client's zone: set {zone_setting} (e.g. us-east-1a)"
        )
    return known


class ReplicaHealth:
    """Which replicas are down, their zones, and the turn of the round robin.

    ``connection(address)`` is the replica's shared connection. A replica
    that is down is sent a ``PING`` in ``task_group`` now and then until it
    answers, or until :meth:`close`. Under ``az_affinity`` (``client_az``
    given), each replica is asked its zone once, when first met.
    """

    def __init__(
        self,
        task_group: TaskGroup,
        connection: Callable[[Address], Multiplexer],
        *,
        command_timeout: float | None,
        client_az: str | None = None,
    ) -> None:
        self._task_group = task_group
        self._connection = connection
        self._client_az = client_az
        self._stall_after = (
            STALL_AFTER if command_timeout is None else min(STALL_AFTER, command_timeout)
        )
        self._down: dict[Address, anyio.CancelScope] = {}
        self._zones: dict[Address, str] = {}
        #: The replicas being asked their zone, each ask's scope (forget
        #: and close stop it).
        self._asking: dict[Address, anyio.CancelScope] = {}
        #: Per list of replicas, the ones to take turns on and their
        #: connections: worked out once, dropped at every change of health
        #: or zone, so that a read only takes the next one.
        self._cycles: dict[tuple[Address, ...], tuple[tuple[Address, Multiplexer], ...]] = {}
        self._turn = 0
        self._closed = False

    def is_down(self, address: Address) -> bool:
        return address in self._down

    def zone(self, address: Address) -> str | None:
        """The replica's ``availability_zone``, if it said (Valkey 8)."""
        return self._zones.get(address)

    def met(self, address: Address) -> None:
        """A replica's node was just made: learn its zone, if it matters."""
        self._cycles.clear()  # a cycle may hold the connection of the one it replaces
        if self._client_az is not None and not self._closed and address not in self._asking:
            scope = self._asking[address] = anyio.CancelScope()
            self._task_group.start_soon(
                self._learn_zone, address, scope, name=f"beignet-redis replica zone {address[0]}"
            )

    def pick(self, replicas: Sequence[Address]) -> Address | None:
        """The replica to read from next, or ``None`` (read the primary)."""
        chosen = self.choose(tuple(replicas))
        return None if chosen is None else chosen[0]

    def choose(
        self, replicas: tuple[Address, ...], now: float | None = None
    ) -> tuple[Address, Multiplexer] | None:
        """:meth:`pick`, with the replica's connection: this runs for every
        replica read, so the healthy ones are worked out only after a change
        (:meth:`_cycle`), and a read just checks that its turn's replica has
        not stalled since (as of ``now``, the monotonic clock, if the caller
        has just read it)."""
        while True:
            cycle = self._cycles.get(replicas)
            if cycle is None:
                cycle = self._cycle(replicas)
            if not cycle:
                return None
            if len(cycle) == 1:
                chosen = cycle[0]
            else:
                self._turn += 1
                chosen = cycle[self._turn % len(cycle)]
            if not chosen[1].stalled(self._stall_after, now):
                return chosen
            self.failed(chosen[0])  # and the cycle is worked out again without it
            if chosen[0] not in self._down:
                return None  # closed: no replica is put down, so none is read

    def _cycle(self, replicas: tuple[Address, ...]) -> tuple[tuple[Address, Multiplexer], ...]:
        """The replicas of ``replicas`` not down, with their connections;
        under ``az_affinity`` the client's zone's only, if any is healthy."""
        healthy = [address for address in replicas if address not in self._down]
        if self._client_az is not None:
            near = [address for address in healthy if self._zones.get(address) == self._client_az]
            healthy = near or healthy
        cycle = tuple((address, self._connection(address)) for address in healthy)
        if not self._closed:
            self._cycles[replicas] = cycle
        return cycle

    def failed(self, address: Address) -> None:
        """``address`` failed a read: skip it until its probe answers."""
        if self._closed or address in self._down:
            return
        scope = self._down[address] = anyio.CancelScope()
        self._cycles.clear()
        self._task_group.start_soon(
            self._until_healthy,
            address,
            scope,
            name=f"beignet-redis replica probe {address[0]}:{address[1]}",
        )

    async def _until_healthy(self, address: Address, scope: anyio.CancelScope) -> None:
        failures = 0
        try:
            with scope:
                while not self._closed:
                    try:
                        (reply,) = await self._connection(address).request(_PING, 1, True)
                        if not isinstance(reply, Exception):
                            return
                    except Exception:  # down still; and the next try fails fast
                        pass
                    failures += 1
                    await _back_off(failures)
        finally:
            if self._down.get(address) is scope:
                del self._down[address]
                self._cycles.clear()

    async def _learn_zone(self, address: Address, scope: anyio.CancelScope) -> None:
        """From ``INFO server``: Valkey 8's ``availability_zone``. Redis has
        none, so its replicas are all "another zone". Asked again, backing
        off, until the replica answers: one failed ask (a connection not up
        yet, a timeout under load) must not leave it "another zone" for good."""
        failures = 0
        try:
            with scope:
                while not self._closed:
                    try:
                        (reply,) = await self._connection(address).request(_INFO_SERVER, 1, True)
                    except Exception:  # not reachable now: another zone's, as far as we know
                        reply = None
                    if isinstance(reply, str):
                        for line in reply.splitlines():
                            name, _, value = line.partition(":")
                            if name == "availability_zone" and value.strip():
                                self._zones[address] = value.strip()
                                self._cycles.clear()
                        return
                    if reply is not None and not isinstance(reply, BusyLoadingError):
                        return  # it answered, with an error (INFO not allowed): no zone
                    failures += 1
                    await _back_off(failures)
        finally:
            if self._asking.get(address) is scope:
                del self._asking[address]

    def forget(self, address: Address) -> None:
        """``address`` is no replica of ours any more: stop probing it."""
        for scopes in (self._down, self._asking):
            scope = scopes.pop(address, None)
            if scope is not None:
                scope.cancel()
        self._zones.pop(address, None)
        self._cycles.clear()  # its connection is closing: a new node may follow

    def forget_turns(self) -> None:
        """Work the turns out again at the next read: the topology was read
        again, and may list replicas anew (so the old lists are not kept)."""
        self._cycles.clear()

    def close(self) -> None:
        """Stop every probe (synchronous: they end at their next checkpoint)."""
        self._closed = True
        self._cycles.clear()
        for scope in [*self._down.values(), *self._asking.values()]:
            scope.cancel()


async def _back_off(failures: int) -> None:
    """The wait before the next try of a probe or a zone's ask."""
    await anyio.sleep(min(_PROBE_BACKOFF_CAP, _PROBE_BACKOFF_BASE * 2 ** (failures - 1)))


_PING = encode_command(("PING",))
_INFO_SERVER = encode_command(("INFO", "server"))


class Readable(Protocol):
    """A topology that may read from replicas (``urls.py``'s cluster and
    Sentinel settings)."""

    @property
    def read_from(self) -> ReadFrom: ...

    @property
    def client_az(self) -> str | None: ...

    @property
    def node(self) -> ConnectionSettings: ...

    def for_replica(self, host: str, port: int) -> ConnectionSettings: ...


class ReplicaNodes:
    """A client's replicas: a node each (its own connections, made on first
    use with ``settings_for(address)``: ``READONLY`` on a cluster, a ``ROLE``
    check under Sentinel) and their health."""

    def __init__(
        self,
        task_group: TaskGroup,
        settings_for: Callable[[str, int], ConnectionSettings],
        *,
        decode: bool,
        command_timeout: float | None,
        client_az: str | None,
    ) -> None:
        self._task_group = task_group
        self._settings_for = settings_for
        self._decode = decode
        self.nodes: dict[Address, Node] = {}
        self.health = ReplicaHealth(
            task_group,
            lambda address: self.node(address).shared,
            command_timeout=command_timeout,
            client_az=client_az,
        )
        self._closed = False

    @classmethod
    def reading(
        cls, topology: Readable, task_group: TaskGroup, *, decode: bool
    ) -> ReplicaNodes | None:
        """The replicas ``topology`` reads from; ``None`` for ``"primary"``."""
        if topology.read_from == "primary":
            return None
        return cls(
            task_group,
            topology.for_replica,
            decode=decode,
            command_timeout=topology.node.command_timeout,
            client_az=topology.client_az if topology.read_from == "az_affinity" else None,
        )

    def node(self, address: Address) -> Node:
        """The replica at ``address``; never made after :meth:`aclose`
        (nobody would close its connections)."""
        node = self.nodes.get(address)
        if node is None:
            if self._closed:
                raise ConnectionError("the client was closed")
            node = self.nodes[address] = Node(
                self._settings_for(*address), self._task_group, decode=self._decode
            )
            self.health.met(address)
        return node

    def pick(self, replicas: Sequence[Address]) -> Address | None:
        return self.health.pick(replicas)

    def keep_only(self, replicas: Iterable[Address]) -> None:
        """The topology now lists just ``replicas``: the others' probes stop
        and their connections close (in the background, shielded and
        bounded: reads in flight on them fail); one listed again later
        gets a new node."""
        wanted = set(replicas)
        self.health.forget_turns()  # the lists of replicas may be new ones
        for address in [address for address in self.nodes if address not in wanted]:
            self.health.forget(address)
            self._task_group.start_soon(
                self.nodes.pop(address).aclose,
                name=f"beignet-redis close replica {address[0]}:{address[1]}",
            )

    def choose(self, replicas: Sequence[Address]) -> tuple[Address, Multiplexer] | None:
        """The next healthy one of ``replicas`` and its shared connection,
        or ``None``: the primary must answer."""
        return self.health.choose(tuple(replicas))

    def broke(self, address: Address, error: Exception, lost: Callable[[], None]) -> None:
        """A read from ``address`` raised ``error``: put the replica down
        until its probe answers; a failed connection (not a timeout) may
        mean the topology changed, so ``lost()`` too."""
        self.health.failed(address)
        if not isinstance(error, TimeoutError):
            lost()

    def served(self, address: Address, replies: list[Any], lost: Callable[[], None]) -> bool:
        """Whether the replica at ``address`` answered the read: False when
        it follows another primary now (``MOVED``: then ``lost()``, as the
        topology may have changed) or does not serve the read now (loading
        its data, cut off from its primary, a script it does not have);
        then the primary answers instead, as the read changed nothing.
        One not serving is put down until its probe answers."""
        reply = replies[-1]
        if not isinstance(reply, Exception) or not not_served(reply):
            return True
        if isinstance(reply, AskError):  # MOVED too: its subclass
            lost()
        elif not isinstance(reply, (TryAgainError, ClusterDownError, NoScriptError)):
            self.health.failed(address)  # loading, or cut off from its primary
        return False

    async def read(
        self,
        replicas: Sequence[Address],
        commands: list[tuple[Any, ...]],
        decode: bool,
        lost: Callable[[], None],
    ) -> list[Any] | None:
        """Read-only ``commands``' replies from the next healthy one of
        ``replicas`` (:meth:`choose`), or ``None`` when the primary must
        answer instead: none is healthy, its connection failed (:meth:`broke`)
        or it did not serve the read (:meth:`served`). A timeout is raised —
        the caller's time is spent."""
        chosen = self.choose(replicas)
        if chosen is None:
            return None
        address, connection = chosen
        try:
            replies = await connection.request(encode_commands(commands), len(commands), decode)
        except (TimeoutError, ConnectionError) as error:
            self.broke(address, error, lost)
            if isinstance(error, TimeoutError):
                raise
            return None
        return replies if self.served(address, replies, lost) else None

    async def aclose(self) -> None:
        """Stop the probes and close every replica's connections (shielded,
        each node's close bounded, side by side)."""
        self._closed = True
        self.health.close()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as closing:
                for node in self.nodes.values():
                    closing.start_soon(node.aclose)


def not_served(reply: Any) -> bool:
    """Whether a replica's ``reply`` means "not here, not now": loading its
    data, cut off from its primary (``MASTERDOWN``), a script it lacks, a
    slot it does not follow (``MOVED``, ``ASK``), a cluster in flux."""
    return isinstance(
        reply, (BusyLoadingError, AskError, TryAgainError, ClusterDownError, NoScriptError)
    ) or (isinstance(reply, ResponseError) and str(reply).startswith("MASTERDOWN"))
