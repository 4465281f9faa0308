"""Keys the port keeps beside a cached value: its lock and its metadata.

They must live in the same Redis Cluster slot as the value, so that one Lua
script can touch all three. A slot is computed from the key's *hash tag* — the
text inside its first ``{…}`` — or the whole key when it has none. So:

* a key with a hash tag keeps it: ``{user:1}:profile`` → ``{user:1}:profile:lock``;
* a key without one is wrapped: ``user:1`` → ``{user:1}:lock``, whose tag is
  the whole original key.

Either way the value key itself is untouched: ``get`` still reads exactly
what ``set`` wrote, and ``cache.client`` sees the same key names.

One shape cannot be matched: a key holding a ``}`` but no valid tag (such as
``a{}b``) hashes as a whole, and no wrapping reproduces that. Its sidecars
land in another slot — harmless on a single server; on a cluster, give such
keys a hash tag.
"""

from __future__ import annotations

__all__ = ["has_hash_tag", "sidecar_key"]

SIDECAR_MARK = "beignet"


def has_hash_tag(key: str) -> bool:
    start = key.find("{")
    if start < 0:
        return False
    end = key.find("}", start + 1)
    return end > start + 1


def sidecar_key(key: str, role: str) -> str:
    """The key for ``role`` (``"lock"``, ``"meta"``) beside ``key``, same slot."""
    if has_hash_tag(key):
        return f"{key}:{SIDECAR_MARK}:{role}"
    return f"{{{key}}}:{SIDECAR_MARK}:{role}"
