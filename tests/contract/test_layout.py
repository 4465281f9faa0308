"""The layout is the architecture: each layer a subpackage, imports only downward.

Layers, bottom up: ``_exceptions`` (every exception class) < ``_net``
(bytes, connections) < ``_topology`` (many servers) < ``_client`` (redis-py's
vocabulary) < ``_cache`` (the port) < ``_provider`` (the lifecycle). A module
may import from its own layer and the layers below, and no two modules may
import each other, directly or round a longer circle, whether the import is
at module level, under ``TYPE_CHECKING`` or inside a function. The package
root, ``testing``, ``otel`` and ``fastapi`` sit on top. Read from the source with ``ast``,
so a new upward import or a new circle fails here, named.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "beignet_redis_anyio"
LAYERS = ["_exceptions", "_net", "_topology", "_client", "_cache", "_provider"]
#: Above every layer: may import anything.
TOP = {"__init__", "testing", "otel", "fastapi"}
#: The package root, which imports every layer: no layer may import it.
ROOT = "<package root>"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _imported_layers(path: Path, package: Path = PACKAGE) -> set[tuple[str, int]]:
    """The package's own layers that ``path`` imports, with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = path.relative_to(package).parts[:-1]
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - (node.level - 1)])
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("beignet_redis_anyio"):
                target = node.module.split(".")[1:]
            else:
                continue
            if not target:  # "from .. import x": a layer by name, or the root itself
                names = [alias.name for alias in node.names]
                target = [names[0] if names[0] in LAYERS or names[0] in TOP else ROOT]
        elif isinstance(node, ast.Import):
            target = []
            for alias in node.names:
                if alias.name.startswith("beignet_redis_anyio."):
                    target = alias.name.split(".")[1:]
            if not target:
                continue
        else:
            continue
        found.add((target[0], node.lineno))
    return found


def test_every_private_module_lives_in_a_layer() -> None:
    strays = [
        str(p.relative_to(PACKAGE))
        for p in _modules()
        if _layer(p) not in LAYERS and _layer(p) not in TOP
    ]
    assert strays == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_only_downward(path: Path) -> None:
    layer = _layer(path)
    if layer in TOP:
        return
    rank = LAYERS.index(layer)
    upward = [
        f"line {line}: {layer} imports {target}"
        for target, line in sorted(_imported_layers(path), key=lambda item: item[1])
        if (target in LAYERS and LAYERS.index(target) > rank) or target in (*TOP, ROOT)
    ]
    assert upward == []


def test_only_the_net_layer_opens_sockets() -> None:
    """Sockets, TLS and raw streams belong to ``_net``; everything above talks
    to connections."""
    offenders = []
    for path in _modules():
        if _layer(path) == "_net" or _layer(path) == "testing":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("socket", "ssl", "select", "selectors"):
                    offenders.append(f"{path.relative_to(PACKAGE)}: imports {name}")
            if isinstance(node, ast.Attribute) and node.attr in (
                "connect_tcp",
                "connect_unix",
                "create_tcp_listener",
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}: anyio.{node.attr}")
    assert offenders == []


def test_the_detector_sees_an_upward_import(tmp_path: Path) -> None:
    """The checks above can fail: an upward import in a net module is seen."""
    module = PACKAGE / "_net" / "wire.py"
    found = _imported_layers(module)
    assert all(target != "_cache" for target, _ in found)
    fake = tmp_path / "beignet_redis_anyio" / "_net" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from .._cache.port import RedisCachePort\nfrom .. import CacheEvent\n")
    found = _imported_layers(fake, tmp_path / "beignet_redis_anyio")
    assert {target for target, _ in found} == {"_cache", ROOT}


# -- circles -------------------------------------------------------------------


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: Path) -> Iterator[tuple[str, int]]:
    """Every module of the package that ``path`` imports (as dotted names
    below the package), with line numbers: module level, ``TYPE_CHECKING``
    and function-level imports alike."""
    known = {_module_name(p, package) for p in package.rglob("*.py")}
    here = _module_name(path, package).split(".") if _module_name(path, package) else []
    if path.name != "__init__.py":
        here = here[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == package.name:
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                submodule = ".".join([*target, alias.name])
                yield (submodule if submodule in known else ".".join(target)), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package.name:
                    yield ".".join(alias.name.split(".")[1:]), node.lineno


def _circles(package: Path = PACKAGE) -> list[list[str]]:
    """The import circles among the package's modules (Tarjan's strongly
    connected components of more than one module, or a module importing
    itself)."""
    graph = {
        _module_name(p, package): {t for t, _ in _imports(p, package)}
        for p in package.rglob("*.py")
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(circles)


def test_no_module_imports_round_a_circle() -> None:
    assert _circles() == []


def test_the_detector_sees_a_circle_through_type_checking_and_functions(tmp_path: Path) -> None:
    package = tmp_path / "beignet_redis_anyio"
    (package / "_cache").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_cache" / "__init__.py").write_text("")
    (package / "_cache" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
    )
    (package / "_cache" / "b.py").write_text("def f():\n    from . import c\n")
    (package / "_cache" / "c.py").write_text("from beignet_redis_anyio._cache.a import A\n")
    (package / "_cache" / "d.py").write_text("from .a import A\n")
    assert _circles(package) == [["_cache.a", "_cache.b", "_cache.c"]]
