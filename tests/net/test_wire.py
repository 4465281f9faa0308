"""Encoding follows redis-py's rules, so values round-trip identically."""

from __future__ import annotations

import pytest
from redis.exceptions import DataError

from beignet_redis_anyio._net.wire import as_strict_text, encode_command, new_reader


def test_str_bytes_int_float_encode_like_redis_py() -> None:
    assert encode_command(("SET", "k", 1.5)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n1.5\r\n"
    assert encode_command(("SET", b"k", 10)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n10\r\n"
    assert encode_command(("ECHO", "é")) == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"


def test_bytearray_and_memoryview_are_accepted() -> None:
    expected = encode_command(("SET", "k", b"vv"))
    assert encode_command(("SET", "k", bytearray(b"vv"))) == expected
    assert encode_command(("SET", "k", memoryview(b"vv"))) == expected


def test_multi_word_command_names_are_split() -> None:
    assert encode_command(("CONFIG GET", "maxmemory")) == encode_command(
        ("CONFIG", "GET", "maxmemory")
    )


@pytest.mark.parametrize("bad", [True, None, object(), ["list"]])
def test_unencodable_values_raise_data_error(bad: object) -> None:
    with pytest.raises(DataError, match="Invalid input of type"):
        encode_command(("SET", "k", bad))


def test_empty_command_is_rejected() -> None:
    with pytest.raises(DataError):
        encode_command(())


def test_reader_returns_error_replies_as_values() -> None:
    reader = new_reader()
    reader.feed(b"-WRONGTYPE Operation against a key\r\n$2\r\nok\r\n")
    error = reader.gets()
    assert type(error).__name__ == "ResponseError"
    assert reader.gets() == "ok"


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b"ok\xc3", b"caf\xc3\xa9 \xe9"],
)
def test_as_strict_text_gives_the_error_a_strict_reader_raises(raw: bytes) -> None:
    escaped = raw.decode("utf-8", "surrogateescape")
    with pytest.raises(UnicodeDecodeError) as strict:
        raw.decode("utf-8")
    for reply in (escaped, [1, escaped], {"field": [escaped]}, {escaped: "v"}):
        error = as_strict_text(reply)
        assert isinstance(error, UnicodeDecodeError)
        assert str(error) == str(strict.value)


def test_as_strict_text_passes_text_through() -> None:
    for reply in ("ascii", "café", None, 7, [b"\xff", "é"], {"k": ["v", 1.5]}):
        assert as_strict_text(reply) is reply
