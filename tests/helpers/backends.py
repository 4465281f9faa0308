"""The anyio backends the async tests run under.

All three, ``asyncio uvloop trio``, unless ``BEIGNET_TEST_BACKENDS`` names
fewer, with the words of the pytest plugin's ``beignet_backends`` ini. A name
unknown, or whose module is not installed (the test extra installs uvloop),
stops the run before any test (``tests/conftest.py``): a run never passes
on fewer loops than it was asked for.
"""

from __future__ import annotations

import os
from typing import Any

import anyio.lowlevel
import sniffio

from beignet_redis_anyio.testing._backends import NAMED, backend_params, check_backends

SOURCE = "BEIGNET_TEST_BACKENDS"
NAMES = os.environ.get(SOURCE, "asyncio uvloop trio").split()


def check() -> None:
    """Stop the run (``pytest.UsageError``) on a name unknown or not installed."""
    check_backends(NAMES, SOURCE)


def backends() -> list[Any]:
    """Each backend as a pytest parameter of ``anyio_backend``, its name as its id."""
    return backend_params(NAMES)


def asyncio_backends() -> list[Any]:
    """The run's backends that are asyncio (uvloop is too): for the tests of
    what only asyncio has, such as a cancellation made by hand."""
    return [param for param in backends() if param.id != "trio"]


def backend_name(anyio_backend: object) -> str:
    """The name (``asyncio``, ``uvloop``, ``trio``) of an ``anyio_backend`` value."""
    return next(name for name, (value, _) in NAMED.items() if value == anyio_backend)


def running_backend() -> str:
    """The name of the backend the calling task runs on, told from the loop
    itself: what a test on ``uvloop`` checks it really got."""
    library = sniffio.current_async_library()
    if library != "asyncio":
        return library
    loop = anyio.lowlevel.current_token().native_token  # asyncio's: the event loop
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
