"""RESP2 on the wire: turn commands into bytes, bytes into replies.

Encoding follows redis-py's rules exactly (``str`` → UTF-8, ``int``/``float``
→ their ``repr``, ``bool`` and other types rejected with ``DataError``) so a
value round-trips the same through this client as through redis-py. The
packing itself and all parsing are hiredis's C code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import hiredis
from redis.exceptions import DataError, InvalidResponse

from .redis_compat import parse_error_reply

__all__ = ["EncodableArg", "as_strict_text", "encode_command", "encode_commands", "new_reader"]

EncodableArg = str | bytes | bytearray | memoryview | int | float


_pack = hiredis.pack_command
_ACCEPTED = (str, bytes, bytearray, memoryview, int, float)


def _normalise(args: Sequence[Any]) -> tuple[Any, ...]:
    first = args[0]
    # redis-py's command methods pass multi-word command names as one
    # argument ("CONFIG GET", "ACL CAT"); the server wants them split.
    if isinstance(first, str) and " " in first:
        args = (*first.split(), *args[1:])
    normalised = []
    for arg in args:
        kind = type(arg)
        if kind is str or kind is bytes:
            normalised.append(arg)
        elif isinstance(arg, bool) or not isinstance(arg, _ACCEPTED):
            raise DataError(
                f"Invalid input of type: '{kind.__name__}'. "
                "Convert to a bytes, string, int or float first."
            )
        elif isinstance(arg, (bytearray, memoryview)):
            normalised.append(bytes(arg))
        else:
            normalised.append(arg)
    return tuple(normalised)


def encode_command(args: Sequence[Any]) -> bytes:
    """One command as a RESP array of bulk strings."""
    first = args[0] if args else None
    if type(first) is str and " " not in first:
        try:  # the common case: hiredis takes str/bytes/int/float as they are
            packed: bytes = _pack(args if type(args) is tuple else tuple(args))
            return packed
        except TypeError:
            pass  # bool, None, bytearray …: sort them out below
    if not args:
        raise DataError("a command needs at least its name")
    packed = _pack(_normalise(args))
    return packed


def encode_commands(commands: Iterable[Sequence[Any]]) -> bytes:
    """Several commands, concatenated for one write."""
    return b"".join(encode_command(args) for args in commands)


def new_reader(*, errors: str = "strict") -> hiredis.Reader:
    """A parser that returns error replies as redis-py exception *values*.

    Error replies are returned, not raised, so that one bad reply in a
    pipeline does not stop us from reading the replies behind it. Each
    ``gets(decode)`` says whether that reply is decoded: the reader always
    knows the encoding, so one connection can serve callers that want
    ``str`` and callers that want ``bytes`` (a decode_responses=False client
    still reads its cluster's topology as text). A reply that is not valid
    UTF-8 under ``errors="strict"`` makes ``gets(True)`` raise
    ``UnicodeDecodeError`` only once the whole reply has been parsed, so the
    stream stays in step and the error can be handed to that reply's caller.
    """
    return hiredis.Reader(
        protocolError=InvalidResponse,
        replyError=parse_error_reply,
        encoding="utf-8",
        errors=errors,
    )


def as_strict_text(reply: Any) -> Any:
    """``reply``, read with ``errors="surrogateescape"``, as a strict reader
    would have given it: itself, or the ``UnicodeDecodeError`` it would have
    raised.

    Why a connection reads that way: a strict reader raises on a push frame
    as readily as on a reply (a tracked key whose name is not UTF-8), and
    an exception does not say which of the two it was — taken for the
    waiting caller's reply, it would shift every reply after it by one. So a
    tracking connection never raises while parsing, and this gives each
    caller the error it would have had. Valid UTF-8 never decodes to a lone
    surrogate, so one in a reply marks bytes that were not.
    """
    try:
        _check_text(reply)
    except UnicodeEncodeError as exc:
        raw = exc.object.encode("utf-8", "surrogateescape")
        try:
            raw.decode("utf-8")  # the very error a strict reader raises
        except UnicodeDecodeError as error:
            return error
    return reply


def _check_text(reply: Any) -> None:
    kind = type(reply)
    if kind is str:
        if not reply.isascii():
            reply.encode()  # UnicodeEncodeError on a surrogate-escaped byte
    elif kind is dict:
        for field, value in reply.items():
            _check_text(field)
            _check_text(value)
    elif isinstance(reply, (list, tuple, set)):
        for item in reply:
            _check_text(item)
