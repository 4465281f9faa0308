"""Reads from replicas: what ``read_from="prefer_replica"`` takes off a cluster's primaries.

What is measured
----------------
A real Redis Cluster on loopback, 3 primaries + 3 replicas (``RedisCluster``
from ``beignet_redis_anyio.testing.servers``, as the tests use), always torn
down again. The parent loads ``bench:0`` … ``bench:9999`` (no hash tag: the
keys spread over every primary) and waits until each replica holds as many
keys as its primary. Then, in each child, one client —
``open_redis_client(cluster_url, read_from=MODE)`` — runs a mix from 100
tasks: 200,000 operations (``--quick``: 20,000), each task its own stretch
of one walk over the keys in a scattered order. Two mixes, measured apart:

``read-heavy``
    One operation in 20 a ``SET``, the rest ``GET`` (95% / 5%).
``reads only``
    The same walk, every operation a ``GET``. Under ``prefer_replica`` the
    reads use the replicas' connections as ``primary`` uses the primaries':
    what differs is the read's way to its replica. In the read-heavy mix the
    writes, besides, travel to the primaries in small batches of their own,
    where under ``primary`` they join the reads' batches.

Every write writes the value the load wrote, so every ``GET`` must return it,
wherever it is served (the child fails otherwise). The mix runs once untimed
first, so every connection the mode uses is open before the clock starts.

Per mode (``primary``, then ``prefer_replica``) and backend (asyncio, trio):

``ops/s``
    The client's throughput over the timed mix.
``client µs/op``
    The client process's own CPU time (``getrusage``, user + system) over
    the timed mix, per operation: where throughput falls with it, the
    client is the limit, not the servers.
``CPU µs/op``
    ``INFO cpu`` ``used_cpu_sys + used_cpu_user`` of each node, after minus
    before the timed mix (the child reads them itself, right around it), per
    operation of the mix: for each primary, each replica, and all primaries
    and all replicas together. The replicas apply the replicated ``SET`` s in
    both modes.
``replica GETs``
    The share of the mix's ``GET`` s the replicas served (``INFO
    commandstats``): the check that each mode is what it says — 0% under
    ``primary``, at least 90% under ``prefer_replica`` (every replica is up
    and synced).

Each measurement runs in its own subprocess (this file with ``--run``);
five rounds (``--quick``: one) interleave the two modes, alternating which
goes first, so both sides of a ratio ran moments apart. Ratios are best
run against best run, with the rounds' own range:

* throughput, ``prefer_replica / primary``, each mix: target >= 1.00x
  (reading from replicas costs the client nothing);
* all primaries' CPU per op, ``prefer_replica / primary``, read-heavy mix:
  target <= 0.50x (the primaries do at most half the work when replicas
  take the reads).

The control
-----------
Under ``primary`` too, the read-heavy mix once more, in two layouts that
involve no replica at all (their rounds run after the modes'): every key
under one hash tag, so that one primary's connection carries the whole mix;
and the ``SET`` s under another primary's tag instead, so that the reads
take one connection and the writes another, as under ``prefer_replica``. Its
two ratios (``writes elsewhere / all on one``, information only) are what
splitting a load over connections costs the client by itself, beside the
modes' ratio in the same run. The parent loads both tags' keys first (the
tags are found by asking each primary which it serves).

The client's cost, counted
--------------------------
On this 2-core machine the client is the limit, and its speed drifts from
round to round by more than the throughput ratios' distance from 1.00x,
even between two runs of one mode. So the client's cost per operation is
also counted, by ``valgrind --tool=callgrind``, which counts instructions,
not seconds: a child of each mix, backend and mode runs 5,000 operations
(``--quick``: 2,000) and another 25,000 (6,000), and the difference of their
counts, over the operations between, is what the operations cost the client
alone (its start, imports, connections and warm-up cancel out). Per
operation:

``instructions/op``
    The client's own instructions (user space).
``syscalls/op``
    The system calls it made (``--trace-syscalls=yes``), but those that
    only valgrind turns into system calls (the clock: the vDSO answers it
    within the process otherwise). The kernel's work for them is not among
    the instructions.

Three rounds (``--cost-rounds``; ``--quick``: one); a ratio is the median of
the rounds' ratios, with their range. The counts still move a little with
timing (how many commands a write carries depends on who ran first), but
far less than seconds do. The throughput target once more, judged by what
the client does rather than by this machine's clock:

* client instructions per op, ``prefer_replica / primary``, each mix and
  backend: target <= 1.01x (within the counts' own spread between rounds).

``read_from`` is ``RedisConfig``'s and ``open_redis_client``'s option for
replica reads. A checkout without it makes the first child fail with a line
that says so, and the run ends there (exit status 2).

Usage::

    python bench/bench_replicas.py [--quick] [--rounds N] [--cost-rounds N]
                                   [--modes primary,prefer_replica] [--json PATH]

A run of some ``--modes`` writes its JSON only where ``--json`` says. Exit
status 0 even when a target FAILs (this is a report); non-zero when a child
crashes, valgrind is missing (Debian's ``valgrind``; ``--cost-rounds 0``
skips the counts), the cluster cannot be started, or ``read_from`` is refused.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import itertools
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from _harness import (
    CHILD_TIMEOUT_S,
    ChildFailed,
    bench_main,
    check,
    exit_status,
    fmt_ops,
    paired_ratio,
    print_header,
    print_table,
    ratio_line,
    run_child,
    run_on,
    status,
    verdict_line,
    write_results,
)

from beignet_redis_anyio.testing.servers import RedisCluster, command, wait_until

#: The distributions whose versions the result records.
PEERS = ("anyio", "trio", "hiredis")
BACKENDS: tuple[str, ...] = ("asyncio", "trio")
MODES: tuple[str, ...] = ("primary", "prefer_replica")

KEY_COUNT = 10_000
KEYS: tuple[str, ...] = tuple(f"bench:{i}" for i in range(KEY_COUNT))
VALUE = "v" * 64
TASKS = 100
WRITE_EVERY = 20  # one op in 20 a SET: 95% GET / 5% SET
#: The mixes, each with its own rounds: the read-heavy one, and the same
#: walk with no SET at all, where every connection a mode uses carries a
#: full share of each round (the split of the writes onto the primaries'
#: connections, in small batches of their own, is what the mix adds).
MIXES: dict[str, int] = {"read-heavy": WRITE_EVERY, "reads only": 0}
#: Walks the keys in a scattered order (coprime with KEY_COUNT), so that
#: consecutive operations land on different slots, hence different nodes.
STRIDE = 7919
OPS, QUICK_OPS = 200_000, 20_000
WARMUP_OPS = 2_000

#: The control, under ``read_from="primary"`` and the read-heavy mix: every
#: key under one hash tag, so one primary's connection carries the whole
#: mix; then the SETs under another primary's tag, so its reads and writes
#: take two connections, as under ``prefer_replica`` — with no replica, no
#: routing to one, at all. What the split alone costs the client.
CONTROLS: tuple[str, ...] = ("all on one primary", "writes on another")

THROUGHPUT_MIN = 1.0
#: The counts move by a percent or two between rounds of one mode (who ran
#: first decides how many commands a write carries): a ratio within a
#: percent of 1.00x cannot be told from none.
CLIENT_COST_MAX = 1.01
PRIMARY_CPU_MAX = 0.5
#: With every replica up and synced, nearly every GET should go to one.
REPLICA_SHARE_MIN = 0.9
#: The first line of a child's error when ``open_redis_client`` refuses
#: ``read_from``: the parent ends the run on it rather than count crashes.
REFUSED = "read_from refused"
WIDTH = 42


# --------------------------------------------------------------------------
# Child side: one backend, one mode, one timed mix.
# --------------------------------------------------------------------------


def plan(
    task: int,
    per_task: int,
    write_every: int = WRITE_EVERY,
    reads: Sequence[str] = KEYS,
    writes: Sequence[str] | None = None,
) -> list[tuple[bool, str]]:
    """Task ``task``'s operations, ``(is_set, key)``, built before timing;
    one in ``write_every`` a SET (none for 0). The GETs read ``reads``, the
    SETs write ``writes`` (default: the same keys)."""
    writes = reads if writes is None else writes
    steps = []
    for step in range(per_task):
        number = task * per_task + step
        is_set = write_every > 0 and number % write_every == 0
        steps.append((is_set, (writes if is_set else reads)[number * STRIDE % KEY_COUNT]))
    return steps


def tagged(tag: str) -> tuple[str, ...]:
    """The walk's keys, all in the hash slot of ``{tag}``: one node's."""
    return tuple(f"{{{tag}}}{key}" for key in KEYS)


def snapshot(ports: Sequence[int]) -> dict[int, dict[str, float]]:
    """Each node's CPU seconds and GET and SET calls so far (one ``INFO``)."""
    figures = {}
    for port in ports:
        text = command(port, "INFO", "cpu", "commandstats").decode()

        def number(pattern: str, text: str = text) -> float:
            found = re.search(pattern, text, re.MULTILINE)
            return float(found[1]) if found else 0.0

        figures[port] = {
            "cpu_s": number(r"^used_cpu_sys:([\d.]+)") + number(r"^used_cpu_user:([\d.]+)"),
            "gets": number(r"^cmdstat_get:calls=(\d+)"),
            "sets": number(r"^cmdstat_set:calls=(\d+)"),
        }
    return figures


async def run_mix(client: Any, plans: list[list[tuple[bool, str]]]) -> None:
    """The mix: each plan in a task of its own, all at once."""
    import anyio

    wrong: list[object] = []

    async def worker(steps: list[tuple[bool, str]]) -> None:
        for is_set, key in steps:
            if is_set:
                await client.set(key, VALUE)
            elif (value := await client.get(key)) != VALUE:
                wrong.append(value)

    async with anyio.create_task_group() as tg:
        for steps in plans:
            tg.start_soon(worker, steps)
    check(not wrong, f"{len(wrong)} GET(s) returned another value, e.g. {wrong[:1]!r}")


def _own_cpu_s() -> float:
    """This process's CPU seconds so far (user and system): the client's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_main(args: argparse.Namespace) -> None:
    from beignet_redis_anyio import open_redis_client

    ports = [int(port) for port in f"{args.primaries},{args.replicas}".split(",")]
    keys: dict[str, Any] = {}
    if args.read_tag is not None:
        keys["reads"] = tagged(args.read_tag)
        keys["writes"] = tagged(args.write_tag or args.read_tag)
    warm_up = [plan(task, WARMUP_OPS // TASKS, args.write_every, **keys) for task in range(TASKS)]
    # Counted by callgrind (--plan-ops), children that run different numbers
    # of operations build plans alike, so that the difference of two counts
    # holds the operations alone, not the building of their plans.
    planned = args.plan_ops or args.ops
    timed = [
        plan(task, planned // TASKS, args.write_every, **keys)[: args.ops // TASKS]
        for task in range(TASKS)
    ]
    ops = sum(map(len, timed))

    async def main() -> dict[str, Any]:
        try:
            async with open_redis_client(args.url, read_from=args.mode) as client:
                await run_mix(client, warm_up)
                gc.collect()
                before = snapshot(ports)
                cpu_before = _own_cpu_s()
                started = time.perf_counter()
                await run_mix(client, timed)
                elapsed = time.perf_counter() - started
                client_cpu_s = _own_cpu_s() - cpu_before
                after = snapshot(ports)
        except TypeError as exc:
            if "read_from" not in str(exc):
                raise
            return {"refused": str(exc)}
        delta = {
            str(port): {name: after[port][name] - before[port][name] for name in after[port]}
            for port in ports
        }
        return {
            "ops": ops,
            "seconds": elapsed,
            "ops_per_s": ops / elapsed,
            "client_cpu_s": client_cpu_s,
            "nodes": delta,
        }

    result = run_on(args.run, main)
    if "refused" in result:
        # The option this benchmark measures is missing: say so, in one line.
        sys.exit(
            f"{REFUSED}: open_redis_client(url, read_from={args.mode!r}) raised TypeError "
            f"({result['refused']}); this checkout has no replica reads to measure"
        )
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------
# Parent side: the cluster, the rounds, the report.
# --------------------------------------------------------------------------


def roles(cluster: RedisCluster) -> dict[int, int | None]:
    """Each node's port: ``None`` for a primary, else its primary's port."""
    found: dict[int, int | None] = {}
    for node in cluster.nodes:
        info = command(node.port, "INFO", "replication").decode()
        master = re.search(r"^master_port:(\d+)", info, re.MULTILINE)
        found[node.port] = int(master[1]) if "role:slave" in info and master else None
    return found


def load(url: str, keys: Sequence[str] = KEYS) -> None:
    """Write every one of ``keys`` once, from ``TASKS`` tasks (in this
    process: not timed)."""
    import anyio

    from beignet_redis_anyio import open_redis_client

    async def main() -> None:
        async with open_redis_client(url) as client, anyio.create_task_group() as tg:

            async def write(keys: Sequence[str]) -> None:
                for key in keys:
                    await client.set(key, VALUE)

            for task in range(TASKS):
                tg.start_soon(write, keys[task::TASKS])

    anyio.run(main)


def owned_tag(port: int) -> str:
    """A hash tag whose slot the primary on ``port`` serves (it answers a
    read of it rather than redirect it)."""
    for number in range(10_000):
        tag = f"t{number}"
        if not command(port, "EXISTS", f"{{{tag}}}probe").startswith(b"-MOVED"):
            return tag
    raise RuntimeError(f"no hash tag found for the primary on port {port}")


def dbsize(port: int) -> int:
    return int(command(port, "DBSIZE").strip()[1:])


def replicated(topology: dict[int, int | None]) -> bool:
    """Every replica holds as many keys as its primary."""
    return all(dbsize(port) == dbsize(of) for port, of in topology.items() if of is not None)


#: (backend, mode) → every round's child result, in round order.
Runs = dict[tuple[str, str], list[dict[str, Any]]]


def per_op(run: dict[str, Any], ports: Sequence[int]) -> float:
    """CPU µs of ``ports`` together per operation of ``run``'s mix."""
    seconds: float = sum(run["nodes"][str(port)]["cpu_s"] for port in ports)
    return seconds / int(run["ops"]) * 1e6


def replica_share(run: dict[str, Any], replicas: Sequence[int]) -> float:
    """The share of the mix's GETs that the replicas served."""
    gets = {port: figures["gets"] for port, figures in run["nodes"].items()}
    total = sum(gets.values())
    return sum(gets[str(port)] for port in replicas) / total if total else 0.0


def ratio_target(
    backend: str,
    pair: str,
    measured: tuple[float | None, list[float]],
    bound: float,
    at_most: bool,
) -> str:
    """A target line for a ratio that must stay at most or at least ``bound``."""
    ratio, per_round = measured
    passed = None if ratio is None else (ratio <= bound if at_most else ratio >= bound)
    wanted = f"(target {'<=' if at_most else '>='} {bound:.2f}x)"
    return ratio_line(
        f"{backend:<7}", pair, ratio, per_round, width=WIDTH, wanted=wanted, verdict=status(passed)
    )


def share_verdict(runs: Runs, mode: str, replicas: Sequence[int], mix: str) -> str:
    """The check that ``mode`` is what it says: where its worst round's GETs went."""
    shares = [replica_share(run, replicas) for b in BACKENDS for run in runs.get((b, mode), [])]
    if mode == "primary":
        worst = max(shares, default=None)
        passed = None if worst is None else worst == 0
        target = f"{mix}: read_from=primary reads from primaries only"
    else:
        worst = min(shares, default=None)
        passed = None if worst is None else worst >= REPLICA_SHARE_MIN
        target = f"{mix}: read_from={mode} reads from replicas (target >= {REPLICA_SHARE_MIN:.0%})"
    value = "n/a" if worst is None else f"{worst:.0%} of GETs on replicas (worst round)"
    return verdict_line(target, status(passed), value)


def client_per_op(run: dict[str, Any]) -> float:
    """The client's own CPU µs per operation of ``run``'s mix."""
    return float(run["client_cpu_s"]) / int(run["ops"]) * 1e6


def report(
    runs: Runs, modes: Sequence[str], topology: dict[int, int | None], mix: str
) -> dict[str, Any]:
    """Print ``mix``'s tables and target lines; return its ratios (for the JSON)."""
    write_every = MIXES[mix]
    primaries = [port for port, of in topology.items() if of is None]
    replicas = [port for port, of in topology.items() if of is not None]
    contenders = [(backend, mode) for backend in BACKENDS for mode in modes]

    def best(key: tuple[str, str], figure: Callable[[dict[str, Any]], float], high: bool) -> str:
        """The best round's ``figure`` as a cell: highest rate, lowest CPU."""
        values = [figure(run) for run in runs.get(key, [])]
        return "n/a" if not values else f"{max(values) if high else min(values):,.2f}"

    rows: list[tuple[str, ...]] = [
        (
            "backend",
            "read_from",
            "ops/s",
            "client µs/op",
            "primaries µs/op",
            "replicas µs/op",
            "replica GETs",
        )
    ]
    for key in contenders:
        rates = [run["ops_per_s"] for run in runs.get(key, [])]
        shares = [replica_share(run, replicas) for run in runs.get(key, [])]
        rows.append(
            (
                *key,
                fmt_ops(max(rates, default=None)),
                best(key, client_per_op, False),
                best(key, lambda run: per_op(run, primaries), False),
                best(key, lambda run: per_op(run, replicas), False),
                f"{max(shares):.0%}" if shares else "n/a",
            )
        )
    print()
    what = f"1 in {write_every} a SET" if write_every else "GETs only"
    title = f"{mix}, {TASKS} tasks, {what}: throughput, CPU per op (client, servers), replica GETs"
    print_table(rows, [False, False, True, True, True, True, True], title=title)
    if write_every:
        by_node(runs, contenders, topology)
    print()
    ratios: dict[str, Any] = {}
    if {"primary", "prefer_replica"} <= set(modes):
        pair = "prefer_replica / primary"
        for backend in BACKENDS:
            base = runs.get((backend, "primary"), [])
            ours = runs.get((backend, "prefer_replica"), [])
            if len(base) != len(ours):
                base = ours = []  # a crashed round: unpaired rounds make no ratio
            throughput = paired_ratio(
                [run["ops_per_s"] for run in ours], [run["ops_per_s"] for run in base]
            )
            lead = f"{backend:<7} {mix:<10}"
            print(ratio_target(lead, f"ops/s {pair}", throughput, THROUGHPUT_MIN, False))
            ratios[backend] = {"throughput": throughput[0]}
            if write_every:
                cpu = paired_ratio(
                    [per_op(run, primaries) for run in ours],
                    [per_op(run, primaries) for run in base],
                    higher_is_better=False,
                )
                ratios[backend]["primaries_cpu"] = cpu[0]
                pair_cpu = f"primaries' CPU {pair}"
                print(ratio_target(lead, pair_cpu, cpu, PRIMARY_CPU_MAX, True))
    for mode in modes:
        print(share_verdict(runs, mode, replicas, mix))
    return ratios


def by_node(
    runs: Runs, contenders: Sequence[tuple[str, str]], topology: dict[int, int | None]
) -> None:
    """Per node: which one does the work (each node's own best round)."""
    primaries = [port for port, of in topology.items() if of is None]
    replicas = [port for port, of in topology.items() if of is not None]

    def best(key: tuple[str, str], ports: Sequence[int]) -> str:
        values = [per_op(run, ports) for run in runs.get(key, [])]
        return "n/a" if not values else f"{min(values):,.2f}"

    groups = [([port], f"primary :{port}") for port in primaries]
    groups += [([port], f"replica :{port} (of :{topology[port]})") for port in replicas]
    groups += [(primaries, "all primaries"), (replicas, "all replicas")]
    rows = [("node (CPU µs/op)", *(f"{mode} {backend}" for backend, mode in contenders))]
    for ports, label in groups:
        rows.append((label, *(best(key, ports) for key in contenders)))
    print()
    print_table(rows, title="server CPU µs per operation of the read-heavy mix, by node")


def run_control(
    url: str,
    topology: dict[int, int | None],
    rounds: int,
    ops: int,
    primaries: str,
    replicas: str,
) -> dict[str, Any]:
    """The control's rounds (see CONTROLS): each backend, both layouts,
    alternating which goes first. Returns ``{"tags": …, "runs": {backend:
    {layout: [run, …]}}, "crashed": […]}``."""
    own = [port for port, of in topology.items() if of is None][:2]
    read_tag, write_tag = owned_tag(own[0]), owned_tag(own[1])
    for tag in (read_tag, write_tag):
        load(url, tagged(tag))
    wait_until(lambda: replicated(topology), 60, "the replicas did not catch up")
    layouts = {CONTROLS[0]: read_tag, CONTROLS[1]: write_tag}
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    crashed: list[str] = []
    for number in range(rounds):
        ordered = CONTROLS if number % 2 == 0 else CONTROLS[::-1]
        for backend in BACKENDS:
            for layout in ordered:
                try:
                    result = run_child(
                            __file__, run=backend, mode="primary", url=url, ops=ops,
                            primaries=primaries, replicas=replicas,
                            write_every=WRITE_EVERY, read_tag=read_tag,
                            write_tag=layouts[layout],
                        )  # fmt: skip
                except ChildFailed as exc:
                    crashed.append(f"control/{backend}/{layout}: {exc.reason}")
                    print(f"  control {backend} {layout} CRASHED:\n{exc.stderr}", file=sys.stderr)
                    continue
                found.setdefault(backend, {}).setdefault(layout, []).append(result)
                print(
                    f"  [{number + 1}/{rounds}] control    {backend:<7} {layout:<19}"
                    f" {result['ops_per_s']:>10,.0f} ops/s",
                    flush=True,
                )
    return {"tags": {"reads": read_tag, "writes": write_tag}, "runs": found, "crashed": crashed}


def report_control(control: dict[str, Any]) -> dict[str, Any]:
    """The control's ratio lines (information: what the split costs)."""
    print()
    ratios: dict[str, Any] = {}
    for backend in BACKENDS:
        layouts = control["runs"].get(backend, {})
        one, split = (layouts.get(layout, []) for layout in CONTROLS)
        if len(one) != len(split):
            one = split = []  # a crashed round: unpaired rounds make no ratio
        throughput = paired_ratio(
            [run["ops_per_s"] for run in split], [run["ops_per_s"] for run in one]
        )
        cpu = paired_ratio(
            [client_per_op(run) for run in split],
            [client_per_op(run) for run in one],
            higher_is_better=False,
        )
        lead = f"{backend:<7} control   "
        pair = "writes elsewhere / all on one"
        print(ratio_line(lead, f"ops/s {pair}", throughput[0], throughput[1], width=WIDTH))
        print(ratio_line(lead, f"client µs/op {pair}", cpu[0], cpu[1], width=WIDTH))
        ratios[backend] = {"throughput": throughput[0], "client_cpu": cpu[0]}
    return ratios


#: The client's cost, counted: a child runs COST_BASE operations of a mix
#: and another COST_MORE, and the difference of their counts over the
#: operations between holds the operations alone (start, imports, connects
#: and the warm-up cancel out).
COST_BASE, COST_MORE = 5_000, 25_000
QUICK_COST_BASE, QUICK_COST_MORE = 2_000, 6_000
#: ``valgrind --trace-syscalls=yes`` prints a line per system call (and one
#: more for each that blocked: "... [async] --> ..."): these are the calls.
_SYSCALL = re.compile(r"^SYSCALL\[\d+,\d+\]\(\d+\) (sys_\w+)", re.MULTILINE)
#: Calls that are system calls only under valgrind: outside it the vDSO
#: answers them within the process (the clock, mostly).
_VDSO = frozenset({"sys_clock_gettime", "sys_gettimeofday", "sys_time", "sys_getcpu"})


def count_child(valgrind: str, ops: int, plan_ops: int, **options: object) -> tuple[int, int]:
    """One child under callgrind: the instructions it ran and the system
    calls it made (those that are system calls outside valgrind), in all."""
    cmd = [
        valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", "--trace-syscalls=yes",
        sys.executable, str(Path(__file__).resolve()), "--ops", str(ops),
        "--plan-ops", str(plan_ops),
    ]  # fmt: skip
    for name, value in options.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"timed out after {exc.timeout:.0f}s") from None
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        lines = [
            line
            for line in proc.stderr.splitlines()
            if line.strip() and not line.startswith(("SYSCALL[", "==", "--"))
        ]
        raise ChildFailed(lines[-1] if lines else f"exit status {proc.returncode}", proc.stderr)
    calls = [name for name in _SYSCALL.findall(proc.stderr) if name not in _VDSO]
    return int(found[1]), len(calls)


def run_costs(url: str, rounds: int, quick: bool, primaries: str, replicas: str) -> dict[str, Any]:
    """Per round, mix, backend and mode: the client's instructions and
    system calls per operation, counted (see COST_BASE). Returns ``{"runs":
    [{"mix", "backend", "mode", "round", "instructions", "syscalls"}, …],
    "crashed": […]}``. Counts hardly depend on the machine's speed, so two
    children share the cores."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return {"runs": [], "crashed": ["cost: valgrind not found (Debian's valgrind package)"]}
    base, more = (QUICK_COST_BASE, QUICK_COST_MORE) if quick else (COST_BASE, COST_MORE)
    jobs = [
        (number, mix, backend, mode, ops)
        for number in range(rounds)
        for mix in MIXES
        for backend in BACKENDS
        for mode in MODES
        for ops in (base, more)
    ]

    def count(job: tuple[int, str, str, str, int]) -> tuple[int, int] | str:
        _, mix, backend, mode, ops = job
        try:
            return count_child(
                valgrind, ops, more, run=backend, mode=mode, url=url, primaries=primaries,
                replicas=replicas, write_every=MIXES[mix],
            )  # fmt: skip
        except ChildFailed as exc:
            return f"cost/{mix}/{backend}/{mode}/{ops}: {exc.reason}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        counted = dict(zip(jobs, pool.map(count, jobs), strict=True))
    runs: list[dict[str, Any]] = []
    crashed = [value for value in counted.values() if isinstance(value, str)]
    for number, mix, backend, mode in {job[:4] for job in jobs}:
        low, high = (
            counted[number, mix, backend, mode, base],
            counted[number, mix, backend, mode, more],
        )
        if isinstance(low, str) or isinstance(high, str):
            continue
        runs.append({
            "mix": mix, "backend": backend, "mode": mode, "round": number,
            "instructions": (high[0] - low[0]) / (more - base),
            "syscalls": (high[1] - low[1]) / (more - base),
        })  # fmt: skip
    runs.sort(key=lambda run: (run["round"], run["mix"], run["backend"], run["mode"]))
    return {"operations": [base, more], "runs": runs, "crashed": crashed}


def report_costs(costs: dict[str, Any]) -> dict[str, Any]:
    """The counted cost's table and ratio lines; returns the ratios."""
    runs = costs["runs"]

    def figures(mix: str, backend: str, mode: str, name: str) -> list[float]:
        return [
            run[name]
            for run in runs
            if (run["mix"], run["backend"], run["mode"]) == (mix, backend, mode)
        ]

    def middle(values: Sequence[float]) -> str:
        return "n/a" if not values else f"{statistics.median(values):,.0f}"

    def calls(values: Sequence[float]) -> str:
        return "n/a" if not values else f"{statistics.median(values):.3f}"

    header = ["backend", "read_from"]
    for mix in MIXES:
        header += [f"{mix} instructions/op", f"{mix} syscalls/op"]
    rows: list[tuple[str, ...]] = [tuple(header)]
    for backend in BACKENDS:
        for mode in MODES:
            row = [backend, mode]
            for mix in MIXES:
                row += [
                    middle(figures(mix, backend, mode, "instructions")),
                    calls(figures(mix, backend, mode, "syscalls")),
                ]
            rows.append(tuple(row))
    print()
    title = "the client's cost per operation, counted by callgrind (median of rounds)"
    print_table(rows, [False, False, *([True] * (2 * len(MIXES)))], title=title)
    print()
    ratios: dict[str, Any] = {}
    for mix in MIXES:
        for backend in BACKENDS:
            ours = figures(mix, backend, "prefer_replica", "instructions")
            base = figures(mix, backend, "primary", "instructions")
            if not ours or len(ours) != len(base):
                ratio, per_round = None, []
            else:
                per_round = [a / b for a, b in zip(ours, base, strict=True)]
                ratio = statistics.median(per_round)
            lead = f"{backend:<7} {mix:<10}"
            pair = "client instructions/op prefer_replica / primary"
            print(ratio_target(lead, pair, (ratio, per_round), CLIENT_COST_MAX, True))
            ratios.setdefault(mix, {})[backend] = ratio
    return ratios


def parent_main(args: argparse.Namespace) -> int:
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    cost_rounds = args.cost_rounds if args.cost_rounds is not None else (1 if args.quick else 3)
    if rounds < 1 or cost_rounds < 0:
        print("error: --rounds must be at least 1, --cost-rounds at least 0", file=sys.stderr)
        return 2
    unknown = sorted(set(args.modes.split(",")) - set(MODES)) if args.modes else []
    if unknown:
        print(f"error: --modes takes {', '.join(MODES)}; not {', '.join(unknown)}", file=sys.stderr)
        return 2
    found = print_header(cluster=True)
    if found is None:
        return 2
    executable, server_version = found
    modes = [mode for mode in MODES if not args.modes or mode in args.modes.split(",")]
    ops = QUICK_OPS if args.quick else OPS
    print(
        f"{ops:,} operations per measurement ({TASKS} tasks; mixes: "
        f"{', '.join(MIXES)}) over {KEY_COUNT:,} keys, after {WARMUP_OPS:,} untimed; "
        f"best of {rounds} rounds; read_from {', '.join(modes)}"
    )
    runs: dict[str, Runs] = {mix: {} for mix in MIXES}
    crashed: list[str] = []
    control: dict[str, Any] = {}
    costs: dict[str, Any] = {}
    try:
        with closing(RedisCluster(binary=executable)) as cluster:
            topology = roles(cluster)
            primaries = ",".join(str(port) for port, of in topology.items() if of is None)
            replicas = ",".join(str(port) for port, of in topology.items() if of is not None)
            print(f"cluster: {cluster.url}; primaries {primaries}; replicas {replicas}")
            load(cluster.url)
            wait_until(lambda: replicated(topology), 60, "the replicas did not catch up")
            for number in range(rounds):
                # Alternate which mode goes first, so neither always runs on a fresher box.
                ordered = modes if number % 2 == 0 else modes[::-1]
                for mix, backend, mode in itertools.product(MIXES, BACKENDS, ordered):
                    try:
                        result = run_child(
                                __file__, run=backend, mode=mode, url=cluster.url, ops=ops,
                                primaries=primaries, replicas=replicas,
                                write_every=MIXES[mix],
                            )  # fmt: skip
                    except ChildFailed as exc:
                        if exc.reason.startswith(REFUSED):
                            print(f"error: {exc.reason}", file=sys.stderr)
                            return 2
                        crashed.append(f"{mix}/{backend}/{mode}: {exc.reason}")
                        print(f"  {mix} {backend} {mode} CRASHED:\n{exc.stderr}", file=sys.stderr)
                        continue
                    runs[mix].setdefault((backend, mode), []).append(result)
                    print(
                        f"  [{number + 1}/{rounds}] {mix:<10} {backend:<7} {mode:<14}"
                        f" {result['ops_per_s']:>10,.0f} ops/s",
                        flush=True,
                    )
            if "primary" in modes:
                control = run_control(cluster.url, topology, rounds, ops, primaries, replicas)
                crashed += control.pop("crashed")
            if cost_rounds and set(MODES) <= set(modes):
                costs = run_costs(cluster.url, cost_rounds, args.quick, primaries, replicas)
                crashed += costs.pop("crashed")
            # A failover in the middle would make the per-role figures wrong.
            moved = roles(cluster) != topology
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: could not run the cluster: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    if moved:
        print("error: the cluster's roles changed during the run", file=sys.stderr)
        return 2
    ratios = {mix: report(runs[mix], modes, topology, mix) for mix in MIXES}
    if control:
        ratios["control"] = report_control(control)
    if costs:
        ratios["cost"] = report_costs(costs)
    parameters = {
        "quick": args.quick,
        "rounds": rounds,
        "ops": ops,
        "warmup_ops": WARMUP_OPS,
        "tasks": TASKS,
        "keys": KEY_COUNT,
        "mixes": MIXES,
        "modes": modes,
        "cost_rounds": cost_rounds if costs else 0,
        "cost_operations": costs.get("operations"),
        "redis_server": server_version,
    }
    data = {
        "topology": {str(port): of for port, of in topology.items()},
        "runs": [
            {"mix": mix, "backend": backend, "mode": mode, "round": number, **run}
            for mix, mix_runs in runs.items()
            for (backend, mode), results in mix_runs.items()
            for number, run in enumerate(results)
        ],
        "control": control,
        "cost": costs.get("runs", []),
        "ratios": ratios,
        "crashed": crashed,
    }
    # A run of some modes writes only where it is told to: the committed
    # result compares both.
    if args.json or not args.modes:
        write_results(__file__, args.json, parameters=parameters, peers=PEERS, data=data)
    return exit_status(crashed)


def main(argv: Sequence[str] | None = None) -> int:
    options: dict[str, dict[str, Any]] = {
        "--run": {"metavar": "BACKEND", "choices": BACKENDS},
        "--mode": {"choices": MODES},
        "--url": {},
        "--ops": {"type": int},
        "--write-every": {"type": int, "help": "one operation in N a SET, 0 none (child)"},
        "--primaries": {"help": "the primaries' ports (child)"},
        "--replicas": {"help": "the replicas' ports (child)"},
        "--modes": {"default": None, "help": "comma-separated read_from modes (parent)"},
        "--rounds": {"type": int, "default": None, "help": "rounds (parent)"},
        "--cost-rounds": {
            "type": int,
            "default": None,
            "help": "rounds of the counted cost, 0 none (parent; default 3, --quick 1)",
        },
        "--read-tag": {"default": None, "help": "GET keys under this hash tag only (child)"},
        "--plan-ops": {
            "type": int,
            "default": None,
            "help": "build plans for this many operations, run --ops of them (child)",
        },
        "--write-tag": {"default": None, "help": "SET keys under this hash tag (child)"},
    }
    return bench_main(
        __doc__, argv, "fewer operations, one round", options, child_main, parent_main
    )


if __name__ == "__main__":
    sys.exit(main())
