"""The docs' table of tested ranges says what ``pyproject.toml`` declares."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest brings tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
#: The extras whose ranges the docs' table covers (noxfile.USER_EXTRAS).
USER_EXTRAS = ("trio", "uvloop", "testing", "otel")


def _declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in USER_EXTRAS:
        texts += project["optional-dependencies"][extra]
    return {Requirement(t).name: str(Requirement(t).specifier) for t in texts}


def _documented() -> dict[str, str]:
    page = (ROOT / "docs" / "contributing.md").read_text()
    section = page.split("## Which dependency versions are tested", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([^`]+)`[^|]*\| `([^`]+)` \|", section, flags=re.MULTILINE)
    return {Requirement(name).name: str(Requirement(f"x{spec}").specifier) for name, spec in rows}


def test_the_docs_list_every_tested_range_as_declared() -> None:
    assert _documented() == _declared()


def test_every_range_has_one_floor_for_the_floor_session() -> None:
    for name, specifier in _declared().items():
        floors = [s for s in Requirement(f"x{specifier}").specifier if s.operator == ">="]
        assert len(floors) == 1, f"{name}{specifier}: tests_floor pins the one '>=' bound"
