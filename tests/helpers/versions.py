"""The installed versions a test must follow, where a dependency's behaviour moved."""

from __future__ import annotations

import importlib.metadata


def redis_py_version() -> tuple[int, ...]:
    """The installed redis-py, as numbers (``(8, 2, 0)``)."""
    release = importlib.metadata.version("redis").split("+")[0]
    return tuple(int(part) for part in release.split(".")[:3] if part.isdigit())
