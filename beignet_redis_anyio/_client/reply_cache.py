"""The client's local cache: replies to read-only commands, from memory.

With ``local_cache=True`` a client keeps the replies of the commands the
command table marks ``cacheable`` (``_net/commands.py``: ``GET``, ``HGETALL``,
``SMEMBERS``, ``ZRANGE`` … — a pure function of their keys' contents), keyed
by the command and its arguments, and serves them again without a round trip
until one of their keys changes. The rule is the port's local cache's
(``_cache/local.py``), and kept the same way:

* The shared connection tracks what it reads (``CLIENT TRACKING ON``, RESP3):
  the server pushes an invalidation for a key when it changes, in order with
  the replies. An invalidation of a key drops every reply that read it — a
  change to ``user:1`` drops its ``HGET``, ``HGETALL`` and ``EXISTS`` alike.
* A read takes a ticket before it is queued (:meth:`ReplyCache.begin`) and
  keeps its reply only if no invalidation of any of its keys, and no flush,
  arrived before the reply did (:meth:`ReplyCache.finish`).
* Any doubt flushes: a connection lost or reopened, a ``null`` invalidation
  (``FLUSHDB``), the client's close. On a cluster only the slots in doubt go
  (:meth:`ReplyCache.forget_slots`), and a command is kept only when its keys
  share one slot.
* A reply never outlives its keys: the read asks each key's ``PTTL`` in the
  same write, and the entry expires with the first of them (and after
  ``ttl`` at most).

What is kept is the reply as the server sent it; each hit hands out a copy
(a caller may change the list or dict it gets), shaped by the client's
callbacks as a reply from the server would be.

Everything here is synchronous and runs on the event loop's thread.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final, NamedTuple

from redis.crc import key_slot

from .._net.commands import DROPS_ALL, Command
from .._net.numbers import in_range
from .local_stats import LocalStats

__all__ = [
    "ABSENT",
    "LOCAL_CACHE_MAX_BYTES",
    "LOCAL_CACHE_MAX_ENTRIES",
    "LOCAL_CACHE_TTL",
    "ReplyCache",
    "TrackerPair",
    "cache_config_entries",
    "check_bounds",
    "copy_reply",
    "key_name",
]

#: A bare client's bounds, unless told otherwise: the provider's defaults.
LOCAL_CACHE_MAX_ENTRIES = 10_000
LOCAL_CACHE_MAX_BYTES = 64 * 1024 * 1024
LOCAL_CACHE_TTL = 60.0

#: What :meth:`ReplyCache.lookup` returns when it holds nothing.
ABSENT: Final = object()

#: What an entry costs beyond its reply (the entry, its OrderedDict node, its
#: place in each key's index).
ENTRY_OVERHEAD = 200

_now = time.monotonic
_IMMUTABLE = (str, bytes, int, float, bool, type(None))


def copy_reply(reply: Any) -> Any:
    """``reply`` with every list, dict and set copied (their items are
    immutable once copied): what a hit hands out, so that no caller can
    change what the next one gets."""
    kind = type(reply)
    if kind in _IMMUTABLE:
        return reply
    if kind is list:
        return [item if type(item) in _IMMUTABLE else copy_reply(item) for item in reply]
    if kind is dict:
        return {key: copy_reply(value) for key, value in reply.items()}
    if kind is set:
        return set(reply)
    if kind is tuple:
        return tuple(copy_reply(item) for item in reply)
    return reply  # hiredis's other reply types (numbers, verbatim text) are immutable


def check_bounds(max_entries: object, max_bytes: object, ttl: object) -> None:
    """``ValueError`` unless the bounds are as the provider's knobs allow:
    whole numbers of entries and bytes ≥ 1, and 0.001 to 86400 seconds."""
    for name, bound in (
        ("local_cache_max_entries", max_entries),
        ("local_cache_max_bytes", max_bytes),
    ):
        if isinstance(bound, bool) or not (isinstance(bound, int) and bound >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {bound!r}")
    if not in_range(ttl, 0.001, 86400):
        raise ValueError(f"local_cache_ttl must be a number from 0.001 to 86400, got {ttl!r}")


def cache_config_entries(config: Any) -> int:
    """What redis-py's ``cache_config=CacheConfig(...)`` asks of us: its
    ``max_size`` entries. The rest must be its defaults, since ours are
    fixed: least recently used out first, the default tracking mode, and
    the command table's allow-list (not a ``cache_predicate``).
    ``ValueError`` names what differs."""
    from redis import cache as redis_cache
    from redis.cache import CacheConfig, EvictionPolicy

    if not isinstance(config, CacheConfig):
        raise ValueError(f"cache_config must be a redis.cache.CacheConfig, got {config!r}")
    if config.get_eviction_policy() is not EvictionPolicy.LRU:
        raise ValueError("cache_config: only the LRU eviction policy is offered")
    # Tracking modes and predicates came with redis-py 8.2; before it, a
    # CacheConfig has neither, and both are the defaults we offer.
    tracking_mode: Any = getattr(config, "get_tracking_mode", None)
    modes: Any = getattr(redis_cache, "TrackingMode", None)
    if tracking_mode is not None and tracking_mode() is not modes.PLAIN:
        raise ValueError("cache_config: only the default (plain) tracking mode is offered")
    cache_predicate: Any = getattr(config, "get_cache_predicate", None)
    if cache_predicate is not None and cache_predicate() is not None:
        raise ValueError(
            "cache_config: a cache_predicate is not offered; the command table decides "
            "which commands are cached"
        )
    if config.get_cache_class() is not CacheConfig.DEFAULT_CACHE_CLASS:  # type: ignore[no-untyped-call]
        raise ValueError("cache_config: a cache_class of your own is not offered")
    entries: int = config.get_max_size()
    return entries


def _size(reply: Any) -> int:
    """What ``reply`` costs in memory, as Python counts it, containers walked."""
    size = sys.getsizeof(reply)
    kind = type(reply)
    if kind is list or kind is tuple or kind is set:
        size += sum(_size(item) for item in reply)
    elif kind is dict:
        size += sum(_size(key) + _size(value) for key, value in reply.items())
    return size


def key_name(key: Any) -> str | None:
    """A key as the server's invalidations name it (``str``; bytes read with
    ``surrogateescape``, as a push frame's are); ``None`` for an argument a
    cache cannot match to an invalidation reliably (a number)."""
    if type(key) is str:
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8", "surrogateescape")
    return None


def _copier(reply: Any) -> Callable[[Any], Any] | None:
    """How to copy ``reply`` for each hit, decided once when it is kept:
    not at all (immutable), a flat container's own ``copy`` (its items are
    immutable), or :func:`copy_reply` all the way down."""
    kind = type(reply)
    if kind in _IMMUTABLE:
        return None
    if kind is list or kind is set:
        if all(type(item) in _IMMUTABLE for item in reply):
            return kind.copy
    elif kind is dict and all(type(value) in _IMMUTABLE for value in reply.values()):
        return dict.copy
    return copy_reply


class _Entry:
    __slots__ = ("copy", "expires", "keys", "reply", "size", "slot")

    def __init__(
        self, reply: Any, keys: tuple[str, ...], expires: float, size: int, slot: int
    ) -> None:
        self.reply = reply
        self.copy = _copier(reply)
        self.keys = keys
        self.expires = expires
        self.size = size
        self.slot = slot


class Ticket(NamedTuple):
    """What a read remembers from when it was issued."""

    sequence: int  # invalidations of keys being read, seen so far
    generation: int  # flushes so far
    issued: float  # monotonic: the keys' PTTLs count from here


class ReplyCache:
    """Replies by command and arguments (one client's: its decoding is fixed), indexed by the keys
    they read; bounded by entries and bytes, least recently used out first."""

    def __init__(self, *, max_entries: int, max_bytes: int, ttl: float, cluster: bool) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.cluster = cluster
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        #: Each key, and the entries that read it. (Read by the client too:
        #: a write to a key in neither of these two has nothing to drop.)
        self.by_key: dict[str, set[Hashable]] = {}
        self._bytes = 0
        #: Reads in flight, per key; for those keys only, the sequence number
        #: of their latest invalidation.
        self.reading: dict[str, int] = {}
        self._invalidated: dict[str, int] = {}
        self._sequence = 0
        self._generation = 0
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self.flushes = 0
        self.evictions = 0

    def stats(self) -> LocalStats:
        return LocalStats(
            hits=self.hits,
            misses=self.misses,
            entries=len(self._entries),
            bytes=self._bytes,
            invalidations=self.invalidations,
            flushes=self.flushes,
            evictions=self.evictions,
        )

    # -- reads --------------------------------------------------------------

    def held(self, entry_key: Hashable) -> Any:
        """A copy of the reply held for ``entry_key``, or :data:`ABSENT`
        (counted as a miss: the caller reads it). ``TypeError`` for a key
        that cannot be hashed."""
        entry = self._entries.get(entry_key)
        if entry is not None:
            if entry.expires > _now():
                self._entries.move_to_end(entry_key)
                self.hits += 1
                reply = entry.reply
                copy = entry.copy
                return reply if copy is None else copy(reply)
            self._drop(entry_key)
        self.misses += 1
        return ABSENT

    def begin(self, keys: Sequence[str]) -> Ticket:
        """A read of ``keys`` is about to be queued."""
        reading = self.reading
        for key in keys:
            reading[key] = reading.get(key, 0) + 1
        return Ticket(self._sequence, self._generation, _now())

    def finish(
        self,
        entry_key: Hashable,
        keys: Sequence[str],
        ticket: Ticket,
        answered: bool,
        reply: Any,
        pttls: Sequence[Any],
    ) -> None:
        """The read ``ticket`` was taken for has ended — answered (``reply``
        and each key's ``PTTL``) or not. Keep the reply only if nothing put
        it in doubt meanwhile. Must follow every :meth:`begin` exactly once."""
        spoiled = False
        reading, invalidated = self.reading, self._invalidated
        for key in keys:
            if invalidated.get(key, -1) > ticket.sequence:
                spoiled = True
            left = reading[key] - 1
            if left:
                reading[key] = left
            else:
                del reading[key]
                invalidated.pop(key, None)
        if spoiled or not answered or ticket.generation != self._generation:
            return
        lifetime = self.ttl
        for pttl in pttls:
            if not isinstance(pttl, int):
                return
            if pttl >= 0:  # -1: no expiry; -2: no such key (a write would tell us)
                lifetime = min(lifetime, (pttl - 1) / 1000)
        if lifetime <= 0:
            return
        self._store(entry_key, tuple(keys), reply, ticket.issued + lifetime)

    def _store(
        self, entry_key: Hashable, keys: tuple[str, ...], reply: Any, expires: float
    ) -> None:
        size = _size(entry_key) + _size(reply) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        if entry_key in self._entries:
            self._drop(entry_key)
        slot = key_slot(keys[0].encode("utf-8", "surrogateescape")) if self.cluster else 0
        self._entries[entry_key] = _Entry(reply, keys, expires, size, slot)
        self._bytes += size
        for key in keys:
            self.by_key.setdefault(key, set()).add(entry_key)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1

    def _drop(self, entry_key: Hashable) -> None:
        entry = self._entries.pop(entry_key)
        self._bytes -= entry.size
        for key in entry.keys:
            readers = self.by_key.get(key)
            if readers is not None:
                readers.discard(entry_key)
                if not readers:
                    del self.by_key[key]

    # -- what puts replies in doubt ------------------------------------------

    def invalidate(self, key: str | None) -> None:
        """``key`` changed (or may have): drop every reply that read it, and
        spoil the reads of it in flight. (``None``, a key no reply can have
        read — a number — changes nothing.)"""
        for entry_key in self.by_key.pop(key, ()):  # type: ignore[arg-type]
            if entry_key in self._entries:
                self._drop(entry_key)
        if key in self.reading:
            self._sequence += 1
            self._invalidated[key] = self._sequence

    def written(self, command: Command, args: Sequence[Any]) -> None:
        """``command`` (not cacheable) was answered: drop what it may have
        written — its keys' replies, or all of them for a command that
        empties the database (its ``null`` invalidation comes after its
        reply, so a process that sends one empties the cache itself at once)."""
        if command.drops == DROPS_ALL:
            self.flush()
            return
        for key in command.keys(args):
            name = key if type(key) is str else key_name(key)
            if name in self.by_key or name in self.reading:
                self.invalidate(name)

    def flush(self) -> None:
        """Forget everything, and spoil every read in flight."""
        self._generation += 1
        if self._entries or self.reading:
            self.flushes += 1
        self._entries.clear()
        self.by_key.clear()
        self._bytes = 0

    def forget_slots(self, slots: set[int], *, lost: bool = False) -> None:
        """A cluster's ``slots`` changed owner or are in doubt: drop their
        replies, and spoil every read in flight."""
        del lost  # nothing is kept in doubt here (no stale_if_error)
        self._generation += 1
        doomed = [key for key, entry in self._entries.items() if entry.slot in slots]
        for entry_key in doomed:
            self._drop(entry_key)
        if doomed:
            self.flushes += 1

    # -- the shared connection's tracker (_net.multiplexer.Tracker) ---------

    def on_push(self, frame: list[Any]) -> None:
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
        self.flush()

    def reset(self) -> None:
        self.flush()


class TrackerPair:
    """Two trackers on one connection, told the same, in the same order:
    the client's reply cache and a provider's own (the port's entries)."""

    __slots__ = ("first", "second")

    def __init__(self, first: Any, second: Any) -> None:
        self.first = first
        self.second = second

    def on_push(self, frame: list[Any]) -> None:
        self.first.on_push(frame)
        self.second.on_push(frame)

    def lost(self) -> None:
        self.first.lost()
        self.second.lost()

    def reset(self) -> None:
        self.first.reset()
        self.second.reset()

    def forget_slots(self, slots: set[int], *, lost: bool = False) -> None:
        self.first.forget_slots(slots, lost=lost)
        self.second.forget_slots(slots, lost=lost)
