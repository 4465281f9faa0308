"""Waiting for a state nobody signals: another provider's, or the server's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


async def until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Poll ``condition`` (sync or async) every 10 ms until it holds: for
    another provider's (another "process"'s) state or the server's, where
    there is no event to await. Bound it with ``fail_after``."""
    while True:
        met = condition()
        if met if isinstance(met, bool) else await met:
            return
        await anyio.sleep(0.01)
