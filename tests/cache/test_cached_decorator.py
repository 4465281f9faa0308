"""@cache.cached: keys from the call's arguments, values through the typed view."""

from __future__ import annotations

import inspect
from typing import Any

import anyio
import pytest

from beignet_redis_anyio import RedisCachePort
from helpers.crowds import crowd

pytestmark = pytest.mark.anyio


async def test_the_template_is_filled_from_bound_arguments_with_defaults(
    cache: RedisCachePort,
) -> None:
    calls: list[tuple[int, str]] = []

    @cache.cached(key="user:{user_id}:profile:{lang}", ttl_seconds=300)
    async def profile(user_id: int, lang: str = "en") -> dict[str, Any]:
        calls.append((user_id, lang))
        return {"id": user_id, "lang": lang}

    assert await profile(1) == {"id": 1, "lang": "en"}
    assert await profile(user_id=1) == {"id": 1, "lang": "en"}  # same key, a hit
    assert await profile(1, "fr") == {"id": 1, "lang": "fr"}
    assert calls == [(1, "en"), (1, "fr")]
    assert profile.key(1) == profile.key(user_id=1, lang="en") == "user:1:profile:en"
    assert await cache.json.get("user:1:profile:en") == {"id": 1, "lang": "en"}
    assert 0 < await cache.client.pttl(cache.key_prefix + "user:1:profile:en") <= 300_000


async def test_invalidate_deletes_the_calls_key(cache: RedisCachePort) -> None:
    calls = 0

    @cache.cached(key="n:{n}")
    async def double(n: int) -> int:
        nonlocal calls
        calls += 1
        return n * 2

    assert await double(2) == 4
    assert await double.invalidate(2)
    assert not await double.invalidate(2)
    assert await double(2) == 4
    assert calls == 2


async def test_a_key_callable_gets_the_functions_arguments(cache: RedisCachePort) -> None:
    @cache.cached(key=lambda user, *, full=False: f"u:{user['id']}:{int(full)}")
    async def show(user: dict[str, int], *, full: bool = False) -> str:
        return f"user {user['id']}"

    assert await show({"id": 7}, full=True) == "user 7"
    assert show.key({"id": 7}, full=True) == "u:7:1"
    assert await cache.json.get("u:7:1") == "user 7"


async def test_none_is_cached_by_the_decorator_too(cache: RedisCachePort) -> None:
    calls = 0

    @cache.cached(key="row:{row_id}", ttl_seconds=60, none_ttl_seconds=5)
    async def find(row_id: int) -> dict[str, int] | None:
        nonlocal calls
        calls += 1
        return None

    assert await find(1) is None
    assert await find(1) is None
    assert calls == 1
    assert 0 < await cache.client.pttl(cache.key_prefix + "row:1") <= 5_000


async def test_the_wrapper_is_a_coroutine_function_with_the_signature(
    cache: RedisCachePort,
) -> None:
    async def load(user_id: int, lang: str = "en") -> str:
        """Load a user."""
        return ""

    wrapped = cache.cached(key="u:{user_id}")(load)
    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__name__ == "load" and wrapped.__doc__ == "Load a user."
    assert inspect.signature(wrapped) == inspect.signature(load)


async def test_mistakes_fail_at_decoration_time(cache: RedisCachePort) -> None:
    async def load(user_id: int) -> str:
        return ""

    with pytest.raises(ValueError, match=r"\{uid\}.*not a parameter of"):
        cache.cached(key="u:{uid}")(load)
    with pytest.raises(ValueError, match="not a parameter"):
        cache.cached(key="u:{}")(load)

    def sync(user_id: int) -> str:
        return ""

    with pytest.raises(TypeError, match="async def"):
        cache.cached(key="u:{user_id}")(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be"):
        cache.cached(key=3)  # type: ignore[arg-type]


async def test_attribute_access_in_the_template(cache: RedisCachePort) -> None:
    class User:
        id = 5

    @cache.cached(key="user:{user.id:04d}")
    async def greet(user: User) -> str:
        return "hi"

    assert greet.key(User()) == "user:0005"


async def test_a_thousand_concurrent_calls_run_the_function_once(cache: RedisCachePort) -> None:
    calls = 0
    started = anyio.Event()
    release = anyio.Event()

    @cache.cached(key="slow:{n}", ttl_seconds=60, lock=True)
    async def slow(n: int) -> list[int]:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return [n]

    results = await crowd(1000, lambda: slow(3), started, release)
    assert calls == 1
    assert results == [[3]] * 1000


async def test_codec_is_used_for_the_values(cache: RedisCachePort) -> None:
    class Tagged:
        def dumps(self, obj: str) -> str:
            return "T" + obj

        def loads(self, data: str) -> str:
            return data[1:]

    @cache.cached(key="c", codec=Tagged())
    async def value() -> str:
        return "v"

    assert await value() == "v"
    assert await cache.get("c") == "Tv"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, 3), {}), ((1,), {"a": 2}), ((1,), {"c": 2}), ((), {"b": 1})],
)
async def test_a_call_the_function_would_refuse_is_refused_before_any_io(
    cache: RedisCachePort, args: tuple[int, ...], kwargs: dict[str, int]
) -> None:
    @cache.cached(key="{a}:{b}")
    async def add(a: int, b: int = 0) -> int:
        return a + b

    await cache.json.set("1:0", 99)  # a hit must not hide a bad call
    with pytest.raises(TypeError):
        await add(*args, **kwargs)
    with pytest.raises(TypeError):
        add.key(*args, **kwargs)


async def test_keyword_only_and_variadic_parameters_bind_too(cache: RedisCachePort) -> None:
    @cache.cached(key="{a}:{rest}:{flag}:{extra}")
    async def f(a: int, *rest: int, flag: bool = False, **extra: int) -> int:
        return a

    assert f.key(1, 2, 3, x=4) == "1:(2, 3):False:{'x': 4}"
    assert f.key(a=1) == "1:():False:{}"
    assert await f(5, flag=True) == 5


async def test_tags_invalidate_every_result_that_carries_them(cache: RedisCachePort) -> None:
    calls: list[str] = []

    @cache.cached(key="price:{sku}", tags=("prices", "shop:{shop}"))
    async def price(sku: str, shop: str) -> str:
        calls.append(sku)
        return f"{sku}@{shop}"

    @cache.cached(key="stock:{sku}", tags=("shop:{shop}",))
    async def stock(sku: str, shop: str) -> int:
        calls.append(f"stock {sku}")
        return 3

    assert await price("a", "north") == "a@north"
    assert await price("b", "south") == "b@south"
    assert await stock("a", "north") == 3
    assert await price("a", "north") == "a@north"  # a hit
    assert calls == ["a", "b", "stock a"]
    assert await cache.invalidate_tag("shop:north") is True
    await price("a", "north")  # north's results are gone...
    await stock("a", "north")
    await price("b", "south")  # ...south's are not
    assert calls == ["a", "b", "stock a", "a", "stock a"]
    await cache.invalidate_tag("prices")
    await price("b", "south")
    await stock("a", "north")
    assert calls[-1] == "b"  # every price went, stock stayed
    assert price.key("a", "north") == "price:a"
    await price("a", "north")
    assert await price.invalidate("a", "north") is True  # under the current generations
    assert await price.invalidate("a", "north") is False


async def test_fresh_tag_generations_cost_no_round_trip(
    cache: RedisCachePort, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    generation = cache._generation

    async def counted(key: str, increment: int) -> int | None:
        reads.append(key)
        return await generation(key, increment)

    monkeypatch.setattr(cache, "_generation", counted)

    @cache.cached(key="t:{n}", tags=("one", "two"))
    async def f(n: int) -> int:
        return n

    for n in range(20):
        await f(n % 3)
    assert reads == ["tag:one#generation", "tag:two#generation"]  # once per tag, then fresh
    await cache.invalidate_tag("one")
    assert reads[-1] == "tag:one#generation" and len(reads) == 3  # one INCRBY


async def test_bad_tags_fail_at_decoration(cache: RedisCachePort) -> None:
    with pytest.raises(TypeError, match="single str"):
        cache.cached(key="k", tags="prices")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty"):
        cache.cached(key="k", tags=("",))
    with pytest.raises(ValueError, match="may not contain '#'"):
        cache.cached(key="k", tags=("a#b",))
    with pytest.raises(ValueError, match="not a parameter"):

        @cache.cached(key="k:{n}", tags=("shop:{shop}",))
        async def f(n: int) -> int:
            return n

    with pytest.raises(TypeError, match="non-empty str"):
        await cache.invalidate_tag("")


async def test_tags_on_the_test_double_and_namespaces() -> None:
    from beignet_redis_anyio.testing import MemoryCachePort

    memory = MemoryCachePort()
    ns = memory.namespace("catalogue")
    calls = 0

    @ns.cached(key="p:{n}", tags=("prices",))
    async def p(n: int) -> int:
        nonlocal calls
        calls += 1
        return n

    await p(1)
    await p(1)
    await ns.invalidate_tag("prices")
    await p(1)
    assert calls == 2
    await memory.invalidate_tag("prices")  # another port's tag: not this namespace's
    await p(1)
    assert calls == 2
