"""A task group for background work whose body's exception comes out as itself.

A task group that ends because its body raised wraps that exception in an
``ExceptionGroup`` (trio always does; so does anyio on asyncio). For a
resource like a client or a provider, the body is the *user's* code, and
their ``KeyError`` must come out as a ``KeyError``. Our background tasks never
raise (they turn failures into errors for the callers they serve), so the
body's exception is the only one there can be: we hold it while the group
winds down, then re-raise it unwrapped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

__all__ = ["background_task_group"]


@asynccontextmanager
async def background_task_group() -> AsyncIterator[TaskGroup]:
    """Yield a task group; on exit cancel what still runs in it.

    Callers close their resources (shielded, bounded) before this exits;
    anything left running — reader tasks, computations nobody awaits — is
    cancelled rather than waited for.
    """
    failure: BaseException | None = None
    async with anyio.create_task_group() as task_group:
        try:
            yield task_group
        except BaseException as exc:  # re-raised below, outside the group
            failure = exc
        finally:
            task_group.cancel_scope.cancel()
    if failure is not None:
        try:
            raise failure
        finally:
            failure = None
