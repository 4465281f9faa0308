"""The local cache: hot keys served from process memory, kept right by the
server's invalidations.

The rule it keeps (``docs/local-cache.md`` states it too): after a write by anyone
is acknowledged, a reader that completes one round trip on its connection
never again returns the old value. How:

* The shared connection sends ``CLIENT TRACKING ON`` in its handshake (RESP3),
  so the server remembers every key we read on it and pushes an
  ``invalidate`` frame when one changes. The push is written to our socket
  while the writer's command runs — before the writer's reply, so before the
  reply to anything we send after that. The multiplexer parses in order and
  hands pushes to :meth:`LocalCache.on_push` synchronously: by the time a
  reply that follows an invalidation reaches its caller, the entry is gone.
* A read can race an invalidation of its own key: the reply (the old value)
  may be parsed just before the push, and the caller resumes after it. So a
  read takes a ticket when it is issued (:meth:`begin`) and stores only if no
  invalidation of its key — and no flush — arrived in between
  (:meth:`finish`). Only keys being read are remembered for that, so the
  bookkeeping is bounded by the reads in flight.
* Any doubt flushes: the connection lost or reopened (invalidations sent to a
  dead connection are never seen), a ``null`` invalidation (FLUSHDB,
  FLUSHALL), the provider's exit. A flush also spoils every read in flight.
* The port's own writes (``set``, ``delete``, the batches) drop the entry
  before they are sent and again once answered: the server sends a writer's
  own invalidation after its reply, and read-your-writes in one process
  must not wait for it.

On a cluster, each node's shared connection tracks what is read through it,
and an entry is kept only while the node it was read from owns its slot
(``_topology/cluster.py``, :class:`SlotTracker`): a slot that changes owner,
and the slots of a node whose connection is lost or reopened, are forgotten,
and every read in flight is spoiled. A missing key is not cached as missing
there: if its slot moves, the new owner never heard we read it, and the old
one never sees the write — a key that exists is deleted from the old owner
by the migration, which tells us.

With ``stale_if_error`` (and the ``bypass`` failure policy), what a lost
connection puts in doubt is set aside rather than dropped: never served as a
hit, only by :meth:`stale` while Redis cannot be reached, until the entry
would have expired. A new connection drops it for good — from then on Redis
answers — and so does an invalidation of its key.

Entries live at most ``ttl`` seconds, and never past the key's own expiry
(its ``PTTL``, counted from when the read was issued). Memory is bounded by
entries and bytes, least recently used out first.

A page — the same keys asked of ``get_many`` again, all held — is answered
by one lookup instead of one per key (:meth:`LocalCache.page`). Pages are
valid only while no entry at all has been dropped or replaced: every drop,
invalidation, eviction and flush clears them all, so a page answers exactly
what its keys' lookups would, and a write-heavy cache simply keeps none.
Their bytes count against ``max_bytes``.

Everything here is synchronous and runs on the event loop's thread: no
locks, no ``await``, nothing to cancel half-way.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from typing import Any, Final, NamedTuple

from redis.crc import key_slot

from .._client.local_stats import LocalStats

__all__ = ["ABSENT", "LocalCache", "LocalStats"]

#: What :meth:`LocalCache.lookup` returns when it holds nothing for a key
#: (``None`` is a value: the key is known to be missing).
ABSENT: Final = object()

#: What an entry costs beyond its key and value (the entry object, its
#: OrderedDict node): counted, so that many tiny entries respect max_bytes.
ENTRY_OVERHEAD = 120

_now = time.monotonic

#: Pages kept (:meth:`LocalCache.page`), most recent first out last; a batch
#: of more keys than :data:`PAGE_KEYS` is never kept as one.
PAGES = 16
PAGE_KEYS = 1000


#: What an entry read without the early-refresh metadata holds as its meta.
NO_META: Final = object()


class _Entry:
    __slots__ = ("expires", "key_expires", "meta", "size", "slot", "value")

    def __init__(
        self,
        value: str | None,
        expires: float,
        size: int,
        slot: int,
        meta: Any = NO_META,
        key_expires: float = 0.0,
    ) -> None:
        self.value = value
        self.expires = expires
        self.size = size
        self.slot = slot  # its cluster slot; 0 on one server
        #: For remember(early_refresh=True): the sidecar's metadata as read
        #: with the value (None: none stored), or NO_META if it was not read;
        #: and when the key itself expires (monotonic), for its remaining TTL.
        self.meta = meta
        self.key_expires = key_expires


class _Page(NamedTuple):
    answer: dict[str, Any]
    expires: float  # its soonest entry's
    size: int


class Ticket(NamedTuple):
    """What a read remembers from when it was issued."""

    sequence: int  # invalidations seen so far
    flushes: int
    issued: float  # monotonic seconds: the key's PTTL counts from here


class LocalCache:
    """Entries by full key (the key prefix included, as the server names
    them). Given to the client as its shared connection's tracker — on a
    cluster (``cluster=True``), as every node's."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        ttl: float,
        cluster: bool = False,
        stale_if_error: bool = False,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.cluster = cluster
        self.stale_if_error = stale_if_error
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        #: Entries a lost connection put in doubt, kept for :meth:`stale`
        #: (``stale_if_error``); counted in the bounds, evicted first.
        self._doubtful: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        #: Reads in flight, per key; and for those keys only, the sequence
        #: number of their latest invalidation.
        self._reading: dict[str, int] = {}
        self._invalidated: dict[str, int] = {}
        self._sequence = 0
        #: Every flush, counted or not: a read issued before one never stores.
        self._generation = 0
        #: By (prefix, keys as given): a page, or None for keys seen once
        #: (a page is made the second time, so batches that never repeat cost
        #: no more than a lookup).
        self._pages: OrderedDict[tuple[str, tuple[str, ...]], _Page | None] = OrderedDict()
        self._page_bytes = 0
        self.page_hits = 0  # not in LocalStats: how often a batch was one lookup
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self.flushes = 0
        self.evictions = 0
        self.stale_hits = 0

    def stats(self) -> LocalStats:
        return LocalStats(
            hits=self.hits,
            misses=self.misses,
            entries=len(self._entries),
            bytes=self._bytes,
            invalidations=self.invalidations,
            flushes=self.flushes,
            evictions=self.evictions,
            stale_hits=self.stale_hits,
        )

    # -- reads --------------------------------------------------------------

    def lookup(self, key: str) -> Any:
        """The value held for ``key`` (``None``: known missing), or :data:`ABSENT`."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry.expires > _now():
                self._entries.move_to_end(key)
                self.hits += 1
                return entry.value
            self._drop(key, entry)
        self.misses += 1
        return ABSENT

    def held_many(self, prefix: str, keys: list[str]) -> dict[str, Any]:
        """What is held of ``keys`` (``prefix`` before each; ``None``: known
        missing), by key as given: :meth:`lookup` for a batch, in one pass
        with one clock read, since a hot page is what it is for. Expired
        entries are left for the read that replaces them."""
        entries = self._entries
        get, touch = entries.get, entries.move_to_end
        now = _now()
        held: dict[str, Any] = {}
        for key in keys:
            full = prefix + key
            entry = get(full)
            if entry is not None and entry.expires > now:
                touch(full)
                held[key] = entry.value
        self.hits += len(held)
        self.misses += len(keys) - len(held)
        return held

    def page(self, prefix: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """The answer of :meth:`held_many` for ``keys`` if it was kept as a
        page and is still valid (a new dict each time), else None."""
        if not self._pages:
            return None
        page = self._pages.get((prefix, keys))
        if page is None:
            return None
        if page.expires <= _now():
            self._clear_pages()
            return None
        self.hits += len(page.answer)
        self.page_hits += 1
        return page.answer.copy()

    def keep_page(self, prefix: str, keys: tuple[str, ...], answer: dict[str, Any]) -> None:
        """:meth:`held_many` just answered all of ``keys``: keep its answer as
        a page if these keys came before (see ``_pages``)."""
        if len(keys) > PAGE_KEYS:
            return
        pages = self._pages
        name = (prefix, keys)
        if name not in pages:
            pages[name] = None
            if len(pages) > PAGES:
                self._drop_page(pages.popitem(last=False)[1])
            return
        entries = self._entries
        expires = min(entries[prefix + key].expires for key in answer)
        size = sys.getsizeof(keys) + sys.getsizeof(answer) + ENTRY_OVERHEAD
        if self._bytes + size > self.max_bytes:
            return
        pages[name] = _Page(answer.copy(), expires, size)
        pages.move_to_end(name)
        self._bytes += size
        self._page_bytes += size

    def _drop_page(self, page: _Page | None) -> None:
        if page is not None:
            self._bytes -= page.size
            self._page_bytes -= page.size

    def _clear_pages(self) -> None:
        """An entry was dropped or replaced: no page is sure any more."""
        self._pages.clear()
        self._bytes -= self._page_bytes
        self._page_bytes = 0

    def lookup_refreshable(self, key: str) -> Any:
        """What early refresh decides on, for an entry read with its
        metadata: ``(value, meta, remaining_ms)``, the key's remaining TTL
        counted from the read's own ``PTTL``; or :data:`ABSENT` — also for an
        entry read without it (by ``get``), so that the caller reads it all
        from Redis once, and the entry it keeps then has it."""
        entry = self._entries.get(key)
        if entry is None or entry.meta is NO_META:
            self.misses += 1
            return ABSENT
        now = _now()
        if entry.expires <= now:
            self._drop(key, entry)
            self.misses += 1
            return ABSENT
        self._entries.move_to_end(key)
        self.hits += 1
        remaining_ms = int((entry.key_expires - now) * 1000) if entry.key_expires else -1
        return entry.value, entry.meta, remaining_ms

    def begin(self, key: str) -> Ticket:
        """A read of ``key`` is about to be sent: call before it is queued."""
        self._reading[key] = self._reading.get(key, 0) + 1
        return Ticket(self._sequence, self._generation, _now())

    def finish(
        self,
        key: str,
        ticket: Ticket,
        answered: bool,
        value: str | None,
        pttl_ms: Any,
        meta: Any = NO_META,
    ) -> bool:
        """The read ``ticket`` was taken for has ended — answered (``value``
        and the key's ``PTTL``; ``meta``, the early-refresh metadata read in
        the same write, if it was) or not. Store the answer only if nothing
        put it in doubt meanwhile. Must follow every :meth:`begin` exactly once.

        True when nothing did (answered, no invalidation of ``key`` nor a
        flush since :meth:`begin`, and a ``PTTL`` that agrees), stored or
        not: the answer is then as new as any write acknowledged before the
        latest reply this connection parsed, so a caller that came after the
        read was sent may be handed it too (``remember``'s shared read) —
        before anything else is awaited. False: only the reader that sent it
        may use it."""
        left = self._reading[key] - 1
        invalidated = self._invalidated.get(key, -1)
        if left:
            self._reading[key] = left
        else:
            del self._reading[key]
            self._invalidated.pop(key, None)
        if not answered or ticket.flushes != self._generation or invalidated > ticket.sequence:
            return False
        if not isinstance(pttl_ms, int) or (pttl_ms == -2 and value is not None):
            return False  # gone or changed between GET and PTTL: its invalidation is on the way
        if value is None and self.cluster:
            return True  # not kept: see the module's docstring
        # PTTL is whole milliseconds, rounded down or up: take one off.
        lifetime = self.ttl if pttl_ms < 0 else min(self.ttl, (pttl_ms - 1) / 1000)
        if lifetime > 0:
            key_expires = 0.0 if pttl_ms < 0 else ticket.issued + pttl_ms / 1000
            self._store(key, value, ticket.issued + lifetime, meta, key_expires)
        return True

    def _store(
        self,
        key: str,
        value: str | None,
        expires: float,
        meta: Any = NO_META,
        key_expires: float = 0.0,
    ) -> None:
        size = sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_OVERHEAD
        if meta is not NO_META:
            size += sys.getsizeof(meta)
        if size > self.max_bytes:
            return
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
            if self._pages:
                self._clear_pages()
        slot = key_slot(key.encode("utf-8", "surrogateescape")) if self.cluster else 0
        entries[key] = _Entry(value, expires, size, slot, meta, key_expires)
        self._bytes += size
        doubtful = self._doubtful
        while len(entries) + len(doubtful) > self.max_entries or self._bytes > self.max_bytes:
            if self._pages:
                self._clear_pages()  # an eviction would spoil them anyway
                continue
            _, evicted = (doubtful or entries).popitem(last=False)
            self._bytes -= evicted.size
            self.evictions += 1

    def stale(self, key: str) -> Any:
        """What was held for ``key``, even in doubt, unless expired — for a
        caller Redis cannot answer (``stale_if_error``); else :data:`ABSENT`."""
        entry = self._entries.get(key) or self._doubtful.get(key)
        if entry is None or entry.expires <= _now():
            return ABSENT
        self.stale_hits += 1
        return entry.value

    # -- what puts entries in doubt ----------------------------------------

    def invalidate(self, key: str) -> None:
        """``key`` changed (or may have): drop it and spoil reads in flight."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
            if self._pages:
                self._clear_pages()
        if self._doubtful:
            entry = self._doubtful.pop(key, None)
            if entry is not None:
                self._bytes -= entry.size
        if key in self._reading:
            self._sequence += 1
            self._invalidated[key] = self._sequence

    def flush(self, *, lost: bool = False) -> None:
        """Forget everything, and spoil every read in flight. ``lost``: the
        connection was, so with ``stale_if_error`` the entries are set aside
        for :meth:`stale` instead."""
        self._generation += 1
        if self._pages:
            self._clear_pages()
        if self._entries or self._reading:
            self.flushes += 1
        if lost and self.stale_if_error:
            for key, entry in self._entries.items():
                self._set_aside(key, entry)
        else:
            self._doubtful.clear()
            self._bytes = 0
        self._entries.clear()

    def forget_slots(self, slots: set[int], *, lost: bool = False) -> None:
        """A cluster's ``slots`` changed owner, or their node's connection is
        in doubt (``lost``: as :meth:`flush` says): drop their entries, and
        spoil every read in flight."""
        self._generation += 1
        if not slots:
            return
        entries, doubtful = self._entries, self._doubtful
        if doubtful and not lost:
            for key in [key for key, entry in doubtful.items() if entry.slot in slots]:
                self._bytes -= doubtful.pop(key).size
        doomed = [key for key, entry in entries.items() if entry.slot in slots]
        if doomed and self._pages:
            self._clear_pages()
        for key in doomed:
            entry = entries.pop(key)
            if lost and self.stale_if_error:
                self._set_aside(key, entry)
            else:
                self._bytes -= entry.size
        if doomed:
            self.flushes += 1

    # -- the shared connection's tracker (_net.multiplexer.Tracker) ---------

    def on_push(self, frame: list[Any]) -> None:
        """A push frame from the shared connection, in wire order."""
        if len(frame) < 2 or frame[0] not in ("invalidate", b"invalidate"):
            return
        keys = frame[1]
        if keys is None:  # FLUSHDB / FLUSHALL (or the server's table overflowed)
            self.flush()
            return
        for key in keys:
            if isinstance(key, bytes):
                key = key.decode("utf-8", "surrogateescape")
            self.invalidations += 1
            self.invalidate(key)

    def lost(self) -> None:
        """The shared connection was lost."""
        self.flush(lost=True)

    def reset(self) -> None:
        """A new shared connection opened."""
        self.flush()

    def _set_aside(self, key: str, entry: _Entry) -> None:
        """Keep ``entry`` (already counted in the bytes) for :meth:`stale` only."""
        older = self._doubtful.pop(key, None)
        if older is not None:
            self._bytes -= older.size
        self._doubtful[key] = entry

    def _drop(self, key: str, entry: _Entry) -> None:
        del self._entries[key]
        self._bytes -= entry.size
        if self._pages:
            self._clear_pages()
