"""Fails loudly when a redis-py release moves an internal we depend on."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError

from beignet_redis_anyio._net import redis_compat as _redis_compat


def test_response_callbacks_are_found_and_shape_replies() -> None:
    callbacks = _redis_compat.resp2_response_callbacks()
    # A handful whose shapes users rely on; if these vanish, replies go raw.
    for name in ("SET", "HGETALL", "CONFIG GET", "EXPIRE", "ZRANGE", "SCAN"):
        assert name in callbacks, f"redis-py no longer has a callback for {name}"
    assert callbacks["HGETALL"](["a", "1"]) == {"a": "1"}
    assert callbacks["SET"]("OK") is True


def test_callbacks_come_in_legacy_and_unified_shapes_for_both_protocols() -> None:
    """``legacy_responses=`` (redis-py 8.0 on: our floor) picks each
    protocol's own shapes or the unified ones; if a release drops or renames
    it, ``legacy_responses=False`` clients fail here, not with wrong shapes."""
    import inspect

    from redis._parsers.response_callbacks import get_response_callbacks

    assert "legacy_responses" in inspect.signature(get_response_callbacks).parameters
    legacy = {p: _redis_compat.response_callbacks(p) for p in (2, 3)}
    unified = {p: _redis_compat.response_callbacks(p, legacy_responses=False) for p in (2, 3)}
    assert legacy[2] == _redis_compat.resp2_response_callbacks()
    # ZPOPMIN's raw replies: RESP2 a flat list, RESP3 a pair (one member, no count).
    assert legacy[2]["ZPOPMIN"](["a", "1.5"]) == [("a", 1.5)]
    assert legacy[3]["ZPOPMIN"](["a", 1.5]) == ["a", 1.5]
    assert unified[2]["ZPOPMIN"](["a", "1.5"]) == [["a", 1.5]]
    assert unified[3]["ZPOPMIN"](["a", 1.5]) == [["a", 1.5]]


def test_error_replies_map_to_redis_py_classes() -> None:
    parse = _redis_compat.parse_error_reply
    assert type(parse("WRONGTYPE Operation against a key")) is ResponseError
    assert isinstance(parse("NOSCRIPT No matching script"), NoScriptError)
    assert isinstance(parse("WRONGPASS invalid username-password pair"), AuthenticationError)


@pytest.mark.anyio
async def test_redis_py_commands_still_pass_the_option_keys_we_read() -> None:
    """Our client honours NEVER_DECODE (DUMP's payload stays bytes) and
    EMPTY_RESPONSE (what MGET of no keys returns instead of the server's
    error); redis-py's command methods must still pass them by these names."""
    from redis.commands import AsyncCoreCommands

    seen: list[dict[str, Any]] = []

    class Recorder(AsyncCoreCommands):  # type: ignore[misc]
        async def execute_command(self, *args: Any, **options: Any) -> Any:
            seen.append(options)

    recorder = Recorder()
    await recorder.dump("k")
    assert _redis_compat.NEVER_DECODE in seen[-1]
    await recorder.mget([])
    assert seen[-1][_redis_compat.EMPTY_RESPONSE] == []


def test_the_encoder_encodes_and_decodes_as_redis_py_does() -> None:
    encoder = _redis_compat.Encoder("utf-8", "replace", True)
    assert encoder.encode(5) == b"5"
    assert encoder.encode("é") == "é".encode()
    assert encoder.decode(b"\xff") == "\ufffd"
    assert _redis_compat.Encoder("utf-8", "strict", False).decode(b"\xff") == b"\xff"


def test_safe_str_words_arguments_as_redis_py_does() -> None:
    assert _redis_compat.safe_str(b"LPUSH") == "LPUSH"
    assert _redis_compat.safe_str(3) == "3"


@pytest.mark.parametrize(
    "words",
    [
        ["LPUSH", "c", "3"],
        ["HSET", "a" * 50, "field_a", "a" * 20, "field_b", "b" * 20],  # truncated
        ["LLEN", chr(3456) + "abcd"],
    ],
)
def test_pipeline_errors_are_worded_by_the_installed_redis_py(words: list[str]) -> None:
    """The wording comes from a real redis-py asyncio pipeline, whatever its
    release makes of it (8.2 changed it from the args tuple to the text)."""
    from redis.asyncio import Redis

    ours = ResponseError("WRONGTYPE Operation against a key", "second arg")
    theirs = ResponseError("WRONGTYPE Operation against a key", "second arg")
    _redis_compat.annotate_pipeline_error(ours, 2, words)
    Redis().pipeline().annotate_exception(theirs, 2, words)
    assert ours.args == theirs.args
    assert ours.args[0].startswith("Command # 2 (")
    assert "WRONGTYPE Operation against a key" in ours.args[0]
    assert ours.args[1:] == ("second arg",)
