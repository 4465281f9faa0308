"""Every import of a redis-py *internal* lives here, and only here.

We reuse a few things from redis-py that it does not promise to keep still:
the table of response callbacks (turns raw RESP replies into the Python
shapes redis-py users know, for each protocol and ``legacy_responses``
choice), the mapping of error-reply prefixes to exception classes, the
option keys its command methods pass to ``execute_command``, and the function
its asyncio pipeline words a failed command's error with, so our pipeline
errors read exactly like those of the redis-py that is installed
(redis-py 8.2 changed that wording; calling its function follows it).
When a redis-py release moves one of them, ``tests/net/test_redis_compat.py``
fails with the name of what moved, instead of some command quietly returning
raw bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from redis._parsers import Encoder as Encoder
from redis._parsers import helpers as _helpers
from redis._parsers.base import BaseParser
from redis.asyncio.client import Pipeline as _RedisPyPipeline
from redis.client import EMPTY_RESPONSE as EMPTY_RESPONSE
from redis.client import NEVER_DECODE as NEVER_DECODE
from redis.client import CaseInsensitiveDict as CaseInsensitiveDict
from redis.event import EventDispatcher
from redis.exceptions import RedisError
from redis.utils import safe_str as _safe_str

__all__ = [
    "EMPTY_RESPONSE",
    "EVENT_DISPATCHER",
    "NEVER_DECODE",
    "CaseInsensitiveDict",
    "Encoder",
    "annotate_pipeline_error",
    "decode_raw_info",
    "parse_error_reply",
    "resp2_response_callbacks",
    "response_callbacks",
    "safe_str",
]

ResponseCallback = Callable[..., Any]

#: redis-py's command mixins declare an event dispatcher (for its credential
#: providers and client-side cache); our clients use neither, so they share
#: one idle instance to satisfy the declaration.
EVENT_DISPATCHER = EventDispatcher()


def response_callbacks(protocol: int, legacy_responses: bool = True) -> dict[str, ResponseCallback]:
    """redis-py's callbacks for ``protocol``'s replies, keyed by upper-case
    command name: exactly the shapes redis-py's own client returns when it
    is created with ``protocol=2`` or ``protocol=3`` and the same
    ``legacy_responses``.

    ``legacy_responses=True`` (redis-py's default) gives each protocol's own
    shapes, which differ for some commands (RESP3's ``ZRANGE … WITHSCORES``
    pairs are lists, RESP2's tuples …); ``False`` gives redis-py 8's unified
    shapes, the same on both protocols. Every release in our range (8.0 on)
    takes ``legacy_responses=``; ``tests/net/test_redis_compat.py`` checks it.
    """
    from redis._parsers.response_callbacks import get_response_callbacks

    merged = get_response_callbacks(user_protocol=protocol, legacy_responses=legacy_responses)
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


def annotate_pipeline_error(error: Exception, number: int, words: Sequence[str]) -> None:
    """Word ``error`` as redis-py's asyncio pipeline words the error of its
    ``number``-th command (``Command # 2 (LPUSH c 3) of pipeline caused
    error: …``), in place.

    ``words`` must already have its credentials redacted: redis-py redacts
    fewer commands than we do, and not at all before 8.2. The method uses
    nothing of its pipeline, so it is called without one.
    """
    cast(Any, _RedisPyPipeline).annotate_exception(None, error, number, words)


#: redis-py 8.2's INFO decoding; older releases read INFO decoded already.
_decode_info: Callable[[Any, Encoder], Any] | None = getattr(_helpers, "decode_info", None)


def decode_raw_info(reply: Any, encoder: Encoder) -> Any:
    """An ``INFO`` reply read undecoded (``NEVER_DECODE``), as the installed
    redis-py hands it to the callback.

    From redis-py 8.2, ``info()`` asks for the raw bytes and decodes them with
    the client's encoder, replacing what cannot be decoded: a non-UTF-8 error
    name in ``errorstats`` no longer fails the whole command. Older releases
    never ask, so this is called only where the installed release does.
    """
    if _decode_info is None:  # pragma: no cover - redis-py < 8.2 never sends NEVER_DECODE here
        return reply
    return _decode_info(reply, encoder)
