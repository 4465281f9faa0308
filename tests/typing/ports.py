"""Checked by mypy (strict; ``nox -s typecheck``), never run: both ports
satisfy ``CachePort`` as users type against it, and a fake that lacks part of
it does not. Each ``type: ignore`` below is an assertion — strict mypy flags
an unused one — so a protocol that stopped catching a gap fails the check."""

from __future__ import annotations

from beignet_redis_anyio import CachePort, RedisCachePort, RedisClient
from beignet_redis_anyio.testing import MemoryCachePort


def redis_is_a_port(port: RedisCachePort) -> CachePort:
    return port


def memory_is_a_port(port: MemoryCachePort) -> CachePort:
    return port


async def what_users_write(cache: CachePort) -> str:
    client: RedisClient = cache.client
    await client.incr("visits")

    async def load() -> str:
        return "value"

    return await cache.remember("k", load, ttl_seconds=60, lock=True, early_refresh=False)


class _OldFake:
    """The five operations as the protocol had them: no ``client``, and a
    ``remember`` without ``lock=``/``early_refresh=``."""

    async def get(self, key: str) -> str | None:
        return None

    async def set(self, key: str, value: str, *, ttl_seconds: float | None = None) -> None:
        return None

    async def delete(self, key: str) -> bool:
        return False

    async def has(self, key: str) -> bool:
        return False

    async def remember(self, key: str, factory: object, *, ttl_seconds: float | None = None) -> str:
        return ""


def an_old_fake_is_not_a_port(fake: _OldFake) -> CachePort:
    return fake  # type: ignore[return-value]
