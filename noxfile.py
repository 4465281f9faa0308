"""Developer tasks. ``nox`` runs lint, typecheck and the tests on every Python.

The test sessions need ``redis-server`` on PATH for the real-server tests;
set ``BEIGNET_REQUIRE_REDIS_SERVER=1`` (CI does) to make its absence a failure
instead of a skip.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, every async test under asyncio and trio."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.12")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy>=1.10")
    session.run("mypy")


@nox.session(python="3.12")
def example(session: nox.Session) -> None:
    """Install and run the example on both backends (embedded Redis when
    ``REDIS_URL`` is unset)."""
    session.install("-e", ".[example]")
    for backend in ("asyncio", "trio"):
        session.run("python", "examples/app.py", "--backend", backend)


@nox.session(python="3.12")
def bench(session: nox.Session) -> None:
    """Side-by-side throughput against a local redis-server (not part of CI)."""
    session.install("-e", ".[bench,test]")
    session.run("python", "bench/bench_client.py", *session.posargs)
    session.run("python", "bench/bench_port.py", *session.posargs)
    session.run("python", "bench/bench_stampede.py", *session.posargs)
    session.run("python", "bench/bench_topology.py", *session.posargs)
    session.run("python", "bench/bench_outage.py", *session.posargs)
