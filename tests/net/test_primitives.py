"""The loop's own event and checkpoints, which the shared connection takes
once per link: they must behave as anyio's do, on every loop."""

from __future__ import annotations

import anyio
import pytest

from beignet_redis_anyio._net.primitives import loop_primitives

pytestmark = pytest.mark.anyio


async def test_on_trio_they_are_trios_own(anyio_backend_name: str) -> None:
    primitives = loop_primitives()
    if anyio_backend_name == "trio":
        import trio
        import trio.lowlevel

        assert primitives.new_event is trio.Event
        assert primitives.checkpoint_if_cancelled is trio.lowlevel.checkpoint_if_cancelled
    else:
        assert primitives.new_event is type(anyio.Event())


async def test_an_event_wakes_its_waiters_and_a_set_one_still_checkpoints() -> None:
    primitives = loop_primitives()
    event = primitives.new_event()
    woken: list[int] = []

    async def waiter(index: int) -> None:
        await event.wait()
        woken.append(index)

    async with anyio.create_task_group() as tasks:
        for index in range(3):
            tasks.start_soon(waiter, index)
        await anyio.wait_all_tasks_blocked()
        assert not event.is_set() and woken == []
        event.set()
    assert sorted(woken) == [0, 1, 2]
    with anyio.CancelScope() as scope:
        scope.cancel()
        await event.wait()  # set already, and still a checkpoint: cancelled here
        pytest.fail("a wait on a set event must still notice a cancelled scope")


async def test_a_cancelled_scope_stops_a_wait_and_the_pre_cancelled_check() -> None:
    primitives = loop_primitives()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await primitives.checkpoint_if_cancelled()
        pytest.fail("checkpoint_if_cancelled let a cancelled scope through")
    with anyio.move_on_after(0.01) as timed:
        await primitives.new_event().wait()
    assert timed.cancelled_caught
    # Not cancelled: no exception.
    await primitives.checkpoint_if_cancelled()


async def test_a_turn_lets_every_other_ready_task_run() -> None:
    primitives = loop_primitives()
    ran: list[int] = []
    async with anyio.create_task_group() as tasks:
        for index in range(3):
            tasks.start_soon(lambda i=index: _append(ran, i))  # type: ignore[misc]
        # trio shuffles the order within a batch: the others may run just
        # after us in the same one, so by the second turn they all have.
        await primitives.turn()
        await primitives.turn()
        assert sorted(ran) == [0, 1, 2]


async def _append(into: list[int], item: int) -> None:
    into.append(item)
