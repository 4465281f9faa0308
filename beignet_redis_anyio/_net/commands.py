"""Which path a command takes, decided once per command name.

Most commands go on the shared connection. Blocking ones (``BLPOP``,
``XREAD … BLOCK`` …) go on a dedicated connection, so they never stall the
shared one. A few change the state of the connection they run on and are
refused, because on a connection every task shares they would change it for
everyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.exceptions import DataError

__all__ = [
    "BLOCKING",
    "NOT_BLOCKING",
    "PLAIN",
    "blocking_wait",
    "refuse_stateful",
    "route",
]

_BLOCK_TIMEOUT_LAST = frozenset({"BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BZPOPMIN", "BZPOPMAX"})
_BLOCK_TIMEOUT_FIRST = frozenset({"BLMPOP", "BZMPOP"})
BLOCKING_COMMANDS = _BLOCK_TIMEOUT_LAST | _BLOCK_TIMEOUT_FIRST | {"WAIT", "WAITAOF"}
_STREAM_READS = frozenset({"XREAD", "XREADGROUP"})

#: Sentinel for "this invocation does not block".
NOT_BLOCKING = -1.0


def _seconds(value: Any, scale: float = 1.0) -> float | None:
    try:
        seconds = float(value) * scale
    except (TypeError, ValueError):
        return None  # let the server reject it; we just cannot bound it
    return None if seconds == 0 else seconds


def blocking_wait(name: str, args: tuple[Any, ...]) -> float | None:
    """How long the server may hold this command: seconds, ``None`` for
    forever, or :data:`NOT_BLOCKING`."""
    if name in _BLOCK_TIMEOUT_LAST:
        return _seconds(args[-1]) if len(args) > 1 else None
    if name in _BLOCK_TIMEOUT_FIRST:
        return _seconds(args[1]) if len(args) > 1 else None
    if name == "WAIT":
        return _seconds(args[2], 0.001) if len(args) > 2 else None
    if name == "WAITAOF":
        return _seconds(args[3], 0.001) if len(args) > 3 else None
    if name in _STREAM_READS:
        for index, arg in enumerate(args[1:-1], start=1):
            token = arg.decode() if isinstance(arg, bytes) else arg
            if isinstance(token, str) and token.upper() == "BLOCK":
                return _seconds(args[index + 1], 0.001)
    return NOT_BLOCKING


#: Commands that change the state of the connection they run on. On a
#: connection shared by every task they would change it for everyone (SELECT),
#: capture other tasks' commands (MULTI, ASKING), or turn replies into a
#: stream of something else (SUBSCRIBE, MONITOR, SYNC) — so they are refused
#: with a pointer to what to use. Audited against the commands the server
#: flags ``noscript`` (tests/test_client.py); ``CLIENT`` subcommands are
#: keyed as ``"CLIENT <SUB>"``.
_PUBSUB = "pub/sub needs a connection of its own, which this client does not offer yet"
_WATCH = "WATCH needs a connection of its own, which this client does not offer yet"
_REPLICATION = "it turns the connection into a replication stream"
_TRACKING = "client-side caching needs a connection of its own tracking state"
_PER_CONNECTION = "it would apply to every task's commands, and be lost on reconnect"
_STATEFUL: Mapping[str, str] = {
    "SELECT": "configure the database with db= (or REDIS_DB) instead",
    "AUTH": "put credentials in the URL; they are sent on every (re)connect",
    "HELLO": "this client speaks RESP2 on every connection",
    "RESET": "it would reset the connection every task shares",
    "QUIT": "close the client with aclose() instead",
    "MULTI": "use client.pipeline(transaction=True)",
    "EXEC": "use client.pipeline(transaction=True)",
    "DISCARD": "use client.pipeline(transaction=True)",
    "WATCH": _WATCH,
    "UNWATCH": _WATCH,
    "MONITOR": "MONITOR turns the connection into a stream of events",
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
    "READONLY": "reads from cluster replicas are not offered; " + _PER_CONNECTION,
    "READWRITE": "reads from cluster replicas are not offered; " + _PER_CONNECTION,
    "CLIENT REPLY": "replies are how the shared connection keeps callers apart",
    "CLIENT TRACKING": _TRACKING,
    "CLIENT CACHING": _TRACKING,
    "CLIENT NO-EVICT": _PER_CONNECTION,
    "CLIENT NO-TOUCH": _PER_CONNECTION,
    # Valkey 8
    "CLIENT CAPA": _PER_CONNECTION,
    "CLIENT IMPORT-SOURCE": _PER_CONNECTION,
}


PLAIN, BLOCKING, _REFUSED, _CLIENT = range(4)
_ROUTES: dict[str | bytes, tuple[str, int]] = {}
_ROUTES_MAX = 2048  # command names come from code, but never grow without bound


def route(args: tuple[Any, ...]) -> tuple[str, int]:
    """The callback key (``"GET"``, ``"CONFIG GET"``) and how to send it.

    Cached per command name: this runs for every command.
    """
    name = args[0] if args else None
    try:
        return _ROUTES[name]  # type: ignore[index]
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
    if base in BLOCKING_COMMANDS or base in _STREAM_READS:
        kind = BLOCKING
    elif base == "CLIENT":
        kind = _CLIENT
    elif base in _STATEFUL:
        kind = _REFUSED
    else:
        kind = PLAIN
    if len(_ROUTES) < _ROUTES_MAX:
        _ROUTES[name] = (key, kind)
    return key, kind


def refuse_stateful(key: str, kind: int, args: tuple[Any, ...]) -> None:
    """Raise ``DataError`` for commands that would change the shared connection."""
    if kind == _REFUSED:
        reason = _STATEFUL[key.split()[0]]
    elif kind == _CLIENT:
        words = key.split()[1:] or [
            arg.decode(errors="replace").upper() if isinstance(arg, bytes) else str(arg).upper()
            for arg in args[1:2]
        ]
        key = f"CLIENT {words[0]}" if words else "CLIENT"
        if key not in _STATEFUL:
            return
        reason = _STATEFUL[key]
    else:
        return
    raise DataError(f"{key} cannot run on the shared connection: {reason}")
