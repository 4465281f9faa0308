"""Open one authenticated, selected, named connection to a server.

Used for the shared multiplexed connection and for each dedicated connection
that runs a blocking command. Everything that can go wrong on the way is
reported as redis-py's exception classes, with the server's address and never
its password.
"""

from __future__ import annotations

import builtins
import os
import select
import socket
from collections.abc import Sequence
from typing import Any

import anyio
import hiredis
from anyio.abc import ByteStream, SocketAttribute
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError

from .._exceptions import ConnectTimeoutError, TrackingUnsupportedError
from .errors import connection_lost, describe
from .settings import ConnectionSettings
from .wire import encode_commands, new_reader

__all__ = [
    "ConnectTimeoutError",
    "RawConnection",
    "SocketTransport",
    "StreamTransport",
    "Transport",
    "close_quietly",
    "open_connection",
]

#: How long closing a stream may take. Closing a TLS stream sends close_notify,
#: which a hung peer may never accept; we give up rather than hang an exit.
CLOSE_TIMEOUT = 1.0


class SocketTransport:
    """TCP or Unix: a non-blocking socket that we drive ourselves.

    Owning the socket lets a caller write *synchronously* (:meth:`send_now`):
    a plain ``socket.send`` either hands bytes to the kernel or raises
    ``BlockingIOError`` — there is no point at which a cancellation can tear
    it. That makes the common case, a write on an idle connection, cost no
    task switch at all.
    """

    __slots__ = ("drained", "sock")

    #: Callers may read this socket themselves (see ``multiplexer``).
    direct = True

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.drained = False

    def send_now(self, data: bytes | memoryview) -> int:
        """Write what the kernel takes right now; return how many bytes."""
        try:
            return self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0

    async def send(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            sent = self.send_now(view)
            view = view[sent:]
            if view:
                await anyio.wait_writable(self.sock)

    def receive_now(self) -> bytes | None:
        """What the kernel holds for us right now, or ``None`` if nothing yet;
        ``anyio.EndOfStream`` when the server closed."""
        try:
            data = self.sock.recv(_RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            self.drained = True
            return None
        if not data:
            raise anyio.EndOfStream
        self.drained = len(data) < _RECEIVE_SIZE
        return data

    async def receive(self) -> bytes:
        """Bytes from the server; ``anyio.EndOfStream`` when it closed."""
        while True:
            if self.drained:
                # The last read emptied the kernel buffer (or found it empty),
                # so reading again now would only fail: wait for readiness.
                await anyio.wait_readable(self.sock)
            data = self.receive_now()
            if data is not None:
                return data

    async def wait_readable(self) -> None:
        await anyio.wait_readable(self.sock)

    def looks_alive(self) -> bool:
        """An idle connection must have nothing to read: EOF, an error, or
        bytes nobody asked for all mean it cannot carry the next command."""
        try:
            self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        return False

    def notify_closing(self) -> None:
        """Wake any task waiting on this socket; it is about to be closed."""
        if self.sock.fileno() >= 0:
            anyio.notify_closing(self.sock)

    async def aclose(self) -> None:
        # Wake any task still waiting on this socket before the fd goes away
        # (trio requires it; anyio makes it portable).
        self.notify_closing()
        self.sock.close()


class StreamTransport:
    """TLS: an anyio stream does the encryption; writes go through a task."""

    __slots__ = ("stream",)

    #: TLS records are read through anyio's stream by the reader task only.
    direct = False

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream

    def send_now(self, data: bytes | memoryview) -> int:
        return 0  # a TLS write may need to wait; leave it to the writer task

    async def send(self, data: bytes | memoryview) -> None:
        # (the link hands a TLS stream whole bytes: its send_now takes none)
        await self.stream.send(bytes(data) if type(data) is memoryview else data)

    async def receive(self) -> bytes:
        return await self.stream.receive(_RECEIVE_SIZE)

    def looks_alive(self) -> bool:
        # An idle TLS connection has nothing to read once its first reply has
        # been read (session tickets come with it): readable means closed.
        raw = self.stream.extra(SocketAttribute.raw_socket, None)
        if raw is None:  # pragma: no cover - anyio always provides it
            return True
        readable, _, _ = select.select([raw.fileno()], [], [], 0)
        return not readable

    def notify_closing(self) -> None:
        pass  # callers never wait on this socket directly

    def receive_now(self) -> bytes | None:
        return None  # TLS records are read by the reader task, through anyio

    async def aclose(self) -> None:
        await close_quietly(self.stream)


Transport = SocketTransport | StreamTransport

_RECEIVE_SIZE = 65536


class RawConnection:
    """A connected transport with the hiredis reader that parses what it receives."""

    __slots__ = ("decode", "reader", "settings", "strict_text", "transport")

    def __init__(
        self,
        transport: Transport,
        reader: hiredis.Reader,
        settings: ConnectionSettings,
        decode: bool = True,
    ) -> None:
        self.transport = transport
        self.reader = reader
        self.settings = settings
        #: Whether replies nobody asked about in particular (the handshake's,
        #: push frames) are decoded: the client's ``decode_responses``.
        self.decode = decode
        #: Read with surrogateescape where the settings say strict: replies
        #: must go through ``wire.as_strict_text`` (a tracking connection).
        self.strict_text = False

    async def read_reply(self, decode: bool | None = None) -> Any:
        """Read exactly one reply (decoded as ``decode`` says, by default as
        the connection does). Cancellation may leave it unread: the
        caller must then close this connection (it is never reused)."""
        if decode is None:
            decode = self.decode
        while True:
            try:
                reply = self.reader.gets(decode)
            except UnicodeDecodeError as exc:  # consumed whole: the caller's error
                return exc
            if reply is not False:
                return reply
            try:
                data = await self.transport.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                raise connection_lost(self.settings.address, exc) from None
            self.reader.feed(data)

    def looks_alive(self) -> bool:
        """True unless the peer closed this idle connection."""
        return self.transport.looks_alive()

    async def aclose(self) -> None:
        await self.transport.aclose()


async def close_quietly(stream: ByteStream) -> None:
    """Close a stream even when we are being cancelled; never hang, never raise."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
        try:
            await stream.aclose()
        except Exception:  # the peer may already be gone; that is fine
            pass


def handshake_commands(
    settings: ConnectionSettings, *, tracking: bool = False
) -> list[Sequence[Any]]:
    """What a new connection sends first. ``tracking`` (the local cache's
    shared connection, RESP3 only) turns on ``CLIENT TRACKING`` before any
    read can go out on it: a key read on an untracked connection would never
    be invalidated."""
    commands: list[Sequence[Any]] = []
    if settings.protocol == 3:
        # HELLO switches protocol, authenticates and names us in one command.
        hello: list[Any] = ["HELLO", 3]
        if settings.password is not None:
            hello += ["AUTH", settings.username or "default", settings.password]
        if settings.client_name:
            hello += ["SETNAME", settings.client_name]
        commands.append(tuple(hello))
    elif settings.password is not None:
        if settings.username:
            commands.append(("AUTH", settings.username, settings.password))
        else:
            commands.append(("AUTH", settings.password))
    if settings.db:
        commands.append(("SELECT", settings.db))
    if settings.client_name and settings.protocol == 2:
        commands.append(("CLIENT", "SETNAME", settings.client_name))
    if settings.role_check:
        commands.append(("ROLE",))
    if settings.readonly:
        commands.append(("READONLY",))
    if tracking:
        commands.append(("CLIENT", "TRACKING", "ON"))
    if not commands:
        # A server that accepts connections but never answers (frozen,
        # overloaded) must fail the connect, within connect_timeout, not
        # the first command: one round trip proves it answers.
        commands.append(("PING",))
    return commands


async def _connect_socket(settings: ConnectionSettings) -> socket.socket:
    if settings.scheme == "unix":
        assert settings.path is not None
        targets: list[tuple[int, int, Any]] = [(socket.AF_UNIX, 0, settings.path)]
    else:
        infos = await anyio.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
        targets = [(family, proto, address) for family, _, proto, _, address in infos]
    last_error: OSError | None = None
    for family, proto, address in targets:
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        try:
            sock.setblocking(False)
            try:
                sock.connect(address)
            except (BlockingIOError, InterruptedError):
                await anyio.wait_writable(sock)
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, os.strerror(error)) from None
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        except BaseException:
            sock.close()
            raise
        if family != socket.AF_UNIX:
            # Requests are small and latency-bound: no Nagle. Keepalive lets
            # the kernel notice a peer that vanished without a FIN.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock
    assert last_error is not None
    raise last_error


async def _open_transport(settings: ConnectionSettings) -> Transport:
    if settings.tls is not None:
        stream = await anyio.connect_tcp(
            settings.host,
            settings.port,
            ssl_context=settings.tls.build_context(),
            tls=True,
            tls_hostname=settings.host,
            tls_standard_compatible=False,
        )
        return StreamTransport(stream)
    return SocketTransport(await _connect_socket(settings))


async def open_connection(
    settings: ConnectionSettings, *, decode: bool, tracking: bool = False
) -> RawConnection:
    """Connect, AUTH, SELECT and CLIENT SETNAME (under RESP3: HELLO 3 with
    AUTH and SETNAME, then SELECT), all within ``connect_timeout``.

    The handshake goes out as one write and its replies are checked in order,
    so a wrong password surfaces as ``AuthenticationError`` rather than as a
    confusing ``NOAUTH`` on the first real command.
    """
    transport: Transport | None = None
    try:
        with anyio.fail_after(settings.connect_timeout):
            transport = await _open_transport(settings)
            errors = settings.encoding_errors
            # Tracking: its pushes must never fail to parse (wire.as_strict_text).
            strict_text = tracking and errors == "strict"
            reader = new_reader(errors="surrogateescape" if strict_text else errors)
            connection = RawConnection(transport, reader, settings, decode)
            connection.strict_text = strict_text
            commands = handshake_commands(settings, tracking=tracking)
            if commands:
                await transport.send(encode_commands(commands))
                for command in commands:
                    reply = await connection.read_reply()
                    if isinstance(reply, Exception):
                        name = " ".join(command[:2]) if command[0] == "CLIENT" else command[0]
                        raise _handshake_error(settings, name, reply)
                    expected = settings.expected_role
                    if command[0] == "ROLE" and (
                        not reply or reply[0] not in (expected, expected.encode())
                    ):
                        role = reply[0] if reply else "unknown"
                        what = "the master" if expected == "master" else "a replica"
                        raise ConnectionError(
                            f"{settings.address} is not {what} any more (role: {role}); "
                            "a failover is under way"
                        )
            return connection
    except BaseException as exc:
        if transport is not None:
            with anyio.CancelScope(shield=True):
                await transport.aclose()
        if isinstance(exc, builtins.TimeoutError):
            raise ConnectTimeoutError(
                f"Timeout connecting to {settings.address} after {settings.connect_timeout:g}s"
            ) from None
        if isinstance(exc, (OSError, anyio.BrokenResourceError, anyio.EndOfStream)):
            raise ConnectionError(
                f"Error connecting to {settings.address}: {describe(exc)}"
            ) from None
        raise


def _handshake_error(settings: ConnectionSettings, command: str, reply: Exception) -> Exception:
    """What a failed handshake means: wrong credentials only when the server
    says so — WRONGPASS/NOAUTH (redis-py's ``AuthenticationError``), or a
    plain ``ERR`` to AUTH from older servers and fakeredis. Anything else —
    "max number of clients reached" is redis-py's ``ConnectionError`` — is
    the server being unavailable, however it answered our AUTH."""
    if isinstance(reply, AuthenticationError) or (
        command == "AUTH" and type(reply) is ResponseError
    ):
        return AuthenticationError(f"Authentication with {settings.address} failed: {reply}")
    if command == "HELLO" and "unknown command" in str(reply).lower():
        return ConnectionError(
            f"{settings.address} does not speak RESP3 (HELLO is Redis 6 and later): "
            "connect with protocol=2"
        )
    if command == "CLIENT TRACKING" and not isinstance(reply, ConnectionError):
        return TrackingUnsupportedError(
            f"{settings.address} cannot track keys for a local cache (CLIENT TRACKING ON "
            f"answered: {reply}); local_cache needs Redis or Valkey 6 or later"
        )
    if isinstance(reply, ConnectionError):
        return ConnectionError(f"{settings.address} refused the connection: {reply}")
    return type(reply)(f"{command} failed on {settings.address}: {reply}")
