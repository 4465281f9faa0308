"""The backends this suite's async tests run under (``helpers.backends``):
each one is the loop it is named after, so a run that asked for uvloop
tested uvloop, not asyncio's own loop under uvloop's name."""

from __future__ import annotations

import pytest

from helpers.backends import backend_name, running_backend


@pytest.mark.anyio
async def test_each_backend_runs_on_the_loop_it_is_named_after(anyio_backend: object) -> None:
    assert running_backend() == backend_name(anyio_backend)
