"""Redis Cluster: route each command to the primary that owns its key's slot.

The topology comes from the cluster itself (``CLUSTER SHARDS``, or ``CLUSTER
SLOTS`` on servers before 7.0), asked of any node we know. Each primary gets
one multiplexed connection of its own, exactly like a single server does.

* A key's slot is CRC16 of its hash tag (the text in its first ``{…}``) or of
  the whole key, modulo 16384.
* ``MOVED`` means the slot has a new owner: we re-read the topology and send
  the command there — it never ran, so this is safe.
* ``ASK`` means the slot is migrating: we send ``ASKING`` and the command to
  the named node, once, in one write.
* A connection that fails to a node fails its commands (never replayed: they
  may have applied) and marks the topology stale, so the next command
  re-reads it — that is how a primary replaced by failover is found.
* With a local cache (``tracker=``), each node's shared connection tracks
  the keys read through it, and every change of a slot's owner tells the
  tracker which slots to forget (see :class:`SlotTracker`).
* With ``read_from`` other than ``"primary"``, the read-only commands of
  the command table go to a replica of their slot's primary (``CLUSTER
  SHARDS`` lists them, and ``CLUSTER SLOTS`` after the primary), on a
  connection of its own that sent ``READONLY``; ``replicas.py`` picks one
  and keeps its health. A replica that fails, or answers ``MOVED``
  (it follows another primary now), sends the read to the primary — safe,
  as a read changes nothing — and marks the topology stale. A pipeline's
  read-only commands do the same unless it is a transaction; everything
  else stays on primaries.
* A command's keys, and whether it can be split, come from the command
  table (``_net/commands.py``). Those it marks ``split`` (``MGET``, ``MSET``,
  ``DEL``, ``UNLINK``, ``EXISTS``, ``TOUCH``) are split per slot when their
  keys span slots and put back together, as redis-py's cluster client does.
  Other commands whose keys span slots get ``CROSSSLOT``
  (``redis.exceptions.ClusterCrossSlotError``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    TryAgainError,
)

from .._net.commands import Command, Split
from .._net.dedicated import DedicatedConnections
from .._net.multiplexer import Multiplexer, Tracker
from .._net.node import Node
from .._net.wire import encode_command, encode_commands
from .replicas import ReplicaNodes, not_served
from .urls import ClusterSettings

__all__ = ["ClusterRouter", "SlotTracker", "command_slot"]

SLOTS = 16384
_MAX_REDIRECTS = 5
#: With reads from replicas, how old the topology may get before a read
#: has it read again, in the background: a replica that joined, finished
#: its first sync (Redis 7.0 lists a replica that has had no write yet as
#: ``loading``) or was promoted is followed within this, writes or not.
TOPOLOGY_MAX_AGE = 5.0

Address = tuple[str, int]


def _key_bytes(key: Any) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    return str(key).encode()


def command_slot(command: Command, args: Sequence[Any]) -> int | None:
    """The slot a command must go to; ``None`` for keyless commands.

    Raises ``ClusterCrossSlotError`` when its keys span slots.
    """
    keys = command.keys(args)
    if not keys:
        return None
    slots = {key_slot(_key_bytes(key)) for key in keys}
    if len(slots) > 1:
        raise ClusterCrossSlotError(
            f"{command.name}'s keys are in {len(slots)} different cluster slots; give them a "
            "shared hash tag ({tag}) to keep them together"
        )
    return slots.pop()


async def _all(jobs: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``jobs`` concurrently; raise the first failure as itself.

    (A task group would wrap it in an ExceptionGroup, and callers expect
    redis-py's ConnectionError, not a group holding one.)
    """
    errors: list[BaseException] = []

    async def guarded(job: Coroutine[Any, Any, None]) -> None:
        try:
            await job
        except Exception as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tasks:
        for job in jobs:
            tasks.start_soon(guarded, job)
    if errors:
        raise errors[0]


class SlotTracker(Tracker, Protocol):
    """A client-side cache across a cluster's nodes.

    Its invariant: whatever it holds for a slot was read through the node
    that owns the slot *now* — the only node whose tracking will tell us when
    the key changes. So :meth:`forget_slots` is called, synchronously, for
    every slot whose owner changes (``MOVED``, a re-read topology) and for
    the slots of a node whose connection is lost or reopened, or that sent a
    ``null`` invalidation (``lost=True`` when the node's connection was
    lost); and it must also spoil every read in flight (the
    reply may have come from the old owner, or through ``ASK``: a node that
    will never tell us of a change). Key invalidations from any node go to
    :meth:`on_push` as they do on one server.
    """

    def forget_slots(self, slots: set[int], *, lost: bool = False) -> None: ...


class _NodeTracking:
    """One node's shared connection's tracker: its pushes and resets, told
    to the cache as slots to forget."""

    __slots__ = ("_address", "_opened", "_router", "_tracker")

    def __init__(self, router: ClusterRouter, address: Address, tracker: SlotTracker) -> None:
        self._router = router
        self._address = address
        self._tracker = tracker
        self._opened = False

    def on_push(self, frame: list[Any]) -> None:
        if len(frame) >= 2 and frame[0] in ("invalidate", b"invalidate") and frame[1] is None:
            # FLUSHDB/FLUSHALL on this node (or its tracking table overflowed).
            self._tracker.forget_slots(self._router.slots_of(self._address))
        else:
            self._tracker.on_push(frame)

    def lost(self) -> None:
        self._tracker.forget_slots(self._router.slots_of(self._address), lost=True)

    def reset(self) -> None:
        if not self._opened:
            # The node's first link: nothing was read through it before, and
            # a read waiting for it to open is tracked by it — no doubt yet.
            self._opened = True
            return
        self._tracker.forget_slots(self._router.slots_of(self._address))


class ClusterRouter:
    """One :class:`Node` per server; commands sent to the owner of their slot."""

    def __init__(
        self,
        settings: ClusterSettings,
        task_group: TaskGroup,
        *,
        decode: bool,
        tracker: SlotTracker | None = None,
    ) -> None:
        self.settings = settings
        self._tracker = tracker
        self._task_group = task_group
        self._decode = decode
        self._nodes: dict[Address, Node] = {}
        self._owners: list[Address | None] = [None] * SLOTS
        self._primaries: list[Address] = []
        #: Each primary's replicas, and their own nodes (READONLY), when
        #: reads go to replicas; a server may have both kinds of node, as
        #: its role changes.
        self._replicas: dict[Address, tuple[Address, ...]] = {}
        self._readers = ReplicaNodes.reading(settings, task_group, decode=decode)
        self._stale = True
        #: When the topology is next due to be read again (see _keep_fresh):
        #: set when it is read, and when a background re-read begins.
        self._fresh_until = 0.0
        self._rereading = False
        self._epoch = 0
        self._refresh_lock = anyio.Lock()
        self._closed = False

    # -- topology -----------------------------------------------------------

    @property
    def last_heard(self) -> float:
        """When any node last sent us anything."""
        return max((node.shared.last_heard for node in self._nodes.values()), default=0.0)

    def _node(self, address: Address) -> Node:
        """The server at ``address``. After :meth:`aclose` no new one is
        made: a node first seen then would have connections nobody closes,
        so that command fails instead."""
        node = self._nodes.get(address)
        if node is None:
            if self._closed:
                raise ConnectionError("the client was closed")
            tracker = self._tracker
            tracking = None if tracker is None else _NodeTracking(self, address, tracker)
            node = self._nodes[address] = Node(
                self.settings.for_node(*address),
                self._task_group,
                decode=self._decode,
                tracker=tracking,
            )
        return node

    @property
    def _replica_nodes(self) -> dict[Address, Node]:
        """The replicas' nodes made so far (none with ``read_from="primary"``)."""
        return {} if self._readers is None else self._readers.nodes

    @property
    def replicas(self) -> dict[Address, tuple[Address, ...]]:
        """Each primary's replicas, as last read (empty with ``read_from="primary"``)."""
        return dict(self._replicas)

    def slots_of(self, address: Address) -> set[int]:
        """The slots ``address`` owns, as far as we know."""
        return {slot for slot, owner in enumerate(self._owners) if owner == address}

    def _set_owners(self, owners: list[Address | None]) -> None:
        tracker = self._tracker
        if tracker is not None:
            old = self._owners
            changed = {slot for slot in range(SLOTS) if old[slot] != owners[slot]}
            if changed:
                tracker.forget_slots(changed)
        self._owners = owners

    def _moved(self, error: MovedError) -> None:
        """``error``'s slot has a new owner; re-read the topology next time."""
        self._stale = True
        owner = (error.host, int(error.port))
        if self._owners[error.slot_id] != owner:
            if self._tracker is not None:
                self._tracker.forget_slots({error.slot_id})
            self._owners[error.slot_id] = owner

    def node(self, address: Address) -> Multiplexer:
        """The shared connection to the server at ``address``."""
        return self._node(address).shared

    def dedicated(self, address: Address) -> DedicatedConnections:
        """The dedicated connections (blocking commands) to ``address``."""
        return self._node(address).dedicated

    @property
    def primaries(self) -> list[Address]:
        return list(self._primaries)

    async def refresh(self) -> None:
        """Re-read which primary owns which slots, from any node that answers."""
        epoch = self._epoch
        async with self._refresh_lock:
            if self._epoch != epoch and not self._stale:
                return  # someone refreshed while we waited
            candidates = list(dict.fromkeys([*self._primaries, *self.settings.seeds, *self._nodes]))
            reasons: list[str] = []
            for address in candidates:
                try:
                    owners, primaries, replicas = await self._read_topology(address)
                except (ConnectionError, OSError, TimeoutError) as exc:
                    reasons.append(f"{address[0]}:{address[1]}: {exc}")
                    continue
                if not primaries:
                    reasons.append(f"{address[0]}:{address[1]}: no slots assigned")
                    continue
                self._set_owners(owners)
                self._fresh_until = time.monotonic() + TOPOLOGY_MAX_AGE
                self._primaries = primaries
                if self._readers is not None:
                    self._replicas = replicas
                    self._readers.keep_only(a for found in replicas.values() for a in found)
                self._stale = False
                self._epoch += 1
                return
            raise ConnectionError(
                "no cluster node could describe the cluster: " + "; ".join(reasons)
            )

    async def _read_topology(
        self, address: Address
    ) -> tuple[list[Address | None], list[Address], dict[Address, tuple[Address, ...]]]:
        """Each slot's owner, the primaries, and each primary's replicas."""
        mux = self.node(address)
        (reply,) = await mux.request(encode_command(("CLUSTER", "SHARDS")), 1, True)
        owners: list[Address | None] = [None] * SLOTS
        primaries: list[Address] = []
        replicas: dict[Address, tuple[Address, ...]] = {}
        if isinstance(reply, Exception):  # before Redis 7: CLUSTER SLOTS
            (reply,) = await mux.request(encode_command(("CLUSTER", "SLOTS")), 1, True)
            if isinstance(reply, Exception):
                raise ConnectionError(str(reply))
            # Each range: start, end, its primary, then its replicas.
            for start, end, primary, *followers in reply:
                owner = (self._host(primary[0], address), int(primary[1]))
                owners[start : end + 1] = [owner] * (end - start + 1)
                if owner not in primaries:
                    primaries.append(owner)
                replicas[owner] = tuple(
                    (self._host(node[0], address), int(node[1])) for node in followers
                )
            return owners, primaries, replicas
        for shard in reply:
            fields = _as_dict(shard)
            nodes = [_as_dict(node) for node in fields.get("nodes", [])]
            followers = tuple(
                where
                for info in nodes
                # Only one that serves: not failed, not loading its data.
                if info.get("role") == "replica" and info.get("health") == "online"
                if (where := self._where(info, address)) is not None
            )
            for info in nodes:
                if info.get("role") != "master" or info.get("health") == "fail":
                    continue
                primary = self._where(info, address)
                if primary is None:
                    continue
                ranges = fields.get("slots", [])
                for start, end in zip(ranges[::2], ranges[1::2], strict=True):
                    owners[int(start) : int(end) + 1] = [primary] * (int(end) - int(start) + 1)
                if ranges and primary not in primaries:
                    primaries.append(primary)
                    replicas[primary] = followers
        return owners, primaries, replicas

    @classmethod
    def _where(cls, info: dict[Any, Any], asked: Address) -> Address | None:
        """A ``CLUSTER SHARDS`` node's address, if it announces a port."""
        port = info.get("port") or info.get("tls-port")
        if port is None:
            return None
        return cls._host(info.get("endpoint") or info.get("ip"), asked), int(port)

    @staticmethod
    def _host(announced: Any, asked: Address) -> str:
        # A node that announces no address means "the one you reached me on".
        text = str(announced) if announced else ""
        return text if text and text != "?" else asked[0]

    async def owner(self, slot: int | None) -> Address:
        if self._stale:
            await self.refresh()
        if slot is None:
            return random.choice(self._primaries)
        owner = self._owners[slot]
        if owner is None:
            await self.refresh()
            owner = self._owners[slot]
            if owner is None:
                raise ConnectionError(f"no cluster node serves slot {slot}")
        return owner

    def redirected(self, error: Exception) -> None:
        """A MOVED or ASK seen on a connection we do not route (a pipeline's
        held one): look the topology up again before the next command."""
        self._stale = True
        if isinstance(error, MovedError):
            self._moved(error)

    # -- commands -----------------------------------------------------------

    async def execute(self, command: Command, args: tuple[Any, ...], decode: bool) -> Any:
        """One command's raw reply (error replies as exception values)."""
        read = command.read_only and self._readers is not None
        if command.split is not None:
            slots = {key_slot(_key_bytes(key)) for key in command.keys(args)}
            if len(slots) > 1:
                return await self._split(command, command.split, args, decode, read)
        slot = command_slot(command, args)
        return await self._send(slot, [args], decode, read)

    # -- replicas -------------------------------------------------------------

    def _keep_fresh(self) -> None:
        """Read the topology again in the background once it is older
        than :data:`TOPOLOGY_MAX_AGE` (one re-read at a time; a failed one
        waits as long before the next)."""
        now = time.monotonic()
        if self._rereading or self._closed or now < self._fresh_until:
            return
        self._rereading = True
        self._fresh_until = now + TOPOLOGY_MAX_AGE
        self._task_group.start_soon(self._reread, name="beignet-redis cluster topology")

    async def _reread(self) -> None:
        try:
            await self.refresh()
        except Exception:  # the commands that need it will say so
            pass
        finally:
            self._rereading = False

    def _lost(self) -> None:
        self._stale = True  # a replica failed or moved: read the topology again

    async def _send(
        self, slot: int | None, commands: list[tuple[Any, ...]], decode: bool, read: bool = False
    ) -> Any:
        """Send ``commands`` (one slot) and return the last reply, following
        redirects; ``read``: they are read-only, and a replica may answer."""
        address = await self.owner(slot)
        if read:
            # A replica of the slot's primary answers, unless none can: then
            # the primary does. ``ReplicaNodes.read``, inlined: this is every
            # replica read, and a coroutine less is throughput kept.
            readers = self._readers
            assert readers is not None
            now = time.monotonic()  # read once: the freshness test and the stall check
            if now >= self._fresh_until:  # _keep_fresh's test, without a call
                self._keep_fresh()
            chosen = readers.health.choose(self._replicas.get(address, ()), now)
            if chosen is not None:
                replica, connection = chosen
                try:
                    replies = await connection.request(
                        encode_commands(commands), len(commands), decode
                    )
                except (TimeoutError, ConnectionError) as error:
                    readers.broke(replica, error, self._lost)
                    if isinstance(error, TimeoutError):
                        raise
                else:
                    reply = replies[-1]
                    if not isinstance(reply, Exception) or readers.served(
                        replica, replies, self._lost
                    ):
                        return reply
        reply = None
        for _ in range(_MAX_REDIRECTS):
            try:
                replies = await self.node(address).request(
                    encode_commands(commands), len(commands), decode
                )
            except ConnectionError:
                self._stale = True  # maybe failed over: look again next time
                raise
            reply = replies[-1]
            if isinstance(reply, MovedError):
                self._moved(reply)
                address = (reply.host, int(reply.port))
                continue
            if isinstance(reply, AskError):
                if self._tracker is not None:
                    # Answered by a node that does not own the slot yet: its
                    # tracking of the key will not outlive the migration.
                    self._tracker.forget_slots(set())
                target = (reply.host, int(reply.port))
                replies = await self.node(target).request(
                    encode_commands([("ASKING",), *commands]), len(commands) + 1, decode
                )
                return replies[-1]
            if isinstance(reply, (TryAgainError, ClusterDownError)):
                await anyio.sleep(0.05)
                self._stale = True
                address = await self.owner(slot)
                continue
            return reply if len(commands) == 1 else replies
        return reply

    async def _split(
        self, command: Command, split: Split, args: tuple[Any, ...], decode: bool, read: bool
    ) -> Any:
        """A multi-key command across slots: one per slot, put back together.

        Its arguments from the first key on are groups of ``key_step`` (a
        key, or a key and its value), each sent to its key's slot."""
        first, step = command.first_key, command.key_step
        items = list(zip(*(args[first + offset :: step] for offset in range(step)), strict=True))
        groups: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(key_slot(_key_bytes(item[0])), []).append(index)
        results: dict[int, Any] = {}

        async def run(slot: int, indexes: list[int]) -> None:
            part = (command.name, *[arg for i in indexes for arg in items[i]])
            results[slot] = await self._send(slot, [part], decode, read)

        await _all(run(slot, indexes) for slot, indexes in groups.items())
        for reply in results.values():
            if isinstance(reply, Exception):
                return reply
        if split is Split.BY_KEY:
            values: list[Any] = [None] * len(items)
            for slot, indexes in groups.items():
                for index, value in zip(indexes, results[slot], strict=True):
                    values[index] = value
            return values
        if split is Split.ALL_SUCCEEDED:
            return next(iter(results.values()))
        return sum(int(reply) for reply in results.values())

    async def execute_many(
        self,
        commands: list[tuple[Any, ...]],
        described: list[Command],
        transaction: bool,
        decode: bool,
    ) -> list[Any]:
        """A pipeline: grouped by node, each group one write; replies in order.

        A transaction must stay in one slot (MULTI/EXEC cannot span nodes).
        """
        slots = [
            command_slot(command, args) for command, args in zip(described, commands, strict=True)
        ]
        if transaction:
            keyed = {slot for slot in slots if slot is not None}
            if len(keyed) > 1:
                raise ClusterCrossSlotError(
                    "a transaction's keys must share one cluster slot; give them a hash tag"
                )
            slot = keyed.pop() if keyed else None
            replies: list[Any] = await self._send(slot, [("MULTI",), *commands, ("EXEC",)], decode)
            return replies if isinstance(replies, list) else [replies]
        # Grouped by where each goes: its primary, or (read-only, reading
        # from replicas) one of its primary's replicas.
        readers = self._readers
        if readers is not None:
            self._keep_fresh()
        by_node: dict[tuple[Address, bool], list[int]] = {}
        for index, slot in enumerate(slots):
            owner = await self.owner(slot)
            replica = None
            if readers is not None and described[index].read_only:
                replica = readers.pick(self._replicas.get(owner, ()))
            where = (owner, False) if replica is None else (replica, True)
            by_node.setdefault(where, []).append(index)
        results: list[Any] = [None] * len(commands)

        async def run(address: Address, replica: bool, indexes: list[int]) -> None:
            batch = [commands[i] for i in indexes]
            if replica:
                assert readers is not None
                replies = await readers.read((address,), batch, decode, self._lost)
                if replies is None:  # the primaries answer instead
                    for index in indexes:
                        results[index] = await self._send(slots[index], [commands[index]], decode)
                    return
            else:
                replies = await self.node(address).request(
                    encode_commands(batch), len(batch), decode
                )
            for index, reply in zip(indexes, replies, strict=True):
                if isinstance(reply, (MovedError, AskError)):
                    # It did not run there; run it where it lives now.
                    self._stale = True
                    if isinstance(reply, MovedError):
                        self._moved(reply)
                    reply = await self._send(slots[index], [commands[index]], decode)
                elif replica and not_served(reply):
                    reply = await self._send(slots[index], [commands[index]], decode)
                results[index] = reply

        await _all(
            run(address, replica, indexes) for (address, replica), indexes in by_node.items()
        )
        return results

    async def aclose(self) -> None:
        """Close every node's connections; blocking commands in flight on
        any node fail with ``ConnectionError`` (shielded, bounded)."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            # Side by side: each node's close is bounded, so all of them are.
            async with anyio.create_task_group() as closing:
                for node in self._nodes.values():
                    closing.start_soon(node.aclose)
                if self._readers is not None:
                    closing.start_soon(self._readers.aclose)


def _as_dict(reply: Any) -> dict[Any, Any]:
    """A RESP3 map as it comes, or a RESP2 flat list of pairs as a dict."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))
