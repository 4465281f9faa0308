"""The performance page's benchmark tables, rendered from ``bench/results/*.json``.

Each benchmark's tables and target lines sit in ``docs/performance.md`` between
``<!-- bench:NAME:begin -->`` and ``<!-- bench:NAME:end -->`` (``NAME`` is the
result file's, ``client`` for ``bench/results/client.json``), and the sentence
that names the benchmarks ``nox -s bench`` runs between
``<!-- bench:list:begin -->`` and ``<!-- bench:list:end -->``. Everything else
on the page is prose, left alone.

Usage::

    python bench/render.py            # print what the regions render to
    python bench/render.py --write    # rewrite those regions in docs/performance.md
    python bench/render.py --check    # exit 1 if the page differs from that

``tests/contract/test_bench_tables.py`` runs the check, so a table cannot
drift from its results: a new run is committed with its JSON and
``--write``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: The page the tables live on.
PAGE = ROOT / "docs" / "performance.md"
RESULTS = BENCH / "results"
NOXFILE = ROOT / "noxfile.py"
LIST_REGION = "list"

_REGION = re.compile(
    r"(?P<begin><!-- bench:(?P<name>[a-z_]+):begin -->\n)"
    r"(?P<body>.*?)"
    r"(?P<end><!-- bench:(?P=name):end -->)",
    re.DOTALL,
)
#: Parameters some scripts record that the provenance line gives already.
_SHOWN_ELSEWHERE = frozenset({"python", "redis_server"})

__all__ = ["check", "load_results", "nox_benchmarks", "regions", "render_page"]


def load_results(folder: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Every ``NAME.json`` in ``folder``, by ``NAME``."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def nox_benchmarks(noxfile: Path = NOXFILE) -> list[str]:
    """The scripts the ``bench`` session runs, in its order: the ``scripts``
    tuple in ``noxfile.py``'s ``bench`` function, read without importing nox."""
    tree = ast.parse(noxfile.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "bench":
            for statement in ast.walk(node):
                if (
                    isinstance(statement, ast.Assign)
                    and any(
                        isinstance(t, ast.Name) and t.id == "scripts" for t in statement.targets
                    )
                    and isinstance(statement.value, ast.Tuple | ast.List)
                ):
                    return [ast.literal_eval(element) for element in statement.value.elts]
    raise ValueError(f"{noxfile}: no `scripts = (...)` in a function `bench`")


def _harness() -> ModuleType:
    """The harness, for its drawing functions: the tables and target lines come
    out as the benchmark printed them. Imported without leaving its path setup
    behind (the contract test loads this module inside the test run)."""
    saved = sys.path[:]
    sys.path.insert(0, str(BENCH))
    try:
        import _harness
    finally:
        sys.path[:] = saved
    return _harness


def _table(table: Mapping[str, Any]) -> list[str]:
    keys = table.get("keys", table["columns"])
    rows = [table["columns"], *([row.get(key, "") for key in keys] for row in table["rows"])]
    return list(_harness().format_table(rows, table["right"]))


def _target(target: Mapping[str, Any]) -> str:
    harness = _harness()
    if target["kind"] == "verdict":
        return str(harness.format_verdict(target["name"], target["status"], target["measured"]))
    return str(
        harness.format_target(
            target["lead"],
            target["name"],
            target["measured"],
            target["wanted"],
            target["status"],
            target["note"],
            width=target["width"],
        )
    )


def _value(value: Any) -> str:
    return (
        json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else f"{value}"
    )


def _provenance(result: Mapping[str, Any]) -> str:
    machine = result["machine"]
    peers = ", ".join(
        f"{name} {version}" if version else f"{name} (not installed)"
        for name, version in result["peers"].items()
    )
    parameters = ", ".join(
        f"{k}={_value(v)}" for k, v in result["parameters"].items() if k not in _SHOWN_ELSEWHERE
    )
    lines = [
        f"Measured {result['date']} at commit `{result['commit']}` "
        f"(beignet-redis-anyio {result['version']}), by `bench/bench_{result['benchmark']}.py`;",
        f"machine: {machine['cpu_count']} CPUs, {machine['platform']}, Python {machine['python']};",
        f"server: {result['server'] or 'none'}; peers: {peers or 'none'};",
        f"parameters: {parameters or 'defaults'}.",
    ]
    return "<sub>" + "<br>\n".join(lines) + "</sub>"


def render_result(result: Mapping[str, Any]) -> str:
    """One benchmark's region: where and how it was measured, its tables and
    its target lines."""
    parts = [_provenance(result)]
    for table in result["tables"]:
        if table["title"]:
            parts.append(f"*{table['title']}:*")
        parts.append("\n".join(_table(table)))
    if result["targets"]:
        lines = "\n".join(_target(t) for t in result["targets"])
        parts.append(f"```text\n{lines}\n```")
    return "\n\n".join(parts) + "\n"


def render_list(benchmarks: Sequence[str]) -> str:
    """The sentence naming what ``nox -s bench`` runs, from the noxfile."""
    names = ", ".join(f"`{name}`" for name in benchmarks)
    count = len(benchmarks)
    return (
        f"`nox -s bench` runs {count} benchmarks ({names}: `bench/bench_NAME.py`) against"
        " local servers it starts itself.\n"
    )


def regions(results: Mapping[str, Mapping[str, Any]], benchmarks: Sequence[str]) -> dict[str, str]:
    """What each region should hold, by name."""
    rendered = {name: render_result(result) for name, result in results.items()}
    rendered[LIST_REGION] = render_list(benchmarks)
    return rendered


def render_page(text: str, rendered: Mapping[str, str]) -> tuple[str, list[str]]:
    """``text`` with every region replaced by its rendering, and the problems
    found: a region with no result, a result or region missing."""
    problems: list[str] = []
    seen: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        seen.append(name)
        if name not in rendered:
            problems.append(f"region {name!r} has no bench/results/{name}.json")
            return match[0]
        return match["begin"] + rendered[name] + match["end"]

    new = _REGION.sub(replace, text)
    for name in rendered:
        if name not in seen:
            problems.append(f"{PAGE.name} has no region <!-- bench:{name}:begin/end -->")
    for name in {n for n in seen if seen.count(n) > 1}:
        problems.append(f"region {name!r} appears more than once")
    return new, problems


def check(page: Path = PAGE, folder: Path = RESULTS, noxfile: Path = NOXFILE) -> list[str]:
    """What is wrong with ``page``'s regions: [] when they are what the
    results render to (and every benchmark nox runs has its result)."""
    benchmarks = nox_benchmarks(noxfile)
    results = load_results(folder)
    text = page.read_text()
    new, problems = render_page(text, regions(results, benchmarks))
    problems += [
        f"no bench/results/{n}.json for bench_{n}.py" for n in benchmarks if n not in results
    ]
    problems += [
        f"bench/results/{n}.json: not run by nox -s bench" for n in results if n not in benchmarks
    ]
    if new != text:
        old_regions = {m["name"]: m["body"] for m in _REGION.finditer(text)}
        new_regions = {m["name"]: m["body"] for m in _REGION.finditer(new)}
        problems += [
            f"region {name!r} differs from bench/results (run: python bench/render.py --write)"
            for name in new_regions
            if old_regions.get(name) != new_regions[name]
        ]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--write", action="store_true", help="rewrite the regions in docs/performance.md"
    )
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if docs/performance.md is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    rendered = regions(load_results(), nox_benchmarks())
    if args.write:
        text = PAGE.read_text()
        new, problems = render_page(text, rendered)
        for problem in problems:
            print(problem, file=sys.stderr)
        if new != text:
            PAGE.write_text(new)
            print(f"rewrote {PAGE.relative_to(ROOT)}")
        return 1 if problems else 0
    for name, body in rendered.items():
        print(f"<!-- bench:{name}:begin -->\n{body}<!-- bench:{name}:end -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
