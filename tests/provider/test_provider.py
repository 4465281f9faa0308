"""open_redis_provider(): verified entry, guaranteed exit, errors as themselves."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack

import anyio
import pytest
from redis.exceptions import AuthenticationError, ConnectionError

from beignet_redis_anyio import (
    ConfigError,
    RedisCachePort,
    RedisConfig,
    RedisProvider,
    open_redis_client,
    open_redis_provider,
    redis_provider,
)
from beignet_redis_anyio.testing import embedded_redis
from helpers.targets import RedisServer, free_port

pytestmark = pytest.mark.anyio


async def _names_connected(url: str) -> list[str]:
    async with open_redis_client(url, client_name="observer") as observer:
        return [entry["name"] for entry in await observer.client_list()]


async def test_reads_the_environment_when_config_is_none(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", server_url)
    monkeypatch.setenv("REDIS_DB", "6")
    monkeypatch.setenv("REDIS_KEY_PREFIX", "env:")
    async with open_redis_provider() as cache:
        assert isinstance(cache, RedisCachePort)
        await cache.set("k", "v")
        assert await cache.client.get("env:k") == "v"
        assert cache.client.settings.db == 6
        await cache.delete("k")


async def test_missing_url_is_a_config_error_before_any_io(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ConfigError, match="REDIS_URL is required"):
        async with open_redis_provider():
            pass


async def test_unreachable_server_fails_on_entry_naming_the_host() -> None:
    port = free_port()
    config = RedisConfig(url=f"redis://app:pa55w0rd@127.0.0.1:{port}", connect_timeout=2)
    with anyio.fail_after(5), pytest.raises(ConnectionError) as caught:
        async with open_redis_provider(config):
            pytest.fail("entered without a server")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "pa55w0rd" not in str(caught.value)


async def test_bad_credentials_fail_on_entry(password_server: RedisServer) -> None:
    url = f"redis://:wrong-password@127.0.0.1:{password_server.port}"
    with pytest.raises(AuthenticationError) as caught:
        async with open_redis_provider(RedisConfig(url=url)):
            pytest.fail("entered with bad credentials")
    assert "wrong-password" not in str(caught.value)


async def test_normal_exit_closes_every_connection(real_server: RedisServer) -> None:
    name = f"exit-{uuid.uuid4().hex[:8]}"
    async with open_redis_provider(RedisConfig(url=real_server.url, client_name=name)) as cache:
        await cache.set("k", "v")
        assert name in await _names_connected(real_server.url)
    assert name not in await _names_connected(real_server.url)


async def test_an_exception_in_the_body_comes_out_as_itself(real_server: RedisServer) -> None:
    name = f"raise-{uuid.uuid4().hex[:8]}"

    async def body() -> None:
        async with open_redis_provider(RedisConfig(url=real_server.url, client_name=name)):
            raise KeyError("from the app")

    with pytest.raises(KeyError, match="from the app"):  # not an ExceptionGroup
        await body()
    assert name not in await _names_connected(real_server.url)


async def test_an_outer_cancel_scope_exits_and_closes(real_server: RedisServer) -> None:
    name = f"cancel-{uuid.uuid4().hex[:8]}"
    config = RedisConfig(url=real_server.url, client_name=name)
    with anyio.fail_after(5), anyio.CancelScope() as outer:
        async with open_redis_provider(config) as cache:
            await cache.set("k", "v")
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert name not in await _names_connected(real_server.url)


async def test_exit_is_bounded_with_work_in_flight(real_server: RedisServer) -> None:
    gate = anyio.Event()

    async def slow_factory() -> str:
        await gate.wait()
        return "never"

    with anyio.fail_after(5):
        async with (
            open_redis_provider(RedisConfig(url=real_server.url)) as cache,
            anyio.create_task_group() as tasks,
        ):
            tasks.start_soon(cache.remember, "slow", slow_factory)
            tasks.start_soon(cache.client.execute_command, "DEBUG", "SLEEP", "0.2")
            await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()


async def test_composes_with_other_providers_in_an_exit_stack(server_url: str) -> None:
    provider = redis_provider.with_options(config=RedisConfig(url=server_url, key_prefix="s:"))
    assert isinstance(provider, RedisProvider)
    assert (provider.name, provider.port_name) == ("redis", "cache")
    async with AsyncExitStack() as stack:
        ports = {provider.port_name: await stack.enter_async_context(provider.open())}
        await ports["cache"].set("k", "v")
        assert await ports["cache"].get("k") == "v"
        await ports["cache"].delete("k")


async def test_the_default_provider_reads_the_environment_when_opened(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", server_url)
    async with redis_provider.open() as cache:
        assert await cache.has("no-such-key") is False


async def test_embedded_redis_needs_nothing_installed() -> None:
    async with embedded_redis() as url, open_redis_provider(RedisConfig(url=url)) as cache:
        await cache.set("k", "v")
        assert await cache.get("k") == "v"


async def test_the_pytest_plugin_cache_fixture_is_ready(cache: RedisCachePort) -> None:
    assert cache.key_prefix.startswith("test:")
    await cache.set("k", "v")
    assert await cache.get("k") == "v"
