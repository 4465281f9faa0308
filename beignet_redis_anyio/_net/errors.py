"""The library's own exception classes, and the messages repeated across layers.

Here, in the lowest layer, so that every layer may raise them. Errors from
Redis or the network stay redis-py's classes; ours subclass them (or
``ValueError``) so code that catches redis-py's keeps working. The public
ones say they live in the package root, where users import them from, so a
traceback shows the name to ``except``.
"""

from __future__ import annotations

import anyio
from redis.exceptions import ConnectionError, TimeoutError

__all__ = [
    "CircuitOpenError",
    "ConfigError",
    "ConnectTimeoutError",
    "connection_lost",
    "describe",
    "unavailable",
]


class ConfigError(ValueError):
    """Missing or malformed configuration. The message names the variable."""

    __module__ = "beignet_redis_anyio"  # where users import it from


class ConnectTimeoutError(TimeoutError, ConnectionError):
    """The server did not accept and answer a new connection in time.

    Both a ``TimeoutError`` (redis-py raises that for connect timeouts) and a
    ``ConnectionError`` (the server is, for practical purposes, unreachable),
    so either ``except`` clause catches it.
    """

    __module__ = "beignet_redis_anyio"  # where users import it from


class CircuitOpenError(ConnectionError):
    """Redis failed repeatedly; calls are refused without trying until the cooldown ends."""

    __module__ = "beignet_redis_anyio"  # where users import it from


def describe(cause: BaseException) -> str:
    """An exception in words — a network failure, or whatever a factory
    raised — for a message, a log line or an event. Never raises: an
    exception whose ``__str__`` fails is still described by its class."""
    if isinstance(cause, anyio.EndOfStream):
        return "the server closed the connection"
    try:
        text = str(cause)
    except Exception:
        text = "<its str() failed>"
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def connection_lost(address: str, cause: BaseException) -> ConnectionError:
    """The error for a connection to ``address`` that failed under a command."""
    return ConnectionError(f"Connection to {address} lost: {describe(cause)}")


def unavailable(address: str, cause: Exception) -> Exception:
    """The error a caller gets at once while Redis is unavailable: the last
    failure's class (``AuthenticationError`` stays one), saying so."""
    message = f"{address} is unavailable, reconnecting in the background: {cause}"
    if isinstance(cause, ConnectionError):
        try:
            return type(cause)(message)
        except Exception:  # a subclass with a constructor of its own
            pass
    return ConnectionError(message)
