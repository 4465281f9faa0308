"""Cold-key stampede across processes: ``beignet_redis_anyio`` against cashews and aiocache.

Scenario
--------
One throw-away local ``redis-server`` (started on a free loopback port and
always stopped again). For each run, P worker processes
(``bench/stampede_worker.py``, default 4) x C concurrent callers each
(default 100) ask ONE contender for the same cold key at the same moment. The
factory (the expensive computation) sleeps 200 ms and returns a string unique
to its process and call. Good stampede protection runs it once and hands that
one value to all P x C callers.

Each worker first runs the same burst against a private warm-up key (pools
grown, scripts cached, subscriptions open: a cold *key* in a warm process),
then opens a separate *harness* connection and blocks on ``BLPOP <key>:go``.
The parent waits until P clients are blocked in BLPOP (``CLIENT LIST``), runs
``CONFIG RESETSTAT``, notes the time and releases them all with one
``RPUSH <key>:go``. Each worker prints its result, then blocks on
``BLPOP <key>:done`` so its connections stay open until the parent has read
the statistics.

What is measured
----------------
factory calls
    Summed from the workers' own counts (no Redis command involved).
Redis commands while waiting
    ``INFO commandstats`` read after every worker has printed its result,
    summing ``calls=`` over all commands except the harness's own
    (``BLPOP``, ``RPUSH``, ``INFO``, ``CONFIG RESETSTAT``, ``CLIENT LIST``).
    This counts what the server executed, so commands run *inside* a Lua
    script (``EVALSHA`` -> ``GET``, ``DEL``, ``PUBLISH``…) count too, beside
    the ``EVALSHA`` itself. Per process: total / P, and — better — per
    *waiting* process (one that did not run the factory): a ``MONITOR``
    connection records every command in the window, each client address is
    mapped to its worker's PID through ``/proc`` (the worker's socket inodes
    -> ``/proc/net/tcp`` local ports), and commands a script ran are charged
    to the client whose ``EVAL``/``EVALSHA`` ran it.
time to serve all
    From just before the ``RPUSH`` until the last caller in the last process
    has its value (``time.monotonic``, which is system-wide on Linux).
all same value
    Every one of the P x C callers got the same string, and none failed.

Contenders (one contender per worker; see ``stampede_worker.CONTENDERS``)
----------------------------------------------------------------------
``beignet-asyncio`` / ``beignet-trio``
    ``cache.remember(...)`` with ``RedisConfig(remember_lock=True)`` under
    ``anyio.run`` with each backend.
``cashews``
    ``@cache(ttl=60, key=..., lock=True)`` — the README's stampede recipe for
    a cached function (in-process "thunder protection" is on by default).
``cashews-locked``
    ``@cache(ttl=60)`` over ``@cache.locked(ttl=10, check_interval=0.05)`` —
    the README's other recipe ("combine locked with any cache decorator").
``aiocache``
    ``@cached_stampede(cache=Cache.REDIS, lease=10, ttl=60)``, which wraps the
    computation in ``aiocache.lock.RedLock``.

Runs are interleaved round-robin across contenders, each with a fresh key.
The report gives the worst factory-call count, and the median command count
and time, over the repetitions.

Usage::

    python bench/bench_stampede.py [--quick] [--json PATH]

Exit status is 0 even when targets FAIL (this is a report); non-zero when a
beignet contender crashes or redis-server is unavailable. A peer that cannot
run is reported as ``n/a (reason)``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import queue
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from _harness import (
    HOST,
    exit_status,
    print_header,
    print_table,
    report_parser,
    status,
    verdict_line,
    write_results,
)
from stampede_worker import CONTENDERS, FACTORY_MS, HARNESS_NAME

from beignet_redis_anyio.testing.servers import RedisServer, encode_command

#: The distributions whose versions the result records.
PEERS = ("anyio", "trio", "cashews", "aiocache", "redis")

WORKER = Path(__file__).resolve().parent / "stampede_worker.py"
#: A failure of these is a crash (exit status 1); the others are "n/a (reason)".
OURS: tuple[str, ...] = ("beignet-asyncio", "beignet-trio")
#: The one compared against every peer.
REFERENCE = "beignet-asyncio"
#: Commands the harness itself issues (commandstats names).
HARNESS_COMMANDS = frozenset({"blpop", "rpush", "info", "config|resetstat", "client|list"})
#: Commands that only open a connection (reported apart in the breakdown).
SETUP_COMMANDS = frozenset({"hello", "auth", "select", "client|setname", "client|setinfo"})
SCRIPT_COMMANDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
CONTAINER_COMMANDS = frozenset({"client", "config", "script", "command", "object", "pubsub"})

MAX_COMMANDS_PER_WAITING_PROCESS = 5
READY_TIMEOUT_S = 120.0
RESULT_TIMEOUT_S = 90.0
EXIT_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------
# Talking to the server: a plain connection and a MONITOR recorder.
# --------------------------------------------------------------------------


class RespConnection:
    """A blocking RESP connection for the parent's own (harness) commands."""

    def __init__(self, port: int) -> None:
        import hiredis

        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.local_port: int = self.sock.getsockname()[1]
        self._reader = hiredis.Reader()

    def send(self, *args: str) -> None:
        self.sock.sendall(encode_command(*args))

    def command(self, *args: str) -> Any:
        self.send(*args)
        while (reply := self._reader.gets()) is False:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis-server closed the connection")
            self._reader.feed(data)
        if isinstance(reply, Exception):
            raise reply
        return reply.decode() if isinstance(reply, bytes) else reply

    def close(self) -> None:
        self.sock.close()


#: ``+1700000000.123456 [0 127.0.0.1:54321] "SET" "key" ...`` or ``[0 lua]``.
MONITOR_LINE = re.compile(rb"^\+\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$")
QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Observed:
    client: str  # "127.0.0.1:54321" or "lua"
    name: str  # commandstats spelling: "get", "client|setinfo"


def parse_monitor_line(line: bytes) -> Observed | None:
    match = MONITOR_LINE.match(line.rstrip(b"\r\n"))
    if not match:
        return None
    args = QUOTED.findall(match.group(2))
    if not args:
        return None
    name = args[0].decode(errors="replace").lower()
    if name in CONTAINER_COMMANDS and len(args) > 1:
        name = f"{name}|{args[1].decode(errors='replace').lower()}"
    return Observed(match.group(1).decode(), name)


class Monitor:
    """Records every command the server executes (``MONITOR``) in a thread."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection((HOST, port), timeout=10)
        self._sock.sendall(encode_command("MONITOR"))
        self._file = self._sock.makefile("rb")
        if not self._file.readline().startswith(b"+OK"):
            raise RuntimeError("MONITOR was refused")
        self._sock.settimeout(None)
        self.lines: list[Observed] = []
        self._seen = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="monitor", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._file:
                observed = parse_monitor_line(line)
                if observed is not None:
                    with self._seen:
                        self.lines.append(observed)
                        self._seen.notify_all()
        except (OSError, ValueError):
            pass  # closed

    def wait_for(self, client: str, name: str, timeout: float = 10.0) -> int:
        """Index of the first recorded ``name`` from ``client``."""
        deadline = time.monotonic() + timeout
        start = 0
        with self._seen:
            while True:
                for i in range(start, len(self.lines)):
                    if self.lines[i] == Observed(client, name):
                        return i
                start = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"MONITOR never showed {name} from {client}")
                self._seen.wait(left)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)


def socket_owners(pids: Sequence[int]) -> dict[int, int]:
    """Local TCP port -> owning PID, for the given processes (Linux ``/proc``)."""
    inode_owner: dict[int, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode_owner[int(target[8:-1])] = pid
    owners: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            inode = int(fields[9])
            if inode in inode_owner:
                owners[int(fields[1].rsplit(":", 1)[1], 16)] = inode_owner[inode]
    return owners


def attribute(
    window: Sequence[Observed], owners: dict[int, int]
) -> tuple[dict[int, collections.Counter[str]], collections.Counter[str]]:
    """Charge each non-harness command to a worker PID.

    Redis 7 shows a script's commands (``[0 lua]``) right after the
    ``EVAL``/``EVALSHA`` that ran them; they go to that client.
    Returns per-PID counters and the counter of what could not be placed.
    """
    per_pid: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    unplaced: collections.Counter[str] = collections.Counter()
    script_owner: int | None = None
    for seen in window:
        if seen.name in HARNESS_COMMANDS:
            continue
        if seen.client == "lua":
            owner = script_owner
        else:
            port = int(seen.client.rsplit(":", 1)[1]) if ":" in seen.client else -1
            owner = owners.get(port)
            script_owner = owner if seen.name in SCRIPT_COMMANDS else None
        if owner is None:
            unplaced[seen.name] += 1
        else:
            per_pid[owner][seen.name] += 1
    return per_pid, unplaced


def parse_commandstats(info: str) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_") :].partition(":")
            fields = dict(item.split("=", 1) for item in rest.split(","))
            calls[name] = int(fields["calls"])
    return calls


# --------------------------------------------------------------------------
# One run: P workers, one contender, one fresh key.
# --------------------------------------------------------------------------


class RunFailed(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Worker:
    proc: subprocess.Popen[str]
    stderr: IO[str]  # a temporary file the caller closes

    def error_text(self) -> str:
        self.stderr.seek(0)
        return str(self.stderr.read())

    def reason(self) -> str:
        lines = [line for line in self.error_text().strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit status {self.proc.returncode}"


def start_workers(
    contender: str, url: str, key: str, callers: int, logs: Sequence[IO[str]]
) -> tuple[list[Worker], queue.Queue[dict[str, Any]]]:
    """One worker per log file (its stderr); result lines arrive on the queue."""
    results: queue.Queue[dict[str, Any]] = queue.Queue()
    workers: list[Worker] = []
    for stderr in logs:
        cmd = [
            sys.executable, str(WORKER),
            "--contender", contender, "--url", url, "--key", key, "--callers", str(callers),
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True
        )
        workers.append(Worker(proc, stderr))

        def pump(stream: Any = proc.stdout) -> None:
            for line in stream:
                if line.startswith("{"):
                    results.put(json.loads(line))

        threading.Thread(target=pump, daemon=True).start()
    return workers, results


def first_failure(workers: Sequence[Worker]) -> Worker | None:
    return next((w for w in workers if w.proc.poll() not in (None, 0)), None)


def wait_until_blocked(conn: RespConnection, workers: Sequence[Worker], count: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        clients = conn.command("CLIENT", "LIST").splitlines()
        blocked = sum(
            1
            for line in clients
            if f"name={HARNESS_NAME} " in line and " cmd=blpop " in line and "flags=b" in line
        )
        if blocked >= count:
            return
        if (failed := first_failure(workers)) is not None:
            raise RunFailed(failed.reason(), failed.error_text())
        if time.monotonic() > deadline:
            raise RunFailed(f"only {blocked}/{count} workers ready after {READY_TIMEOUT_S:.0f}s")
        time.sleep(0.02)


def stop_workers(workers: Sequence[Worker]) -> None:
    for w in workers:
        try:
            w.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()


def run_once(contender: str, port: int, processes: int, callers: int) -> dict[str, Any]:
    url = f"redis://{HOST}:{port}/0"
    key = f"bench:stampede:{contender}:{secrets.token_hex(6)}"
    with contextlib.ExitStack() as stack:
        conn = RespConnection(port)
        stack.callback(conn.close)
        monitor = Monitor(port)
        stack.callback(monitor.close)
        logs = [stack.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(processes)]
        workers, results = start_workers(contender, url, key, callers, logs)
        parent = f"{HOST}:{conn.local_port}"
        try:
            wait_until_blocked(conn, workers, processes)
            conn.command("CONFIG", "RESETSTAT")
            released = time.monotonic()
            conn.command("RPUSH", f"{key}:go", *["go"] * processes)

            outs: list[dict[str, Any]] = []
            deadline = time.monotonic() + RESULT_TIMEOUT_S
            while len(outs) < processes:
                try:
                    outs.append(results.get(timeout=0.1))
                except queue.Empty:
                    if (failed := first_failure(workers)) is not None:
                        raise RunFailed(failed.reason(), failed.error_text()) from None
                    if time.monotonic() > deadline:
                        raise RunFailed(f"no result within {RESULT_TIMEOUT_S:.0f}s") from None

            # The window closes here: every caller in every process has its value.
            stats = parse_commandstats(conn.command("INFO", "commandstats"))
            owners = socket_owners([w.proc.pid for w in workers]) if sys.platform == "linux" else {}
            end = monitor.wait_for(parent, "info")
            begin = monitor.wait_for(parent, "rpush")
            window = monitor.lines[begin + 1 : end]
            conn.command("RPUSH", f"{key}:done", *["done"] * processes)
        except BaseException:
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.kill()
            raise
        finally:
            stop_workers(workers)
        for w in workers:
            if w.proc.returncode != 0:
                raise RunFailed(
                    f"worker exited with {w.proc.returncode}: {w.reason()}", w.error_text()
                )
    return summarise_run(outs, stats, window, owners, released, callers)


def summarise_run(
    outs: Sequence[dict[str, Any]],
    stats: dict[str, int],
    window: Sequence[Observed],
    owners: dict[int, int],
    released: float,
    callers: int,
) -> dict[str, Any]:
    processes = len(outs)
    commands = {name: n for name, n in stats.items() if name not in HARNESS_COMMANDS and n}
    total = sum(commands.values())
    values: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    for out in outs:
        values.update(out["values"])
        errors.update(out["errors"])

    per_pid, unplaced = attribute(window, owners) if owners else ({}, collections.Counter())
    per_process = []
    for out in sorted(outs, key=lambda o: -o["factory_calls"]):
        counted = per_pid.get(out["pid"], collections.Counter())
        per_process.append(
            {
                "pid": out["pid"],
                "factory_calls": out["factory_calls"],
                "commands": sum(counted.values()),
                "breakdown": dict(counted.most_common()),
                "time_ms": (out["finished"] - released) * 1000,
            }
        )
    attributed = sum(p["commands"] for p in per_process)
    waiting = [p["commands"] for p in per_process if p["factory_calls"] == 0]
    return {
        "factory_calls": sum(out["factory_calls"] for out in outs),
        "commands": total,
        "commands_per_process": total / processes,
        "setup_commands": sum(n for name, n in commands.items() if name in SETUP_COMMANDS),
        "breakdown": dict(sorted(commands.items(), key=lambda kv: -kv[1])),
        "waiting_processes": len(waiting),
        "max_commands_per_waiting_process": max(waiting) if waiting else None,
        "per_process": per_process,
        # MONITOR cross-check: everything placed + unplaced should equal `commands`.
        "monitor": {
            "attributed": attributed,
            "unplaced": dict(unplaced),
            "matches_commandstats": attributed + sum(unplaced.values()) == total,
        },
        "time_ms": (max(out["finished"] for out in outs) - released) * 1000,
        "callers": processes * callers,
        "answered": sum(values.values()),
        "distinct_values": len(values),
        "errors": dict(errors),
        "all_same": len(values) == 1 and not errors and sum(values.values()) == processes * callers,
    }


# --------------------------------------------------------------------------
# Summary, targets, report.
# --------------------------------------------------------------------------


@dataclass
class ContenderResult:
    runs: list[dict[str, Any]] = field(default_factory=list)
    unavailable: str | None = None
    crashed: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not (self.unavailable or self.crashed)

    def summary(self) -> dict[str, Any] | None:
        if not self.ok:
            return None
        runs = self.runs
        waiting = [
            r["max_commands_per_waiting_process"]
            for r in runs
            if r["max_commands_per_waiting_process"] is not None
        ]
        commands = statistics.median(r["commands"] for r in runs)
        # The run whose command count is the median one, for its breakdown.
        typical = min(runs, key=lambda r: (abs(r["commands"] - commands), r["time_ms"]))
        return {
            "worst_factory_calls": max(r["factory_calls"] for r in runs),
            "median_commands": commands,
            "median_commands_per_process": commands / len(typical["per_process"]),
            "median_max_commands_per_waiting_process": (
                statistics.median(waiting) if waiting else None
            ),
            "median_time_ms": statistics.median(r["time_ms"] for r in runs),
            "all_same": all(r["all_same"] for r in runs),
            "typical_run": runs.index(typical),
        }


def fmt_number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def table_row(name: str, result: ContenderResult) -> tuple[str, ...]:
    if result.unavailable or result.crashed:
        text = (
            f"n/a ({result.unavailable})" if result.unavailable else f"CRASHED ({result.crashed})"
        )
        return (name, text, "", "", "")
    s = result.summary()
    assert s is not None
    waiting = s["median_max_commands_per_waiting_process"]
    commands = (
        f"{fmt_number(s['median_commands'])} total, "
        f"{fmt_number(s['median_commands_per_process'])}/process"
        + (f", {fmt_number(waiting)}/waiting process (max)" if waiting is not None else "")
    )
    return (
        name,
        str(s["worst_factory_calls"]),
        commands,
        f"{s['median_time_ms']:,.0f}",
        "yes" if s["all_same"] else "NO",
    )


TABLE_HEADER = (
    "contender",
    "factory calls (worst)",
    "Redis commands while waiting (median)",
    "time to serve all (ms, median)",
    "all same value",
)
TABLE_RIGHT = (False, True, False, True, False)


def evaluate(results: dict[str, ContenderResult]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for name in OURS:
        s = results[name].summary()
        calls = s["worst_factory_calls"] if s else None
        checks.append(
            {
                "target": f"{name}: exactly 1 factory call (worst of runs)",
                "value": calls,
                "status": status(None if s is None else calls == 1),
            }
        )
        if s is None:
            checks.append({"target": f"{name}: commands per waiting process", "status": "N/A"})
            continue
        waiting = s["median_max_commands_per_waiting_process"]
        if waiting is not None:
            basis, value = (
                "per waiting process (max over non-leader processes; median of runs)",
                waiting,
            )
        else:
            basis, value = "per process (total / processes)", s["median_commands_per_process"]
        checks.append(
            {
                "target": f"{name}: <= {MAX_COMMANDS_PER_WAITING_PROCESS} Redis commands {basis}",
                "value": value,
                "status": status(value <= MAX_COMMANDS_PER_WAITING_PROCESS),
            }
        )
    ref = results[REFERENCE].summary()
    for name, result in results.items():
        if name in OURS:
            continue
        target = f"no peer does better: {REFERENCE} vs {name} (factory calls, commands)"
        peer = result.summary()
        if ref is None or peer is None:
            reason = result.unavailable or result.crashed or f"{REFERENCE} did not run"
            checks.append({"target": target, "status": "N/A", "value": reason})
            continue
        ours = (ref["worst_factory_calls"], ref["median_commands"])
        theirs = (peer["worst_factory_calls"], peer["median_commands"])
        better = theirs[0] < ours[0] or theirs[1] < ours[1]
        checks.append(
            {
                "target": target,
                "value": {"ours": ours, "peer": theirs},
                "status": status(not better),
            }
        )
    return checks


def print_details(results: dict[str, ContenderResult]) -> None:
    print("\nhow each contender was used:")
    for name in results:
        print(f"  {name:<16} {CONTENDERS[name][1]} [{CONTENDERS[name][0]}]")
    print("\nper-command breakdown of the median run (commandstats; '*' = connection setup):")
    for name, result in results.items():
        s = result.summary()
        if s is None:
            continue
        run = result.runs[s["typical_run"]]
        parts = [
            f"{cmd}{'*' if cmd in SETUP_COMMANDS else ''}={n}"
            for cmd, n in run["breakdown"].items()
        ]
        print(f"  {name:<16} {run['commands']:>6}: {' '.join(parts)}")
        for proc in run["per_process"]:
            role = f"ran factory x{proc['factory_calls']}" if proc["factory_calls"] else "waited"
            detail = " ".join(f"{c}={n}" for c, n in proc["breakdown"].items())
            print(
                f"  {'':<16} pid {proc['pid']:>7} {role:<18} {proc['commands']:>6} cmds, "
                f"done at {proc['time_ms']:>6,.0f} ms: {detail}"
            )
        check = run["monitor"]
        if not check["matches_commandstats"] or check["unplaced"]:
            print(
                f"  {'':<16} (MONITOR placed {check['attributed']}, "
                f"could not place {check['unplaced']})"
            )
        if run["errors"]:
            print(f"  {'':<16} caller errors: {run['errors']}")
        if run["distinct_values"] != 1:
            print(f"  {'':<16} {run['distinct_values']} distinct values")


def parent_main(args: argparse.Namespace) -> int:
    found = print_header()
    if found is None:
        return 2
    executable, server_version = found
    contenders = list(CONTENDERS)
    repeats = 1 if args.quick else 3
    versions = []
    for package in ("cashews", "aiocache", "redis", "anyio", "trio"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    print(", ".join(versions))
    print(
        f"{args.processes} processes x {args.callers} callers, one cold key per run, "
        f"factory sleeps {FACTORY_MS:.0f} ms; {repeats} run(s) per contender, interleaved"
    )

    results = {name: ContenderResult() for name in contenders}
    with RedisServer(binary=executable) as server:
        port = server.port
        print(f"redis-server on redis://{HOST}:{port}/0")
        for rep in range(repeats):
            for name in contenders:
                result = results[name]
                if result.unavailable or result.crashed:
                    continue
                try:
                    run = run_once(name, port, args.processes, args.callers)
                except RunFailed as exc:
                    if name in OURS:
                        result.crashed = exc.reason
                        print(f"  {name} CRASHED:\n{exc.detail}", file=sys.stderr)
                    else:
                        result.unavailable = exc.reason
                        print(f"  {name}: unavailable: {exc.reason}", file=sys.stderr)
                    continue
                result.runs.append(run)
                waiting = run["max_commands_per_waiting_process"]
                print(
                    f"  [{rep + 1}/{repeats}] {name:<16} factory calls {run['factory_calls']:>4}"
                    f"  commands {run['commands']:>6}"
                    + (f" (waiting process max {waiting})" if waiting is not None else "")
                    + f"  {run['time_ms']:>7,.0f} ms"
                    + f"  all same: {'yes' if run['all_same'] else 'NO'}",
                    flush=True,
                )

    print()
    print_table([TABLE_HEADER, *(table_row(n, r) for n, r in results.items())], TABLE_RIGHT)
    checks = evaluate(results)
    print()
    for check in checks:
        print(verdict_line(check["target"], check["status"], str(check.get("value", ""))))
    print_details(results)

    payload = {
        "settings": {
            "quick": args.quick,
            "repeats": repeats,
            "processes": args.processes,
            "callers": args.callers,
            "factory_ms": FACTORY_MS,
            "python": platform.python_version(),
            "redis_server": server_version,
            "versions": versions,
        },
        "results": {
            name: {
                "how": CONTENDERS[name][1],
                "backend": CONTENDERS[name][0],
                "summary": r.summary(),
                "runs": r.runs,
                "unavailable": r.unavailable,
                "crashed": r.crashed,
            }
            for name, r in results.items()
        },
        "targets": checks,
    }
    parameters = payload.pop("settings")
    write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=payload)

    return exit_status([name for name, r in results.items() if r.crashed], "contender(s)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = report_parser(__doc__, quick="one repetition instead of three")
    parser.add_argument("--processes", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--callers", type=int, default=100, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return parent_main(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
