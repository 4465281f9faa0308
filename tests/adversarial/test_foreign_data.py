"""Bytes that other programs put in Redis: one caller's trouble stays with that caller.

A value that is not UTF-8 (an image, a pickle) under a key the port reads must
fail that read alone — never the shared connection, the other callers, the
circuit breaker, or (under ``bypass``) the other program's value.
"""

from __future__ import annotations

import anyio
import pytest

from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider
from helpers.targets import RedisServer, expected_pop

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"


async def test_an_undecodable_value_fails_only_its_own_caller(server_url: str, key: str) -> None:
    async with (
        open_redis_client(server_url, decode_responses=False) as raw,
        open_redis_provider(RedisConfig(url=server_url, breaker_threshold=1)) as cache,
    ):
        await raw.set(f"{key}:png", PNG)
        await cache.set(f"{key}:text", "fine")
        answers: list[object] = []
        failures: list[BaseException] = []

        async def innocent(index: int) -> None:
            answers.append(await cache.get(f"{key}:text"))

        async def reader_of_foreign_bytes() -> None:
            try:
                await cache.get(f"{key}:png")
            except UnicodeDecodeError as exc:
                failures.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for index in range(40):
                    tasks.start_soon(innocent, index)
                    if index % 10 == 0:
                        tasks.start_soon(reader_of_foreign_bytes)
        assert answers == ["fine"] * 40
        assert len(failures) == 4
        message = str(failures[0])
        assert f"{key}:png" in message and "decode_responses=False" in message
        # Nothing else noticed: the breaker (threshold 1) stayed closed, the
        # link stayed in step, and the other program's bytes are untouched.
        assert cache.breaker_state == "closed"
        assert await cache.get(f"{key}:text") == "fine"
        assert await raw.get(f"{key}:png") == PNG


async def test_remember_never_overwrites_foreign_bytes_even_under_bypass(
    server_url: str, key: str
) -> None:
    config = RedisConfig(url=server_url, failure_policy="bypass", breaker_threshold=1)
    calls = 0

    async def factory() -> str:
        nonlocal calls
        calls += 1
        return "computed"

    async with (
        open_redis_client(server_url, decode_responses=False) as raw,
        open_redis_provider(config) as cache,
    ):
        await raw.set(f"{key}:png", PNG)
        for lock in (False, True):
            with pytest.raises(UnicodeDecodeError, match="not utf-8 text"):
                await cache.remember(f"{key}:png", factory, lock=lock)
        with pytest.raises(UnicodeDecodeError):
            await cache.get(f"{key}:png")
        assert calls == 0
        assert cache.breaker_state == "closed"
        assert await raw.get(f"{key}:png") == PNG


async def test_foreign_bytes_inside_a_reply_fail_that_command_alone(
    server_url: str, key: str
) -> None:
    """An array reply with one bad element (MGET), and the same inside a
    pipeline: that reply fails, the replies beside it do not."""
    async with (
        open_redis_client(server_url, decode_responses=False) as raw,
        open_redis_client(server_url) as client,
    ):
        await raw.mset({f"{key}:a": b"ok", f"{key}:b": PNG})
        with pytest.raises(UnicodeDecodeError):
            await client.mget([f"{key}:a", f"{key}:b"])
        pipe = client.pipeline(transaction=False)
        pipe.get(f"{key}:a")
        pipe.get(f"{key}:b")
        pipe.get(f"{key}:a")
        first, bad, last = await pipe.execute(raise_on_error=False)
        assert (first, last) == ("ok", "ok")
        assert isinstance(bad, UnicodeDecodeError)
        assert await client.get(f"{key}:a") == "ok"


async def test_a_blocking_command_reading_foreign_bytes_fails_alone(
    server_url: str, key: str
) -> None:
    async with (
        open_redis_client(server_url, decode_responses=False) as raw,
        open_redis_client(server_url, max_blocking_connections=1) as client,
    ):
        await raw.rpush(f"{key}:q", PNG, b"next")
        with anyio.fail_after(10):
            with pytest.raises(UnicodeDecodeError):
                await client.blpop([f"{key}:q"], timeout=1)
            assert await client.blpop([f"{key}:q"], timeout=1) == expected_pop(f"{key}:q", "next")


@pytest.mark.parametrize("errors", ["replace", "ignore"])
async def test_encoding_errors_decodes_as_redis_py_does(
    server_url: str, key: str, errors: str
) -> None:
    async with (
        open_redis_client(server_url, decode_responses=False) as raw,
        open_redis_client(server_url, encoding_errors=errors) as client,
    ):
        await raw.set(key, PNG)
        decoded = await client.get(key)
        assert decoded == PNG.decode("utf-8", errors)
        assert ("\ufffd" in decoded) == (errors == "replace")
        assert client.get_connection_kwargs()["encoding_errors"] == errors


def test_an_unknown_encoding_errors_handler_fails_before_any_io() -> None:
    from beignet_redis_anyio import RedisClient

    with pytest.raises(ValueError, match="encoding_errors"):
        RedisClient.from_url("redis://localhost", task_group=None, encoding_errors="nope")  # type: ignore[arg-type]


async def test_foreign_bytes_on_a_real_server_under_both_policies(
    real_server: RedisServer, key: str
) -> None:
    """The case as reported: a PNG under a key another program owns, a
    thousand readers of other keys, both failure policies."""
    for policy in ("raise", "bypass"):
        config = RedisConfig(url=real_server.url, failure_policy=policy, breaker_threshold=1)  # type: ignore[arg-type]
        async with (
            open_redis_client(real_server.url, decode_responses=False) as raw,
            open_redis_provider(config) as cache,
        ):
            await raw.set(f"{key}:{policy}", PNG)
            await cache.set(f"{key}:ok", "v")
            bad = 0

            async def read(index: int, foreign: str = f"{key}:{policy}") -> None:
                nonlocal bad
                try:
                    value = await cache.get(foreign if index % 50 == 0 else f"{key}:ok")
                except UnicodeDecodeError:
                    bad += 1
                else:
                    assert value == "v"

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tasks:
                    for index in range(1000):
                        tasks.start_soon(read, index)
            assert bad == 20
            assert cache.breaker_state == "closed"
            assert await raw.get(f"{key}:{policy}") == PNG
