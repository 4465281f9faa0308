"""The provider: the cache port's whole life in one ``async with``.

Holds ``open_redis_provider`` and ``RedisProvider`` (``provider``): config,
the task group that owns every background task, a verified connect, and a
close that is shielded, bounded and always runs.

May import: every layer below.
"""
