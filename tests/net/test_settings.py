"""URL parsing: every accepted form, every rejected one, and no password leaks."""

from __future__ import annotations

import pytest

from beignet_redis_anyio import ConnectionSettings, TLSOptions
from beignet_redis_anyio._net import settings as _settings
from beignet_redis_anyio._net.settings import parse_redis_url
from beignet_redis_anyio._topology.urls import parse_topology

SECRET = "hunter2-s3cret"


def test_plain_tcp_url_with_defaults() -> None:
    settings = parse_redis_url("redis://cache.internal")
    assert (settings.scheme, settings.host, settings.port, settings.db) == (
        "redis",
        "cache.internal",
        6379,
        0,
    )
    assert settings.password is None and settings.tls is None


def test_credentials_port_and_db_from_the_url() -> None:
    settings = parse_redis_url(f"redis://alice:{SECRET}@10.0.0.5:6380/3")
    assert settings.username == "alice"
    assert settings.password == SECRET
    assert (settings.host, settings.port, settings.db) == ("10.0.0.5", 6380, 3)


def test_password_without_username_and_percent_decoding() -> None:
    settings = parse_redis_url("redis://:p%40ss%3Aword@localhost")
    assert settings.username is None
    assert settings.password == "p@ss:word"


def test_rediss_turns_on_tls_with_system_trust_by_default() -> None:
    settings = parse_redis_url("rediss://secure.example:6390")
    assert settings.tls == TLSOptions()
    assert settings.tls.ca_file is None and settings.tls.check_hostname


def test_unix_socket_with_db_in_query() -> None:
    settings = parse_redis_url("unix:///run/redis/redis.sock?db=5")
    assert (settings.scheme, settings.path, settings.db) == ("unix", "/run/redis/redis.sock", 5)


def test_ipv6_host() -> None:
    settings = parse_redis_url("redis://[::1]:7000/1")
    assert (settings.host, settings.port, settings.db) == ("::1", 7000, 1)
    assert settings.address == "[::1]:7000"


def test_overrides_win_over_the_url() -> None:
    settings = parse_redis_url("redis://localhost/2", db=7, command_timeout=0.5)
    assert settings.db == 7
    assert settings.command_timeout == 0.5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "non-empty"),
        ("http://localhost", "unsupported URL scheme"),
        ("redis://", "no host"),
        ("redis://localhost/abc", "integer >= 0"),
        ("redis://localhost/-1", "integer >= 0"),
        ("redis://localhost:notaport", "malformed"),
        ("redis://localhost:70000", "(?i)port"),
        ("unix://", "socket path"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)


def test_tls_options_need_rediss() -> None:
    with pytest.raises(ValueError, match="rediss://"):
        parse_redis_url("redis://localhost", tls=TLSOptions())


@pytest.mark.parametrize(
    "field",
    [
        {"connect_timeout": 0},
        {"connect_timeout": -1},
        {"command_timeout": float("nan")},
        {"command_timeout": float("inf")},
        {"command_timeout": True},
        {"db": -1},
        {"db": True},
        {"max_blocking_connections": 0},
        {"client_name": "has space"},
        {"client_name": ""},
    ],
)
def test_invalid_settings_are_rejected(field: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ConnectionSettings(**field)  # type: ignore[arg-type]


def test_no_command_timeout_is_allowed() -> None:
    assert ConnectionSettings(command_timeout=None).command_timeout is None


def test_password_never_in_repr_or_redacted_url() -> None:
    settings = parse_redis_url(f"redis://alice:{SECRET}@localhost:6379/1")
    assert SECRET not in repr(settings)
    assert SECRET not in settings.redacted_url()
    assert settings.redacted_url() == "redis://alice:***@localhost:6379/1"


def test_password_never_in_parse_errors() -> None:
    with pytest.raises(ValueError) as caught:
        parse_redis_url(f"redis://alice:{SECRET}@localhost:port/0")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["redis://localhost", "redis+cluster://a:7000,b:7001", "redis+sentinel://s:26379/mymaster"],
)
def test_command_timeout_none_means_wait_forever_not_the_default(url: str) -> None:
    settings = parse_topology(url, command_timeout=None)
    node = settings if isinstance(settings, ConnectionSettings) else settings.node
    assert node.command_timeout is None
    # Other settings given as None keep the URL's value or the default.
    settings = parse_topology(url, db=None, protocol=None)
    node = settings if isinstance(settings, ConnectionSettings) else settings.node
    assert (node.db, node.protocol, node.command_timeout) == (0, _settings.DEFAULT_PROTOCOL, 5.0)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h/?read_from=prefer_replica",
        "redis://h/0?client_az=eu-1a&protocol=3",
        "unix:///run/redis.sock?db=1&local_cache=true",
        "redis+cluster://a:7000,b:7001/?read_from=prefer_replica",
        "rediss+sentinel://s1,s2/mymaster?client_az=eu-1a",
    ],
)
def test_a_setting_given_in_the_url_query_is_refused_by_name(url: str) -> None:
    """Ignored, ``?read_from=prefer_replica`` would read from the primary
    without a word: an option the URL does not carry is an error."""
    with pytest.raises(ValueError, match=r"(read_from|client_az|local_cache)= is not a URL option"):
        parse_topology(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@h/?hunter2=hunter2",
        "redis://h/?password=hunter2",
        "redis+cluster://:hunter2@a:7000/?token=hunter2",
        "redis+sentinel://s1/mymaster?hunter2=1",
    ],
)
def test_an_unknown_url_option_is_refused_without_being_shown(url: str) -> None:
    """A query may hold anything, a secret too: an option that is not one
    of the settings given in code is refused, and neither its name nor its
    value is shown."""
    with pytest.raises(ValueError, match="an option this client does not read") as caught:
        parse_topology(url)
    assert "hunter2" not in str(caught.value)


def test_the_url_options_it_reads_still_read() -> None:
    single = parse_topology("redis://h/?db=2&protocol=3")
    assert isinstance(single, ConnectionSettings)
    assert (single.db, single.protocol) == (2, 3)
    cluster = parse_topology("redis+cluster://a:7000/?protocol=3")
    assert cluster.node.protocol == 3  # type: ignore[union-attr]
    # A cluster or Sentinel URL's database, if any, is in its path: not ?db=.
    with pytest.raises(ValueError, match="reads only protocol="):
        parse_topology("redis+sentinel://s1/mymaster?db=1")
