"""Where to connect and how: parsed from a ``redis://`` URL, checked up front.

Everything here is pure: parsing a URL does no I/O, so a bad URL fails at
construction time with a message that names what is wrong (and never echoes
the password back).
"""

from __future__ import annotations

import codecs
import ssl
from collections.abc import Iterable
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from .numbers import ascii_integer, in_range, is_number

__all__ = [
    "ConnectionSettings",
    "TLSOptions",
    "given_overrides",
    "parse_address",
    "parse_protocol",
    "parse_redis_url",
    "redact_url",
    "split_credentials",
]

DEFAULT_PORT = 6379
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_COMMAND_TIMEOUT = 5.0
#: What the provider names its connections (``CLIENT SETNAME``), so that
#: ``CLIENT LIST`` shows them. A bare client names nothing unless asked, as
#: redis-py does: its users expect ``client_getname()`` to be ``None``.
DEFAULT_CLIENT_NAME = "beignet-redis-anyio"
#: The RESP version a connection speaks unless told. RESP2: RESP3 costs a
#: HELLO per connect and gains nothing for a cache's GET/SET; it is what
#: push frames (client-side caching, pub/sub on a shared connection) need.
#: Read when settings are made, not fixed at import, so the test suite can
#: run whole under RESP3 (tests/conftest.py sets it from
#: ``BEIGNET_TEST_PROTOCOL``).
DEFAULT_PROTOCOL = 2
PROTOCOLS = (2, 3)
DEFAULT_MAX_BLOCKING_CONNECTIONS = 8
REDACTED = "***"
#: Every timeout, in seconds: at least a millisecond (the resolution the
#: server and our clocks work in; less is a typo, and zero would fail every
#: call) and at most a day (anything longer is a unit mistake; "wait
#: forever" is ``command_timeout=None``).
MIN_TIMEOUT, MAX_TIMEOUT = 0.001, 86_400.0


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
    if not is_number(value):
        raise ValueError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not in_range(value, MIN_TIMEOUT, MAX_TIMEOUT):
        raise ValueError(
            f"{name} must be a number of seconds from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}, "
            f"got {value!r}"
        )


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
    client_name: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT
    tls: TLSOptions | None = None
    max_blocking_connections: int = DEFAULT_MAX_BLOCKING_CONNECTIONS
    #: Check with ROLE on connect that this server is a master (Sentinel: a
    #: server found by asking may have been demoted since).
    role_check: bool = False
    #: The role ROLE must report when ``role_check`` is on: ``"master"``, or
    #: ``"slave"`` for a replica found by asking Sentinel.
    expected_role: Literal["master", "slave"] = "master"
    #: Send ``READONLY`` on connect: a cluster replica answers reads for its
    #: primary's slots only on a connection that said so.
    readonly: bool = False
    #: How replies that are not valid UTF-8 are decoded, as redis-py's
    #: ``encoding_errors``: ``"strict"`` raises ``UnicodeDecodeError`` (for that
    #: call alone), ``"replace"``/``"ignore"``/… decode anyway.
    encoding_errors: str = "strict"
    #: RESP2 or RESP3 (``HELLO 3`` on connect; needs Redis or Valkey >= 6).
    protocol: int = attrs.field(factory=lambda: DEFAULT_PROTOCOL)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.protocol, bool) or self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 2 or 3, got {self.protocol!r}")
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


def redact_url(url: str) -> str:
    """``url`` with anything that could be a password replaced by ``***``.

    Plain string search, no parsing, so it cannot fail on a malformed URL
    — which is exactly when an error message wants to show one. A password
    sits between the first ``:`` after ``scheme://`` and the last ``@``;
    everything in between goes (over-redacting a path with an ``@`` in it
    is harmless).
    """
    scheme, sep, after = url.partition("://")
    if not sep:
        scheme, after = "", url
    userinfo, at, rest = after.rpartition("@")
    username, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}{sep}{username}:{REDACTED}@{rest}"


def split_credentials(url: str) -> tuple[str, str | None, str | None, str]:
    """``(scheme, username, password, rest)``: the credentials taken off by
    plain string search before anything else looks at the URL.

    Everything parsed after this — and every error message about it — sees
    only ``rest``, so no parser's complaint can quote a password. The
    credentials end at the *last* ``@`` (for ``unix://``, the last ``@/``
    if any, since a socket path starts with ``/`` and may hold an ``@``): a
    password may hold raw ``@``, ``:``, ``/``, ``?`` or ``#``; an ``@`` after
    the host must be written ``%40``.
    """
    scheme, sep, after = url.partition("://")
    if not sep:
        raise ValueError("a Redis URL starts with its scheme, e.g. redis://localhost:6379")
    cut = _cut_userinfo(after, unix=scheme.lower() == "unix")
    if cut is None:
        return scheme, None, None, after
    userinfo, rest = cut
    username, colon, password = userinfo.partition(":")
    return scheme, unquote(username) or None, unquote(password) if colon else None, rest


def _cut_userinfo(after: str, *, unix: bool) -> tuple[str, str] | None:
    """``(userinfo, rest)`` of what follows ``scheme://``, or None without credentials."""
    if unix:
        if after.startswith("/"):
            return None
        userinfo, at, rest = after.rpartition("@/")
        if at:
            return userinfo, "/" + rest
    userinfo, at, rest = after.rpartition("@")
    return (userinfo, rest) if at else None


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` or ``[ipv6][:port]``, strictly: the port in ASCII
    digits from 1 to 65535, the host ASCII with no spaces or URL delimiters.

    ``text`` comes from a URL with its credentials already taken off
    (:func:`split_credentials`), so quoting it in a message is safe.
    """
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"the IPv6 address in {text!r} is missing its closing ']'")
        if after and not after.startswith(":"):
            raise ValueError(f"expected [address]:port, got {text!r}")
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_or_empty = text.partition(":")
        if ":" in port_text_or_empty:
            raise ValueError(f"an IPv6 address needs brackets, e.g. [::1]:6379, got {text!r}")
        port_text = port_text_or_empty if colon else None
    if not host:
        raise ValueError(f"the Redis URL has no host in {text!r}")
    if not host.isascii() or not host.isprintable() or any(c in _NOT_IN_HOSTS for c in host):
        raise ValueError(
            f"the host {host!r} must be an ASCII name or address "
            "(write an internationalised name in its xn-- form)"
        )
    if port_text is None:
        return host, default_port
    port = ascii_integer(port_text)
    if port is None or not 0 < port < 65536:
        raise ValueError(
            f"malformed port {port_text!r} for {host!r}: "
            "expected a number from 1 to 65535 in ASCII digits"
        )
    return host, port


_NOT_IN_HOSTS = frozenset(" /?#@[]\\")


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
    scheme_text, username, password, rest = split_credentials(url)
    scheme = scheme_text.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"unsupported URL scheme {_shown_scheme(scheme_text)}: "
            "use redis://, rediss:// or unix://"
        )
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except ValueError as exc:
        # Safe to quote: ``rest`` holds no credentials.
        raise ValueError(f"malformed Redis URL: {exc}") from None
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
        if not parts.netloc:
            raise ValueError(f"the Redis URL has no host (expected {scheme}://host:port)")
        fields["host"], fields["port"] = parse_address(parts.netloc, DEFAULT_PORT)
        path = parts.path.strip("/")
        if path:
            db_text = path
        elif "db" in query:
            db_text = query["db"][-1]
    if db_text is not None:
        fields["db"] = parse_db(db_text)
    if "protocol" in query:
        fields["protocol"] = parse_protocol(query["protocol"][-1])
    check_url_options(query, ("db", "protocol"))
    fields.update(given_overrides(overrides))
    if scheme == "rediss":
        fields.setdefault("tls", TLSOptions())
    elif fields.get("tls") is not None:
        raise ValueError(f"TLS options need a rediss:// URL, not {scheme}://")
    return ConnectionSettings(**fields)  # type: ignore[arg-type]


#: Settings for which ``None`` is a value, not "unset": no command timeout.
_NONE_IS_A_VALUE = frozenset({"command_timeout"})


def given_overrides(overrides: dict[str, object]) -> dict[str, object]:
    """The overrides that were given: ``None`` means "not given" (keep the
    URL's or the default), except where ``None`` is itself a setting
    (``command_timeout=None``: wait forever)."""
    return {
        key: value
        for key, value in overrides.items()
        if value is not None or key in _NONE_IS_A_VALUE
    }


def parse_db(text: str) -> int:
    """A database number from a URL, in ASCII digits."""
    db = ascii_integer(text)
    if db is None:
        raise ValueError(f"the database in a Redis URL must be an integer >= 0, got {text!r}")
    return db


#: Settings given in code or in a ``REDIS_`` variable that a URL does not
#: carry, and options of redis-py's URLs that this client takes as
#: arguments if at all: named in the error, so the user knows where they go.
#: (Any other option is not named: a query may hold anything, a secret too.)
_ARGUMENT_NOT_URL_OPTION = frozenset(
    {
        "read_from",
        "read_from_replicas",
        "client_az",
        "local_cache",
        "legacy_responses",
        "command_timeout",
        "connect_timeout",
        "client_name",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "retry_on_timeout",
        "max_connections",
        "decode_responses",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
    }
)


class _URLOptionError(ValueError):
    """A URL's query has an option the URL does not carry: the URL's fault,
    whatever setting the option is named after."""


def check_url_options(names: Iterable[str], understood: Iterable[str]) -> None:
    """Refuse a URL whose query has options other than ``understood``:
    ignored, ``?read_from=prefer_replica`` would read from the primary
    without a word. The error names an option only if it is one of the
    settings that go in code instead (``_ARGUMENT_NOT_URL_OPTION``)."""
    allowed = tuple(understood)
    unknown = sorted(set(names) - set(allowed))
    if not unknown:
        return
    reads = " and ".join(f"{name}=" for name in allowed)
    known = [name for name in unknown if name in _ARGUMENT_NOT_URL_OPTION]
    if known:
        raise _URLOptionError(
            f"{', '.join(f'{name}=' for name in known)} is not a URL option: give it as an "
            f"argument (or its REDIS_ variable); this URL's query reads only {reads}"
        )
    raise _URLOptionError(
        f"the URL's query has an option this client does not read (its query reads only "
        f"{reads}); settings other than those are given as arguments or REDIS_ variables"
    )


def parse_protocol(text: str) -> int:
    """A RESP version from a URL's ``?protocol=``: 2 or 3, in ASCII digits."""
    protocol = ascii_integer(text)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol in a Redis URL must be 2 or 3, got {text!r}")
    return protocol


def _shown_scheme(scheme: str) -> str:
    """The scheme quoted, if it looks like one; text before ``://`` that
    does not could be anything the user pasted."""
    if scheme.isascii() and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        return repr(scheme)
    return "(not a URL scheme)"
