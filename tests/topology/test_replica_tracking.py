"""Does a replica tell a tracking client that replication changed a key?

Reads from replicas (``read_from="prefer_replica"``) could keep the local
cache only if a replica sends ``CLIENT TRACKING`` invalidations for the keys
that its primary's writes change, since no client writes to a replica. This
asks the real servers, on raw connections (no client logic in between), on a
standalone replica (``REPLICAOF``) and on a cluster replica (after
``READONLY``), in three modes: default tracking (RESP3, the key read),
``BCAST`` (RESP3, a prefix) and ``REDIRECT`` (RESP2: the pushes go to another
connection, subscribed to ``__redis__:invalidate``).

Each probe, on the replica: tracking on, ``GET k``. On the primary, on one
connection: ``SET k``, then ``WAIT 1`` — which returns once the replica has
applied the write (it acknowledges only offsets it has run). Then ``PING``
on the connection that gets the invalidations: a push the replica queued
while applying the write is written ahead of the ``PONG``, so the frames
before the ``PONG`` are every invalidation there will be. That fence makes
presence and absence equally exact, where waiting out a timeout could only
suggest absence; ``fail_after`` bounds the whole probe.

What the servers do (Redis 7.0.15 and Valkey 8.1.8, both alike): every
replica, standalone or in a cluster, in every mode, sends exactly one
invalidation naming the key, once it has applied the replicated write. So
the servers do not stand in the way of a local cache over replica reads;
its copy of a key is as fresh as the replica it was read from, no fresher.

And a replica that resyncs in full (it is pointed at a primary outside its
history) sends its tracking clients one invalidation of everything (``null``,
as ``FLUSHALL`` does), whether it loads the new data from disk or, with
``repl-diskless-load swapdb``, from the socket.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import anyio
import attrs
import hiredis
import pytest

from beignet_redis_anyio._net.settings import parse_redis_url
from beignet_redis_anyio._net.transport import RawConnection, open_connection
from beignet_redis_anyio._net.wire import encode_command
from beignet_redis_anyio.testing.servers import HOST, wait_until
from helpers.targets import FLAVOURS, RedisCluster, RedisServer, command

pytestmark = pytest.mark.anyio

#: The bound on one probe: a few round trips and one replication.
PROBE_TIMEOUT_S = 10.0
INVALIDATE_CHANNEL = "__redis__:invalidate"
MODES = ("default", "bcast", "redirect")


@attrs.frozen
class Replicated:
    """A replica and the primary it replicates; ``cluster``: a cluster's
    (the replica then serves reads only after ``READONLY``)."""

    primary_port: int
    replica_port: int
    cluster: bool


class Probe:
    """One raw connection: a command out, its reply back, and every RESP3
    push read on the way kept in ``pushes``, in order."""

    def __init__(self, connection: RawConnection) -> None:
        self.connection = connection
        self.pushes: list[list[Any]] = []

    async def send(self, *args: str | int) -> None:
        await self.connection.transport.send(encode_command(args))

    async def frame(self) -> Any:
        """The next frame that is not a RESP3 push (in RESP2: any frame)."""
        while True:
            frame = await self.connection.read_reply()
            if not isinstance(frame, hiredis.PushNotification):
                return frame
            self.pushes.append(list(frame))

    async def call(self, *args: str | int) -> Any:
        await self.send(*args)
        return await self.frame()

    async def aclose(self) -> None:
        await self.connection.aclose()


async def _probe(port: int, protocol: int) -> Probe:
    settings = parse_redis_url(f"redis://{HOST}:{port}", protocol=protocol)
    return Probe(await open_connection(settings, decode=True))


def _synced(port: int) -> bool:
    return b"master_link_status:up" in command(port, "INFO", "replication")


@pytest.fixture(scope="module", params=FLAVOURS)
def standalone(request: pytest.FixtureRequest) -> Iterator[Replicated]:
    """A primary and a replica of it (``REPLICAOF``), synced, for this module."""
    at_once = ("--repl-diskless-sync-delay", "0")  # the first sync now, not in 5 s
    with (
        RedisServer(*at_once, flavour=request.param) as primary,
        RedisServer(flavour=request.param) as replica,
    ):
        assert command(replica.port, "REPLICAOF", HOST, primary.port).startswith(b"+OK")
        wait_until(lambda: _synced(replica.port), 30, "the replica did not sync")
        yield Replicated(primary.port, replica.port, cluster=False)


@pytest.fixture
def clustered(cluster: RedisCluster) -> Replicated:
    """A synced replica of the session's cluster and its primary, as they
    stand now (another test may have failed the cluster over)."""
    for node in cluster.nodes:
        info = command(node.port, "INFO", "replication")
        found = re.search(rb"master_port:(\d+)", info)
        if b"role:slave" in info and found and _synced(node.port):
            return Replicated(int(found[1]), node.port, cluster=True)
    raise AssertionError("the cluster has no synced replica")


async def _owned_key(primary: Probe, key: str) -> str:
    """``key`` itself, or on a cluster the first ``key:N`` in a slot that
    this primary serves (the others are refused with MOVED)."""
    for n in range(200):
        candidate = f"{key}:{n}"
        if not isinstance(await primary.call("GET", candidate), Exception):
            return candidate
    raise AssertionError("no key of 200 hashes to this primary's slots")


async def _write_and_replicate(primary: Probe, key: str, value: str) -> None:
    """``SET`` on the primary, then ``WAIT`` on the same connection (WAIT
    waits for that connection's last write): the replica has applied it."""
    assert await primary.call("SET", key, value) == "OK"
    assert await primary.call("WAIT", 1, 5000) == 1


async def _invalidations(target: Replicated, key: str, mode: str) -> tuple[str, list[list[Any]]]:
    """The key probed, and the frames the connection that gets invalidations
    received, on the replica, between ``GET key`` and the fence's ``PONG``
    (RESP3: pushes; RESP2 ``REDIRECT``: pub/sub messages)."""
    probes: list[Probe] = []

    async def opened(port: int, protocol: int) -> Probe:
        probes.append(probe := await _probe(port, protocol))
        if target.cluster and port == target.replica_port:
            assert await probe.call("READONLY") == "OK"
        return probe

    try:
        with anyio.fail_after(PROBE_TIMEOUT_S):
            primary = await opened(target.primary_port, 3)
            key = await _owned_key(primary, key) if target.cluster else key
            await _write_and_replicate(primary, key, "old")
            reader = await opened(target.replica_port, 2 if mode == "redirect" else 3)
            receiver = reader
            if mode == "redirect":
                receiver = await opened(target.replica_port, 2)
                receiver_id = await receiver.call("CLIENT", "ID")
                subscribed = await receiver.call("SUBSCRIBE", INVALIDATE_CHANNEL)
                assert subscribed == ["subscribe", INVALIDATE_CHANNEL, 1]
                tracking: tuple[str | int, ...] = ("REDIRECT", receiver_id)
            else:
                tracking = ("BCAST", "PREFIX", key) if mode == "bcast" else ()
            assert await reader.call("CLIENT", "TRACKING", "ON", *tracking) == "OK"
            assert await reader.call("GET", key) == "old"  # tracked, and replicated
            await _write_and_replicate(primary, key, "new")
            # The fence: PING is answered after what the replica already queued.
            await receiver.send("PING")
            before_pong: list[list[Any]] = []
            while (frame := await receiver.frame()) not in ("PONG", ["pong", ""]):
                before_pong.append(frame)  # RESP2, subscribed: the messages
            received = receiver.pushes + before_pong
            assert await reader.call("GET", key) == "new"  # the write did reach it
            return key, received
    finally:
        with anyio.CancelScope(shield=True):
            for probe in probes:
                await probe.aclose()


def _expected(key: str, mode: str) -> list[list[Any]]:
    """One invalidation naming the key: a RESP3 push, or (``REDIRECT``) a
    message on the invalidation channel."""
    if mode == "redirect":
        return [["message", INVALIDATE_CHANNEL, [key]]]
    return [["invalidate", [key]]]


@pytest.mark.parametrize("mode", MODES)
async def test_a_standalone_replica_invalidates_what_replication_changed(
    standalone: Replicated, key: str, mode: str
) -> None:
    probed, frames = await _invalidations(standalone, key, mode)
    assert frames == _expected(probed, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_a_cluster_replica_invalidates_what_replication_changed(
    clustered: Replicated, key: str, mode: str
) -> None:
    probed, frames = await _invalidations(clustered, key, mode)
    assert frames == _expected(probed, mode)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("load", ["disabled", "swapdb"])
async def test_a_replica_that_resyncs_in_full_flushes_its_tracking_clients(
    flavour: str, load: str, key: str
) -> None:
    """A replica that is pointed at another primary (what a failover to a
    primary outside its history does) throws its data away and loads the new
    primary's: a full resync. Its tracking clients get one invalidation
    naming no key ("everything"), the one a ``FLUSHALL`` sends, so a local
    cache over it forgets every entry, whether the replica loads from disk
    or (``repl-diskless-load swapdb``) from the socket."""
    at_once = ("--repl-diskless-sync-delay", "0")
    with (
        RedisServer(*at_once, flavour=flavour) as first,
        RedisServer(*at_once, flavour=flavour) as second,
        RedisServer("--repl-diskless-load", load, flavour=flavour) as replica,
    ):
        assert command(replica.port, "REPLICAOF", HOST, first.port).startswith(b"+OK")
        wait_until(lambda: _synced(replica.port), 30, "the replica did not sync")
        probes: list[Probe] = []
        try:
            with anyio.fail_after(PROBE_TIMEOUT_S):
                old, new = await _probe(first.port, 3), await _probe(second.port, 3)
                reader = await _probe(replica.port, 3)
                probes += [old, new, reader]
                await _write_and_replicate(old, key, "old")
                assert await new.call("SET", key, "other") == "OK"
                assert await reader.call("CLIENT", "TRACKING", "ON") == "OK"
                assert await reader.call("GET", key) == "old"  # tracked
                # The replica's own connection is cut by REPLICAOF's switch;
                # ask it from another one.
                switch = ("REPLICAOF", HOST, second.port)
                assert command(replica.port, *switch).startswith(b"+OK")

                def resynced() -> bool:
                    info = command(replica.port, "INFO", "replication")
                    return f"master_port:{second.port}".encode() in info and _synced(replica.port)

                await anyio.to_thread.run_sync(
                    lambda: wait_until(resynced, 30, "the replica did not resync")
                )
                synced_in_full = command(second.port, "INFO", "stats")
                assert re.search(rb"sync_full:[1-9]", synced_in_full)
                await reader.send("PING")  # the fence, as above
                before_pong = []
                while (frame := await reader.frame()) != "PONG":
                    before_pong.append(frame)
                assert reader.pushes + before_pong == [["invalidate", None]]
                assert await reader.call("GET", key) == "other"
        finally:
            with anyio.CancelScope(shield=True):
                for probe in probes:
                    await probe.aclose()
