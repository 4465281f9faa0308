"""Every exception class of the library, public and in one place.

Below every layer, so that any layer may raise them; it imports nothing of
ours. Errors from Redis or the network stay redis-py's classes, and ours
subclass them (or ``ValueError``, ``FileNotFoundError``) so code that
catches the standard ones keeps working. Each says it lives in the package
root, where users import it from, so a traceback shows the name to
``except``.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError, ResponseError, TimeoutError

__all__ = [
    "BatchError",
    "BatchUnavailableError",
    "CacheDecodeError",
    "CircuitOpenError",
    "ConfigError",
    "ConnectTimeoutError",
    "ServerNotFound",
    "TrackingUnsupportedError",
]

_ROOT = "beignet_redis_anyio"


class ConfigError(ValueError):
    """Missing or malformed configuration. The message names the variable."""

    __module__ = _ROOT


class ConnectTimeoutError(TimeoutError, ConnectionError):
    """The server did not accept and answer a new connection in time.

    Both a ``TimeoutError`` (redis-py raises that for connect timeouts) and a
    ``ConnectionError`` (the server is, for practical purposes, unreachable),
    so either ``except`` clause catches it.
    """

    __module__ = _ROOT


class CircuitOpenError(ConnectionError):
    """Redis failed repeatedly; calls are refused without trying until the cooldown ends."""

    __module__ = _ROOT


class TrackingUnsupportedError(ResponseError):
    """The server refused ``CLIENT TRACKING``: no local cache can be kept
    consistent with it (fakeredis, Redis before 6)."""

    __module__ = _ROOT


class BatchError(Exception):
    """Some keys of a batch failed; the others did what was asked.

    ``values`` holds what the keys that succeeded got (for ``remember_many``
    and ``get_many`` their values, for ``set_many`` what was stored), in the
    order given; ``errors`` maps each failed key to its exception;
    ``operation`` names the batch (``"remember_many"``). The message names
    the first failed key and its error.

    It stands for per-key failures (a factory that raised or left a key out,
    a value that is not text). An outage is not one: see
    :class:`BatchUnavailableError`.
    """

    __module__ = _ROOT

    def __init__(
        self,
        operation: str,
        values: dict[str, Any],
        errors: dict[str, Exception],
    ) -> None:
        self.operation = operation
        self.values = values
        self.errors = errors
        key, first = next(iter(errors.items()))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(
            f"{operation}: {len(errors)} of {len(values) + len(errors)} keys failed; "
            f"{key!r}: {type(first).__name__}: {first}{more}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.operation, self.values, self.errors))


class BatchUnavailableError(BatchError, ConnectionError):
    """A batch in which some keys succeeded before Redis became unreachable.

    A ``ConnectionError`` as well as a :class:`BatchError`, so the handler an
    application has for outages (a 503) catches it like the single-key
    operations' ``ConnectionError``; ``values`` still holds what succeeded.
    When no key succeeded, the batch raises the outage itself instead
    (``ConnectionError``, ``TimeoutError``, ``CircuitOpenError``).
    """

    __module__ = _ROOT


class CacheDecodeError(ValueError):
    """The value stored at ``key`` is not something the view's codec can
    decode (written by another program, or by another version of yours).

    Never treated as a miss: ``remember`` raises it rather than overwrite
    data it does not understand. ``__cause__`` is the codec's own error.
    """

    __module__ = _ROOT

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(
            f"the value at {key!r} cannot be decoded ({reason}); nothing was "
            "overwritten — delete the key, or read it through the string port"
        )
        self.key = key


class ServerNotFound(FileNotFoundError):
    """A ``redis-server`` or ``valkey-server`` binary that
    ``beignet_redis_anyio.testing.servers`` was asked for is not installed."""

    __module__ = _ROOT
