"""TCP, TLS and Unix sockets; AUTH, SELECT and CLIENT SETNAME on every connect."""

from __future__ import annotations

import ssl

import anyio
import pytest
from redis.exceptions import AuthenticationError, ConnectionError

from beignet_redis_anyio import ConnectTimeoutError, TLSOptions, open_redis_client
from helpers.targets import RedisServer, TLSFiles, free_port

pytestmark = pytest.mark.anyio


async def test_tls_with_a_private_ca(tls_server: RedisServer, tls_files: TLSFiles) -> None:
    url = f"rediss://127.0.0.1:{tls_server.tls_port}"
    async with open_redis_client(url, tls=TLSOptions(ca_file=tls_files.ca_cert)) as client:
        assert await client.ping() is True
        await client.set("tls:key", "over tls")
        assert await client.get("tls:key") == "over tls"


async def test_tls_with_a_client_certificate(tls_server: RedisServer, tls_files: TLSFiles) -> None:
    tls = TLSOptions(
        ca_file=tls_files.ca_cert, cert_file=tls_files.client_cert, key_file=tls_files.client_key
    )
    async with open_redis_client(f"rediss://127.0.0.1:{tls_server.tls_port}", tls=tls) as client:
        assert await client.ping() is True


async def test_tls_with_a_caller_built_ssl_context(
    tls_server: RedisServer, tls_files: TLSFiles
) -> None:
    context = ssl.create_default_context(cafile=tls_files.ca_cert)
    tls = TLSOptions(ssl_context=context)
    async with open_redis_client(f"rediss://127.0.0.1:{tls_server.tls_port}", tls=tls) as client:
        assert await client.ping() is True


async def test_tls_rejects_an_untrusted_server(tls_server: RedisServer) -> None:
    # The system trust store does not know our throwaway CA.
    async with open_redis_client(f"rediss://127.0.0.1:{tls_server.tls_port}") as client:
        with pytest.raises(ConnectionError, match=r"127\.0\.0\.1"):
            await client.ping()


async def test_unix_socket(real_server: RedisServer) -> None:
    async with open_redis_client(f"unix://{real_server.unix_path}?db=2") as client:
        await client.set("unix:key", "via socket")
        assert await client.get("unix:key") == "via socket"
    async with open_redis_client(real_server.url, db=2) as client:
        assert await client.get("unix:key") == "via socket"


async def test_password_auth(password_server: RedisServer) -> None:
    async with open_redis_client(password_server.url) as client:
        assert await client.ping() is True


async def test_acl_username_and_password(real_server: RedisServer) -> None:
    async with open_redis_client(
        f"redis://alice:wonderland@127.0.0.1:{real_server.port}"
    ) as client:
        assert await client.acl_whoami() == "alice"


@pytest.mark.parametrize(
    "userinfo", ["alice:not-her-password", "nobody:whatever"], ids=["acl", "unknown-user"]
)
async def test_wrong_credentials_raise_authentication_error(
    real_server: RedisServer, userinfo: str
) -> None:
    url = f"redis://{userinfo}@127.0.0.1:{real_server.port}"
    async with open_redis_client(url) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.ping()
    password = userinfo.split(":")[1]
    assert password not in str(caught.value)
    assert f"127.0.0.1:{real_server.port}" in str(caught.value)


async def test_wrong_requirepass_password(password_server: RedisServer) -> None:
    async with open_redis_client(f"redis://:wrong-one@127.0.0.1:{password_server.port}") as client:
        with pytest.raises(AuthenticationError):
            await client.ping()


async def test_select_keeps_databases_apart(server_url: str, key: str) -> None:
    async with (
        open_redis_client(server_url, db=3) as three,
        open_redis_client(server_url, db=4) as four,
    ):
        await three.set(key, "in three")
        assert await four.get(key) is None
        assert await three.get(key) == "in three"


async def test_client_name_is_set_on_connect(server_url: str) -> None:
    async with open_redis_client(server_url, client_name="beignet-named") as client:
        assert await client.client_getname() == "beignet-named"


async def test_client_name_is_set_again_on_reconnect(real_server: RedisServer) -> None:
    # fakeredis cannot CLIENT KILL; the real server can.
    async with open_redis_client(real_server.url, client_name="beignet-named") as client:
        assert await client.client_getname() == "beignet-named"
        await client.execute_command("CLIENT KILL", "SKIPME", "no", "ID", await client.client_id())
        with anyio.fail_after(5):
            while True:  # the kill may or may not race the next command
                try:
                    assert await client.client_getname() == "beignet-named"
                    break
                except ConnectionError:
                    continue


async def test_connection_refused_is_a_connection_error_naming_the_address() -> None:
    port = free_port()
    async with open_redis_client(f"redis://user:pw-secret@127.0.0.1:{port}") as client:
        with pytest.raises(ConnectionError) as caught:
            await client.ping()
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "pw-secret" not in str(caught.value)


async def test_a_server_that_never_answers_times_out_on_connect() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        # Accepted by the kernel's backlog, never served: a hung server.
        async with open_redis_client(f"redis://127.0.0.1:{port}", connect_timeout=0.2) as client:
            with (
                anyio.fail_after(5),
                pytest.raises(ConnectTimeoutError, match="Timeout connecting"),
            ):
                await client.ping()
