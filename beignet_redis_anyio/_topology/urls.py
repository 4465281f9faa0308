"""Cluster and Sentinel URLs: many servers behind one address.

``redis+cluster://h1:7000,h2:7001`` names *seed* nodes of a Redis Cluster;
the cluster itself says which node owns which slots. ``redis+sentinel://
s1:26379,s2:26379/mymaster[/db]`` names the sentinels that know which server
is currently the master called ``mymaster``. Both have a ``rediss+…`` TLS
form. Credentials in the URL are for the data nodes (the cluster's nodes, the
master); sentinels are asked without them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote

import attrs

from .._exceptions import ConfigError
from .._net.settings import (
    DEFAULT_PORT,
    ConnectionSettings,
    TLSOptions,
    check_url_options,
    given_overrides,
    parse_address,
    parse_db,
    parse_protocol,
    parse_redis_url,
    split_credentials,
)
from .replicas import ReadFrom, check_read_from

__all__ = ["ClusterSettings", "SentinelSettings", "Topology", "parse_topology"]

DEFAULT_SENTINEL_PORT = 26379


@attrs.frozen
class ClusterSettings:
    """Seed nodes, and the settings every node connection uses (host/port aside)."""

    seeds: tuple[tuple[str, int], ...]
    node: ConnectionSettings
    #: Where read-only commands go (see ``replicas.py``), and the client's
    #: zone for ``"az_affinity"``.
    read_from: ReadFrom = "primary"
    client_az: str | None = None

    @property
    def address(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.seeds)

    def for_node(self, host: str, port: int) -> ConnectionSettings:
        return attrs.evolve(self.node, host=host, port=port)

    def for_replica(self, host: str, port: int) -> ConnectionSettings:
        # READONLY: a replica redirects reads (MOVED) on a connection that
        # did not say it accepts them.
        return attrs.evolve(self.node, host=host, port=port, readonly=True)

    def redacted_url(self) -> str:
        scheme = "rediss+cluster" if self.node.tls is not None else "redis+cluster"
        return f"{scheme}://{_userinfo(self.node)}{self.address}"


@attrs.frozen
class SentinelSettings:
    """Where the sentinels are, the master's name, and how to talk to the master."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    node: ConnectionSettings
    read_from: ReadFrom = "primary"
    client_az: str | None = None

    @property
    def address(self) -> str:
        return f"{self.service_name} via " + ",".join(f"{h}:{p}" for h, p in self.sentinels)

    def for_sentinel(self, host: str, port: int) -> ConnectionSettings:
        # Sentinels take no AUTH/SELECT of the data nodes; TLS and timeouts carry over.
        # They speak RESP2 whatever the data nodes speak: we only ask them
        # where the master is, and RESP2's replies are the ones we parse.
        return attrs.evolve(
            self.node,
            host=host,
            port=port,
            username=None,
            password=None,
            db=0,
            role_check=False,
            protocol=2,
        )

    def for_master(self, host: str, port: int) -> ConnectionSettings:
        return attrs.evolve(self.node, host=host, port=port, role_check=True)

    def for_replica(self, host: str, port: int) -> ConnectionSettings:
        # ROLE on connect: a replica named by the sentinels may have been
        # promoted since, and reads must not land on the master unasked.
        return attrs.evolve(self.node, host=host, port=port, role_check=True, expected_role="slave")

    def redacted_url(self) -> str:
        scheme = "rediss+sentinel" if self.node.tls is not None else "redis+sentinel"
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"{scheme}://{_userinfo(self.node)}{hosts}/{self.service_name}/{self.node.db}"


Topology = ConnectionSettings | ClusterSettings | SentinelSettings


def _userinfo(settings: ConnectionSettings) -> str:
    if not settings.username and settings.password is None:
        return ""
    password = ":***" if settings.password is not None else ""
    return f"{settings.username or ''}{password}@"


def _hosts(text: str, default_port: int, scheme: str) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"an empty host in the {scheme}:// host list")
        hosts.append(parse_address(item, default_port))
    return tuple(hosts)


def parse_topology(url: str, **overrides: Any) -> Topology:
    """Parse any URL this library accepts.

    ``redis://``, ``rediss://`` and ``unix://`` give :class:`ConnectionSettings`
    (see :func:`parse_redis_url`); ``redis+cluster://`` and
    ``redis+sentinel://`` (and their ``rediss+`` forms) give the settings for
    those topologies. ``read_from=`` and ``client_az=`` say where read-only
    commands go (see ``replicas.py``); one server has no replica to read
    from, so for it ``read_from`` must be ``"primary"``. Raises
    ``ValueError`` naming the problem, never showing the password.
    """
    if not isinstance(url, str):
        raise ValueError("a Redis URL must be a string")
    client_az = overrides.pop("client_az", None)
    read_from = overrides.pop("read_from", None)
    read_from = check_read_from("primary" if read_from is None else read_from, client_az)
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in (
        "redis+cluster",
        "rediss+cluster",
        "redis+sentinel",
        "rediss+sentinel",
    ):
        if read_from != "primary":
            raise ConfigError(
                f"read_from={read_from!r} needs a redis+cluster:// or redis+sentinel:// URL: "
                "a single server has no replica to read from"
            )
        return parse_redis_url(url, **overrides)
    base, _, kind = scheme.partition("+")
    _, username, password, rest = split_credentials(url)
    host_list, _, path = rest.partition("/")
    host_list, _, query = host_list.partition("?")
    path, _, path_query = path.partition("?")
    protocol = _query_protocol(query or path_query)
    node_fields: dict[str, Any] = {
        "scheme": base,
        "host": "localhost",
        "port": DEFAULT_PORT,
        "username": username,
        "password": password,
    }
    if protocol is not None:
        node_fields["protocol"] = protocol
    if base == "rediss":
        node_fields["tls"] = overrides.pop("tls", None) or TLSOptions()
    elif overrides.get("tls") is not None:
        raise ValueError(f"TLS options need a rediss+{kind}:// URL")
    if kind == "cluster":
        seeds = _hosts(host_list, DEFAULT_PORT, scheme)
        if path.strip("/"):
            raise ValueError("a Redis Cluster has only database 0: remove the path from the URL")
        if overrides.get("db"):
            raise ValueError("a Redis Cluster has only database 0; REDIS_DB must be 0 or unset")
        node_fields.update({k: v for k, v in given_overrides(overrides).items() if k != "db"})
        return ClusterSettings(
            seeds=seeds,
            node=ConnectionSettings(**node_fields),
            read_from=read_from,
            client_az=client_az,
        )
    sentinels = _hosts(host_list, DEFAULT_SENTINEL_PORT, scheme)
    parts = [part for part in path.split("/") if part]
    if not parts:
        raise ValueError(
            f"a {scheme}:// URL needs the master's name: {scheme}://host:26379/mymaster"
        )
    if len(parts) > 2:
        raise ValueError(f"expected {scheme}://hosts/<master name>[/<db>], got extra path parts")
    service = unquote(parts[0])
    if len(parts) == 2:
        node_fields["db"] = parse_db(parts[1])
    node_fields.update(given_overrides(overrides))
    return SentinelSettings(
        sentinels=sentinels,
        service_name=service,
        node=ConnectionSettings(**node_fields),
        read_from=read_from,
        client_az=client_az,
    )


def _query_protocol(query: str) -> int | None:
    """``protocol=`` from a cluster or Sentinel URL's query, if given: the
    only option such a URL's query carries (its database, if any, is in its
    path)."""
    options = parse_qs(query)
    check_url_options(options, ("protocol",))
    return parse_protocol(options["protocol"][-1]) if "protocol" in options else None
