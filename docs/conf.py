"""Sphinx configuration: MyST Markdown pages, furo, the API from docstrings."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

import beignet_redis_anyio  # noqa: E402

project = "beignet-redis-anyio"
author = "beignet-redis-anyio developers"
copyright = "2026, beignet-redis-anyio developers"
release = beignet_redis_anyio.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "config_table"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = "beignet-redis-anyio"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# The package's signatures name redis-py's and anyio's types; unresolved
# cross-references to them are not errors (no intersphinx: no network here).
nitpicky = False
