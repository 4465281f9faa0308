"""``RedisConfig``: the provider's settings, from the environment or from code.

Every value is checked when the config is made — before any connection is
attempted — and a bad one raises :class:`ConfigError` naming the environment
variable it comes from and what is wrong with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import attrs

from .._exceptions import ConfigError
from .._net.numbers import ascii_decimal, ascii_integer, in_range
from .._net.settings import (
    MAX_TIMEOUT,
    MIN_TIMEOUT,
    ConnectionSettings,
    TLSOptions,
    _URLOptionError,
    redact_url,
)
from .._topology.replicas import LOCAL_CACHE_AND_REPLICAS, ReadFrom, check_read_from
from .._topology.urls import Topology, parse_topology

__all__ = ["ConfigError", "RedisConfig"]

#: Surrounding white space an env file may leave is ignored — ASCII only: a
#: no-break space (U+00A0) or the like is part of the value, and refused.
_ASCII_SPACE = " \t\r\n\v\f"


def _redact_url(url: object) -> str:
    # No parsing here: repr must be safe on exactly the URLs that fail to parse.
    return repr(redact_url(url)) if isinstance(url, str) else "'<not a string>'"


#: (minimum, maximum) of each number-valued variable. Seconds have a floor
#: of a millisecond (the server's resolution) or more, and a ceiling of a
#: day: past that a value is a unit mistake, not a wish.
_LIMITS: dict[str, tuple[float, float]] = {
    "REDIS_CONNECT_TIMEOUT": (MIN_TIMEOUT, MAX_TIMEOUT),
    "REDIS_COMMAND_TIMEOUT": (MIN_TIMEOUT, MAX_TIMEOUT),
    # The lease is renewed every third of it, one round trip each time:
    # below 0.1 s renewing would be most of what the leader does.
    "REDIS_LOCK_LEASE": (0.1, 86_400.0),
    "REDIS_LOCK_WAIT": (0.001, 86_400.0),
    "REDIS_BREAKER_COOLDOWN": (0.001, 86_400.0),
    # A factor, not seconds: XFetch's beta is around 1; far outside, early
    # refresh would never (or always) happen.
    "REDIS_EARLY_REFRESH_BETA": (0.001, 1000.0),
    "REDIS_LOCAL_CACHE_TTL": (0.001, 86_400.0),
}


def _setting(variable: str, meaning: str) -> dict[str, str]:
    """A field's environment variable and what it means, kept on the field so
    the documentation's table is rendered from the class itself."""
    return {"variable": variable, "meaning": meaning}


@attrs.frozen
class RedisConfig:
    """Where the cache lives and how to talk to it.

    Build one in code — ``RedisConfig(url="redis://localhost:6379", db=1)`` —
    or from the environment with :meth:`from_env`. Fields map one-to-one to
    ``REDIS_*`` variables (``url`` ↔ ``REDIS_URL``, ``key_prefix`` ↔
    ``REDIS_KEY_PREFIX`` …). ``repr`` never shows the password.
    """

    url: str = attrs.field(
        repr=_redact_url,
        metadata=_setting(
            "REDIS_URL",
            (
                "Where Redis is: `redis://[[user]:password@]host[:port][/db]`, `rediss://…` "
                "(TLS), `unix:///path/to/redis.sock[?db=N]`, "
                "`redis+cluster://host1:7000,host2:7001[,…]` or "
                "`redis+sentinel://s1:26379,s2:26379/mymaster[/db]` (and `rediss+…`). A "
                "password may hold any character: the credentials end at the last `@`, and "
                "percent-escapes in them are decoded. Required."
            ),
        ),
    )
    db: int | None = attrs.field(
        default=None,
        metadata=_setting(
            "REDIS_DB",
            (
                "Database number (ASCII digits, ≥ 0); when set it wins over a database in the"
                " URL. Unset means the URL's, else 0."
            ),
        ),
    )
    key_prefix: str = attrs.field(
        default="",
        metadata=_setting(
            "REDIS_KEY_PREFIX",
            (
                "Prepended to every key the port touches (not to `cache.client` commands). "
                "None by default, so `cache.client` addresses the same key names as the port."
            ),
        ),
    )
    connect_timeout: float = attrs.field(
        default=5.0,
        metadata=_setting(
            "REDIS_CONNECT_TIMEOUT",
            (
                "Seconds a (background) connect attempt may take, TLS, AUTH and SELECT "
                "included (0.001 to 86400)."
            ),
        ),
    )
    command_timeout: float | None = attrs.field(
        default=5.0,
        metadata=_setting(
            "REDIS_COMMAND_TIMEOUT",
            ("Seconds a call waits, connecting included (0.001 to 86400); `none` to wait forever."),
        ),
    )
    client_name: str | None = attrs.field(
        default="beignet-redis-anyio",
        metadata=_setting(
            "REDIS_CLIENT_NAME",
            ("`CLIENT SETNAME` on every connection; `none` to skip it."),
        ),
    )
    protocol: int | None = attrs.field(
        default=None,
        metadata=_setting(
            "REDIS_PROTOCOL",
            (
                "`2` (RESP2) or `3` (RESP3, `HELLO 3` on connect; Redis or Valkey ≥ 6). Unset"
                " keeps the URL's `?protocol=`, else 2."
            ),
        ),
    )
    legacy_responses: bool = attrs.field(
        default=True,
        metadata=_setting(
            "REDIS_LEGACY_RESPONSES",
            (
                "`cache.client`'s reply shapes, redis-py 8's `legacy_responses`: `true` gives "
                "redis-py's shapes for the protocol in use (so `REDIS_LOCAL_CACHE`, which "
                "forces RESP3, can change some); `false` its unified shapes, the same on RESP2 "
                "and RESP3. The port's own methods are unaffected."
            ),
        ),
    )
    tls_ca_file: str | None = attrs.field(
        default=None,
        metadata=_setting(
            "REDIS_TLS_CA_FILE",
            ("A CA bundle to verify a `rediss://` server (default: the system's trust store)."),
        ),
    )
    tls_cert_file: str | None = attrs.field(
        default=None,
        metadata=_setting(
            "REDIS_TLS_CERT_FILE",
            ("A client certificate; set together with `REDIS_TLS_KEY_FILE`."),
        ),
    )
    tls_key_file: str | None = attrs.field(
        default=None,
        metadata=_setting(
            "REDIS_TLS_KEY_FILE",
            ("The client certificate's key; set together with `REDIS_TLS_CERT_FILE`."),
        ),
    )
    max_blocking_connections: int = attrs.field(
        default=8,
        metadata=_setting(
            "REDIS_MAX_BLOCKING_CONNECTIONS",
            (
                "Dedicated connections for blocking commands (`BLPOP`, …) on `cache.client` "
                "(integer ≥ 1)."
            ),
        ),
    )
    remember_lock: bool = attrs.field(
        default=False,
        metadata=_setting(
            "REDIS_REMEMBER_LOCK",
            ("Cross-process single-flight for `remember` and `remember_many` (per call: `lock=`)."),
        ),
    )
    lock_lease_seconds: float = attrs.field(
        default=10.0,
        metadata=_setting(
            "REDIS_LOCK_LEASE",
            (
                "Seconds a leader's lease lasts between renewals; renewed every third of it "
                "(0.1 to 86400)."
            ),
        ),
    )
    lock_wait_seconds: float = attrs.field(
        default=10.0,
        metadata=_setting(
            "REDIS_LOCK_WAIT",
            (
                "Seconds a follower waits for another process's value before computing it "
                "itself (0.001 to 86400)."
            ),
        ),
    )
    early_refresh: bool = attrs.field(
        default=False,
        metadata=_setting(
            "REDIS_EARLY_REFRESH",
            ("XFetch early recomputation on hits (per call: `early_refresh=`; needs a TTL)."),
        ),
    )
    early_refresh_beta: float = attrs.field(
        default=1.0,
        metadata=_setting(
            "REDIS_EARLY_REFRESH_BETA",
            ("XFetch's `beta`: larger refreshes earlier (0.001 to 1000)."),
        ),
    )
    ttl_jitter: float = attrs.field(
        default=0.0,
        metadata=_setting(
            "REDIS_TTL_JITTER",
            ("A fraction in [0, 1): every TTL the port writes varies by up to ± this much."),
        ),
    )
    failure_policy: Literal["raise", "bypass"] = attrs.field(
        default="raise",
        metadata=_setting(
            "REDIS_FAILURE_POLICY",
            ("`raise` or `bypass` (fail-open) when Redis is unavailable."),
        ),
    )
    breaker_threshold: int = attrs.field(
        default=5,
        metadata=_setting(
            "REDIS_BREAKER_THRESHOLD",
            ("Consecutive failures that open the circuit breaker (integer ≥ 1)."),
        ),
    )
    breaker_cooldown_seconds: float = attrs.field(
        default=5.0,
        metadata=_setting(
            "REDIS_BREAKER_COOLDOWN",
            (
                "Seconds the breaker stays open before one call probes Redis, unless the "
                "server is heard from sooner (0.001 to 86400)."
            ),
        ),
    )
    local_cache: bool = attrs.field(
        default=False,
        metadata=_setting(
            "REDIS_LOCAL_CACHE",
            (
                "Hot keys from process memory, invalidated by the server (`CLIENT TRACKING`; "
                "forces RESP3; Redis or Valkey ≥ 6)."
            ),
        ),
    )
    local_cache_max_entries: int = attrs.field(
        default=10_000,
        metadata=_setting(
            "REDIS_LOCAL_CACHE_MAX_ENTRIES",
            ("Entries the local cache holds at most (integer ≥ 1)."),
        ),
    )
    local_cache_max_bytes: int = attrs.field(
        default=64 * 1024 * 1024,
        metadata=_setting(
            "REDIS_LOCAL_CACHE_MAX_BYTES",
            ("Bytes the local cache holds at most (integer ≥ 1)."),
        ),
    )
    local_cache_ttl: float = attrs.field(
        default=60.0,
        metadata=_setting(
            "REDIS_LOCAL_CACHE_TTL",
            (
                "Seconds an entry lives locally at most, never past the key's own TTL (0.001 "
                "to 86400)."
            ),
        ),
    )
    local_cache_stale_if_error: bool = attrs.field(
        default=False,
        metadata=_setting(
            "REDIS_LOCAL_CACHE_STALE_IF_ERROR",
            (
                "While Redis cannot be reached, serve what the local cache held when the "
                "connection was lost (needs `REDIS_LOCAL_CACHE=true` and "
                "`REDIS_FAILURE_POLICY=bypass`)."
            ),
        ),
    )

    read_from: ReadFrom = attrs.field(
        default="primary",
        metadata=_setting(
            "REDIS_READ_FROM",
            (
                "Where read-only commands go on a cluster or Sentinel URL: `primary` (default; "
                "no replica connection is opened), `prefer_replica` (a healthy replica, round "
                "robin, else the primary) or `az_affinity` (replicas in `REDIS_CLIENT_AZ` "
                "first). Replicas lag: read-your-writes holds only with `primary`. Not with "
                '`REDIS_LOCAL_CACHE`, nor a single-server URL. See "Reading from replicas".'
            ),
        ),
    )
    client_az: str | None = attrs.field(
        default=None,
        metadata=_setting(
            "REDIS_CLIENT_AZ",
            (
                "The client's availability zone, for `REDIS_READ_FROM=az_affinity` (required "
                "by it): replicas reporting this `availability_zone` (Valkey 8) are read first. "
                "It must be that name exactly: spaces around it (the variable's value is "
                "stripped) or a control character in it are a `ConfigError`."
            ),
        ),
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.strip(_ASCII_SPACE):
            raise ConfigError("REDIS_URL is required, e.g. redis://localhost:6379")
        if self.db is not None and (
            isinstance(self.db, bool) or not isinstance(self.db, int) or self.db < 0
        ):
            raise ConfigError(f"REDIS_DB must be an integer >= 0, got {self.db!r}")
        if not isinstance(self.key_prefix, str):
            raise ConfigError(f"REDIS_KEY_PREFIX must be a string, got {self.key_prefix!r}")
        _check_number("REDIS_CONNECT_TIMEOUT", self.connect_timeout)
        if self.command_timeout is not None:
            _check_number("REDIS_COMMAND_TIMEOUT", self.command_timeout)
        if isinstance(self.max_blocking_connections, bool) or not (
            isinstance(self.max_blocking_connections, int) and self.max_blocking_connections >= 1
        ):
            raise ConfigError(
                "REDIS_MAX_BLOCKING_CONNECTIONS must be an integer >= 1, "
                f"got {self.max_blocking_connections!r}"
            )
        for variable, flag in (
            ("REDIS_LEGACY_RESPONSES", self.legacy_responses),
            ("REDIS_REMEMBER_LOCK", self.remember_lock),
            ("REDIS_EARLY_REFRESH", self.early_refresh),
            ("REDIS_LOCAL_CACHE", self.local_cache),
            ("REDIS_LOCAL_CACHE_STALE_IF_ERROR", self.local_cache_stale_if_error),
        ):
            if not isinstance(flag, bool):
                raise ConfigError(f"{variable} must be true or false, got {flag!r}")
        _check_number("REDIS_LOCK_LEASE", self.lock_lease_seconds)
        _check_number("REDIS_LOCK_WAIT", self.lock_wait_seconds)
        _check_number("REDIS_EARLY_REFRESH_BETA", self.early_refresh_beta)
        if not in_range(self.ttl_jitter, 0, 1) or self.ttl_jitter == 1:
            raise ConfigError(_JITTER_RULE + f", got {self.ttl_jitter!r}")
        if self.failure_policy not in ("raise", "bypass"):
            raise ConfigError(
                f"REDIS_FAILURE_POLICY must be 'raise' or 'bypass', got {self.failure_policy!r}"
            )
        if isinstance(self.breaker_threshold, bool) or not (
            isinstance(self.breaker_threshold, int) and self.breaker_threshold >= 1
        ):
            raise ConfigError(
                f"REDIS_BREAKER_THRESHOLD must be an integer >= 1, got {self.breaker_threshold!r}"
            )
        _check_number("REDIS_BREAKER_COOLDOWN", self.breaker_cooldown_seconds)
        for variable, bound in (
            ("REDIS_LOCAL_CACHE_MAX_ENTRIES", self.local_cache_max_entries),
            ("REDIS_LOCAL_CACHE_MAX_BYTES", self.local_cache_max_bytes),
        ):
            if isinstance(bound, bool) or not (isinstance(bound, int) and bound >= 1):
                raise ConfigError(f"{variable} must be an integer >= 1, got {bound!r}")
        _check_number("REDIS_LOCAL_CACHE_TTL", self.local_cache_ttl)
        if self.local_cache_stale_if_error and not (
            self.local_cache and self.failure_policy == "bypass"
        ):
            raise ConfigError(
                "REDIS_LOCAL_CACHE_STALE_IF_ERROR needs REDIS_LOCAL_CACHE=true and "
                "REDIS_FAILURE_POLICY=bypass (it is what the bypass serves from the local cache)"
            )
        if self.local_cache and self.protocol == 2:
            raise ConfigError(
                "REDIS_LOCAL_CACHE needs RESP3 (its invalidations share the connection "
                "the reads use); leave REDIS_PROTOCOL unset or set it to 3"
            )
        if self.protocol is not None and (
            isinstance(self.protocol, bool) or self.protocol not in (2, 3)
        ):
            raise ConfigError(f"REDIS_PROTOCOL must be 2 or 3, got {self.protocol!r}")
        check_read_from(
            self.read_from, self.client_az, names=("REDIS_READ_FROM", "REDIS_CLIENT_AZ")
        )
        if self.local_cache and self.read_from != "primary":
            raise ConfigError(
                LOCAL_CACHE_AND_REPLICAS.format(
                    setting="REDIS_LOCAL_CACHE", reads="REDIS_READ_FROM"
                )
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE must be set together")
        try:
            self.connection_settings()
        except ValueError as exc:
            text = str(exc)
            variable = (
                "REDIS_URL"
                if isinstance(exc, _URLOptionError)
                else "REDIS_READ_FROM"
                if "read_from" in text
                else "REDIS_CLIENT_NAME"
                if "client_name" in text
                else "REDIS_DB"
                if "REDIS_DB" in text
                else "REDIS_URL"
            )
            raise ConfigError(f"{variable}: {exc}") from None

    def connection_settings(self) -> Topology:
        """The client-level settings this config describes: one server, a
        cluster's seed nodes, or Sentinel's view of a master."""
        tls = None
        if self.tls_ca_file or self.tls_cert_file:
            tls = TLSOptions(
                ca_file=self.tls_ca_file, cert_file=self.tls_cert_file, key_file=self.tls_key_file
            )
        settings = parse_topology(
            self.url,
            db=self.db,
            connect_timeout=self.connect_timeout,
            client_name=self.client_name,
            # The local cache's invalidations arrive as RESP3 push frames.
            protocol=3 if self.local_cache else self.protocol,
            tls=tls,
            max_blocking_connections=self.max_blocking_connections,
            read_from=self.read_from,
            client_az=self.client_az,
        )
        # None means "no timeout" here, so it cannot go through the
        # None-means-unset overrides above.
        if isinstance(settings, ConnectionSettings):
            return attrs.evolve(settings, command_timeout=self.command_timeout)
        return attrs.evolve(
            settings, node=attrs.evolve(settings.node, command_timeout=self.command_timeout)
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisConfig:
        """Read the ``REDIS_*`` variables (``os.environ`` by default).

        ``REDIS_URL`` is required; the rest are optional, and an empty value
        counts as unset. ``REDIS_DB`` wins over a database in the URL.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value is not None and value.strip(_ASCII_SPACE) != "" else None

        url = get("REDIS_URL")
        if url is None:
            raise ConfigError("REDIS_URL is required, e.g. redis://localhost:6379")
        fields: dict[str, object] = {"url": url.strip(_ASCII_SPACE)}
        if (db := get("REDIS_DB")) is not None:
            fields["db"] = _integer("REDIS_DB", db, minimum=0)
        if (prefix := env.get("REDIS_KEY_PREFIX")) is not None:
            fields["key_prefix"] = prefix
        if (connect := get("REDIS_CONNECT_TIMEOUT")) is not None:
            fields["connect_timeout"] = _number("REDIS_CONNECT_TIMEOUT", connect)
        if (command := get("REDIS_COMMAND_TIMEOUT")) is not None:
            fields["command_timeout"] = (
                None
                if command.strip(_ASCII_SPACE).lower() == "none"
                else _number("REDIS_COMMAND_TIMEOUT", command)
            )
        if (name := get("REDIS_CLIENT_NAME")) is not None:
            fields["client_name"] = None if name.lower() == "none" else name
        if (protocol := get("REDIS_PROTOCOL")) is not None:
            fields["protocol"] = _integer("REDIS_PROTOCOL", protocol, minimum=2)
        for variable, field in (
            ("REDIS_TLS_CA_FILE", "tls_ca_file"),
            ("REDIS_TLS_CERT_FILE", "tls_cert_file"),
            ("REDIS_TLS_KEY_FILE", "tls_key_file"),
        ):
            if (path := get(variable)) is not None:
                fields[field] = path
        if (limit := get("REDIS_MAX_BLOCKING_CONNECTIONS")) is not None:
            fields["max_blocking_connections"] = _integer(
                "REDIS_MAX_BLOCKING_CONNECTIONS", limit, minimum=1
            )
        for variable, field in (
            ("REDIS_LEGACY_RESPONSES", "legacy_responses"),
            ("REDIS_REMEMBER_LOCK", "remember_lock"),
            ("REDIS_EARLY_REFRESH", "early_refresh"),
            ("REDIS_LOCAL_CACHE", "local_cache"),
            ("REDIS_LOCAL_CACHE_STALE_IF_ERROR", "local_cache_stale_if_error"),
        ):
            if (flag := get(variable)) is not None:
                fields[field] = _boolean(variable, flag)
        for variable, field in (
            ("REDIS_LOCK_LEASE", "lock_lease_seconds"),
            ("REDIS_LOCK_WAIT", "lock_wait_seconds"),
            ("REDIS_EARLY_REFRESH_BETA", "early_refresh_beta"),
            ("REDIS_BREAKER_COOLDOWN", "breaker_cooldown_seconds"),
            ("REDIS_LOCAL_CACHE_TTL", "local_cache_ttl"),
        ):
            if (number := get(variable)) is not None:
                fields[field] = _number(variable, number)
        if (jitter := get("REDIS_TTL_JITTER")) is not None:
            value = ascii_decimal(jitter.strip(_ASCII_SPACE))
            if value is None:
                raise ConfigError(_JITTER_RULE + f", got {jitter!r}")
            fields["ttl_jitter"] = value
        if (read_from := get("REDIS_READ_FROM")) is not None:
            fields["read_from"] = read_from.strip(_ASCII_SPACE).lower()
        if (zone := get("REDIS_CLIENT_AZ")) is not None:
            fields["client_az"] = zone.strip(_ASCII_SPACE)
        if (policy := get("REDIS_FAILURE_POLICY")) is not None:
            fields["failure_policy"] = policy.strip(_ASCII_SPACE).lower()
        if (threshold := get("REDIS_BREAKER_THRESHOLD")) is not None:
            fields["breaker_threshold"] = _integer("REDIS_BREAKER_THRESHOLD", threshold, minimum=1)
        for variable, field in (
            ("REDIS_LOCAL_CACHE_MAX_ENTRIES", "local_cache_max_entries"),
            ("REDIS_LOCAL_CACHE_MAX_BYTES", "local_cache_max_bytes"),
        ):
            if (bound := get(variable)) is not None:
                fields[field] = _integer(variable, bound, minimum=1)
        return cls(**fields)  # type: ignore[arg-type]


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _boolean(variable: str, text: str) -> bool:
    lowered = text.strip(_ASCII_SPACE).lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{variable} must be true or false, got {text!r}")


def _integer(variable: str, text: str, *, minimum: int) -> int:
    value = ascii_integer(text.strip(_ASCII_SPACE))
    if value is None or value < minimum:
        raise ConfigError(
            f"{variable} must be an integer >= {minimum} in ASCII digits, got {text!r}"
        )
    return value


_JITTER_RULE = "REDIS_TTL_JITTER must be a fraction in [0, 1) such as 0.1"


def _rule(variable: str) -> str:
    minimum, maximum = _LIMITS[variable]
    unit = "a number" if variable == "REDIS_EARLY_REFRESH_BETA" else "a number of seconds"
    return f"{variable} must be {unit} from {minimum:g} to {maximum:g}"


def _number(variable: str, text: str) -> float:
    """A variable's value: a plain ASCII decimal within its limits."""
    value = ascii_decimal(text.strip(_ASCII_SPACE))
    if value is None:
        raise ConfigError(f"{_rule(variable)}, written as a plain decimal, got {text!r}")
    _check_number(variable, value)
    return value


def _check_number(variable: str, value: object) -> None:
    if not in_range(value, *_LIMITS[variable]):
        raise ConfigError(f"{_rule(variable)}, got {value!r}")
