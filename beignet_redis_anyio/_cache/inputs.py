"""What the port accepts, checked before any I/O or factory call.

Keys, values, TTLs and a factory's result: each either is something the
server can store — a non-empty ``str`` key, a ``str`` value that encodes as
UTF-8, a TTL the server's ``PX`` takes — or fails here with a clear
``TypeError``/``ValueError`` naming what is wrong, so a bad call writes
nothing and runs no factory.
"""

from __future__ import annotations

from .._net.numbers import in_range, is_number

__all__ = [
    "MAX_TTL_SECONDS",
    "check_key",
    "check_result",
    "check_value",
    "not_text",
    "ttl_milliseconds",
]


def check_key(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"a cache key must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError("a cache key must not be empty")


def check_value(key: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(
            f"a cached value must be a str, got {type(value).__name__} "
            "(encode it first, e.g. with json.dumps)"
        )
    _check_encodable(value, f"the value for {key!r}")


def _check_encodable(value: str, what: str) -> None:
    """Redis stores bytes: a ``str`` must encode as UTF-8. Only a lone
    surrogate (``"\\ud800"``) cannot; ASCII, the common case, needs no
    second look."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{what} is a str that cannot be encoded as UTF-8 "
                f"({exc.reason} at index {exc.start}); nothing was stored"
            ) from None


#: The longest TTL accepted, in seconds (about 31,700 years). Redis takes
#: ``PX`` up to 2**63 - 1 ms minus the current time; ``ttl_jitter`` may
#: stretch a TTL to double; and the lease's store script reads the TTL as a
#: Lua number, a double, exact for integers below 2**53 ms (~9e15). 10**12 s
#: is 10**15 ms, at most 2 * 10**15 ms jittered: clear of all three, and
#: every float below it still resolves a millisecond.
MAX_TTL_SECONDS = 10**12


def check_result(key: str, value: object) -> str:
    """A factory's result, if Redis can store it: a ``str`` that encodes as UTF-8.

    Checked in the flight, before any store — with or without the lease — so a
    bad result fails every waiter with an error naming the key, nothing is
    stored, and a lease is given up as after any other factory failure.
    """
    if not isinstance(value, str):
        raise TypeError(
            f"the factory for {key!r} returned {type(value).__name__}, not str; nothing was stored"
        )
    _check_encodable(value, f"what the factory for {key!r} returned")
    return value


def ttl_milliseconds(ttl_seconds: object) -> int | None:
    """``None`` (no expiry) or the TTL in whole milliseconds (at least 1).

    Every TTL the port takes comes through here before any I/O, so a TTL
    the server could not store fails as ``ValueError`` before anything is
    sent or any factory runs.
    """
    if ttl_seconds is None:
        return None
    kind = type(ttl_seconds)
    if kind is int or kind is float:
        # The same few TTLs come through on every call: checked once each.
        known = _CHECKED_TTLS.get((kind, ttl_seconds))
        if known is not None:
            return known
    if not is_number(ttl_seconds):
        raise TypeError(f"ttl_seconds must be a number, got {type(ttl_seconds).__name__}")
    if not in_range(ttl_seconds, 0, MAX_TTL_SECONDS) or ttl_seconds == 0:
        raise ValueError(
            f"ttl_seconds must be greater than 0 and at most {MAX_TTL_SECONDS:.0e} "
            f"(use None for no expiry), got {ttl_seconds!r}"
        )
    milliseconds: int = max(1, round(ttl_seconds * 1000))  # type: ignore[operator]
    if (kind is int or kind is float) and len(_CHECKED_TTLS) < _CHECKED_TTLS_MAX:
        _CHECKED_TTLS[(kind, ttl_seconds)] = milliseconds
    return milliseconds


#: TTLs already checked, by type and value (True is not 1 here): an app uses
#: a handful, so the bound only stops one that computes its TTLs.
_CHECKED_TTLS: dict[tuple[type, object], int] = {}
_CHECKED_TTLS_MAX = 1024


def not_text(key: str, exc: UnicodeDecodeError) -> UnicodeDecodeError:
    """The decode error, saying which key holds what is not text.

    Another program may store bytes (an image, a pickle) under a key the port
    reads: that fails this call alone, and nothing is overwritten.
    """
    return UnicodeDecodeError(
        exc.encoding,
        exc.object,
        exc.start,
        exc.end,
        f"{exc.reason} — the value at {key!r} is not {exc.encoding} text "
        "(stored by another program?); read it with a client made with "
        "decode_responses=False",
    )
