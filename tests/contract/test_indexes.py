"""Indexes that cannot drift: each package lists its modules, the docs its layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "beignet_redis_anyio"
#: ``- ``name``: what it holds`` lines in a package's docstring.
ENTRY = re.compile(r"^- ``(\w+)``: \S", flags=re.MULTILINE)


def _packages() -> list[Path]:
    return sorted(p.parent for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE)


def _contents(package: Path) -> set[str]:
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    subpackages = {p.parent.name for p in package.glob("*/__init__.py")}
    return modules | subpackages


@pytest.mark.parametrize("package", _packages(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_package_lists_every_module_once(package: Path) -> None:
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    listed = ENTRY.findall(docstring)
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert set(listed) == _contents(package)


def test_the_architecture_page_lists_every_layer() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    section = page.split("# How it is built", 1)[1].split("\n## ", 1)[0]
    listed = {name.rstrip("/") for name in re.findall(r"^\| `([\w/]+)` \|", section, re.M)}
    top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    top |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert listed == top


#: A measured figure: "1.7x", "2×", "35%", "120k ops/s". It belongs in a bench
#: result, where it is dated and re-measured, not in prose that goes stale.
FIGURE = re.compile(r"\b\d+(\.\d+)?\s?[x×](?=[\s).,;:]|$)|\b\d+(\.\d+)?\s?%|\bops/s\b")


def _prose(path: Path) -> list[tuple[int, str]]:
    """The comments and string literals of a module, with line numbers."""
    import io
    import tokenize

    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [(t.start[0], t.string) for t in tokens if t.type in (tokenize.COMMENT, tokenize.STRING)]


def test_no_measured_figures_in_the_package_s_prose() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {FIGURE.search(text).group(0)}"  # type: ignore[union-attr]
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text in _prose(path)
        if FIGURE.search(text) and "%s" not in text and "%d" not in text and "{" not in text
    ]
    assert found == []


def test_the_repository_cites_only_its_own_documents() -> None:
    """What a reader needs is written here, in the project's own words: no
    file points at a design document that the repository does not have."""
    foreign = "DESIGN" + ".md"
    tracked = [*ROOT.glob("*.md"), *ROOT.glob("*.toml"), ROOT / "noxfile.py"]
    for folder in ("beignet_redis_anyio", "tests", "bench", "examples", "docs", ".ci"):
        tracked += [
            p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in ("", ".py", ".md")
        ]
    citing = [str(p.relative_to(ROOT)) for p in tracked if foreign in p.read_text(errors="ignore")]
    assert citing == []
