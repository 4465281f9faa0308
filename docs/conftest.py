"""Every Python block of the documentation runs, on asyncio, uvloop and trio.

``pytest docs`` (what ``nox -s docs`` runs) collects each page's ```python
blocks and runs them in order, in one namespace per page, the way a reader
would type them into one file: a block may ``await`` at top level, and a
later block uses what an earlier one defined. Each page runs once per
backend (uvloop is asyncio on uvloop's loop), with ``REDIS_URL`` pointing at
an embedded Redis (fakeredis, on a free loopback port), so
``open_redis_provider()`` works as written. Pages of short snippets say at
the top that they use ``cache``, an open port, and ``url``, the Redis URL:
the run provides both.

A block that cannot run here says so where the reader sees it: the line
just before it reads ``*Not run by the docs' tests: <reason>.*``. The run
ends with a count of the blocks it ran and a list of those it did not.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import pytest

from beignet_redis_anyio import RedisConfig, open_redis_provider
from beignet_redis_anyio.testing import embedded_redis
from beignet_redis_anyio.testing._backends import run_options

FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
NOT_RUN = re.compile(r"^\*Not run by the docs' tests: (?P<reason>.+)\.\*$")
BACKENDS = ("asyncio", "uvloop", "trio")
#: How long one page's examples may take on one backend.
PAGE_SECONDS = 60


class Block(NamedTuple):
    line: int
    code: str
    not_run: str | None


def blocks(text: str) -> Iterator[Block]:
    """The page's Python blocks, with the line each starts on."""
    for match in FENCE.finditer(text):
        if match.group("info").strip().split(" ")[0] != "python":
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.match(before)
        line = text.count("\n", 0, match.start("code")) + 1
        yield Block(line, match.group("code"), reason.group("reason") if reason else None)


_seen: dict[Path, list[Block]] = {}


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    if file_path.suffix == ".md" and file_path.parent == Path(__file__).parent:
        return Page.from_parent(parent, path=file_path)
    return None


class Page(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        found = _seen[self.path] = list(blocks(self.path.read_text()))
        if any(block.not_run is None for block in found):
            for backend in BACKENDS:
                yield Examples.from_parent(self, name=backend, backend=backend, found=found)


class Examples(pytest.Item):
    def __init__(self, *, backend: str, found: list[Block], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.found = found

    def runtest(self) -> None:
        anyio.run(self._bounded, **run_options(self.backend))

    async def _bounded(self) -> None:
        # An example that waits for ever (a message that never comes) fails
        # here, named, instead of stalling the run.
        with anyio.fail_after(PAGE_SECONDS):
            await self._run()

    async def _run(self) -> None:
        namespace: dict[str, Any] = {"__name__": f"docs_{self.path.stem}"}
        async with (
            embedded_redis() as url,
            open_redis_provider(RedisConfig(url=url)) as cache,
        ):
            namespace.update(url=url, cache=cache)
            previous = os.environ.get("REDIS_URL")
            os.environ["REDIS_URL"] = url
            try:
                for block in self.found:
                    if block.not_run is None:
                        await _execute(block, self.path, namespace)
            finally:
                if previous is None:
                    os.environ.pop("REDIS_URL", None)
                else:
                    os.environ["REDIS_URL"] = previous

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name}: its examples on {self.backend}"


async def _execute(block: Block, path: Path, namespace: dict[str, Any]) -> None:
    tree = ast.parse(block.code, filename=str(path))
    ast.increment_lineno(tree, block.line - 1)
    code = compile(tree, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result


def pytest_terminal_summary(terminalreporter: Any) -> None:
    ran = sum(1 for found in _seen.values() for block in found if block.not_run is None)
    skipped = [
        f"{path.name}:{block.line}: {block.not_run}"
        for path, found in sorted(_seen.items())
        for block in found
        if block.not_run is not None
    ]
    terminalreporter.write_line(
        f"docs: {ran} examples in {len(_seen)} pages, each run on {', '.join(BACKENDS)}; "
        f"{len(skipped)} marked not run"
    )
    for line in skipped:
        terminalreporter.write_line(f"  not run: {line}")
