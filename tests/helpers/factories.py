"""Factories for ``remember`` tests: counted, released on cue, failing on demand."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import anyio
import pytest

from helpers.backends import asyncio_backends, backends


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


def backends_and_kinds(*kinds: str) -> list[Any]:
    """Each kind on each backend of the run (``helpers.backends``), but a
    stray cancellation on asyncio only (uvloop included): trio.Cancelled
    cannot be constructed."""
    return [
        pytest.param(backend.values[0], kind, id=f"{backend.id}-{kind}")
        for kind in kinds
        for backend in (asyncio_backends() if kind == "stray-cancel" else backends())
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
