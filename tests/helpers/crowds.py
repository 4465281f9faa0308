"""Many callers at once on one gated computation, for single-flight tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def crowd(
    n: int, call: Callable[[], Awaitable[T]], started: anyio.Event, release: anyio.Event
) -> list[T]:
    """Start ``n`` tasks running ``call()``; once the computation has
    ``started`` and every task is blocked (all joined it), ``release`` it.
    Returns what each caller got."""
    results: list[T] = []

    async def caller() -> None:
        results.append(await call())

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            for _ in range(n):
                tasks.start_soon(caller)
            await started.wait()
            await anyio.wait_all_tasks_blocked()
            release.set()
    return results
