"""Per-key single-flight with no task group to own it: the first caller hosts it.

``SingleFlight`` (``single_flight.py``) runs each computation in a task of
the provider's task group. Something with no lifecycle of its own — the
in-memory test double, made by a plain ``MemoryCachePort()`` — has no task
group to give it, and structured concurrency allows no detached task. So
here the caller that starts a computation hosts it: it opens a task group of
its own, the computation runs in a child task there, inside a shielded
scope, and every caller — that first one included — waits for it alike.

What holds exactly as in ``SingleFlight``:

* concurrent callers for one key share one computation and its result or
  exception (any ``BaseException`` the computation raises goes to its
  waiters as itself, and never escapes the host's task group);
* cancelling a caller never cancels the computation while someone else
  still waits for it;
* when the last waiting caller is gone, the computation is cancelled and
  nothing half-done is kept;
* per-key state is dropped when a run ends;
* a computation that waits for its own key gets a ``RuntimeError``.

The one difference, and why: the host cannot *leave* before the computation
it hosts ends — a task group waits for its children, and a running
coroutine cannot move to another task. So when the first caller is
cancelled while others still wait, it stops waiting at once but returns
(raising its cancellation, which is delayed, never lost) only when the
computation ends. The others are unaffected. ``RedisCachePort`` has no such
delay: its computations live in the provider's task group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from .._cache.remember.single_flight import FlightTable, _Flight

__all__ = ["CallerFlights"]

T = TypeVar("T")


class CallerFlights(FlightTable[T]):
    """At most one computation per key at a time, hosted by its first caller."""

    async def run(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        """Join the run for ``key``, or start and host one with ``compute``."""
        self.check_reentry(key)
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
            # Shielded: the host's cancellation must not reach the computation
            # while others wait for it; ``_wait`` cancels it when nobody does.
            flight.scope.shield = True
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._fly, key, flight, compute, name=f"remember {key!r}")
                await self._wait(key, flight)
        else:
            await self._wait(key, flight)
        # Raised here, outside the host's task group, so it arrives as itself.
        if flight.error is not None:
            raise flight.error
        return flight.result  # type: ignore[return-value]

    async def _wait(self, key: str, flight: _Flight[T]) -> None:
        flight.waiters += 1
        try:
            await flight.done.wait()
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.done.is_set():
                # The last caller left: nobody wants this result any more.
                flight.scope.cancel()
                self._forget(key, flight)

    async def _fly(self, key: str, flight: _Flight[T], compute: Callable[[], Awaitable[T]]) -> None:
        """Run ``compute`` for the flight's waiters; never fail the host.

        Whatever ``compute`` raises is the computation's failure and goes to
        the waiters. No cancellation from outside reaches it (the scope is
        shielded); the one that can — the flight's own scope, cancelled when
        the last waiter left — the scope absorbs, and nobody is told.
        """
        self._mark_computing(key)
        try:
            with flight.scope:
                flight.result = await compute()
        except BaseException as exc:
            flight.error = exc
        finally:
            flight.done.set()
            self._forget(key, flight)
