"""Input and configuration: limits the server can honour, ASCII digits only,
and no password in any message, repr or chained exception."""

from __future__ import annotations

import itertools
import random
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote

import pytest

from beignet_redis_anyio import (
    ConfigError,
    ConnectionSettings,
    RedisCachePort,
    RedisConfig,
    open_redis_provider,
)
from beignet_redis_anyio._cache.inputs import MAX_TTL_SECONDS
from beignet_redis_anyio._cache.inputs import ttl_milliseconds as _ttl_milliseconds
from beignet_redis_anyio._cache.remember.keys import sidecar_key
from beignet_redis_anyio._net.settings import parse_redis_url
from beignet_redis_anyio._topology.urls import parse_topology
from helpers.targets import RedisServer

pytestmark = pytest.mark.anyio

# -- 10. TTLs the server can store, checked before any I/O ------------------

TOO_LONG = [1e300, 2**63, 10**30, 1e308, 10**400, MAX_TTL_SECONDS + 0.001, MAX_TTL_SECONDS + 1]

#: Every way a TTL reaches the server: SET, SET with the early-refresh
#: metadata, and the lease's store script (with and without metadata).
PATHS = ["set", "remember", "remember_lock", "remember_early_refresh", "remember_lock_refresh"]


class RecordingFactory:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return "computed"


def _operation(
    path: str, cache: RedisCachePort, factory: RecordingFactory, ttl: object
) -> Callable[[], Awaitable[object]]:
    ttl_seconds: Any = ttl
    if path == "set":
        return lambda: cache.set("k", "v", ttl_seconds=ttl_seconds)
    lock = path in ("remember_lock", "remember_lock_refresh")
    refresh = path in ("remember_early_refresh", "remember_lock_refresh")
    return lambda: cache.remember(
        "k", factory, ttl_seconds=ttl_seconds, lock=lock, early_refresh=refresh
    )


@asynccontextmanager
async def _port(server: RedisServer, key: str, **config: Any) -> AsyncIterator[RedisCachePort]:
    async with open_redis_provider(
        RedisConfig(url=server.url, key_prefix=f"{key}:", **config)
    ) as cache:
        yield cache


async def _commands_sent(cache: RedisCachePort) -> dict[str, int]:
    """Calls per command on the server so far, INFO itself aside."""
    stats = await cache.client.info("commandstats")
    counts = {name: fields["calls"] for name, fields in stats.items() if name != "cmdstat_info"}
    assert counts  # at least the provider's PING: the stats are really read
    return counts


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ttl", TOO_LONG, ids=repr)
async def test_a_ttl_too_long_to_store_is_refused_before_any_io(
    real_server: RedisServer, key: str, path: str, ttl: object
) -> None:
    factory = RecordingFactory()
    async with _port(real_server, key, ttl_jitter=0.5) as cache:
        before = await _commands_sent(cache)
        with pytest.raises(ValueError, match="ttl_seconds"):
            await _operation(path, cache, factory, ttl)()
        assert await _commands_sent(cache) == before  # nothing reached the server
        assert factory.calls == 0
        full_key = f"{key}:k"
        assert not await cache.client.exists(
            full_key, sidecar_key(full_key, "lock"), sidecar_key(full_key, "meta")
        )


@pytest.mark.parametrize("path", PATHS)
async def test_the_longest_ttl_is_stored_on_every_path(
    real_server: RedisServer, key: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_TTL_SECONDS, stretched by the largest jitter, through SET and the
    Lua store script alike (where the TTL becomes a double)."""
    jitter = 0.999
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the longest jitter
    factory = RecordingFactory()
    async with _port(real_server, key, ttl_jitter=jitter) as cache:
        await _operation(path, cache, factory, MAX_TTL_SECONDS)()
        full_key = f"{key}:k"
        longest = round(MAX_TTL_SECONDS * 1000 * (1 + jitter))
        stored_ms = await cache.client.pttl(full_key)
        expected = MAX_TTL_SECONDS * 1000 if path == "set" else longest
        assert expected - 60_000 < stored_ms <= expected
        if "refresh" in path:
            assert expected - 60_000 < await cache.client.pttl(sidecar_key(full_key, "meta"))
        assert not await cache.client.exists(sidecar_key(full_key, "lock"))


def test_fractional_ttls_keep_millisecond_precision_up_to_the_limit() -> None:
    assert _ttl_milliseconds(MAX_TTL_SECONDS) == 10**15
    assert _ttl_milliseconds(MAX_TTL_SECONDS - 0.001) == 10**15 - 1
    assert _ttl_milliseconds(12.345) == 12_345
    assert _ttl_milliseconds(0.0001) == 1


#: variable, field, the smallest and largest accepted values.
SECONDS_SETTINGS = [
    ("REDIS_CONNECT_TIMEOUT", "connect_timeout", 0.001, 86400),
    ("REDIS_COMMAND_TIMEOUT", "command_timeout", 0.001, 86400),
    ("REDIS_LOCK_LEASE", "lock_lease_seconds", 0.1, 86400),
    ("REDIS_LOCK_WAIT", "lock_wait_seconds", 0.001, 86400),
    ("REDIS_BREAKER_COOLDOWN", "breaker_cooldown_seconds", 0.001, 86400),
    ("REDIS_EARLY_REFRESH_BETA", "early_refresh_beta", 0.001, 1000),
]


@pytest.mark.parametrize(("variable", "field", "smallest", "largest"), SECONDS_SETTINGS)
def test_number_settings_accept_their_limits(
    variable: str, field: str, smallest: float, largest: float
) -> None:
    for value in (smallest, largest):
        from_env = RedisConfig.from_env({"REDIS_URL": "redis://h", variable: str(value)})
        assert getattr(from_env, field) == value
        assert getattr(RedisConfig(url="redis://h", **{field: value}), field) == value


@pytest.mark.parametrize(("variable", "field", "smallest", "largest"), SECONDS_SETTINGS)
def test_number_settings_outside_their_limits_name_the_variable(
    variable: str, field: str, smallest: float, largest: float
) -> None:
    for value in (1e-320, smallest / 2, largest * 2, 1e300, 10**400):
        with pytest.raises(ConfigError, match=variable):
            RedisConfig(url="redis://h", **{field: value})
        text = f"{value:f}" if isinstance(value, float) else str(value)
        with pytest.raises(ConfigError, match=variable):
            RedisConfig.from_env({"REDIS_URL": "redis://h", variable: text})


@pytest.mark.parametrize("field", ["connect_timeout", "command_timeout"])
@pytest.mark.parametrize("value", [1e-320, 0.0005, 86400.5, 1e300, 10**400])
def test_connection_settings_timeouts_have_limits(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ConnectionSettings(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=field):
        parse_redis_url("redis://h", **{field: value})


# -- 11. ASCII digits only -----------------------------------------------------

NOT_ASCII_INTEGERS = ["٣", "²", "３", "+3", "3_0", "-0", "3.0", "0x3", "3 3"]


@pytest.mark.parametrize("text", NOT_ASCII_INTEGERS)
@pytest.mark.parametrize(
    "variable", ["REDIS_DB", "REDIS_MAX_BLOCKING_CONNECTIONS", "REDIS_BREAKER_THRESHOLD"]
)
def test_integer_variables_take_ascii_digits_only(variable: str, text: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        RedisConfig.from_env({"REDIS_URL": "redis://h", variable: text})


@pytest.mark.parametrize("text", NOT_ASCII_INTEGERS)
@pytest.mark.parametrize(
    "template",
    [
        "redis://h/{}",
        "redis://h?db={}",
        "unix:///run/redis.sock?db={}",
        "redis+sentinel://s1:26379/mymaster/{}",
        "redis://h:{}",
        "rediss://h:{}/0",
        "redis+cluster://a:7000,b:{}",
        "redis+sentinel://s1:{}/mymaster",
        "redis+sentinel://[::1]:{}/mymaster",
    ],
)
def test_urls_take_ascii_digits_only(template: str, text: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        RedisConfig(url=template.format(text))
    with pytest.raises(ConfigError, match="REDIS_URL"):
        RedisConfig.from_env({"REDIS_URL": template.format(text)})


def test_ascii_digits_still_work_everywhere() -> None:
    settings = parse_topology("redis+sentinel://s1:26380,[::1]:26381/mymaster/07")
    assert settings.sentinels == (("s1", 26380), ("::1", 26381))  # type: ignore[union-attr]
    assert settings.node.db == 7  # type: ignore[union-attr]
    config = RedisConfig.from_env(
        {"REDIS_URL": "redis://h:6380/2", "REDIS_DB": " 3 ", "REDIS_BREAKER_THRESHOLD": "12"}
    )
    assert (config.db, config.breaker_threshold) == (3, 12)
    assert config.connection_settings().db == 3  # REDIS_DB still wins


NOT_PLAIN_DECIMALS = [
    "١",
    "１",
    "1_0",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e3",
    "-1",
    "0x10",
    "+1",
    "1.2.3",
]
NUMBER_VARIABLES = [variable for variable, *_ in SECONDS_SETTINGS]


@pytest.mark.parametrize("text", NOT_PLAIN_DECIMALS)
@pytest.mark.parametrize("variable", [*NUMBER_VARIABLES, "REDIS_TTL_JITTER"])
def test_number_variables_take_plain_ascii_decimals_only(variable: str, text: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        RedisConfig.from_env({"REDIS_URL": "redis://h", variable: text})


@pytest.mark.parametrize(("text", "value"), [("2", 2.0), ("0.5", 0.5), (".5", 0.5), (" 5. ", 5.0)])
def test_plain_decimals_are_read(text: str, value: float) -> None:
    config = RedisConfig.from_env({"REDIS_URL": "redis://h", "REDIS_LOCK_WAIT": text})
    assert config.lock_wait_seconds == value


# -- 12. No password anywhere ------------------------------------------------

#: Two halves no message may show, around each character that URL parsers
#: split on; raw and percent-encoded.
HEAD, TAIL = "Zq8Secret", "Wx7Tail"
PASSWORDS = [
    password
    for special in "@:/%#?"
    for password in (f"{HEAD}{special}{TAIL}", quote(f"{HEAD}{special}{TAIL}", safe=""))
]
HOSTS = [
    "good:6379",
    "cache／host:6379",  # FULLWIDTH SOLIDUS
    "host:６３７９",  # fullwidth digits
    "host:99999",
    "host:port",
    "host:",
    "[::1:6379",  # unclosed IPv6
    "[::1]x",
    "",
]
URL_SHAPES = [
    "redis://{userinfo}{host}/0",
    "rediss://{userinfo}{host}",
    "redis+cluster://{userinfo}{host},other:7001",
    "redis+sentinel://{userinfo}{host}/mymaster/0",
    "rediss+sentinel://{userinfo}{host}/mymaster",
]
UNIX_SHAPES = [
    "unix://{userinfo}/run/redis.sock",
    "unix://{userinfo}/run/redis.sock?db=٣",
    "unix://{userinfo}/run/redis.sock?db=x",
    "unix://{userinfo}",
]


def _urls() -> list[str]:
    urls = []
    for password, username in itertools.product(PASSWORDS, ["", "alice"]):
        userinfo = f"{username}:{password}@"
        urls += [
            shape.format(userinfo=userinfo, host=host) for shape in URL_SHAPES for host in HOSTS
        ]
        urls += [shape.format(userinfo=userinfo) for shape in UNIX_SHAPES]
    return urls


def _everything_said(exc: BaseException) -> str:
    """Every message, repr and traceback line of ``exc`` and everything
    chained to it (``__cause__`` and ``__context__``, suppressed or not)."""
    said: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        said += [str(current), repr(current), repr(current.args)]
        said += traceback.format_exception(type(current), current, current.__traceback__)
        pending += [current.__cause__, current.__context__]
    return "\n".join(said)


def _what_each_entry_point_says(url: str) -> str:
    said: list[str] = []
    attempts: list[Callable[[], object]] = [
        lambda: RedisConfig(url=url),
        lambda: RedisConfig.from_env({"REDIS_URL": url}),
        lambda: parse_topology(url),
    ]
    for attempt in attempts:
        try:
            result = attempt()
        except ValueError as exc:
            said.append(_everything_said(exc))
        else:
            said += [repr(result), str(result)]
            settings: Any = result
            if hasattr(settings, "redacted_url"):
                said.append(settings.redacted_url())
            if isinstance(result, RedisConfig):
                said.append(repr(result.connection_settings()))
    return "\n".join(said)


@pytest.mark.parametrize("url", _urls())
def test_no_password_in_any_message_repr_or_chained_exception(url: str) -> None:
    said = _what_each_entry_point_says(url)
    assert HEAD not in said
    assert TAIL not in said


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(
    "shape",
    [
        "redis://alice:{}@good:6379/0",
        "redis+cluster://alice:{}@good:6379",
        "redis+sentinel://alice:{}@good:26379/mymaster",
        "unix://alice:{}@/run/redis.sock",
    ],
)
def test_a_password_with_url_delimiters_is_read_whole(shape: str, password: str) -> None:
    """The credentials end at the last ``@``, so a raw ``@ : / # ?`` stays
    in the password instead of spilling into the host or path."""
    settings: Any = parse_topology(shape.format(password))
    node: ConnectionSettings = getattr(settings, "node", settings)
    # Raw ones decode to themselves ("%Wx" is no escape); encoded ones to the raw.
    assert (node.username, node.password) == ("alice", unquote(password))


@pytest.mark.parametrize(
    "variable", ["REDIS_COMMAND_TIMEOUT", "REDIS_DB", "REDIS_BREAKER_THRESHOLD"]
)
@pytest.mark.parametrize("space", ["\xa0", "\u2003", "\u3000"])
def test_only_ascii_white_space_around_a_value_is_ignored(variable: str, space: str) -> None:
    from beignet_redis_anyio import ConfigError, RedisConfig

    environ = {"REDIS_URL": "redis://localhost"}
    assert RedisConfig.from_env({**environ, variable: " 3\t\n"}) is not None
    with pytest.raises(ConfigError, match=variable):
        RedisConfig.from_env({**environ, variable: f"3{space}"})
