"""Per-key single-flight: many callers, one computation, owned by nobody's caller.

The computation for a key runs in a task of the provider's task group — not
in whichever caller came first — so its fate is decoupled from any one
caller:

* every caller waiting on a run gets its result, or its exception — any
  ``BaseException`` the computation raises fails that run's waiters, never
  the task group it runs in (so never the provider or unrelated tasks);
* cancelling a caller (the first or any other) only stops that caller's
  waiting; the run goes on for the others;
* when the last waiting caller is gone the run is cancelled: no orphaned
  work, and nothing half-done is stored;
* the per-key state is dropped the moment a run ends, so memory does not grow
  with the number of distinct keys ever seen;
* a computation that waits for its own key would wait forever; it gets a
  ``RuntimeError`` instead (tracked with a context variable, which follows the
  computation into any task it starts).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

__all__ = ["FlightTable", "SingleFlight", "cancelled_from_outside"]

T = TypeVar("T")

#: The (flight group, key) pairs being computed in the current context.
_computing: ContextVar[frozenset[tuple[int, str]]] = ContextVar(
    "beignet_redis_anyio_computing", default=frozenset()
)


def cancelled_from_outside(exc: BaseException) -> bool:
    """True when ``exc`` is a cancellation sent by a scope enclosing this code.

    Call it where ``exc`` was caught, outside any scope that may have sent
    it. A cancellation exception while no enclosing scope is cancelled was
    not sent by us — on asyncio, a factory may raise a ``CancelledError``
    that belongs to somebody else's future — and is an ordinary failure of
    the code that raised it. (The effective deadline is ``-inf`` exactly when
    an enclosing, unshielded scope has been cancelled.)
    """
    return (
        isinstance(exc, anyio.get_cancelled_exc_class())
        and anyio.current_effective_deadline() == -math.inf
    )


class _Flight(Generic[T]):
    __slots__ = ("background", "done", "error", "result", "scope", "waiters")

    def __init__(self, *, background: bool = False) -> None:
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()
        self.waiters = 0
        #: Started for nobody in particular (an early refresh): runs to the
        #: end even when no caller waits for it.
        self.background = background
        self.result: T | None = None
        self.error: BaseException | None = None


class FlightTable(Generic[T]):
    """The runs in progress, one per key, and the re-entry check: what every
    way of hosting runs shares (here, and ``caller_flight.py``)."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    def __len__(self) -> int:
        """Keys with a run in progress (the per-key state still held)."""
        return len(self._flights)

    def __contains__(self, key: str) -> bool:
        return key in self._flights

    def check_reentry(self, key: str) -> None:
        if (id(self), key) in _computing.get():
            raise RuntimeError(
                f"remember({key!r}) was called from inside its own factory; "
                "it would wait for itself forever"
            )

    def _mark_computing(self, key: str) -> None:
        """Called in the run's task: a ``remember`` of ``key`` from there on
        (in this context and any task it starts) is re-entry."""
        _computing.set(_computing.get() | {(id(self), key)})

    def _forget(self, key: str, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


class SingleFlight(FlightTable[T]):
    """Runs at most one computation per key at a time, in ``task_group``."""

    def __init__(self, task_group: TaskGroup) -> None:
        super().__init__()
        self._task_group = task_group
        #: Successful runs so far. A caller that saw no run for its key and
        #: then missed can tell, by a change here, that a run may have stored
        #: its value in between.
        self.completed = 0

    async def run(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        """Join the run for ``key``, starting one with ``compute`` if none is going."""
        self.check_reentry(key)
        flight = self._join(key, compute)
        try:
            await flight.done.wait()
        finally:
            self._leave(key, flight)
        if flight.error is not None:
            raise flight.error
        return flight.result  # type: ignore[return-value]

    async def run_many(
        self,
        keys: Sequence[str],
        start: Callable[[list[str]], Mapping[str, Callable[[], Awaitable[T]]]],
    ) -> dict[str, T | BaseException]:
        """Join the runs for ``keys`` (distinct), starting the missing ones together.

        ``start(new)`` is called once, synchronously, with the keys that have
        no run going, and returns each one's computation — so a batch can
        compute all of them in one go while every key keeps a run of its own
        that others join. Joining happens without a checkpoint in between, so
        no other task can start a run for one of ``keys`` meanwhile. Each
        key's outcome — its result or the exception its run failed with — is
        returned, not raised: keys fail one by one. Cancelling the caller
        leaves every run as ``run`` does: a run nobody else waits for is
        cancelled, the others go on.
        """
        for key in keys:
            self.check_reentry(key)
        new = [key for key in keys if key not in self._flights]
        computes = start(new) if new else {}
        joined = [(key, self._join(key, computes.get(key))) for key in keys]
        try:
            for _, flight in joined:
                await flight.done.wait()
        finally:
            for key, flight in joined:
                self._leave(key, flight)
        return {
            key: flight.error if flight.error is not None else flight.result  # type: ignore[misc]
            for key, flight in joined
        }

    def mark_computing(self, keys: Iterable[str]) -> None:
        """The current task computes ``keys`` too (a batch computing many keys
        in one task): ``remember`` on one of them from inside it raises
        instead of waiting for itself."""
        _computing.set(_computing.get() | {(id(self), key) for key in keys})

    def _join(self, key: str, compute: Callable[[], Awaitable[T]] | None) -> _Flight[T]:
        """Count one more waiter on the run for ``key``, starting it (with
        ``compute``) if none is going. Synchronous: pair it with ``_leave``."""
        flight = self._flights.get(key)
        if flight is None:
            assert compute is not None
            flight = self._flights[key] = _Flight()
            self._task_group.start_soon(self._fly, key, flight, compute, name=f"remember {key!r}")
        flight.waiters += 1
        return flight

    def _leave(self, key: str, flight: _Flight[T]) -> None:
        flight.waiters -= 1
        if flight.waiters == 0 and not flight.done.is_set() and not flight.background:
            # The last caller left: nobody wants this result any more.
            flight.scope.cancel()
            self._forget(key, flight)

    def start_background(self, key: str, compute: Callable[[], Awaitable[T]]) -> None:
        """Start a run for ``key`` that nobody waits for, unless one is going.

        Callers that arrive meanwhile join it like any other run.
        """
        if key in self._flights:
            return
        flight = self._flights[key] = _Flight(background=True)
        self._task_group.start_soon(self._fly, key, flight, compute, name=f"refresh {key!r}")

    async def _fly(self, key: str, flight: _Flight[T], compute: Callable[[], Awaitable[T]]) -> None:
        """Run ``compute`` for the flight's waiters; never fail the provider.

        Whatever ``compute`` raises — an ``Exception``, a ``BaseException`` of
        its own, ``GeneratorExit``, ``KeyboardInterrupt``/``SystemExit``, a
        stray cancellation exception that no enclosing scope of ours sent — is
        the computation's failure: it goes to the waiters as itself and this
        task ends normally, so the provider's task group (and every unrelated
        task in it) carries on. Only two cancellations are not failures:

        * the flight's own scope, cancelled because the last waiter left: the
          scope absorbs it, nobody is told (nobody waits);
        * the provider's task group closing (an enclosing scope cancelled):
          anyone still waiting gets a ``RuntimeError`` saying so, and the
          cancellation goes on through, as cancellation must.

        A failure with nobody waiting (a background refresh, or a run whose
        last waiter has just left) is dropped like any other of that run's
        results: that includes ``KeyboardInterrupt``/``SystemExit``, which
        re-raised here would reach the user wrapped in an exception group.
        """
        self._mark_computing(key)
        try:
            with flight.scope:
                flight.result = await compute()
                self.completed += 1
        except BaseException as exc:
            if cancelled_from_outside(exc):
                flight.error = RuntimeError(f"the provider closed while computing {key!r}")
                raise
            flight.error = exc
        finally:
            flight.done.set()
            self._forget(key, flight)

    async def aclose(self, within: float) -> None:
        """The provider is closing: end every run now, while the connection
        is still open, so that each can clean up (a leader gives its lease
        up). Waiters get the "provider closed" ``RuntimeError``. Waits for
        the runs to end, shielded and at most ``within`` seconds."""
        flights = list(self._flights.items())
        for key, flight in flights:
            if not flight.done.is_set():
                flight.error = RuntimeError(f"the provider closed while computing {key!r}")
                flight.scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(within):
            for _, flight in flights:
                await flight.done.wait()
