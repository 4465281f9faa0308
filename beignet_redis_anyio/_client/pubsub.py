"""``client.pubsub()``: redis-py's ``PubSub``, on anyio.

The API and the message shapes are redis-py's (``redis.asyncio.client.PubSub``):
``subscribe``/``psubscribe``/``ssubscribe`` with ``channel=handler`` keyword
handlers or ``Subscription`` objects, their ``un…`` counterparts,
``get_message(ignore_subscribe_messages=False, timeout=0.0)`` returning
``{"type", "pattern", "channel", "data"}`` or ``None``, ``listen()``,
``run()``, ``ping()``, the ``channels``/``patterns``/``shard_channels`` and
``pending_unsubscribe_*`` bookkeeping, ``subscribed``, ``aclose()`` and
``async with``. The bookkeeping follows redis-py to the letter: a
subscription counts from the moment its command is sent, an unsubscription
from the moment *you read* its confirmation.

What differs is underneath (see ``pubsub_connection``): each connection is
read by a task of its own into a bounded inbox, so

* cancelling ``get_message``/``listen``/``run`` at any point takes nothing
  from the inbox and leaves the connection as it was: the next read gets the
  next message;
* a lost connection is re-opened and re-subscribed in the background; the
  subscriber's next read raises ``ConnectionError`` once, at the point in
  the stream where the connection was lost (what was published from then
  until the re-subscribe confirmations is gone), and reads after that get
  the confirmations and then new messages;
* the inbox holds at most ``max_buffered`` frames; a subscriber that falls
  further behind pauses its reader, and the server then buffers for it up
  to its ``client-output-buffer-limit pubsub`` (past which it disconnects
  the subscriber — which is then reported and re-subscribed as above).

On a cluster, channels and patterns are cluster-wide and use one connection
to any primary; shard channels (``ssubscribe``) use one connection per
primary that owns one of their slots, so a channel on each of three primaries
means three connections, all feeding the one inbox. A slot that migrates
while subscribed is not followed (the server's ``sunsubscribe`` for it is
delivered as a message).

Every connection is a dedicated RESP2 connection, with the client's
credentials, database and ``client_name``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from redis.crc import key_slot
from redis.exceptions import PubSubError

from .._net.redis_compat import Encoder
from .._net.settings import ConnectionSettings
from .._net.wire import encode_command
from .._topology.cluster import Address, ClusterRouter
from .pubsub_connection import PubSubConnection
from .pubsub_inbox import DEFAULT_MAX_BUFFERED, Inbox, Lost

__all__ = ["PubSub"]

Handler = Callable[[dict[str, Any]], Any]
Subscriptions = dict[Any, Handler | None]


def _names(args: tuple[Any, ...]) -> list[Any]:
    """redis-py's ``list_or_args``: ``f("a", "b")`` or ``f(["a", "b"])``."""
    if not args:
        return []
    first, rest = args[0], args[1:]
    if isinstance(first, (str, bytes, memoryview)) or not isinstance(first, Iterable):
        names = [first]
    else:
        names = list(first)
    names.extend(rest)
    return names


def _subscriptions(args: tuple[Any, ...], kwargs: Mapping[str, Handler]) -> Subscriptions:
    """Names and handlers from ``("a", Subscription(b"b", h), c=h2)``."""
    found: Subscriptions = {}
    for arg in _names(args):
        # redis.typing.Subscription (redis-py 8.1), recognised by shape.
        if not isinstance(arg, (str, bytes)) and hasattr(arg, "name") and hasattr(arg, "handler"):
            found[arg.name] = arg.handler
        else:
            found[arg] = None
    found.update(kwargs)
    return found


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class PubSub:
    """Publish/subscribe, as redis-py's ``PubSub``; make one with
    ``client.pubsub()`` and use it as ``async with client.pubsub() as ps:``.

    Several tasks may use one ``PubSub`` at once (each message goes to one
    of its readers). ``max_buffered`` bounds the frames held unread.
    """

    PUBLISH_MESSAGE_TYPES = ("message", "pmessage", "smessage")
    UNSUBSCRIBE_MESSAGE_TYPES = ("unsubscribe", "punsubscribe", "sunsubscribe")
    HEALTH_CHECK_MESSAGE = "redis-py-health-check"

    def __init__(
        self,
        *,
        task_group: TaskGroup,
        where: Callable[[], Awaitable[ConnectionSettings]],
        encoder: Encoder,
        cluster: ClusterRouter | None = None,
        ignore_subscribe_messages: bool = False,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        shard_hint: Any = None,
        push_handler_func: Callable[[list[Any]], Any] | None = None,
        event_dispatcher: Any = None,
    ) -> None:
        del event_dispatcher  # accepted for redis-py compatibility; unused
        #: redis-py's RESP3 hook: when set, every pub/sub frame goes to it
        #: (raw, as a list) instead of coming back from get_message.
        self.push_handler_func = push_handler_func
        self.shard_hint = shard_hint
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self.encoder = encoder
        self._decode: bool = encoder.decode_responses
        self._task_group = task_group
        self._where = where
        self._cluster = cluster
        self._inbox = Inbox(max_buffered)
        self._main: PubSubConnection | None = None
        self._shards: dict[Address, PubSubConnection] = {}
        #: Which primary each shard channel was subscribed on (cluster only).
        self._shard_owner: dict[Any, Address | None] = {}
        encoded = encoder.encode(self.HEALTH_CHECK_MESSAGE)  # type: ignore[no-untyped-call]
        check: Any = self.HEALTH_CHECK_MESSAGE if self._decode else encoded
        self.health_check_response = [[("pong" if self._decode else b"pong"), check], check]
        self.channels: Subscriptions = {}
        self.pending_unsubscribe_channels: set[Any] = set()
        self.patterns: Subscriptions = {}
        self.pending_unsubscribe_patterns: set[Any] = set()
        self.shard_channels: Subscriptions = {}
        self.pending_unsubscribe_shard_channels: set[Any] = set()

    async def __aenter__(self) -> PubSub:
        """The ``PubSub`` itself; nothing is opened until the first subscribe. Raises nothing.
        Cancellation: nothing to undo."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Raises and cancels as :meth:`aclose`: shielded, so every connection closes even when the
        block is cancelled."""
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<PubSub channels={len(self.channels)} patterns={len(self.patterns)} "
            f"shard_channels={len(self.shard_channels)}>"
        )

    # -- connections ----------------------------------------------------------

    @property
    def connection(self) -> PubSubConnection | None:
        """The connection for channels and patterns (``None`` before the
        first subscribe and after :meth:`aclose`). ``await
        ps.connection.disconnect()`` forces a reconnect and re-subscribe."""
        return self._main

    @property
    def subscribed(self) -> bool:
        """True while subscribed to anything (counting subscriptions sent
        and unsubscriptions whose confirmation has not been read yet)."""
        return bool(self.channels or self.patterns or self.shard_channels)

    def _connection_for_channels(self) -> PubSubConnection:
        if self._main is None:
            self._main = PubSubConnection(
                self._where,
                decode=self._decode,
                inbox=self._inbox,
                task_group=self._task_group,
                resubscribe=self._resubscribe_main,
            )
        return self._main

    def _connection_for_shard(self, address: Address) -> PubSubConnection:
        connection = self._shards.get(address)
        if connection is None:
            assert self._cluster is not None
            settings = self._cluster.settings.for_node(*address)

            async def where() -> ConnectionSettings:
                return settings

            connection = self._shards[address] = PubSubConnection(
                where,
                decode=self._decode,
                inbox=self._inbox,
                task_group=self._task_group,
                resubscribe=lambda: self._resubscribe_shards(address),
            )
        return connection

    async def connect(self) -> None:
        """Open the connection for channels and patterns now (the first
        subscribe does it anyway). ``ConnectionError`` if it cannot.

        Raises ``ConnectionError``/``TimeoutError``/``AuthenticationError`` when it cannot.
        Cancellation: a connection half open is closed.
        """
        await self._connection_for_channels().connect()

    # What a reconnected connection sends. An unsubscription whose
    # confirmation was lost with the old connection is complete: the new
    # one never had it. (redis-py re-subscribes those; we do not.)

    def _resubscribe_main(self) -> list[bytes]:
        commands = []
        for kind, subscribed, pending in (
            ("SUBSCRIBE", self.channels, self.pending_unsubscribe_channels),
            ("PSUBSCRIBE", self.patterns, self.pending_unsubscribe_patterns),
        ):
            for name in pending:
                subscribed.pop(name, None)
            pending.clear()
            if subscribed:
                commands.append(encode_command((kind, *subscribed)))
        if self._cluster is None:
            commands.extend(self._resubscribe_shards(None))
        return commands

    def _resubscribe_shards(self, address: Address | None) -> list[bytes]:
        mine = [name for name in self.shard_channels if self._shard_owner.get(name) == address]
        pending = self.pending_unsubscribe_shard_channels
        for name in [name for name in mine if name in pending]:
            pending.discard(name)
            self.shard_channels.pop(name, None)
            self._shard_owner.pop(name, None)
        by_slot: dict[int | None, list[Any]] = {}
        for name in mine:
            if name in self.shard_channels:
                slot = self._slot(name) if address is not None else None
                by_slot.setdefault(slot, []).append(name)
        # On a cluster one SSUBSCRIBE may name one slot only.
        return [encode_command(("SSUBSCRIBE", *names)) for names in by_slot.values()]

    def _slot(self, name: Any) -> int:
        return int(key_slot(self.encoder.encode(name)))  # type: ignore[no-untyped-call]

    # -- subscribing ----------------------------------------------------------

    def _normalize_keys(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        """Names as the server's frames will carry them: ``str`` when the
        client decodes, ``bytes`` when it does not."""
        encode, decode = self.encoder.encode, self.encoder.decode
        return {
            decode(encode(name)): value  # type: ignore[no-untyped-call]
            for name, value in data.items()
        }

    async def subscribe(self, *args: Any, **kwargs: Handler) -> None:
        """Subscribe to channels; ``channel=handler`` keywords (or
        ``Subscription(name, handler)``) have their messages handed to the
        handler instead of returned by :meth:`get_message`.

        ``ConnectionError`` if the first connection cannot be opened.
        Cancellation: if it returns, the subscription is recorded (and
        sent, or re-sent on reconnect); if cancelled, it may or may not be.

        Raises redis-py's ``ConnectionError`` when the first connection cannot be opened.
        """
        await self._subscribe("SUBSCRIBE", "channels", args, kwargs)

    async def psubscribe(self, *args: Any, **kwargs: Handler) -> None:
        """Subscribe to glob-style patterns (as :meth:`subscribe`).

        Raises and cancels as :meth:`subscribe`.
        """
        await self._subscribe("PSUBSCRIBE", "patterns", args, kwargs)

    async def _subscribe(
        self, command_name: str, kind: str, args: tuple[Any, ...], kwargs: Mapping[str, Handler]
    ) -> None:
        new = _subscriptions(args, kwargs)
        command = encode_command((command_name, *new))
        normalized = self._normalize_keys(new)

        def record() -> None:
            # By name: aclose() replaces the dicts.
            getattr(self, kind).update(normalized)
            getattr(self, f"pending_unsubscribe_{kind}").difference_update(normalized)

        await self._connection_for_channels().send(command, record)

    async def unsubscribe(self, *args: Any) -> None:
        """Unsubscribe from these channels, or from all of them.

        Raises ``ConnectionError`` when the connection cannot be opened. Cancellation: if it
        returns, the unsubscription is sent (it counts once you read its confirmation, as in
        redis-py); if cancelled, it may or may not be.
        """
        await self._unsubscribe("UNSUBSCRIBE", "channels", args)

    async def punsubscribe(self, *args: Any) -> None:
        """Unsubscribe from these patterns, or from all of them.

        Raises and cancels as :meth:`unsubscribe`.
        """
        await self._unsubscribe("PUNSUBSCRIBE", "patterns", args)

    async def _unsubscribe(self, command_name: str, kind: str, args: tuple[Any, ...]) -> None:
        names = _names(args)
        command = encode_command((command_name, *names))

        def record() -> None:
            gone = self._normalize_keys(dict.fromkeys(names)) if names else getattr(self, kind)
            getattr(self, f"pending_unsubscribe_{kind}").update(gone)

        await self._connection_for_channels().send(command, record)

    async def ssubscribe(self, *args: Any, target_node: Any = None, **kwargs: Handler) -> None:
        """Subscribe to shard channels (Redis 7+). On a cluster each goes
        to the primary that owns its slot.

        Raises and cancels as :meth:`subscribe`.
        """
        del target_node  # redis-py's cluster option; the slot decides here
        new = _subscriptions(args, kwargs)
        if self._cluster is None:
            await self._shard_send(self._connection_for_channels(), new, None)
            return
        by_slot: dict[int, Subscriptions] = {}
        for name, handler in new.items():
            by_slot.setdefault(self._slot(name), {})[name] = handler
        for slot, group in by_slot.items():
            owner = await self._cluster.owner(slot)
            await self._shard_send(self._connection_for_shard(owner), group, owner)

    async def _shard_send(
        self, connection: PubSubConnection, new: Subscriptions, owner: Address | None
    ) -> None:
        command = encode_command(("SSUBSCRIBE", *new))
        normalized = self._normalize_keys(new)

        def record() -> None:
            self.shard_channels.update(normalized)
            self.pending_unsubscribe_shard_channels.difference_update(normalized)
            for name in normalized:
                self._shard_owner[name] = owner

        await connection.send(command, record)

    async def sunsubscribe(self, *args: Any, target_node: Any = None) -> None:
        """Unsubscribe from these shard channels, or from all of them.

        Raises and cancels as :meth:`unsubscribe`.
        """
        del target_node
        names = _names(args)
        if self._cluster is None:
            command = encode_command(("SUNSUBSCRIBE", *names))

            def record() -> None:
                gone = self._normalize_keys(dict.fromkeys(names)) if names else self.shard_channels
                self.pending_unsubscribe_shard_channels.update(gone)

            await self._connection_for_channels().send(command, record)
            return
        groups: dict[Address, list[Any]] = {}
        for name in names:
            (normal,) = self._normalize_keys({name: None})
            owner = self._shard_owner.get(normal) or await self._cluster.owner(self._slot(name))
            groups.setdefault(owner, []).append(name)
        if not names:
            groups = {address: [] for address in self._shards}
        for address, group in groups.items():
            connection = self._connection_for_shard(address)

            def record_group(group: list[Any] = group, address: Address = address) -> None:
                pending = self.pending_unsubscribe_shard_channels
                if group:
                    pending.update(self._normalize_keys(dict.fromkeys(group)))
                else:
                    pending.update(
                        name for name, owner in self._shard_owner.items() if owner == address
                    )

            await connection.send(encode_command(("SUNSUBSCRIBE", *group)), record_group)

    async def ping(self, message: Any = None) -> None:
        """Send PING; its reply arrives as a ``"pong"`` message.

        Raises ``RuntimeError`` before the first subscribe, and ``ConnectionError`` when the
        connection is lost. Cancellation: the PING may or may not be sent; if it is, its
        ``pong`` arrives as a message.
        """
        args = ("PING",) if message is None else ("PING", message)
        await self._connection_for_channels().send(encode_command(args), lambda: None)

    # -- reading --------------------------------------------------------------

    def _never_connected(self) -> bool:
        return self._main is None and not self._shards

    async def parse_response(
        self,
        block: bool = True,
        timeout: float | None = 0,  # noqa: ASYNC109 - redis-py's signature
    ) -> Any:
        """The next raw frame (``None`` if none came within ``timeout``
        seconds; ``block=True`` waits for ever). An error reply is raised;
        so, once, is a lost connection (``ConnectionError``).

        Cancellation: a cancelled call has taken nothing.
        """
        if self._never_connected():
            raise RuntimeError(
                "pubsub connection not set: did you forget to call subscribe() or psubscribe()?"
            )
        await anyio.lowlevel.checkpoint()
        found, frame = await self._inbox.take(None if block else timeout)
        if not found:
            return None
        if isinstance(frame, Lost):
            raise frame.error
        if isinstance(frame, BaseException):
            raise frame  # an error reply (or one that did not decode)
        if self.push_handler_func is not None and isinstance(frame, list):
            result = self.push_handler_func(frame)
            if inspect.isawaitable(result):
                await result
            return None
        return frame

    async def get_message(
        self,
        ignore_subscribe_messages: bool = False,
        timeout: float | None = 0.0,  # noqa: ASYNC109
    ) -> dict[str, Any] | None:
        """The next message, or ``None``: none within ``timeout`` seconds
        (``0.0``, the default, only looks; ``None`` waits for ever), or one
        that a handler took or that is a (un)subscribe confirmation being
        ignored.

        Raises ``RuntimeError`` before the first subscribe, ``ConnectionError``
        once per lost connection (see the module's docstring).
        Cancellation: while waiting, nothing is taken — the message it
        would have returned is the next call's.
        """
        response = await self.parse_response(block=timeout is None, timeout=timeout)
        if response is None:
            return None
        return await self.handle_message(response, ignore_subscribe_messages)

    #: redis-py 8.2's name for reading shard-channel messages: the same call,
    #: since ``smessage`` frames arrive on the same connection.
    get_sharded_message = get_message

    async def handle_message(
        self, response: Any, ignore_subscribe_messages: bool = False
    ) -> dict[str, Any] | None:
        """A frame as a message dict; keeps the subscription bookkeeping and
        calls a handler (``None`` is returned then).

        Raises what a handler raises (the frame is then taken). Cancellation: a handler
        cancelled mid-way is cancelled with the caller; the frame is taken.
        """
        if response is None:
            return None
        if isinstance(response, (bytes, str)):  # PING's reply when not subscribed
            empty = b"" if isinstance(response, bytes) else ""
            pong = b"pong" if isinstance(response, bytes) else "pong"
            response = [pong, empty if _text(response) == "PONG" else response]
        if not isinstance(response, list) or not response:
            return None
        message_type = _text(response[0])
        message: dict[str, Any]
        if message_type == "pmessage":
            message = {
                "type": message_type,
                "pattern": response[1],
                "channel": response[2],
                "data": response[3],
            }
        elif message_type == "pong":
            message = {"type": message_type, "pattern": None, "channel": None, "data": response[1]}
        else:
            message = {
                "type": message_type,
                "pattern": None,
                "channel": response[1],
                "data": response[2] if len(response) > 2 else None,
            }

        if message_type in self.UNSUBSCRIBE_MESSAGE_TYPES:
            name = response[1]
            subscribed, pending = {
                "punsubscribe": (self.patterns, self.pending_unsubscribe_patterns),
                "sunsubscribe": (self.shard_channels, self.pending_unsubscribe_shard_channels),
                "unsubscribe": (self.channels, self.pending_unsubscribe_channels),
            }[message_type]
            if name in pending:
                pending.remove(name)
                subscribed.pop(name, None)
                if message_type == "sunsubscribe":
                    self._shard_owner.pop(name, None)

        if message_type in self.PUBLISH_MESSAGE_TYPES:
            if message_type == "pmessage":
                handler = self.patterns.get(message["pattern"])
            elif message_type == "smessage":
                handler = self.shard_channels.get(message["channel"])
            else:
                handler = self.channels.get(message["channel"])
            if handler:
                result = handler(message)
                if inspect.isawaitable(result):
                    await result
                return None
        elif message_type != "pong" and (
            ignore_subscribe_messages or self.ignore_subscribe_messages
        ):
            return None
        return message

    async def listen(self) -> AsyncIterator[dict[str, Any]]:
        """Every message, for as long as anything is subscribed.

        Cancellation: as :meth:`get_message`; the iterator may be abandoned
        and a new one started without losing a message.

        Raises as :meth:`get_message` does: ``ConnectionError`` once per lost connection, at the
        point in the stream where it was lost.
        """
        while self.subscribed:
            response = await self.handle_message(await self.parse_response(block=True))
            if response is not None:
                yield response

    async def run(
        self,
        *,
        exception_handler: Callable[[BaseException, PubSub], Any] | None = None,
        poll_timeout: float = 1.0,
        pubsub: PubSub | None = None,
    ) -> None:
        """Hand every message to its handler until cancelled (start it in
        a task group: ``tg.start_soon(ps.run)``).

        Raises the first exception — a lost connection's ``ConnectionError``
        among them, or a handler's — unless ``exception_handler(error,
        pubsub)`` takes it, and then it goes on. Cancellation: as
        :meth:`get_message`; nothing is taken from the inbox.
        """
        for channel, handler in self.channels.items():
            if handler is None:
                raise PubSubError(f"Channel: '{channel}' has no handler registered")
        for pattern, handler in self.patterns.items():
            if handler is None:
                raise PubSubError(f"Pattern: '{pattern}' has no handler registered")
        await self.connect()
        source = self if pubsub is None else pubsub
        while True:
            try:
                await source.get_message(ignore_subscribe_messages=True, timeout=poll_timeout)
            except Exception as exc:
                if exception_handler is None:
                    raise
                result = exception_handler(exc, self)
                if inspect.isawaitable(result):
                    await result
            await anyio.lowlevel.checkpoint()

    # -- closing --------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the readers, close every connection and forget every
        subscription; shielded, and bounded per connection. The ``PubSub``
        may subscribe again afterwards (on new connections).

        Raises nothing of its own. Cancellation: shielded, so it completes even in a cancelled
        scope.
        """
        connections = [c for c in (self._main, *self._shards.values()) if c is not None]
        self._main, self._shards = None, {}
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as closing:
                for connection in connections:
                    closing.start_soon(connection.aclose)
        self._inbox.clear()
        self._shard_owner.clear()
        self.channels = {}
        self.pending_unsubscribe_channels = set()
        self.patterns = {}
        self.pending_unsubscribe_patterns = set()
        self.shard_channels = {}
        self.pending_unsubscribe_shard_channels = set()

    async def close(self) -> None:
        """Deprecated alias of :meth:`aclose` (as in redis-py).

        Raises and cancels as :meth:`aclose`.
        """
        warnings.warn("Use aclose() instead", DeprecationWarning, stacklevel=2)
        await self.aclose()

    async def reset(self) -> None:
        """Deprecated alias of :meth:`aclose` (as in redis-py).

        Raises and cancels as :meth:`aclose`.
        """
        warnings.warn("Use aclose() instead", DeprecationWarning, stacklevel=2)
        await self.aclose()
