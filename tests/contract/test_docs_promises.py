"""What the documentation's tables promise about the API, checked against it."""

from __future__ import annotations

import re
from pathlib import Path

from beignet_redis_anyio import CacheSlot, Namespace, RedisCachePort, TypedCache
from beignet_redis_anyio.testing import MemoryCachePort

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = (RedisCachePort, MemoryCachePort, Namespace, TypedCache, CacheSlot)


def test_the_views_table_says_which_operations_each_port_has() -> None:
    page = (ROOT / "docs" / "views.md").read_text()
    section = page.split("## What each port and view offers", 1)[1].split("\n## ", 1)[0]
    column = r" (\w+) \|"
    rows = re.findall(r"^\| (`[^|]+`) \|" + column * len(COLUMNS) + "$", section, re.M)
    assert len(rows) == 6
    for names, *cells in rows:
        for name in re.findall(r"`(\w+)`", names):
            for cls, cell in zip(COLUMNS, cells, strict=True):
                assert hasattr(cls, name) == (cell == "yes"), f"{cls.__name__}.{name}: {cell}"


def test_the_api_reference_documents_every_exported_name() -> None:
    import beignet_redis_anyio

    page = (ROOT / "docs" / "api.md").read_text()
    documented = set(re.findall(r"^\.\. auto\w+:: beignet_redis_anyio\.(\w+)$", page, re.M))
    exported = set(beignet_redis_anyio.__all__) - {"__version__"}
    assert exported - documented == set(), "exported but not in docs/api.md"
    modules = set(re.findall(r"^\.\. automodule:: (\S+)$", page, re.M))
    assert modules >= {
        "beignet_redis_anyio.testing",
        "beignet_redis_anyio.testing.servers",
        "beignet_redis_anyio.otel",
    }
