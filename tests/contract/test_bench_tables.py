"""The performance page's benchmark tables are what ``bench/results/*.json`` render to.

``bench/render.py --write`` renders them; this fails when someone edits a
table by hand, commits a new result without rendering it, or adds a
benchmark to ``nox -s bench`` without its result and region.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_render", ROOT / "bench" / "render.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_performance_tables_are_rendered_from_the_results(render: ModuleType) -> None:
    problems = render.check()
    assert problems == [], "\n".join(problems) + "\n(python bench/render.py --write)"


def test_every_benchmark_nox_runs_has_a_result(render: ModuleType) -> None:
    results = render.load_results()
    assert sorted(results) == sorted(render.nox_benchmarks())
    for name, result in results.items():
        assert result["benchmark"] == name
        assert result["commit"] != "unknown", name
        assert result["tables"], f"{name}.json has no table"


def test_a_table_edited_by_hand_is_caught(render: ModuleType, tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    text = render.PAGE.read_text()
    begin = "<!-- bench:client:begin -->\n"
    assert begin in text
    page.write_text(text.replace(begin, begin + "| a pasted row |\n"))
    problems = render.check(page)
    assert any("'client' differs" in problem for problem in problems), problems


def test_the_benchmark_count_follows_the_noxfile(render: ModuleType) -> None:
    sentence = render.render_list(render.nox_benchmarks())
    assert f"runs {len(render.nox_benchmarks())} benchmarks" in sentence
    assert sentence in render.PAGE.read_text()
