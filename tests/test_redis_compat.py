"""Fails loudly when a redis-py release moves an internal we depend on."""

from __future__ import annotations

from redis.exceptions import AuthenticationError, NoScriptError, ResponseError

from beignet_redis_anyio import _redis_compat


def test_response_callbacks_are_found_and_shape_replies() -> None:
    callbacks = _redis_compat.resp2_response_callbacks()
    # A handful whose shapes users rely on; if these vanish, replies go raw.
    for name in ("SET", "HGETALL", "CONFIG GET", "EXPIRE", "ZRANGE", "SCAN"):
        assert name in callbacks, f"redis-py no longer has a callback for {name}"
    assert callbacks["HGETALL"](["a", "1"]) == {"a": "1"}
    assert callbacks["SET"]("OK") is True


def test_error_replies_map_to_redis_py_classes() -> None:
    parse = _redis_compat.parse_error_reply
    assert type(parse("WRONGTYPE Operation against a key")) is ResponseError
    assert isinstance(parse("NOSCRIPT No matching script"), NoScriptError)
    assert isinstance(parse("WRONGPASS invalid username-password pair"), AuthenticationError)


def test_option_keys_and_encoder_exist() -> None:
    assert _redis_compat.NEVER_DECODE and _redis_compat.EMPTY_RESPONSE
    encoder = _redis_compat.Encoder("utf-8", "strict", True)
    assert encoder.encode(5) == b"5"
