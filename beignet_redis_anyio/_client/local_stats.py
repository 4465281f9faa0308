"""What a local cache reports of itself: ``cache.local_stats``, and a bare
client's ``client.local_stats`` (its cached replies)."""

from __future__ import annotations

import attrs

__all__ = ["LocalStats"]


@attrs.frozen
class LocalStats:
    """The local cache's counters, as ``cache.local_stats`` reports them.

    ``hits``/``misses``: lookups answered locally / sent to Redis;
    ``entries``/``bytes``: what it holds now (bytes as Python counts its
    strings, plus a fixed overhead per entry); ``invalidations``: keys the
    server said changed; ``flushes``: times it was emptied in doubt (a lost or
    new connection, a ``null`` invalidation, exit); ``evictions``: entries
    dropped to stay within the bounds; ``stale_hits``: entries served in doubt
    while Redis could not be reached (``stale_if_error``).
    """

    hits: int
    misses: int
    entries: int
    bytes: int
    invalidations: int
    flushes: int
    evictions: int
    stale_hits: int = 0
