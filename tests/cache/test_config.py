"""RedisConfig: every variable, every mistake named, no password shown."""

from __future__ import annotations

import pytest

from beignet_redis_anyio import ConfigError, RedisConfig


def test_minimal_environment() -> None:
    config = RedisConfig.from_env({"REDIS_URL": "redis://localhost:6379"})
    assert config.url == "redis://localhost:6379"
    assert config.db is None and config.key_prefix == ""
    assert config.connection_settings().db == 0


def test_every_variable() -> None:
    config = RedisConfig.from_env(
        {
            "REDIS_URL": "rediss://cache:6380/2",
            "REDIS_DB": "5",
            "REDIS_KEY_PREFIX": "app:",
            "REDIS_CONNECT_TIMEOUT": "1.5",
            "REDIS_COMMAND_TIMEOUT": "0.25",
            "REDIS_CLIENT_NAME": "orders-api",
            "REDIS_TLS_CA_FILE": "/etc/ca.pem",
            "REDIS_TLS_CERT_FILE": "/etc/client.pem",
            "REDIS_TLS_KEY_FILE": "/etc/client.key",
            "REDIS_MAX_BLOCKING_CONNECTIONS": "3",
        }
    )
    settings = config.connection_settings()
    assert settings.db == 5  # REDIS_DB wins over the /2 in the URL
    assert config.key_prefix == "app:"
    assert (settings.connect_timeout, settings.command_timeout) == (1.5, 0.25)
    assert settings.client_name == "orders-api"
    assert settings.tls is not None
    assert (settings.tls.ca_file, settings.tls.cert_file, settings.tls.key_file) == (
        "/etc/ca.pem",
        "/etc/client.pem",
        "/etc/client.key",
    )
    assert settings.max_blocking_connections == 3


def test_db_in_url_used_when_redis_db_is_unset_or_empty() -> None:
    config = RedisConfig.from_env({"REDIS_URL": "redis://localhost/4", "REDIS_DB": ""})
    assert config.connection_settings().db == 4


def test_command_timeout_none_disables_it() -> None:
    config = RedisConfig.from_env({"REDIS_URL": "redis://h", "REDIS_COMMAND_TIMEOUT": "none"})
    assert config.connection_settings().command_timeout is None


def test_in_code() -> None:
    config = RedisConfig(url="redis://localhost:6379", db=1, key_prefix="svc:")
    assert config.connection_settings().db == 1


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "REDIS_URL is required"),
        ({"REDIS_URL": "   "}, "REDIS_URL is required"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL: unsupported URL scheme"),
        ({"REDIS_URL": "redis://h/db1"}, "REDIS_URL: the database"),
        ({"REDIS_URL": "redis://h", "REDIS_DB": "-1"}, "REDIS_DB must be an integer >= 0"),
        ({"REDIS_URL": "redis://h", "REDIS_DB": "two"}, "REDIS_DB must be an integer >= 0"),
        ({"REDIS_URL": "redis://h", "REDIS_CONNECT_TIMEOUT": "0"}, "REDIS_CONNECT_TIMEOUT"),
        ({"REDIS_URL": "redis://h", "REDIS_COMMAND_TIMEOUT": "soon"}, "REDIS_COMMAND_TIMEOUT"),
        ({"REDIS_URL": "redis://h", "REDIS_COMMAND_TIMEOUT": "inf"}, "REDIS_COMMAND_TIMEOUT"),
        ({"REDIS_URL": "redis://h", "REDIS_CLIENT_NAME": "a b"}, "REDIS_CLIENT_NAME"),
        ({"REDIS_URL": "redis://h", "REDIS_TLS_CERT_FILE": "/c.pem"}, "REDIS_TLS_KEY_FILE"),
        (
            {"REDIS_URL": "redis://h", "REDIS_MAX_BLOCKING_CONNECTIONS": "0"},
            "REDIS_MAX_BLOCKING_CONNECTIONS",
        ),
    ],
)
def test_mistakes_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RedisConfig.from_env(environ)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        RedisConfig(url="")


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://from-env:6390")
    monkeypatch.setenv("REDIS_DB", "3")
    settings = RedisConfig.from_env().connection_settings()
    assert (settings.host, settings.port, settings.db) == ("from-env", 6390, 3)


def test_repr_never_shows_the_password() -> None:
    config = RedisConfig(url="redis://alice:correct-horse@host:6379/0")
    assert "correct-horse" not in repr(config)
    assert "alice:***@host" in repr(config)


def test_bad_url_error_never_shows_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisConfig(url="redis://alice:correct-horse@host:port/0")
    assert "correct-horse" not in str(caught.value)


def test_stampede_and_resilience_variables() -> None:
    config = RedisConfig.from_env(
        {
            "REDIS_URL": "redis://h",
            "REDIS_REMEMBER_LOCK": "true",
            "REDIS_LOCK_LEASE": "2.5",
            "REDIS_LOCK_WAIT": "4",
            "REDIS_EARLY_REFRESH": "yes",
            "REDIS_EARLY_REFRESH_BETA": "2",
            "REDIS_TTL_JITTER": "0.1",
            "REDIS_FAILURE_POLICY": "Bypass",
            "REDIS_BREAKER_THRESHOLD": "3",
            "REDIS_BREAKER_COOLDOWN": "7.5",
        }
    )
    assert config.remember_lock and config.early_refresh
    assert (config.lock_lease_seconds, config.lock_wait_seconds) == (2.5, 4.0)
    assert (config.early_refresh_beta, config.ttl_jitter) == (2.0, 0.1)
    assert config.failure_policy == "bypass"
    assert (config.breaker_threshold, config.breaker_cooldown_seconds) == (3, 7.5)


def test_resilience_defaults() -> None:
    config = RedisConfig(url="redis://h")
    assert not config.remember_lock and not config.early_refresh
    assert config.failure_policy == "raise"
    assert (config.lock_lease_seconds, config.lock_wait_seconds) == (10.0, 10.0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_REMEMBER_LOCK", "maybe"),
        ("REDIS_LOCK_LEASE", "0"),
        ("REDIS_LOCK_WAIT", "-1"),
        ("REDIS_EARLY_REFRESH", "2"),
        ("REDIS_EARLY_REFRESH_BETA", "nan"),
        ("REDIS_TTL_JITTER", "1.5"),
        ("REDIS_TTL_JITTER", "lots"),
        ("REDIS_FAILURE_POLICY", "ignore"),
        ("REDIS_BREAKER_THRESHOLD", "0"),
        ("REDIS_BREAKER_COOLDOWN", "never"),
    ],
)
def test_resilience_mistakes_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        RedisConfig.from_env({"REDIS_URL": "redis://h", variable: value})


def test_legacy_responses_is_on_unless_turned_off() -> None:
    """redis-py's default; off, ``cache.client`` gives the unified shapes."""
    assert RedisConfig(url="redis://h").legacy_responses is True
    for text, expected in (("false", False), (" Off ", False), ("0", False), ("yes", True)):
        environ = {"REDIS_URL": "redis://h", "REDIS_LEGACY_RESPONSES": text}
        assert RedisConfig.from_env(environ).legacy_responses is expected
    assert RedisConfig.from_env({"REDIS_URL": "redis://h", "REDIS_LEGACY_RESPONSES": ""}) == (
        RedisConfig(url="redis://h")
    )


@pytest.mark.parametrize("value", ["unified", "2", "non"])
def test_a_bad_legacy_responses_names_its_variable(value: str) -> None:
    environ = {"REDIS_URL": "redis://h", "REDIS_LEGACY_RESPONSES": value}
    with pytest.raises(ConfigError, match=r"^REDIS_LEGACY_RESPONSES must be true or false"):
        RedisConfig.from_env(environ)
    with pytest.raises(ConfigError, match=r"^REDIS_LEGACY_RESPONSES must be true or false"):
        RedisConfig(url="redis://h", legacy_responses=value)  # type: ignore[arg-type]


_CLIENT_CERTIFICATE = {
    "REDIS_URL": "rediss://localhost",
    "REDIS_TLS_CERT_FILE": "/etc/ssl/c.pem",
    "REDIS_TLS_KEY_FILE": "/etc/ssl/k.pem",
}
#: A value for each variable other than its default, and the companions it
#: needs (a client certificate needs its key; stale-if-error, its policies).
_SAMPLES: dict[str, tuple[str, dict[str, str]]] = {
    "REDIS_DB": ("3", {}),
    "REDIS_KEY_PREFIX": ("app:", {}),
    "REDIS_CONNECT_TIMEOUT": ("2.5", {}),
    "REDIS_COMMAND_TIMEOUT": ("none", {}),
    "REDIS_CLIENT_NAME": ("worker-7", {}),
    "REDIS_PROTOCOL": ("3", {}),
    "REDIS_LEGACY_RESPONSES": ("false", {}),
    "REDIS_TLS_CA_FILE": ("/etc/ssl/ca.pem", {"REDIS_URL": "rediss://localhost"}),
    "REDIS_TLS_CERT_FILE": ("/etc/ssl/other.pem", _CLIENT_CERTIFICATE),
    "REDIS_TLS_KEY_FILE": ("/etc/ssl/other.pem", _CLIENT_CERTIFICATE),
    "REDIS_MAX_BLOCKING_CONNECTIONS": ("3", {}),
    "REDIS_REMEMBER_LOCK": ("true", {}),
    "REDIS_LOCK_LEASE": ("4", {}),
    "REDIS_LOCK_WAIT": ("4", {}),
    "REDIS_EARLY_REFRESH": ("yes", {}),
    "REDIS_EARLY_REFRESH_BETA": ("2", {}),
    "REDIS_TTL_JITTER": ("0.25", {}),
    "REDIS_FAILURE_POLICY": ("bypass", {}),
    "REDIS_BREAKER_THRESHOLD": ("9", {}),
    "REDIS_BREAKER_COOLDOWN": ("0.5", {}),
    "REDIS_LOCAL_CACHE": ("on", {}),
    "REDIS_LOCAL_CACHE_MAX_ENTRIES": ("7", {}),
    "REDIS_LOCAL_CACHE_MAX_BYTES": ("4096", {}),
    "REDIS_LOCAL_CACHE_TTL": ("9", {}),
    "REDIS_LOCAL_CACHE_STALE_IF_ERROR": (
        "1",
        {"REDIS_LOCAL_CACHE": "true", "REDIS_FAILURE_POLICY": "bypass"},
    ),
    "REDIS_READ_FROM": ("prefer_replica", {"REDIS_URL": "redis+cluster://localhost:7000"}),
    "REDIS_CLIENT_AZ": ("eu-1a", {}),
}


def test_every_field_names_its_variable_and_says_what_it_means() -> None:
    import attrs

    for field in attrs.fields(RedisConfig):
        assert field.metadata["variable"].startswith("REDIS_"), field.name
        assert len(field.metadata["meaning"]) > 20, field.name
    variables = [field.metadata["variable"] for field in attrs.fields(RedisConfig)]
    assert len(variables) == len(set(variables))
    assert set(variables) == {"REDIS_URL", *_SAMPLES}


@pytest.mark.parametrize("variable", sorted(_SAMPLES))
def test_from_env_reads_each_field_s_variable(variable: str) -> None:
    """The variable a field declares is the one from_env sets it from."""
    import attrs

    (field,) = [f for f in attrs.fields(RedisConfig) if f.metadata["variable"] == variable]
    value, companions = _SAMPLES[variable]
    base = RedisConfig.from_env({"REDIS_URL": "redis://localhost", **companions})
    changed = RedisConfig.from_env(
        {"REDIS_URL": "redis://localhost", **companions, variable: value}
    )
    assert getattr(changed, field.name) != getattr(base, field.name)
