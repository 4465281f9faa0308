"""``RedisClient``: redis-py's command vocabulary on our own connection.

The command methods (``get``, ``hset``, ``zadd``, ``scan_iter`` …) are
redis-py's own, inherited from its ``AsyncCoreCommands`` mixin; they build
argument lists and call :meth:`RedisClient.execute_command`. We send those on
the multiplexed connection (or a dedicated one for blocking commands) and
shape the replies with redis-py's response callbacks, so results look exactly
as redis-py users expect.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, cast

import anyio
from anyio.abc import TaskGroup
from redis.commands import AsyncCoreCommands
from redis.exceptions import (
    ClusterCrossSlotError,
    ConnectionError,
    CrossSlotTransactionError,
    ReadOnlyError,
    WatchError,
)
from redis.typing import KeyT

from .._exceptions import ConfigError
from .._net.commands import (
    DEDICATED,
    DROPS_ALL,
    DROPS_FIRST,
    NOT_BLOCKING,
    SHARED,
    Command,
    command_for,
)
from .._net.dedicated import HeldConnection
from .._net.multiplexer import Multiplexer
from .._net.node import Node
from .._net.redis_compat import (
    EMPTY_RESPONSE,
    EVENT_DISPATCHER,
    NEVER_DECODE,
    CaseInsensitiveDict,
    Encoder,
    decode_raw_info,
    response_callbacks,
)
from .._net.settings import ConnectionSettings
from .._net.task_group import background_task_group
from .._net.wire import encode_command, encode_commands
from .._topology.cluster import ClusterRouter, SlotTracker, command_slot
from .._topology.replicas import LOCAL_CACHE_AND_REPLICAS, check_read_from
from .._topology.sentinel import SentinelReplicas, SentinelResolver, watch_for_switches
from .._topology.urls import ClusterSettings, SentinelSettings, Topology, parse_topology
from .local_stats import LocalStats
from .lock import Lock
from .monitor import Monitor
from .pipeline import Pipeline, PipelineScript
from .pubsub import PubSub
from .reply_cache import (
    ABSENT,
    LOCAL_CACHE_MAX_BYTES,
    LOCAL_CACHE_MAX_ENTRIES,
    LOCAL_CACHE_TTL,
    ReplyCache,
    TrackerPair,
    cache_config_entries,
    check_bounds,
    copy_reply,
    key_name,
)
from .script import Script

__all__ = ["RedisClient", "open_redis_client"]


class RedisClient(AsyncCoreCommands):
    """A Redis client for asyncio and trio, one multiplexed connection wide.

    Make one with :func:`open_redis_client` (it owns the task group), or with
    :meth:`from_url` inside a task group you own, and close it with
    :meth:`aclose`. Every redis-py command method is available
    (``await client.incr("c")``); :meth:`execute_command` sends anything else.

    ``decode_responses`` is redis-py's flag: ``True`` (our default, as the
    cache port wants ``str``) decodes string replies as UTF-8; ``False``
    returns ``bytes`` exactly as redis-py does. A reply that is not valid
    UTF-8 raises ``UnicodeDecodeError`` for that command alone (the
    connection and every other caller carry on), unless the
    ``encoding_errors=`` setting (redis-py's: ``"replace"``, ``"ignore"`` …)
    says how to decode it anyway.

    ``legacy_responses`` is redis-py 8's flag too: ``True`` (the default)
    shapes replies exactly as redis-py does for the protocol in use, so a
    few commands (``ZRANGE … WITHSCORES``, ``ZPOPMIN``, ``XREAD`` …) reply
    differently under RESP3 than under RESP2; ``False`` gives redis-py's
    unified shapes, the same on both protocols. Pipelines shape their
    results the same way.

    Cancellation: a command cancelled at any point leaves the connection
    intact; if it was already queued it still reaches the server (and may
    apply), and its reply is discarded.
    """

    _is_async_client: Literal[True] = True
    _event_dispatcher = EVENT_DISPATCHER

    def __init__(
        self,
        settings: Topology,
        *,
        task_group: TaskGroup,
        decode_responses: bool = True,
        legacy_responses: bool = True,
        tracker: SlotTracker | None = None,
        reply_cache: ReplyCache | None = None,
    ) -> None:
        # tracker: a client-side cache's hooks on the shared connection (see
        # _net.multiplexer.Tracker) — every node's, on a cluster
        # (_topology.cluster.SlotTracker); the local cache's only way in.
        if not isinstance(legacy_responses, bool):
            raise ValueError(f"legacy_responses must be True or False, got {legacy_responses!r}")
        # reply_cache: this client's own (reply_cache.py), told the same.
        self._replies = reply_cache
        if reply_cache is not None:
            tracker = reply_cache if tracker is None else TrackerPair(reply_cache, tracker)
        self.settings = settings
        self._decode = decode_responses
        self._task_group = task_group
        self._pubsubs: weakref.WeakSet[PubSub] = weakref.WeakSet()
        node = settings if isinstance(settings, ConnectionSettings) else settings.node
        self._encoding_errors = node.encoding_errors
        self._encoder = Encoder("utf-8", node.encoding_errors, decode_responses)  # type: ignore[no-untyped-call]
        #: RESP2 or RESP3, and each protocol's own shapes or redis-py's
        #: unified ones: which of redis-py's callback tables shapes replies.
        self.protocol = node.protocol
        self.legacy_responses = legacy_responses
        #: redis-py's public table, this client's own copy: change one with
        #: :meth:`set_response_callback`. Its keys are stored upper-case, so
        #: the hot path reads it with plain ``dict.get`` (no ``.upper()``).
        self.response_callbacks = CaseInsensitiveDict(
            _CALLBACKS[node.protocol, legacy_responses]  # type: ignore[arg-type]
        )
        self._callbacks = self.response_callbacks
        self._cluster: ClusterRouter | None = None
        self._sentinel: SentinelResolver | None = None
        #: Sentinel's replicas, when read-only commands may go to them.
        self._replica_reads: SentinelReplicas | None = None
        #: Reply deadline, and database number, whatever the topology.
        self.command_timeout: float | None
        self.db: int
        self._watcher = anyio.CancelScope()
        #: The one server's connections; a cluster has a node per primary instead.
        self._node: Node | None = None
        if isinstance(settings, ClusterSettings):
            self._cluster = ClusterRouter(
                settings, task_group, decode=decode_responses, tracker=tracker
            )
            self.command_timeout = settings.node.command_timeout
            self.db = 0
            self._direct = False
            return
        if isinstance(settings, SentinelSettings):
            resolver = self._sentinel = SentinelResolver(settings)
            self.command_timeout = settings.node.command_timeout
            self.db = settings.node.db
            self._node = Node(
                settings.node,
                task_group,
                decode=decode_responses,
                resolve=resolver,
                tracker=tracker,
            )
            if settings.read_from != "primary":
                self._replica_reads = SentinelReplicas(
                    settings, resolver, task_group, decode=decode_responses
                )
            task_group.start_soon(
                self._follow_master, settings, name="beignet-redis sentinel watch"
            )
        else:
            self.command_timeout = settings.command_timeout
            self.db = settings.db
            self._node = Node(settings, task_group, decode=decode_responses, tracker=tracker)
        # The hot path reaches the shared connection without a lookup…
        self._mux = self._node.shared
        # … when every command goes to it: one server, or Sentinel's master
        # with reads from the master.
        self._direct = self._replica_reads is None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        task_group: TaskGroup,
        decode_responses: bool = True,
        legacy_responses: bool = True,
        **settings: Any,
    ) -> RedisClient:
        """A client for ``url``; keyword ``settings`` (``db=``,
        ``command_timeout=``, ``tls=`` …) override what the URL says."""
        return cls(
            parse_topology(url, **settings),
            task_group=task_group,
            decode_responses=decode_responses,
            legacy_responses=legacy_responses,
        )

    def __repr__(self) -> str:
        return f"<RedisClient {self.settings.redacted_url()}>"

    # -- what redis-py's command mixins expect of a client ------------------

    def get_encoder(self) -> Encoder:
        return self._encoder

    def get_connection_kwargs(self) -> dict[str, Any]:
        return {
            "decode_responses": self._decode,
            "encoding": "utf-8",
            "encoding_errors": self._encoding_errors,
            "protocol": self.protocol,
            "legacy_responses": self.legacy_responses,
        }

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command and return its reply, shaped by redis-py's callback.

        Raises redis-py's exceptions: an error reply as its mapped class
        (``ResponseError``, ``NoScriptError`` …), ``ConnectionError`` when the
        connection fails, ``TimeoutError`` after ``command_timeout``.

        Cancellation: the command may still reach the server (and apply) but its reply is read
        and dropped, so the shared connection stays in step; a scope cancelled before the call
        sends nothing.
        """
        command = command_for(args)
        replies = self._replies
        if replies is not None and command.cache_first:
            if command.cacheable and NEVER_DECODE not in options:
                # A hit, inline and cheap: it is what the cache is for. (The
                # client's decoding is fixed, so its arguments are the key.)
                try:
                    held = replies.held(args)
                except TypeError:  # an unhashable argument: the usual way
                    return await self._send(command, args, options)
                if held is not ABSENT:
                    callback = _plain_get(self._callbacks, command.callback)
                    if callback is None:
                        return held
                    options.pop(EMPTY_RESPONSE, None)
                    options.pop("keys", None)
                    return callback(held, **options)
                return await self._read_through(replies, command, args, options)
            # Any other command may write its keys: the replies that read
            # them go once it is answered — the server's invalidation for a
            # writer's own write comes after its reply, and a process reads
            # its own writes at once. On the shared connection that is
            # enough: a read queued before the write is answered before it
            # (and dropped then), one queued after it reads the new value.
            # A blocking command runs on a connection of its own, with no such
            # order: its keys' replies go before it is sent, too.
            if command.path is not SHARED:
                for key in command.keys(args):
                    replies.invalidate(key if type(key) is str else key_name(key))
        try:
            if command.path is SHARED and self._direct:
                # The hot path, inline: one server, the shared connection.
                decode = self._decode and NEVER_DECODE not in options
                (reply,) = await self._mux.request(encode_command(args), 1, decode)
                # The common case, a plain reply no callback shapes, without a call.
                if (
                    not isinstance(reply, Exception)
                    and NEVER_DECODE not in options
                    and _plain_get(self._callbacks, command.callback) is None
                ):
                    return reply
                return self._shape(command, reply, options)
            return await self._send(command, args, options)
        finally:
            if replies is not None:
                # What it may have written (see above). Most writes name one
                # key, first: decided inline, as this runs for every one.
                drops = command.drops
                if drops == DROPS_FIRST:
                    try:
                        name = args[1]
                    except IndexError:
                        pass  # no key: nothing written (the server said so)
                    else:
                        if type(name) is not str:
                            name = key_name(name)
                        if name in replies.by_key or name in replies.reading:
                            replies.invalidate(name)
                elif drops:
                    replies.written(command, args)

    async def _send(self, command: Command, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """Send one command on its path and shape its reply (see :meth:`execute_command`)."""
        decode = self._decode and NEVER_DECODE not in options
        if command.path is not SHARED:
            if command.path is DEDICATED:
                wait = command.block_time(args)
                if wait != NOT_BLOCKING:
                    if self._node is not None:
                        dedicated = self._node.dedicated
                    else:
                        assert self._cluster is not None
                        owner = await self._cluster.owner(command_slot(command, args))
                        dedicated = self._cluster.dedicated(owner)
                    reply = await dedicated.run(encode_command(args), wait, decode)
                    return self._shape(command, reply, options)
            command.refuse(args)
        if self._cluster is None:
            reads = self._replica_reads
            if reads is not None and command.read_only:
                replies = await reads.read([args], decode)
                if replies is not None:
                    return self._shape(command, replies[0], options)
            (reply,) = await self._mux.request(encode_command(args), 1, decode)
        else:
            reply = await self._cluster.execute(command, args, decode)
        return self._shape(command, reply, options)

    async def _read_through(
        self, replies: ReplyCache, command: Command, args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """A cacheable command that memory does not hold: read it and keep it."""
        reply = await self._read_cached(replies, command, args)
        if reply is _NOT_CACHED:
            return await self._send(command, args, options)
        return self._shape(command, reply, options)

    async def _read_cached(
        self, replies: ReplyCache, command: Command, args: tuple[Any, ...]
    ) -> Any:
        """A cacheable command's reply, unshaped: from memory, or read with
        each key's ``PTTL`` in one write and kept under a ticket
        (``reply_cache.py``). :data:`_NOT_CACHED` for an invocation the cache
        cannot key (a number as a key, an unhashable argument, keys in
        several cluster slots): it goes the usual way."""
        keys = command.keys(args)
        names = [key_name(key) for key in keys]
        if not names or None in names:
            return _NOT_CACHED
        if self._cluster is not None:
            try:
                command_slot(command, args)
            except ClusterCrossSlotError:
                return _NOT_CACHED  # sent per slot and put back together instead
        entry_key = args
        known = cast("list[str]", names)
        ticket = replies.begin(known)  # before the read is queued
        answered = False
        read: list[Any] = []
        try:
            read = await self._send_many([args, *(("PTTL", key) for key in keys)], False)
            answered = not isinstance(read[0], BaseException)
        finally:
            replies.finish(entry_key, known, ticket, answered, read[0] if read else None, read[1:])
        return copy_reply(read[0]) if answered else read[0]

    def _shape(self, command: Command, reply: Any, options: dict[str, Any]) -> Any:
        # Error replies arrive as exception values (see _net.wire.new_reader).
        if isinstance(reply, Exception):
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            if self._sentinel is not None and isinstance(reply, ReadOnlyError):
                self._left_master(f"{reply} — the master was demoted")
                raise ConnectionError(
                    "the master was demoted by a failover; the next command goes to the new one"
                ) from reply
            raise reply
        if NEVER_DECODE in options and command.name == "INFO":
            reply = decode_raw_info(reply, self.get_encoder())
        callback = _plain_get(self._callbacks, command.callback)
        if callback is None:
            return reply
        options.pop(EMPTY_RESPONSE, None)
        options.pop(NEVER_DECODE, None)
        options.pop("keys", None)
        return callback(reply, **options)

    def set_response_callback(self, command: str, callback: Any) -> None:
        """Shape ``command``'s replies with ``callback`` (redis-py's API),
        for this client alone."""
        self.response_callbacks[command] = callback

    def monitor(self) -> Monitor:
        """``async with client.monitor() as m:`` — every command the server
        runs, on a connection of the monitor's own (on a cluster: the first
        primary's), as redis-py's ``Monitor`` gives them."""
        return Monitor(self.node_settings)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        """A batch of commands sent in one write; ``await pipe.execute()``
        returns their results in order. ``transaction=True`` (redis-py's
        default, and ours) wraps the batch in MULTI/EXEC so it applies
        atomically; ``transaction=False`` just pipelines (on a cluster, its
        commands may then span slots)."""
        del shard_hint  # accepted for redis-py compatibility; meaningless here
        return Pipeline(self, transaction=transaction)

    # -- locks (lock.py) ------------------------------------------------------

    def lock(
        self,
        name: KeyT,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        lock_class: type[Lock] | None = None,
        thread_local: bool = True,
        raise_on_release_error: bool = True,
    ) -> Lock:
        """A distributed lock on key ``name``, redis-py's ``Redis.lock()``.

        ``timeout``: the key's lifetime in seconds (``None``: until released).
        ``sleep``: seconds between attempts while another holder has it.
        ``blocking`` / ``blocking_timeout``: whether ``acquire`` waits, and
        for how long at most (``None``: forever). ``lock_class``: another
        class built with the same arguments. ``thread_local`` /
        ``raise_on_release_error``: as redis-py's. Works on asyncio and trio;
        cancellation semantics are in :class:`Lock`'s docstring.
        """
        if lock_class is None:
            lock_class = Lock
        return lock_class(
            self,
            name,
            timeout=timeout,
            sleep=sleep,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
            thread_local=thread_local,
            raise_on_release_error=raise_on_release_error,
        )

    # -- end of locks ---------------------------------------------------------

    # -- pub/sub (beignet pubsub) ------------------------------------------

    def pubsub(self, **kwargs: Any) -> PubSub:
        """A :class:`~._client.pubsub.PubSub` (redis-py's API) on connections
        of its own, read in this client's task group; ``async with
        client.pubsub() as ps:``. Keywords: ``ignore_subscribe_messages``,
        ``max_buffered``, and redis-py's others (accepted, unused)."""
        pubsub = PubSub(
            task_group=self._task_group,
            where=self.node_settings,
            encoder=self._encoder,
            cluster=self._cluster,
            **kwargs,
        )
        self._pubsubs.add(pubsub)
        return pubsub

    # -- end pub/sub ------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection, pub/sub ones included. In-flight commands
        fail with ``ConnectionError``; the close is shielded and bounded.
        The local cache, if any, is emptied.

        Raises nothing of its own. Cancellation: shielded, so every connection closes even in a
        cancelled scope.
        """
        if self._replies is not None:
            self._replies.flush()
        self._watcher.cancel()
        with anyio.CancelScope(shield=True):
            for pubsub in list(self._pubsubs):
                await pubsub.aclose()
            if self._node is not None:
                await self._node.aclose()
            if self._replica_reads is not None:
                await self._replica_reads.aclose()
            if self._cluster is not None:
                await self._cluster.aclose()

    @property
    def local_stats(self) -> LocalStats | None:
        """The local cache's counters for this client's cached replies (a
        snapshot), or ``None`` when it has none (``local_cache=False``)."""
        return self._replies.stats() if self._replies is not None else None

    @property
    def routes_by_slot(self) -> bool:
        """``True`` on a Redis Cluster, where each key goes to the node that
        owns its hash slot (so a multi-key command must keep to one slot)."""
        return self._cluster is not None

    @property
    def last_heard(self) -> float:
        """When the server last sent anything on a shared connection
        (``time.monotonic()``; 0.0 before the first)."""
        if self._cluster is not None:
            return self._cluster.last_heard
        return self._mux.last_heard

    # -- topology plumbing ----------------------------------------------------

    async def node_settings(self) -> ConnectionSettings:
        """Settings for a side connection (pub/sub) to a data node: the
        server itself, the current master, or a cluster primary.

        Raises ``ConnectionError`` when no data node can be found (no sentinel answers, no
        cluster primary is known). Cancellation: the look-up is abandoned; nothing changes.
        """
        if self._sentinel is not None:
            return await self._sentinel()
        if self._cluster is not None:
            primaries = self._cluster.primaries or list(self._cluster.settings.seeds)
            return self._cluster.settings.for_node(*primaries[0])
        assert isinstance(self.settings, ConnectionSettings)
        return self.settings

    async def _follow_master(self, settings: SentinelSettings) -> None:
        with self._watcher:
            await watch_for_switches(settings, self._left_master)

    def _left_master(self, reason: str) -> None:
        if self._node is not None:
            self._node.left(reason)
        if self._replica_reads is not None:
            self._replica_reads.stale()  # the old master is a replica now, or gone

    # What the pipeline needs (PipelineClient): the raw path, and _shape.
    async def _execute_many(self, commands: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
        replies = self._replies
        if replies is None:
            return await self._send_many(commands, transaction)
        # As _written does for one command: a pipeline's writes drop the
        # replies that read their keys, before and after.
        names = [
            name
            for args in commands
            if not (described := command_for(args)).cacheable
            for key in described.keys(args)
            if (name := key_name(key)) is not None
        ]
        flushing = any(command_for(args).drops == DROPS_ALL for args in commands)
        for name in names:
            replies.invalidate(name)
        try:
            return await self._send_many(commands, transaction)
        finally:
            for name in names:
                replies.invalidate(name)
            if flushing:
                replies.flush()

    async def _send_many(self, commands: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
        if self._cluster is not None:
            described = [command_for(args) for args in commands]
            return await self._cluster.execute_many(commands, described, transaction, self._decode)
        if transaction:
            commands = [("MULTI",), *commands, ("EXEC",)]
        return await self._mux.request(encode_commands(commands), len(commands), self._decode)

    # -- WATCH, transactions and scripts (pipeline.py, script.py) -------------

    async def transaction(
        self,
        func: Callable[[Pipeline], Any | Awaitable[Any]],
        *watches: Any,
        shard_hint: Any = None,
        value_from_callable: bool = False,
        watch_delay: float | None = None,
    ) -> Any:
        """Run ``func(pipe)`` as a transaction watching ``watches``, again
        from the start each time a watched key changes (``WatchError``), as
        redis-py's does. ``func`` may be sync or async; it reads with
        ``await pipe.get(…)``, calls ``pipe.multi()`` and queues the writes.
        Returns ``execute()``'s results, or ``func``'s value when
        ``value_from_callable``; ``watch_delay`` seconds between tries.

        Cancelled anywhere, the pipeline's held connection is released on
        the way out (closed if a command on it was interrupted), so no WATCH
        outlives the call.

        Raises what ``func`` raises and the pipeline's errors (as
        :meth:`Pipeline.execute`); never ``WatchError``, which means "try
        again" and is retried without limit, as redis-py's does. A
        transaction cancelled during ``EXEC`` may or may not have applied.
        """
        async with self.pipeline(True, shard_hint) as pipe:
            while True:
                try:
                    if watches:
                        await pipe.watch(*watches)
                    value = func(pipe)
                    if inspect.isawaitable(value):
                        value = await value
                    results = await pipe.execute()
                    return value if value_from_callable else results
                except WatchError:
                    if watch_delay is not None and watch_delay > 0:
                        await anyio.sleep(watch_delay)

    def register_script(self, script: Any) -> Script:  # type: ignore[override]
        """A callable Lua script run by SHA1, redis-py's script object that
        also works in our pipelines (``await script(keys, args, client=pipe)``)."""
        return Script(self, script)  # type: ignore[arg-type]

    async def _watch_connection(self, keys: Sequence[Any]) -> tuple[HeldConnection, int | None]:
        # For Pipeline.watch: a held dedicated connection to the keys' server.
        if self._node is not None:
            held = self._node.dedicated.hold()
            await held.open()
            return held, None
        assert self._cluster is not None
        try:
            slot = command_slot(command_for(("WATCH", *keys)), ("WATCH", *keys))
        except ClusterCrossSlotError:
            raise CrossSlotTransactionError(  # type: ignore[no-untyped-call, unused-ignore]
                "All keys involved in a cluster transaction must map to the same slot: "
                "WATCH's keys span slots (give them a shared hash tag, {tag})"
            ) from None
        held = self._cluster.dedicated(await self._cluster.owner(slot)).hold()
        await held.open()
        return held, slot

    def _redirected(self, error: Exception) -> None:
        if self._cluster is not None:
            self._cluster.redirected(error)

    async def _load_scripts(self, scripts: Sequence[PipelineScript]) -> None:
        # For Pipeline.execute: every server that may run them has them.
        if self._cluster is None:
            await _ensure_scripts(self._mux, scripts, self._decode)
            return
        await self._cluster.owner(None)  # reads the topology if it must
        for address in self._cluster.primaries:
            await _ensure_scripts(self._cluster.node(address), scripts, self._decode)


async def _ensure_scripts(
    mux: Multiplexer, scripts: Sequence[PipelineScript], decode: bool
) -> None:
    """SCRIPT EXISTS, then SCRIPT LOAD what is missing, as redis-py's pipeline does."""
    (exists,) = await mux.request(
        encode_command(("SCRIPT", "EXISTS", *[s.sha for s in scripts])), 1, decode
    )
    if isinstance(exists, Exception):
        raise exists
    loads = [
        ("SCRIPT", "LOAD", s.script) for s, exist in zip(scripts, exists, strict=True) if not exist
    ]
    if loads:
        for reply in await mux.request(encode_commands(loads), len(loads), decode):
            if isinstance(reply, Exception):
                raise reply


_CALLBACKS = {
    (protocol, legacy): response_callbacks(protocol, legacy)
    for protocol in (2, 3)
    for legacy in (True, False)
}
_plain_get = dict.get

#: What ``_read_cached`` returns for an invocation it cannot keep.
_NOT_CACHED: Any = object()


@asynccontextmanager
async def open_redis_client(
    url: str,
    *,
    decode_responses: bool = True,
    legacy_responses: bool = True,
    local_cache: bool = False,
    local_cache_max_entries: int = LOCAL_CACHE_MAX_ENTRIES,
    local_cache_max_bytes: int = LOCAL_CACHE_MAX_BYTES,
    local_cache_ttl: float = LOCAL_CACHE_TTL,
    cache_config: Any = None,
    read_from: str | None = None,
    client_az: str | None = None,
    read_from_replicas: bool | None = None,
    **settings: Any,
) -> AsyncIterator[RedisClient]:
    """A :class:`RedisClient` whose background tasks live for this block.

    The connection opens lazily on the first command. On exit — normal, by an
    exception or by cancellation — every connection is closed (shielded and
    bounded), and an exception from the block comes out as itself, not
    wrapped in an exception group.

    ``local_cache=True`` keeps the replies of read-only commands in memory
    (``client.local_stats`` counts them), bounded by
    ``local_cache_max_entries``, ``local_cache_max_bytes`` and
    ``local_cache_ttl`` seconds, and kept right by the server's
    invalidations; it needs RESP3, which it turns on. redis-py's
    ``cache_config=CacheConfig(max_size=…)`` means the same, with
    ``max_size`` entries.

    ``read_from="prefer_replica"`` sends the read-only commands to replicas
    (a cluster's, or the master's under Sentinel), and to the primary when
    none is healthy; ``"az_affinity"`` prefers the replicas in zone
    ``client_az``; ``"primary"`` (the default) never opens a replica
    connection. redis-py's ``read_from_replicas=True`` means
    ``"prefer_replica"``. Replicas lag: read-your-writes holds only with
    ``"primary"``.

    Raises ``ValueError`` for a malformed URL or setting, before any I/O
    (``legacy_responses`` not a bool included; its message never quotes a
    password), for a local cache with
    ``protocol=2`` or bounds that are not positive, and ``ConfigError`` (a
    ``ValueError``) for a ``read_from`` that is not one of the three, that
    a single-server URL cannot honour, or that comes with a local cache;
    connection errors surface on the first command.
    """
    if read_from_replicas is not None:
        if not isinstance(read_from_replicas, bool):
            raise ConfigError(
                f"read_from_replicas must be True or False, got {read_from_replicas!r}"
            )
        if read_from_replicas:
            if read_from not in (None, "prefer_replica"):
                raise ConfigError(
                    f"read_from_replicas=True means read_from='prefer_replica', "
                    f"but read_from={read_from!r} was given too"
                )
            read_from = "prefer_replica"
    read_from = check_read_from("primary" if read_from is None else read_from, client_az)
    if read_from != "primary" and (local_cache or cache_config is not None):
        raise ConfigError(LOCAL_CACHE_AND_REPLICAS.format(setting="local_cache", reads="read_from"))
    settings.update(read_from=read_from, client_az=client_az)
    if cache_config is not None:
        local_cache, local_cache_max_entries = True, cache_config_entries(cache_config)
    reply_cache = None
    if local_cache:
        if settings.get("protocol") == 2:
            raise ValueError(
                "local_cache needs RESP3 (protocol=3): it tracks keys with CLIENT TRACKING"
            )
        settings["protocol"] = 3
        check_bounds(local_cache_max_entries, local_cache_max_bytes, local_cache_ttl)
    parsed = parse_topology(url, **settings)
    if local_cache:
        reply_cache = ReplyCache(
            max_entries=local_cache_max_entries,
            max_bytes=local_cache_max_bytes,
            ttl=local_cache_ttl,
            cluster=isinstance(parsed, ClusterSettings),
        )
    async with background_task_group() as task_group:
        client = RedisClient(
            parsed,
            task_group=task_group,
            decode_responses=decode_responses,
            reply_cache=reply_cache,
            legacy_responses=legacy_responses,
        )
        try:
            yield client
        finally:
            await client.aclose()
