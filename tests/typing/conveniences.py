"""Checked by mypy (strict; see ``[tool.mypy] files`` in pyproject), never run:
the views and the decorator keep the types users write."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from typing_extensions import assert_type

from beignet_redis_anyio import (
    CachedFunction,
    CacheSlot,
    JsonValue,
    Namespace,
    RedisCachePort,
    TypedCache,
)


class Profile:
    pass


class ProfileCodec:
    def dumps(self, obj: Profile) -> str:
        return ""

    def loads(self, data: str) -> Profile:
        return Profile()


async def views(cache: RedisCachePort) -> None:
    assert_type(cache.json, TypedCache[JsonValue])
    assert_type(await cache.json.get("k"), JsonValue)
    assert_type(await cache.json.get("k", default=0), JsonValue | int)
    profiles = cache.with_codec(ProfileCodec())
    assert_type(profiles, TypedCache[Profile])
    assert_type(await profiles.get("k"), Profile | None)

    async def load() -> Profile:
        return Profile()

    assert_type(await profiles.remember("k", load, ttl_seconds=1), Profile)
    ns = cache.namespace("users")
    assert_type(ns, Namespace)
    assert_type(await ns.get("k"), str | None)
    assert_type(await ns.invalidate(), bool)
    assert_type(await profiles.get_many(["k"]), dict[str, Profile | None])
    assert_type(await profiles.get_many(["k"], default=0), dict[str, Profile | int])

    async def load_many(keys: list[str]) -> dict[str, Profile]:
        return {}

    assert_type(await profiles.remember_many(["k"], load_many), dict[str, Profile])
    assert_type(await ns.get_many(["k"]), dict[str, str | None])
    await profiles.set_many({"k": "not a profile"})  # type: ignore[dict-item]


async def slot_decorator() -> None:
    slot = CacheSlot()

    @slot.cached(key="user:{user_id}", tags=("users",))
    async def profile(user_id: int) -> dict[str, str]:
        return {}

    assert_type(await profile(1), dict[str, str])
    assert_type(await slot.invalidate_tag("users"), bool)
    assert_type(slot.namespace("users"), Namespace)
    await profile("1")  # type: ignore[arg-type]


async def decorator(cache: RedisCachePort) -> None:
    @cache.cached(key="user:{user_id}", ttl_seconds=300)
    async def profile(user_id: int, lang: str = "en") -> dict[str, str]:
        return {}

    # The parameters' names and defaults survive (strict's unused-ignore
    # check makes each "type: ignore" below a claim that mypy flags the line).
    same: Callable[[int, str], Coroutine[Any, Any, dict[str, str]]] = profile
    typed: CachedFunction[[int, str], dict[str, str]] = profile
    call: Coroutine[Any, Any, dict[str, str]] = profile(1)
    call.close()
    assert_type(await profile(1, lang="fr"), dict[str, str])
    assert_type(profile.key(1), str)
    assert_type(await profile.invalidate(user_id=1), bool)
    await profile("1")  # type: ignore[arg-type]
    await profile(1, "en", 3)  # type: ignore[call-arg]
    await profile.invalidate(uid=1)  # type: ignore[call-arg]
    profile.key(1, 2)  # type: ignore[arg-type]
    del same, typed
