"""Factories for ``remember`` tests: counted, released on cue, failing on demand."""

from __future__ import annotations

from collections.abc import Awaitable

import anyio


class Factory:
    """A factory that counts its calls and runs only when released."""

    def __init__(self, value: object = "computed") -> None:
        self.value = value
        self.calls = 0
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()
        self.error: BaseException | None = None

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


async def append(results: list[str], call: Awaitable[str]) -> None:
    results.append(await call)


class Unusual(BaseException):
    """A factory's own ``BaseException`` subclass."""


def backends_and_kinds(*kinds: str) -> list[tuple[str, str]]:
    """Each kind on each backend, but a stray cancellation on asyncio only:
    trio.Cancelled cannot be constructed."""
    return [
        (backend, kind)
        for backend in ("asyncio", "trio")
        for kind in kinds
        if not (backend == "trio" and kind == "stray-cancel")
    ]


def base_exception(kind: str, backend: str) -> BaseException:
    if kind == "stray-cancel":
        # On asyncio: as if the factory awaited a future someone else cancelled.
        return anyio.get_cancelled_exc_class()()
    return {
        "custom": Unusual("the factory's own"),
        "generator-exit": GeneratorExit(),
        "system-exit": SystemExit(3),
    }[kind]
