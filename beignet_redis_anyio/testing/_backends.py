"""The anyio backends a test suite can name: the pytest plugin's
``beignet_backends`` ini, and this project's own ``BEIGNET_TEST_BACKENDS``.

A module of its own, so that a suite's conftest can import it without
importing the plugin before pytest loads it (pytest then could not rewrite
the plugin's asserts, and warns).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest

#: Each name accepted: the ``anyio_backend`` value it stands for, and the
#: module it needs (what ``pip install`` is told). On Windows anyio's
#: ``use_uvloop`` runs winloop, uvloop's port.
NAMED: dict[str, tuple[str | tuple[str, dict[str, Any]], str]] = {
    "asyncio": ("asyncio", "asyncio"),
    "uvloop": (("asyncio", {"use_uvloop": True}), "winloop" if os.name == "nt" else "uvloop"),
    "trio": ("trio", "trio"),
}


def check_backends(names: list[str], source: str) -> None:
    """Raise ``pytest.UsageError``, naming ``source`` (where the names came
    from), for a name that is no backend or whose module is not installed.

    It looks the modules up without importing them, so a missing one stops
    the run before any test, instead of failing every test on its own
    ``ImportError``."""
    for name in names:
        if name not in NAMED:
            raise pytest.UsageError(
                f"{source} names {name!r}, not a backend: choose from " + ", ".join(NAMED)
            )
        module = NAMED[name][1]
        if importlib.util.find_spec(module) is None:
            raise pytest.UsageError(
                f"{source} names {name!r}, which is not installed (pip install {module})"
            )


def backend_params(names: list[str]) -> list[Any]:
    """The ``anyio_backend`` parameters for the backends ``names`` names,
    each with its name as its test id (a name no backend has is left to
    ``check_backends``)."""
    return [pytest.param(NAMED[name][0], id=name) for name in names if name in NAMED]


def run_options(name: str) -> dict[str, Any]:
    """``anyio.run`` keywords for the backend called ``name``."""
    value = NAMED[name][0]
    backend, options = value if isinstance(value, tuple) else (value, {})
    return {"backend": backend, "backend_options": options}
