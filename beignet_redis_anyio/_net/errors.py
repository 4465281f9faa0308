"""The words of failures, shared by every layer: an exception described for a
message, a log line or an event, and the errors a lost or unavailable
connection raises. The exception classes themselves live in
``beignet_redis_anyio._exceptions``.
"""

from __future__ import annotations

import anyio
from redis.exceptions import ConnectionError

__all__ = [
    "connection_lost",
    "describe",
    "unavailable",
]


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
