"""Where to connect and how: parsed from a ``redis://`` URL, checked up front.

Everything here is pure: parsing a URL does no I/O, so a bad URL fails at
construction time with a message that names what is wrong (and never echoes
the password back).
"""

from __future__ import annotations

import codecs
import math
import ssl
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

__all__ = ["ConnectionSettings", "TLSOptions", "parse_redis_url"]

DEFAULT_PORT = 6379
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_COMMAND_TIMEOUT = 5.0
DEFAULT_CLIENT_NAME = "beignet-redis-anyio"
DEFAULT_MAX_BLOCKING_CONNECTIONS = 8
REDACTED = "***"


@attrs.frozen
class TLSOptions:
    """How to verify the server and, optionally, who we are.

    The default trusts the system's certificate store and checks the host
    name, as a browser would. ``ca_file`` adds a private CA (a self-signed
    server); ``cert_file``/``key_file`` present a client certificate for
    servers started with ``tls-auth-clients yes``. ``ssl_context`` wins over
    all of them when you need full control.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, repr=False)

    def build_context(self) -> ssl.SSLContext:
        if self.ssl_context is not None:
            return self.ssl_context
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = self.check_hostname
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _redact(password: str | None) -> str:
    return "None" if password is None else repr(REDACTED)


def _check_timeout(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")


@attrs.frozen
class ConnectionSettings:
    """One server's address, credentials and connection behaviour.

    ``password`` never appears in ``repr``; use :meth:`redacted_url` to show
    where a client points.
    """

    scheme: Literal["redis", "rediss", "unix"] = "redis"
    host: str = "localhost"
    port: int = DEFAULT_PORT
    path: str | None = None
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=_redact)
    db: int = 0
    client_name: str | None = DEFAULT_CLIENT_NAME
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT
    tls: TLSOptions | None = None
    max_blocking_connections: int = DEFAULT_MAX_BLOCKING_CONNECTIONS
    #: Check with ROLE on connect that this server is a master (Sentinel: a
    #: server found by asking may have been demoted since).
    role_check: bool = False
    #: How replies that are not valid UTF-8 are decoded, as redis-py's
    #: ``encoding_errors``: ``"strict"`` raises ``UnicodeDecodeError`` (for that
    #: call alone), ``"replace"``/``"ignore"``/… decode anyway.
    encoding_errors: str = "strict"

    def __attrs_post_init__(self) -> None:
        if isinstance(self.db, bool) or not isinstance(self.db, int) or self.db < 0:
            raise ValueError(f"db must be an integer >= 0, got {self.db!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {self.port!r}")
        _check_timeout("connect_timeout", self.connect_timeout)
        _check_timeout("command_timeout", self.command_timeout)
        if self.max_blocking_connections < 1:
            raise ValueError(
                "max_blocking_connections must be at least 1, "
                f"got {self.max_blocking_connections!r}"
            )
        if self.client_name is not None and (
            not self.client_name or any(c.isspace() for c in self.client_name)
        ):
            raise ValueError("client_name must be non-empty and contain no spaces")
        try:
            codecs.lookup_error(self.encoding_errors)
        except (LookupError, TypeError):
            raise ValueError(
                "encoding_errors must name a codec error handler "
                f"('strict', 'replace', 'ignore', …), got {self.encoding_errors!r}"
            ) from None
        if self.scheme == "unix" and not self.path:
            raise ValueError("a unix:// URL needs a socket path")

    @property
    def address(self) -> str:
        """Where we connect, for messages: ``host:port`` or the socket path."""
        if self.scheme == "unix":
            return str(self.path)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def redacted_url(self) -> str:
        """The URL with any password replaced by ``***``: safe to log."""
        userinfo = ""
        if self.username or self.password is not None:
            userinfo = (self.username or "") + (f":{REDACTED}" if self.password is not None else "")
            userinfo += "@"
        if self.scheme == "unix":
            return f"unix://{userinfo}{self.path}?db={self.db}"
        return f"{self.scheme}://{userinfo}{self.address}/{self.db}"


def parse_redis_url(url: str, **overrides: object) -> ConnectionSettings:
    """Parse ``redis://``, ``rediss://`` or ``unix://`` into settings.

    Accepted forms::

        redis://[[username]:password@]host[:port][/db]
        rediss://…                       (TLS; same shape)
        unix://[[username]:password@]/path/to/socket[?db=N]

    ``overrides`` are :class:`ConnectionSettings` fields given in code
    (``db=``, ``command_timeout=``, ``tls=`` …); they win over the URL.
    Raises ``ValueError`` naming the problem; the message never contains the
    password.
    """
    if not isinstance(url, str) or not url:
        raise ValueError("a Redis URL must be a non-empty string")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urllib's own message may quote the netloc, password included.
        raise ValueError(f"malformed Redis URL: {_safe_reason(exc, _password_in(url))}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"unsupported URL scheme {parts.scheme!r}: use redis://, rediss:// or unix://"
        )
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    query = parse_qs(parts.query)
    fields: dict[str, object] = {
        "scheme": scheme,
        "username": username,
        "password": password,
    }
    db_text: str | None = None
    if scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs a socket path, e.g. unix:///run/redis.sock")
        fields["path"] = unquote(parts.path)
        fields["host"] = "localhost"
        if "db" in query:
            db_text = query["db"][-1]
    else:
        if not parts.hostname:
            raise ValueError(f"the Redis URL has no host (expected {scheme}://host:port)")
        fields["host"] = parts.hostname
        fields["port"] = port if port is not None else DEFAULT_PORT
        path = parts.path.strip("/")
        if path:
            db_text = path
        elif "db" in query:
            db_text = query["db"][-1]
    if db_text is not None:
        if not db_text.isdigit():
            raise ValueError(
                f"the database in a Redis URL must be an integer >= 0, got {db_text!r}"
            )
        fields["db"] = int(db_text)
    fields.update({key: value for key, value in overrides.items() if value is not None})
    if scheme == "rediss":
        fields.setdefault("tls", TLSOptions())
    elif fields.get("tls") is not None:
        raise ValueError(f"TLS options need a rediss:// URL, not {scheme}://")
    return ConnectionSettings(**fields)  # type: ignore[arg-type]


def _password_in(url: str) -> str | None:
    _, _, rest = url.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if not at:
        return None
    _, colon, password = userinfo.partition(":")
    return password if colon else None


def _safe_reason(exc: Exception, password: str | None) -> str:
    text = str(exc)
    if password:
        text = text.replace(password, REDACTED)
    return text
