"""What every benchmark here shares: the path setup, the command line, one
measurement per subprocess, the report's header, tables and target lines, the
number formats, and the result file.

Each ``bench_*.py`` script runs on its own (``python bench/bench_client.py``)
and imports this module from its own folder. Nothing here measures anything;
the servers come from ``beignet_redis_anyio.testing.servers``, as the tests'
do. What several scripts compare with lives here too: the bare multiplexer
(:class:`BareMultiplexer`), the event loops by name (:func:`run_on`), and
the fan-out of a call over many tasks (:func:`fan_out`).

Every table printed with :func:`print_table` and every target line made with
:func:`target_line`, :func:`ratio_line` or :func:`verdict_line` is also
recorded, and :func:`write_results` writes them, with what they were measured
on, to ``bench/results/<name>.json``: the performance page's tables are rendered from
those files (``bench/render.py``), never pasted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# A benchmark measures the checkout it sits in, not whichever copy of the
# package is installed (this also reaches every child: they import us too).
sys.path.insert(0, str(REPO_ROOT))

from beignet_redis_anyio.testing.servers import HOST, find_server  # noqa: E402

__all__ = [
    "HOST",
    "LOOPS",
    "REPO_ROOT",
    "RESULTS_DIR",
    "BareMultiplexer",
    "CheckFailed",
    "ChildFailed",
    "bench_main",
    "check",
    "exit_status",
    "fan_out",
    "fmt_ops",
    "format_table",
    "format_target",
    "format_verdict",
    "host_port",
    "paired_ratio",
    "print_header",
    "print_table",
    "ratio_line",
    "report_parser",
    "result_name",
    "run_child",
    "run_on",
    "status",
    "target_line",
    "verdict_line",
    "write_results",
]

#: What this process printed, for :func:`write_results`.
_recorded: dict[str, Any] = {"tables": [], "targets": [], "server": None, "commit": None}

CHILD_TIMEOUT_S = 600.0


class ChildFailed(Exception):
    def __init__(self, reason: str, stderr: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stderr = stderr


class CheckFailed(AssertionError):
    """A correctness check inside a child failed (not stripped by ``-O``)."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def run_child(script: str, **options: object) -> dict[str, Any]:
    """Run ``script`` again as a child (``--run`` and the other options, as
    ``--name value``) for one measurement; its last stdout line is JSON.

    A crash or a hang becomes ChildFailed with the child's last error line,
    never a traceback in the report.
    """
    cmd = [sys.executable, str(Path(script).resolve())]
    for name, value in options.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"timed out after {exc.timeout:.0f}s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise ChildFailed(reason, proc.stderr)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def report_parser(doc: str | None, *, quick: str) -> argparse.ArgumentParser:
    """The options every script takes: ``--quick`` (described by ``quick``)
    and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="where to write the results (default: bench/results/<name>.json)",
    )
    return parser


def bench_main(
    doc: str | None,
    argv: Sequence[str] | None,
    quick: str,
    child: Mapping[str, Mapping[str, Any]],
    child_main: Callable[[argparse.Namespace], None],
    parent_main: Callable[[argparse.Namespace], int],
) -> int:
    """A script's ``main``: the report (``parent_main``), or with ``--run``
    one measurement (``child_main``). ``child`` names the child-mode options
    (``--run`` first) and their ``add_argument`` keywords; those without a
    default must be given with ``--run``."""
    parser = report_parser(doc, quick=quick)
    group = parser.add_argument_group("child mode (internal)")
    for flag, options in child.items():
        group.add_argument(flag, **options)
    args = parser.parse_args(argv)
    if not args.run:
        return parent_main(args)
    needed = [flag for flag, options in child.items() if "default" not in options][1:]
    if any(getattr(args, flag[2:].replace("-", "_")) is None for flag in needed):
        listed = ", ".join(needed[:-1]) + " and " + needed[-1] if len(needed) > 1 else needed[0]
        print(f"error: --run needs {listed}", file=sys.stderr)
        return 2
    child_main(args)
    return 0


def print_header(*, cluster: bool = False) -> tuple[str, str] | None:
    """Find ``redis-server`` (and ``redis-cli`` for a ``cluster``) and print
    what the numbers were measured with; ``None`` (said on stderr) if missing.
    Returns the server's path and its ``--version`` line."""
    executable = find_server("redis")
    if executable is None:
        print("error: redis-server not found on PATH (nor /usr/bin/redis-server)", file=sys.stderr)
        return None
    if cluster and shutil.which("redis-cli") is None:
        print("error: redis-cli not found on PATH (needed to create the cluster)", file=sys.stderr)
        return None
    version = subprocess.run(
        [executable, "--version"], capture_output=True, text=True
    ).stdout.strip()
    print(f"python {platform.python_version()} ({sys.executable})")
    print(version)
    _recorded["server"] = version
    _recorded["commit"] = _git_commit()  # what is measured: the checkout as the run starts
    return executable, version


def print_table(
    rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None, *, title: str = ""
) -> None:
    """A Markdown table, the first row its header; columns are right-aligned
    where ``right`` says (default: all but the first). Recorded for
    :func:`write_results`: its rows as dicts, header to cell."""
    aligned = right if right is not None else [False] + [True] * (len(rows[0]) - 1)
    header = [str(cell) for cell in rows[0]]
    keys: list[str] = []  # the header, a repeated name made unique ("ratio", "ratio 2")
    for name in header:
        key, number = name, 1
        while key in keys:
            number += 1
            key = f"{name} {number}"
        keys.append(key)
    _recorded["tables"].append(
        {
            "title": title,
            "columns": header,
            "keys": keys,
            "right": [bool(r) for r in aligned],
            "rows": [dict(zip(keys, map(str, row), strict=True)) for row in rows[1:]],
        }
    )
    for line in format_table(rows, aligned):
        print(line)


def format_table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """The lines of :func:`print_table`'s Markdown table (not recorded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            rules = [
                "-" * (w + 1) + (":" if r else "-") for w, r in zip(widths, right, strict=True)
            ]
            lines.append("|" + "|".join(rules) + "|")
    return lines


def status(passed: bool | None) -> str:
    """A target's verdict: ``None`` when it could not be measured."""
    return "N/A" if passed is None else "PASS" if passed else "FAIL"


def target_line(
    lead: str, name: str, measured: str, wanted: str, verdict: str, note: str = "", *, width: int
) -> str:
    """``lead name = measured  (target …)  PASS  note``, aligned for a column of them.
    Recorded for :func:`write_results`."""
    _recorded["targets"].append(
        {
            "kind": "target",
            "lead": lead,
            "name": name,
            "measured": measured,
            "wanted": wanted,
            "status": verdict,
            "note": note,
            "width": width,
        }
    )
    return format_target(lead, name, measured, wanted, verdict, note, width=width)


def format_target(
    lead: str, name: str, measured: str, wanted: str, verdict: str, note: str = "", *, width: int
) -> str:
    """The text of a :func:`target_line` (not recorded: for rendering one again)."""
    return f"{lead} {name:<{width}} = {measured:>6}  {wanted:<18}  {verdict:<4}  {note}".rstrip()


def verdict_line(target: str, verdict: str, value: str = "") -> str:
    """``PASS  target: value``, for a target that is not a ratio. Recorded for
    :func:`write_results`."""
    _recorded["targets"].append(
        {"kind": "verdict", "name": target, "measured": value, "status": verdict}
    )
    return format_verdict(target, verdict, value)


def format_verdict(target: str, verdict: str, value: str = "") -> str:
    """The text of a :func:`verdict_line` (not recorded)."""
    return f"{verdict:<4}  {target}: {value}" if value else f"{verdict:<4}  {target}"


def fmt_ops(
    value: float | None, *, unavailable: str | None = None, crashed: str | None = None
) -> str:
    """A rate for a table cell: ``12,345``, or why there is none."""
    if unavailable:
        return f"n/a ({unavailable})"
    if crashed:
        return f"CRASHED ({crashed})"
    return "n/a" if value is None else f"{value:,.0f}"


@contextlib.contextmanager
def separate_cores(server_pid: int) -> Iterator[str]:
    """Pin the server to the first CPU and this process — so every client it
    starts — to the others, until the block ends; yields what it did, for the
    report.

    Why: on a loopback run the scheduler decides, round by round, whether a
    client shares the server's core. Waking a process on the same core is far
    cheaper than across cores (on a VM, several times over for
    ``redis-benchmark -c 1``), so an unpinned one-connection figure measures
    placement as much as the client. Across cores is what a networked deployment has:
    a client never shares its server's CPU.
    """
    setaffinity = getattr(os, "sched_setaffinity", None)
    cpus = sorted(os.sched_getaffinity(0)) if setaffinity is not None else []
    if setaffinity is None or len(cpus) < 2:
        yield "not pinned (fewer than two CPUs, or no sched_setaffinity)"
        return
    setaffinity(server_pid, {cpus[0]})
    setaffinity(0, set(cpus[1:]))
    try:
        yield f"server pinned to CPU {cpus[0]}, clients to CPU {','.join(map(str, cpus[1:]))}"
    finally:
        setaffinity(0, set(cpus))


def paired_ratio(
    ours: Sequence[float], other: Sequence[float], *, higher_is_better: bool = True
) -> tuple[float | None, list[float]]:
    """``ours / other``, best run against best run (``None`` if either side
    has none), and the same ratio within each round. Rounds are interleaved,
    so both sides of a round ran moments apart: the spread of those shows how
    much of the ratio is noise."""
    if not ours or not other:
        return None, []
    pick = max if higher_is_better else min
    return pick(ours) / pick(other), [a / b for a, b in zip(ours, other, strict=True)]


def ratio_line(
    lead: str,
    pair: str,
    ratio: float | None,
    per_round: Sequence[float],
    *,
    width: int,
    wanted: str = "(info only)",
    verdict: str = "INFO",
) -> str:
    """A :func:`target_line` for a ratio, with its rounds' range as the note."""
    measured = "n/a" if ratio is None else f"{ratio:.2f}x"
    spread = f"rounds {min(per_round):.2f}-{max(per_round):.2f}x" if len(per_round) > 1 else ""
    return target_line(lead, pair, measured, wanted, verdict, spread, width=width)


def exit_status(crashed: Sequence[str], what: str = "child(ren)") -> int:
    """1, said on stderr, if anything crashed; else 0 (a FAIL is a result, not an error)."""
    if not crashed:
        return 0
    print(f"\nerror: {what} crashed:\n  " + "\n  ".join(crashed), file=sys.stderr)
    return 1


def result_name(script: str) -> str:
    """``bench/bench_client.py`` -> ``client``: the name of its result file."""
    return Path(script).stem.removeprefix("bench_")


def _git_commit() -> str:
    """``git rev-parse --short HEAD``, with ``+dirty`` when the measured code
    (the package, or ``bench/``'s scripts) differs from that commit."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=30,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "beignet_redis_anyio", "bench/*.py"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + "+dirty" if changed else head) if head else "unknown"


def _peer_versions(peers: Iterable[str]) -> dict[str, str | None]:
    """Each distribution's installed version, ``None`` when not installed."""
    versions: dict[str, str | None] = {}
    for name in peers:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_results(
    script: str,
    path: str | None,
    *,
    parameters: Mapping[str, Any],
    peers: Iterable[str] = (),
    data: Any = None,
) -> Path:
    """Write this run to ``path`` (default ``bench/results/<name>.json``): the
    package's version, the commit, the date, the machine, the server printed
    by :func:`print_header`, the peers' versions, the run's ``parameters``,
    every table and target recorded so far, and the script's own ``data``
    (its raw figures)."""
    import beignet_redis_anyio

    target = Path(path) if path else RESULTS_DIR / f"{result_name(script)}.json"
    payload = {
        "benchmark": result_name(script),
        "version": beignet_redis_anyio.__version__,
        "commit": _recorded.get("commit") or _git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "server": _recorded["server"],
        "peers": _peer_versions(peers),
        # (the python and server versions are "machine" and "server" already)
        "parameters": {k: v for k, v in parameters.items() if k not in ("python", "redis_server")},
        "tables": _recorded["tables"],
        "targets": _recorded["targets"],
        "data": data,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {target}")
    return target


# --------------------------------------------------------------------------
# What several benchmarks compare with, or run on.
# --------------------------------------------------------------------------

#: The event loops a child can run on, by the name the reports give them.
LOOPS = ("asyncio", "uvloop", "trio")


def run_on(loop: str, main: Callable[[], Awaitable[Any]]) -> Any:
    """``anyio.run(main)`` on ``loop``: ``"asyncio"``, ``"uvloop"`` (asyncio
    with uvloop's event loop) or ``"trio"``."""
    import anyio

    if loop == "uvloop":
        return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(main, backend=loop)


async def fan_out(run: Callable[[], Awaitable[Any]], tasks: int) -> list[Any]:
    """``run()`` in ``tasks`` concurrent anyio tasks; their results."""
    import anyio

    results: list[Any] = []

    async def worker() -> None:
        results.append(await run())

    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(worker)
    return results


def host_port(url: str) -> tuple[str, int]:
    """``redis://HOST:PORT/...`` -> ``(HOST, PORT)``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise ValueError(f"expected redis://HOST:PORT/..., got {url!r}")
    return parts.hostname, parts.port


class BareMultiplexer:
    """Minimal pipelining over one stream: a writer and a reader task.

    Callers append their encoded command and a waiter to two FIFOs in the
    same (await-free) step, so replies, which Redis returns in order, resolve
    the waiters in order. What a client that multiplexes could cost with no
    logic of its own: a reference, not a contender.
    """

    class _Waiter:
        __slots__ = ("event", "reply")

        def __init__(self, event: Any) -> None:
            self.event = event
            self.reply: object = None

    def __init__(self, stream: Any) -> None:
        import anyio

        self._anyio = anyio
        self._stream = stream
        self._outgoing: list[bytes] = []
        self._waiters: collections.deque[BareMultiplexer._Waiter] = collections.deque()
        self._wakeup = anyio.Event()

    async def request(self, command: bytes) -> object:
        waiter = self._Waiter(self._anyio.Event())
        self._outgoing.append(command)
        self._waiters.append(waiter)
        if not self._wakeup.is_set():
            self._wakeup.set()
        await waiter.event.wait()
        return waiter.reply

    async def writer(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = self._anyio.Event()
            data = b"".join(self._outgoing)
            self._outgoing.clear()
            await self._stream.send(data)

    async def reader(self) -> None:
        import hiredis

        parser = hiredis.Reader()
        while True:
            parser.feed(await self._stream.receive())
            while (reply := parser.gets()) is not False:
                waiter = self._waiters.popleft()
                waiter.reply = reply
                waiter.event.set()
