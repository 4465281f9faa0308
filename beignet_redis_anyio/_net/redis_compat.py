"""Every import of a redis-py *internal* lives here, and only here.

We reuse a few things from redis-py that it does not promise to keep still:
the table of response callbacks (turns raw RESP replies into the Python
shapes redis-py users know), the mapping of error-reply prefixes to exception
classes, the option keys its command methods pass to ``execute_command``, and
the two helpers its pipelines word their errors with (``safe_str``,
``truncate_text``), so our pipeline errors read exactly like redis-py's.
When a redis-py release moves one of them, ``tests/test_redis_compat.py``
fails with the name of what moved, instead of some command quietly returning
raw bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from redis._parsers import Encoder as Encoder
from redis._parsers.base import BaseParser
from redis.client import EMPTY_RESPONSE as EMPTY_RESPONSE
from redis.client import NEVER_DECODE as NEVER_DECODE
from redis.client import CaseInsensitiveDict as CaseInsensitiveDict
from redis.event import EventDispatcher
from redis.exceptions import RedisError
from redis.utils import safe_str as _safe_str
from redis.utils import truncate_text as _truncate_text

__all__ = [
    "EMPTY_RESPONSE",
    "EVENT_DISPATCHER",
    "NEVER_DECODE",
    "CaseInsensitiveDict",
    "Encoder",
    "parse_error_reply",
    "resp2_response_callbacks",
    "response_callbacks",
    "safe_str",
    "truncate_text",
]

ResponseCallback = Callable[..., Any]

#: redis-py's command mixins declare an event dispatcher (for its credential
#: providers and client-side cache); our clients use neither, so they share
#: one idle instance to satisfy the declaration.
EVENT_DISPATCHER = EventDispatcher()


def response_callbacks(protocol: int) -> dict[str, ResponseCallback]:
    """redis-py's callbacks for ``protocol``'s replies, keyed by upper-case
    command name: exactly the shapes redis-py's own client returns when it
    is created with ``protocol=2`` or ``protocol=3``.
    """
    try:  # redis-py >= 8.0
        from redis._parsers.response_callbacks import get_response_callbacks
    except ImportError:  # pragma: no cover - redis-py 5.x-7.x
        from redis._parsers import helpers

        overlay = helpers._RedisCallbacksRESP3 if protocol == 3 else helpers._RedisCallbacksRESP2  # type: ignore[attr-defined]
        merged: dict[str, ResponseCallback] = {**helpers._RedisCallbacks, **overlay}  # type: ignore[attr-defined]
    else:
        merged = get_response_callbacks(user_protocol=protocol, legacy_responses=True)
    return {name.upper(): callback for name, callback in merged.items()}


def resp2_response_callbacks() -> dict[str, ResponseCallback]:
    """redis-py's callbacks for RESP2 replies (see :func:`response_callbacks`)."""
    return response_callbacks(2)


_EXCEPTION_CLASSES: Mapping[str, Any] = BaseParser.EXCEPTION_CLASSES


def parse_error_reply(message: str) -> RedisError:
    """Turn an error reply's text into the exception redis-py would raise.

    Not always a ``ResponseError``: ``WRONGPASS`` maps to ``AuthenticationError``
    and ``LOADING`` to ``BusyLoadingError``, both ``ConnectionError`` subclasses.
    ``WRONGTYPE …`` becomes ``ResponseError``, ``NOSCRIPT …`` ``NoScriptError``,
    ``WRONGPASS …`` ``AuthenticationError`` and so on, by redis-py's own table.
    """
    error: RedisError = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]
    return error


def safe_str(value: Any) -> str:
    """An argument as redis-py's pipeline errors show it (bytes decoded)."""
    return str(_safe_str(value))  # type: ignore[no-untyped-call]


def truncate_text(text: str) -> str:
    """``text`` cut to redis-py's 100 characters, ending in ``...``."""
    return str(_truncate_text(text))  # type: ignore[no-untyped-call]
