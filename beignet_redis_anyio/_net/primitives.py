"""The running loop's own event and checkpoints, for the per-command path.

``anyio.Event()`` and ``anyio.lowlevel``'s checkpoints find the running
backend on every call, and on trio each wraps trio's own primitive in one
more Python call. Every command pays for an event and a checkpoint, so a
link takes them once, as it opens: trio's own on trio (what anyio would
call anyway, one frame closer), anyio's on asyncio — where anyio's event
*is* the primitive, and the rule is to call nothing of asyncio's directly.
Semantics are anyio's either way: a cancelled ``wait`` raises the loop's
cancellation exception, and an event already set still checkpoints.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.lowlevel

__all__ = ["LoopPrimitives", "Waiter", "loop_primitives"]


class Waiter(Protocol):
    """The part of an event the multiplexer uses: ``anyio.Event``'s and
    ``trio.Event``'s alike."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


class LoopPrimitives:
    """The running loop's event class and cancellation checkpoints."""

    __slots__ = ("checkpoint_if_cancelled", "new_event", "turn")

    def __init__(
        self,
        new_event: Callable[[], Waiter],
        checkpoint_if_cancelled: Callable[[], Awaitable[None]],
        turn: Callable[[], Awaitable[None]],
    ) -> None:
        self.new_event = new_event
        self.checkpoint_if_cancelled = checkpoint_if_cancelled
        #: One turn of the scheduler, as cheap as the loop has it: the other
        #: ready tasks run (on trio, which shuffles a batch, by the next turn).
        #: It may or may not be where a cancellation is delivered — callers
        #: must be right either way.
        self.turn = turn


def loop_primitives() -> LoopPrimitives:
    """What the running loop offers; call it from inside that loop."""
    if _on_trio():
        import trio
        import trio.lowlevel

        # trio's cheapest yield is the shielded one: its plain checkpoint
        # checks for a cancellation first, in one more call.
        return LoopPrimitives(
            trio.Event,
            trio.lowlevel.checkpoint_if_cancelled,
            trio.lowlevel.cancel_shielded_checkpoint,
        )
    # anyio.Event() returns the backend's class, fixed for the loop's life;
    # its backend class (public: anyio.abc.AsyncBackend) holds the checkpoints.
    # On asyncio the plain checkpoint is the cheap one (a shielded one makes
    # and enters a cancel scope each time).
    backend = anyio.lowlevel.current_token().backend_class
    return LoopPrimitives(
        type(anyio.Event()),
        backend.checkpoint_if_cancelled,
        backend.checkpoint,
    )


def _on_trio() -> bool:
    """Whether trio runs this task."""
    try:
        import trio.lowlevel
    except ImportError:
        return False  # trio is an optional extra: then it is asyncio
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
