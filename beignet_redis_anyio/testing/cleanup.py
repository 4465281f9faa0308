"""Delete every key a test wrote under its key prefix, on each server node.

The pytest plugin's ``cache`` fixture gives each test a key prefix of its
own; against a real, long-lived Redis those keys would otherwise pile up
(a value without a TTL never leaves). This finds them with ``SCAN MATCH``
— never ``KEYS``, which blocks the server — on every primary of a cluster,
since each holds only its own slots, and deletes them in batches.

Two patterns cover what the port writes for a key ``{prefix}k``: the key
itself and sidecars of keys with a hash tag start with the prefix; the
lease's and early refresh's sidecars of a key without one wrap it in a hash
tag (``{{prefix}k}:beignet:lock``, see ``_cache/keys.py``), so they start
with ``{`` and the prefix.
"""

from __future__ import annotations

from .._client.client import RedisClient
from .._net.task_group import background_task_group
from .._topology.urls import ClusterSettings

__all__ = ["delete_prefixed", "scan_patterns"]

#: Keys per SCAN step and per DEL.
_BATCH = 500


def scan_patterns(prefix: str) -> list[str]:
    """The ``SCAN MATCH`` patterns for ``prefix``'s keys and their sidecars."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    return [escaped + "*", "{" + escaped + "*"]


async def delete_prefixed(client: RedisClient, prefix: str) -> int:
    """Delete every key under ``prefix`` (and their sidecars); how many went.

    An empty prefix is refused: it would match the whole database.
    """
    if not prefix:
        raise ValueError("refusing to delete by an empty prefix: it matches every key")
    settings = client.settings
    if not isinstance(settings, ClusterSettings):
        found = await _scan(client, prefix)
    else:
        await client.ping()  # the topology is read before the first command
        router = client._cluster  # the plugin is part of the package: it may look inside
        assert router is not None
        found = []
        async with background_task_group() as task_group:
            for address in router.primaries:
                node = RedisClient(settings.for_node(*address), task_group=task_group)
                try:
                    found += await _scan(node, prefix)
                finally:
                    await node.aclose()
    deleted = 0
    for start in range(0, len(found), _BATCH):
        # Through the given client: on a cluster it sends each key to its slot.
        deleted += await client.delete(*found[start : start + _BATCH])
    return deleted


async def _scan(node: RedisClient, prefix: str) -> list[str | bytes]:
    return [
        key
        for pattern in scan_patterns(prefix)
        async for key in node.scan_iter(match=pattern, count=_BATCH)
    ]
