"""The command table: what this client knows about each command, in one place.

Every command has a :class:`Command`: which path it takes, where its keys are
(for the cluster), how long it may block, whether it changes the state of
the connection it runs on. Most commands go on the shared connection.
Blocking ones (``BLPOP``, ``XREAD … BLOCK`` …) go on a dedicated connection,
so they never stall the shared one. A few change the state of the connection
they run on and are refused, because on a connection every task shares they
would change it for everyone.

A command the table does not list takes the defaults: shared connection,
its first argument is its key, never blocks. :func:`command_for` looks a
command up once per name; this runs for every command.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from redis.exceptions import DataError

__all__ = [
    "BLOCKING",
    "CACHEABLE",
    "COMMANDS",
    "DROPS_ALL",
    "DROPS_FIRST",
    "DROPS_KEYS",
    "DROPS_NOTHING",
    "FLUSHING",
    "NOT_BLOCKING",
    "PLAIN",
    "READ_ONLY",
    "SHARED",
    "BlockTime",
    "Command",
    "Path",
    "Split",
    "blocking_wait",
    "command_for",
    "route",
]

#: Sentinel for "this invocation does not block".
NOT_BLOCKING = -1.0


class Path(enum.IntEnum):
    """Which connection a command runs on."""

    #: The multiplexed connection every task shares.
    SHARED = 0
    #: A connection of its own while it blocks (see :attr:`Command.block`).
    DEDICATED = 1
    #: None: it changes the connection's state (see :attr:`Command.refusal`).
    REFUSED = 2
    #: Decided by its subcommand (``CLIENT TRACKING`` is refused, ``CLIENT
    #: LIST`` is not), which may be the next argument.
    BY_SUBCOMMAND = 3


SHARED = Path.SHARED
DEDICATED = Path.DEDICATED
REFUSED = Path.REFUSED
BY_SUBCOMMAND = Path.BY_SUBCOMMAND
#: Older names, which the tests and the noscript audit use.
PLAIN, BLOCKING = SHARED, DEDICATED


class Split(enum.Enum):
    """How a multi-key command whose keys span cluster slots is sent per
    slot and put back together (the ``response_policy`` of ``COMMAND DOCS``)."""

    #: The replies are counts: add them up (``DEL``, ``EXISTS`` …).
    AGG_SUM = "agg_sum"
    #: ``OK`` when every part is (``MSET``).
    ALL_SUCCEEDED = "all_succeeded"
    #: One value per key, in the order of the keys (``MGET``).
    BY_KEY = "by_key"


def _seconds(value: Any, scale: float) -> float | None:
    try:
        seconds = float(value) * scale
    except (TypeError, ValueError):
        return None  # let the server reject it; we just cannot bound it
    return None if seconds == 0 else seconds


@attrs.frozen
class BlockTime:
    """Where a blocking command says how long the server may hold it: the
    argument at ``at`` (``-1``: the last), or the one after the option word
    ``after`` (``XREAD … BLOCK ms``; without the option it does not block).
    A timeout of 0, or none given, is forever."""

    at: int = 0
    after: str | None = None
    #: Seconds per unit: 1.0, or 0.001 for milliseconds.
    unit: float = 1.0

    def __call__(self, args: Sequence[Any]) -> float | None:
        """Seconds, ``None`` for forever, or :data:`NOT_BLOCKING`."""
        if self.after is not None:
            for index, arg in enumerate(args[1:-1], start=1):
                token = arg.decode() if isinstance(arg, bytes) else arg
                if isinstance(token, str) and token.upper() == self.after:
                    return _seconds(args[index + 1], self.unit)
            return NOT_BLOCKING
        return _seconds(args[self.at], self.unit) if len(args) > abs(self.at) else None


#: Finds the keys of a command whose keys ``first``/``last``/``step`` cannot describe.
KeyFinder = Callable[[Sequence[Any]], list[Any]]


#: The commands that empty a database (``Command.drops``).
FLUSHING = frozenset({"FLUSHDB", "FLUSHALL", "SWAPDB"})
DROPS_NOTHING, DROPS_FIRST, DROPS_KEYS, DROPS_ALL = 0, 1, 2, 3


@attrs.frozen
class Command:
    """What the client knows about one command (or ``CLIENT`` subcommand).

    Keys are where ``COMMAND INFO`` puts them: from argument ``first_key``
    (0: it has none) to ``last_key`` (negative counts from the end, ``-1``
    being the last argument), every ``key_step``-th; or ``find_keys`` finds
    them, for the commands that count their keys (``EVAL``, ``LMPOP`` …) or
    name them after a word (``XREAD … STREAMS``).
    """

    #: The name as the table knows it: ``"GET"``, ``"CLIENT TRACKING"``.
    name: str
    path: Path = SHARED
    #: Why it is refused: what to use instead.
    refusal: str | None = None
    #: It changes the state of the connection it runs on.
    changes_state: bool = False
    first_key: int = 1
    last_key: int = 1
    key_step: int = 1
    find_keys: KeyFinder | None = None
    #: How long it may block; ``None``: it never does.
    block: BlockTime | None = None
    #: On a cluster, when its keys span slots.
    split: Split | None = None
    #: The subcommands with a path of their own (``CLIENT``'s refused ones).
    subcommands: Mapping[str, Command] = attrs.field(factory=dict)
    #: Its reply is a pure function of its keys' contents, so a client-side
    #: cache may keep it until one of its keys changes (see
    #: :data:`CACHEABLE`).
    cacheable: bool = False
    #: It only reads the keys it names, so a replica may answer it when the
    #: client reads from replicas (see :data:`READ_ONLY`).
    read_only: bool = False
    #: The name redis-py's response callbacks know this invocation by
    #: (``"CONFIG GET"``); the name itself unless the caller said more.
    callback: str = attrs.field()

    @callback.default
    def _callback(self) -> str:
        return self.name

    #: Its key is its first argument alone (the default): found without a search.
    one_key: bool = attrs.field(init=False)

    @one_key.default
    def _one_key(self) -> bool:
        return (self.first_key, self.last_key, self.key_step, self.find_keys) == (1, 1, 1, None)

    #: What a client-side cache must drop once this command is answered (it
    #: may have written them): :data:`DROPS_NOTHING`, :data:`DROPS_FIRST`
    #: (its first argument), :data:`DROPS_KEYS` (:meth:`keys`) or
    #: :data:`DROPS_ALL` (it empties the database). One small int, so the
    #: per-command path decides with one comparison.
    drops: int = attrs.field(init=False)

    @drops.default
    def _drops(self) -> int:
        if self.name in FLUSHING:
            return DROPS_ALL
        if self.one_key:
            return DROPS_FIRST
        return DROPS_KEYS if self.first_key or self.find_keys is not None else DROPS_NOTHING

    #: A client-side cache has something to do before it is sent: look it
    #: up (cacheable), or drop its keys' replies at once (it runs on a
    #: connection of its own, with no order to the shared one's replies).
    cache_first: bool = attrs.field(init=False)

    @cache_first.default
    def _cache_first(self) -> bool:
        return self.cacheable or self.path is not SHARED

    def __attrs_post_init__(self) -> None:
        if (self.path is REFUSED) != (self.refusal is not None):
            raise ValueError(f"{self.name}: a refused command says why, and only one does")

    def block_time(self, args: Sequence[Any]) -> float | None:
        """How long the server may hold this invocation: seconds, ``None``
        for forever, or :data:`NOT_BLOCKING`."""
        return NOT_BLOCKING if self.block is None else self.block(args)

    def keys(self, args: Sequence[Any]) -> Sequence[Any]:
        """This invocation's keys, as far as routing needs them."""
        if self.one_key:
            return args[1:2]  # most commands: the first argument, if any
        if not self.first_key or len(args) < 2:
            return []
        if self.find_keys is not None:
            return self.find_keys(args)
        last = self.last_key
        end = last + 1 if last >= 0 else len(args) + last + 1
        return list(args[self.first_key : end : self.key_step])

    def refuse(self, args: Sequence[Any]) -> None:
        """Raise ``DataError`` if this invocation would change the shared connection."""
        if self.path is REFUSED:
            name, reason = self.callback, self.refusal
        elif self.path is BY_SUBCOMMAND:
            words = self.callback.split()[1:] or [
                arg.decode(errors="replace").upper() if isinstance(arg, bytes) else str(arg).upper()
                for arg in args[1:2]
            ]
            sub = self.subcommands.get(f"{self.name} {words[0]}") if words else None
            if sub is None:
                return
            name, reason = sub.name, sub.refusal
        else:
            return
        raise DataError(f"{name} cannot run on the shared connection: {reason}")


# -- the table ----------------------------------------------------------------


def _counted_keys(at: int, *, optional: bool = False) -> KeyFinder:
    """Keys counted by the argument at ``at`` (``numkeys``) and following it.
    ``optional``: a missing count means no keys (``EVAL script``)."""

    def find(args: Sequence[Any]) -> list[Any]:
        count = int(args[at]) if len(args) > at or not optional else 0
        return list(args[at + 1 : at + 1 + count])

    return find


def _destination_and_counted(args: Sequence[Any]) -> list[Any]:
    """``ZUNIONSTORE dest numkeys key…``: the destination, then the counted keys."""
    return [args[1], *_counted_keys(2)(args)] if len(args) > 1 else []


def _key_after_subcommand(args: Sequence[Any]) -> list[Any]:
    """``OBJECT ENCODING key``, ``MEMORY USAGE key``: the argument after the
    subcommand, which redis-py sends as one name (``"MEMORY USAGE"``) or as
    two arguments. Subcommands without a key (``MEMORY STATS``) have none."""
    name = args[0]
    text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    at = 1 if " " in text.strip() else 2
    return [args[at]] if len(args) > at else []


def _stream_keys(args: Sequence[Any]) -> list[Any]:
    """``XREAD … STREAMS key… id…``: the first half of what follows."""
    for index, arg in enumerate(args):
        token = arg.decode() if isinstance(arg, bytes) else str(arg)
        if token.upper() == "STREAMS":
            rest = list(args[index + 1 :])
            return rest[: len(rest) // 2]
    return []


#: Commands that change the state of the connection they run on. On a
#: connection shared by every task they would change it for everyone (SELECT),
#: capture other tasks' commands (MULTI, ASKING), or turn replies into a
#: stream of something else (SUBSCRIBE, MONITOR, SYNC) — so they are refused
#: with a pointer to what to use. Audited against the commands the server
#: flags ``noscript`` (tests/client/test_client.py); ``CLIENT`` subcommands are
#: named ``"CLIENT <SUB>"``.
_PUBSUB = (
    "pub/sub needs a connection of its own: use client.pubsub() "
    "(async with client.pubsub() as ps: await ps.subscribe(...))"
)
_WATCH = (
    "WATCH needs a connection of its own: use `async with client.pipeline() as pipe: "
    "await pipe.watch(key)`, or client.transaction(func, key)"
)
_MULTI = "use client.pipeline(transaction=True), or client.transaction(func, *keys) to WATCH"
_REPLICATION = "it turns the connection into a replication stream"
_TRACKING = "client-side caching needs a connection of its own tracking state"
_PER_CONNECTION = "it would apply to every task's commands, and be lost on reconnect"
_STATEFUL: Mapping[str, str] = {
    "SELECT": "configure the database with db= (or REDIS_DB) instead",
    "AUTH": "put credentials in the URL; they are sent on every (re)connect",
    "HELLO": (
        "it would change the protocol of a connection every task shares; "
        "pass protocol=2 or 3 (or ?protocol= in the URL) instead"
    ),
    "RESET": "it would reset the connection every task shares",
    "QUIT": "close the client with aclose() instead",
    "MULTI": _MULTI,
    "EXEC": _MULTI,
    "DISCARD": _MULTI,
    "WATCH": _WATCH,
    "UNWATCH": _WATCH,
    "MONITOR": (
        "MONITOR turns the connection into a stream of events; "
        "use `async with client.monitor() as m:`, which opens one of its own"
    ),
    "SYNC": _REPLICATION,
    "PSYNC": _REPLICATION,
    "REPLCONF": _REPLICATION,
    "SUBSCRIBE": _PUBSUB,
    "PSUBSCRIBE": _PUBSUB,
    "SSUBSCRIBE": _PUBSUB,
    "UNSUBSCRIBE": _PUBSUB,
    "PUNSUBSCRIBE": _PUBSUB,
    "SUNSUBSCRIBE": _PUBSUB,
    "ASKING": "it applies to whichever task's command comes next; redirects are followed for you",
    "READONLY": "to read from replicas, set read_from='prefer_replica' (or REDIS_READ_FROM); "
    + _PER_CONNECTION,
    "READWRITE": "reads go to primaries unless read_from (or REDIS_READ_FROM) says otherwise; "
    + _PER_CONNECTION,
    "CLIENT REPLY": "replies are how the shared connection keeps callers apart",
    "CLIENT TRACKING": _TRACKING,
    "CLIENT CACHING": _TRACKING,
    "CLIENT NO-EVICT": _PER_CONNECTION,
    "CLIENT NO-TOUCH": _PER_CONNECTION,
    # Valkey 8
    "CLIENT CAPA": _PER_CONNECTION,
    "CLIENT IMPORT-SOURCE": _PER_CONNECTION,
}

#: Commands with no key: on a cluster, sent to any primary.
_KEYLESS = (
    "PING", "ECHO", "INFO", "TIME", "DBSIZE", "CLUSTER", "CLIENT", "CONFIG", "COMMAND",
    "SCRIPT", "FUNCTION", "PUBLISH", "PUBSUB", "RANDOMKEY", "SCAN", "KEYS", "FLUSHDB",
    "FLUSHALL", "LASTSAVE", "SLOWLOG", "LATENCY", "ACL", "WAIT", "WAITAOF",
    "READONLY", "READWRITE", "ROLE", "LOLWUT", "SAVE", "BGSAVE", "BGREWRITEAOF", "DEBUG",
)  # fmt: skip

#: The read-only commands whose reply depends on nothing but the contents of
#: the keys they name (where the table finds them): a client-side cache may
#: keep such a reply until the server says one of those keys changed. Left
#: out, though read-only: what depends on time (TTL, PTTL, EXPIRETIME,
#: PEXPIRETIME, HTTL…, OBJECT IDLETIME), on chance (SRANDMEMBER,
#: HRANDFIELD, ZRANDMEMBER, RANDOMKEY), on the server or the connection
#: (TIME, INFO, DBSIZE, OBJECT, MEMORY, DEBUG, DUMP's RDB version), on a
#: cursor's state (SCAN, HSCAN, SSCAN, ZSCAN), on keys it does not name
#: (SORT_RO's BY and GET patterns, scripts: EVAL_RO, FCALL_RO), or that
#: writes while it reads (PFCOUNT caches its cardinality in the key).
CACHEABLE = (
    # strings and bitmaps
    "GET", "MGET", "GETRANGE", "SUBSTR", "STRLEN", "LCS", "GETBIT", "BITCOUNT", "BITPOS",
    # hashes
    "HGET", "HMGET", "HGETALL", "HKEYS", "HVALS", "HLEN", "HEXISTS", "HSTRLEN",
    # lists
    "LRANGE", "LLEN", "LINDEX", "LPOS",
    # sets
    "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SINTER", "SUNION", "SDIFF", "SINTERCARD",
    # sorted sets
    "ZRANGE", "ZRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGE", "ZREVRANGEBYSCORE",
    "ZREVRANGEBYLEX", "ZSCORE", "ZMSCORE", "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZRANK",
    "ZREVRANK", "ZINTER", "ZUNION", "ZDIFF", "ZINTERCARD",
    # streams, geo, keys
    "XRANGE", "XREVRANGE", "XLEN", "GEOPOS", "GEODIST", "GEOHASH", "EXISTS", "TYPE",
)  # fmt: skip

#: The commands a replica may answer when the client reads from replicas
#: (``read_from``): those the server flags ``readonly`` in ``COMMAND INFO``
#: that name their keys, so that a cluster knows which slot's replica to
#: ask — every cacheable command, and those left out of the cache for
#: depending on time, chance or a cursor (which a replica answers as well
#: as its primary, if up to its replication lag), and the read-only
#: scripts, which the server refuses to let write. Left out, though flagged
#: ``readonly``: keyless commands (``SCAN``, ``KEYS``, ``DBSIZE``,
#: ``RANDOMKEY``: one node's view, sent to a primary as they always were),
#: ``TOUCH`` and ``PFCOUNT`` (they change the key's access time or cached
#: cardinality on the node that runs them), ``OBJECT``/``MEMORY`` (per-node
#: facts) and the blocking reads (``XREAD … BLOCK``: a dedicated connection
#: to the primary).
READ_ONLY = (
    *CACHEABLE,
    "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "HTTL", "HPTTL", "HEXPIRETIME", "HPEXPIRETIME",
    "SRANDMEMBER", "HRANDFIELD", "ZRANDMEMBER", "HSCAN", "SSCAN", "ZSCAN", "DUMP",
    "SORT_RO", "BITFIELD_RO", "GEORADIUS_RO", "GEORADIUSBYMEMBER_RO", "GEOSEARCH",
    "XPENDING", "EVAL_RO", "EVALSHA_RO", "FCALL_RO",
)  # fmt: skip

_EVAL_KEYS = _counted_keys(2, optional=True)
_ALL_KEYS = {"last_key": -1}
_MS_AFTER_BLOCK = BlockTime(after="BLOCK", unit=0.001)

#: What differs from the defaults (shared, first argument is the key, never
#: blocks), by group of commands; a command in several groups has all their
#: traits.
_TRAITS: list[tuple[Sequence[str], dict[str, Any]]] = [
    (_KEYLESS, {"first_key": 0}),
    (CACHEABLE, {"cacheable": True}),
    (READ_ONLY, {"read_only": True}),
    # Every key a command reads or writes, so that a client-side cache drops
    # what a write changed (and a cluster sees a cross-slot call up front).
    (
        (
            "LCS",
            "RENAME",
            "RENAMENX",
            "COPY",
            "SMOVE",
            "LMOVE",
            "RPOPLPUSH",
            "GEOSEARCHSTORE",
            "ZRANGESTORE",
        ),
        {"last_key": 2},
    ),
    (("BLMOVE", "BRPOPLPUSH"), {"last_key": 2}),
    (
        ("SINTER", "SUNION", "SDIFF", "SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE", "PFMERGE"),
        _ALL_KEYS,
    ),
    (("ZINTERSTORE", "ZUNIONSTORE", "ZDIFFSTORE"), {"find_keys": _destination_and_counted}),
    (("BITOP",), {"first_key": 2, **_ALL_KEYS}),
    (("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"), {"find_keys": _EVAL_KEYS}),
    (("OBJECT", "MEMORY"), {"find_keys": _key_after_subcommand}),
    (
        ("LMPOP", "ZMPOP", "SINTERCARD", "ZINTERCARD", "ZDIFF", "ZINTER", "ZUNION"),
        {"find_keys": _counted_keys(1)},
    ),
    (("DEL", "UNLINK", "EXISTS", "TOUCH"), {**_ALL_KEYS, "split": Split.AGG_SUM}),
    (("MGET",), {**_ALL_KEYS, "split": Split.BY_KEY}),
    (("MSET",), {**_ALL_KEYS, "key_step": 2, "split": Split.ALL_SUCCEEDED}),
    (("MSETNX",), {**_ALL_KEYS, "key_step": 2}),
    # Every WATCHed key, so a cluster pipeline can check they share a slot.
    (("WATCH",), _ALL_KEYS),
    # Blocking: the timeout in seconds is the last argument …
    (
        ("BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BZPOPMIN", "BZPOPMAX"),
        {"path": DEDICATED, "block": BlockTime(at=-1)},
    ),
    # … or the first, before the counted keys …
    (
        ("BLMPOP", "BZMPOP"),
        {"path": DEDICATED, "block": BlockTime(at=1), "find_keys": _counted_keys(2)},
    ),
    # … or a number of milliseconds …
    (("WAIT",), {"path": DEDICATED, "block": BlockTime(at=2, unit=0.001)}),
    (("WAITAOF",), {"path": DEDICATED, "block": BlockTime(at=3, unit=0.001)}),
    # … or given by an option, without which they do not block.
    (
        ("XREAD", "XREADGROUP"),
        {"path": DEDICATED, "block": _MS_AFTER_BLOCK, "find_keys": _stream_keys},
    ),
    *(
        ((name,), {"path": REFUSED, "refusal": reason, "changes_state": True})
        for name, reason in _STATEFUL.items()
        if " " not in name
    ),
    (
        ("CLIENT",),
        {
            "path": BY_SUBCOMMAND,
            "subcommands": {
                name: Command(name, path=REFUSED, refusal=reason, changes_state=True, first_key=0)
                for name, reason in _STATEFUL.items()
                if name.startswith("CLIENT ")
            },
        },
    ),
]


def _table() -> dict[str, Command]:
    traits: dict[str, dict[str, Any]] = {}
    for names, group in _TRAITS:
        for name in names:
            traits.setdefault(name, {}).update(group)
    return {name: Command(name, **spec) for name, spec in traits.items()}


#: Every command this client knows something particular about, by name.
COMMANDS: Mapping[str, Command] = _table()

_ROUTES: dict[Any, Command] = {}
_ROUTES_MAX = 2048  # command names come from code, but never grow without bound


def command_for(args: Sequence[Any]) -> Command:
    """The command ``args`` invoke, its :attr:`Command.callback` being the
    name as given (``"CONFIG GET"``).

    Cached per command name: this runs for every command.
    """
    name = args[0] if args else None
    try:
        return _ROUTES[name]
    except (KeyError, TypeError):
        pass
    if isinstance(name, bytes):
        text = name.decode()
    elif isinstance(name, str):
        text = name
    else:
        raise DataError(f"a command name must be a non-empty str, got {name!r}")
    key = text.upper()
    if not key.strip():
        raise DataError("a command name must be a non-empty str")
    base = key.split()[0]
    known = COMMANDS.get(base)
    if known is None:
        command = Command(base, callback=key)
    elif known.callback == key:
        command = known
    else:
        command = attrs.evolve(known, callback=key)
    if len(_ROUTES) < _ROUTES_MAX:
        _ROUTES[name] = command
    return command


def route(args: Sequence[Any]) -> tuple[str, Path]:
    """The callback name (``"GET"``, ``"CONFIG GET"``) and path of ``args``."""
    command = command_for(args)
    return command.callback, command.path


def blocking_wait(name: str, args: Sequence[Any]) -> float | None:
    """How long the server may hold command ``name``: seconds, ``None`` for
    forever, or :data:`NOT_BLOCKING`."""
    command = COMMANDS.get(name)
    return NOT_BLOCKING if command is None else command.block_time(args)
