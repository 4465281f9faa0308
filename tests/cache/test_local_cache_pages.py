"""Pages: the same keys asked of ``get_many`` again, all held, are answered
by one lookup (``LocalCache.page``) — and only while no entry at all has been
dropped or replaced, so a page never answers what its keys' own lookups
would not."""

from __future__ import annotations

from typing import Any

import pytest

from beignet_redis_anyio import RedisConfig, open_redis_client, open_redis_provider
from beignet_redis_anyio._cache import local as local_module
from beignet_redis_anyio._cache.local import PAGE_KEYS, PAGES, LocalCache
from helpers.targets import RedisServer

KEYS = tuple(f"k{n}" for n in range(10))


def _held(max_entries: int = 100, max_bytes: int = 1 << 20) -> LocalCache:
    cache = LocalCache(max_entries=max_entries, max_bytes=max_bytes, ttl=60.0)
    for key in KEYS:
        cache._store("p:" + key, "v:" + key, local_module._now() + 60)
    return cache


def _answer(cache: LocalCache, keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    """What ``get_many`` does with the local cache: a page, else per key."""
    page = cache.page("p:", keys)
    if page is not None:
        return page
    held = cache.held_many("p:", list(dict.fromkeys(keys)))
    if len(held) == len(set(keys)):
        cache.keep_page("p:", keys, held)
    return held


def _paged(cache: LocalCache, keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    """Ask twice (the second time keeps the page), then answer from it."""
    _answer(cache, keys)
    _answer(cache, keys)
    page = cache.page("p:", keys)
    assert page is not None, "the keys came twice, all held: a page is kept"
    return page


EXPECTED = {key: "v:" + key for key in KEYS}


def test_a_page_answers_as_its_keys_would_and_counts_their_hits() -> None:
    cache = _held()
    assert _paged(cache) == EXPECTED
    hits = cache.hits
    assert cache.page("p:", KEYS) == EXPECTED
    assert cache.hits == hits + len(KEYS)


def test_a_page_is_not_kept_the_first_time() -> None:
    cache = _held()
    _answer(cache)
    assert cache.page("p:", KEYS) is None


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: c.invalidate("p:k3"), id="invalidation"),
        pytest.param(lambda c: c._store("p:k3", "new", local_module._now() + 60), id="replaced"),
        pytest.param(lambda c: c.flush(), id="flush"),
        pytest.param(lambda c: c.lost(), id="connection-lost"),
        pytest.param(lambda c: c.on_push(["invalidate", None]), id="flushall"),
        pytest.param(lambda c: c.on_push(["invalidate", [b"p:k3"]]), id="push"),
    ],
)
def test_any_change_to_an_entry_ends_every_page(change: Any) -> None:
    cache = _held()
    _paged(cache)
    _paged(cache, KEYS[:3])
    change(cache)
    assert cache.page("p:", KEYS) is None
    assert cache.page("p:", KEYS[:3]) is None


def test_an_eviction_ends_the_pages() -> None:
    cache = _held(max_entries=len(KEYS))
    _paged(cache)
    cache._store("p:other", "x", local_module._now() + 60)  # evicts k0
    assert cache.page("p:", KEYS) is None
    assert "k0" not in _answer(cache)


def test_a_page_ends_when_its_soonest_entry_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _held()
    now = local_module._now()
    cache._store("p:k5", "v:k5", now + 1)
    _paged(cache)
    monkeypatch.setattr(local_module, "_now", lambda: now + 2)
    assert cache.page("p:", KEYS) is None
    assert "k5" not in cache.held_many("p:", list(KEYS))


def test_an_answer_is_the_callers_own() -> None:
    cache = _held()
    _paged(cache).clear()
    answer = cache.page("p:", KEYS)
    assert answer == EXPECTED
    assert answer is not None
    answer["k0"] = "mine"
    assert cache.page("p:", KEYS) == EXPECTED


def test_pages_count_against_max_bytes_and_give_way_to_entries() -> None:
    entries_only = _held()._bytes
    cache = _held(max_bytes=entries_only + 200)  # no room for a page of 10
    _answer(cache)
    _answer(cache)
    assert cache.page("p:", KEYS) is None
    roomy = _held()
    _paged(roomy)
    assert roomy._bytes > entries_only
    assert roomy.stats().bytes == roomy._bytes
    roomy.flush()
    assert roomy._bytes == 0
    # A store that needs the bytes drops the pages before any entry.
    tight = _held(max_bytes=entries_only + 4000)
    _paged(tight)
    # Fits beside the entries, but not beside the entries and the page.
    room = tight.max_bytes - entries_only
    assert 0 < tight._page_bytes < room
    value = "x" * (room - len("p:big") - 250)
    tight._store("p:big", value, local_module._now() + 60)
    assert tight.page("p:", KEYS) is None
    assert tight._bytes <= tight.max_bytes
    assert len(tight._entries) == len(KEYS) + 1


def test_pages_are_few_and_small() -> None:
    cache = _held()
    for size in range(1, PAGES + 5):
        for _ in range(3):
            _answer(cache, KEYS[: size % len(KEYS) + 1] + KEYS[: size // len(KEYS)])
    assert len(cache._pages) <= PAGES
    many = tuple(f"m{n}" for n in range(PAGE_KEYS + 1))
    big = LocalCache(max_entries=PAGE_KEYS + 10, max_bytes=1 << 24, ttl=60.0)
    for key in many:
        big._store("p:" + key, "v", local_module._now() + 60)
    _answer(big, many)
    _answer(big, many)
    assert big.page("p:", many) is None


# -- through the port, on a real server -------------------------------------


async def _calls(client: Any, command: str) -> int:
    stats = await client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.mark.anyio
async def test_a_page_is_read_without_the_server_and_sees_another_clients_write(
    real_server: RedisServer, key: str
) -> None:
    keys = [f"{key}:{n}" for n in range(20)]
    config = RedisConfig(url=real_server.url, local_cache=True)
    async with open_redis_provider(config) as cache, open_redis_client(real_server.url) as other:
        for name in keys:
            await other.set(name, "old")
        for _ in range(3):  # from Redis, then held (the page is kept), then the page
            assert await cache.get_many(keys) == dict.fromkeys(keys, "old")
        gets, mgets = await _calls(other, "get"), await _calls(other, "mget")
        for _ in range(5):
            assert await cache.get_many(keys) == dict.fromkeys(keys, "old")
        assert (await _calls(other, "get"), await _calls(other, "mget")) == (gets, mgets)
        await other.set(keys[7], "new")
        assert await cache.client.ping()  # the reader's one round trip
        assert (await cache.get_many(keys))[keys[7]] == "new"
        # A str is still refused, though a page of its letters could match.
        letters = [f"{key}"[:1], f"{key}"[1:2]]
        for name in letters:
            await cache.set(name, "x")
        for _ in range(3):
            await cache.get_many(letters)
        with pytest.raises(TypeError):
            await cache.get_many("".join(letters))
        # An unhashable "key" gets the batch's own message, not the page's.
        with pytest.raises(TypeError, match="a cache key must be a str"):
            await cache.get_many([keys[0], ["not", "a", "key"]])  # type: ignore[list-item]
        await cache.delete_many([*keys, *letters])
