"""``{config-table}``: RedisConfig's fields as a table, from the class itself.

Each field's metadata holds its ``REDIS_`` variable and its meaning, so the
page cannot fall behind the code: a new field appears on the next build.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from beignet_redis_anyio import RedisConfig

_CODE = re.compile(r"`([^`]+)`")


def _text(value: str) -> list[nodes.Node]:
    """``value`` with its `backticks` as literals."""
    parts: list[nodes.Node] = []
    for index, piece in enumerate(_CODE.split(value)):
        if piece:
            parts.append(nodes.literal(piece, piece) if index % 2 else nodes.Text(piece))
    return parts


def _default(field: attrs.Attribute[Any]) -> str:
    if field.default is attrs.NOTHING:
        return "required"
    return repr(field.default)


class ConfigTable(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        headers = ("variable", "field", "type", "default", "meaning")
        table = nodes.table()
        group = nodes.tgroup(cols=len(headers))
        table += group
        for width in (20, 18, 12, 10, 40):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        row = nodes.row()
        for header in headers:
            row += nodes.entry("", nodes.paragraph(header, header))
        head += row
        body = nodes.tbody()
        group += body
        for field in attrs.fields(RedisConfig):
            cells = [
                [nodes.literal(field.metadata["variable"], field.metadata["variable"])],
                [nodes.literal(field.name, field.name)],
                [nodes.literal(str(field.type), str(field.type))],
                [nodes.literal(_default(field), _default(field))],
                _text(field.metadata["meaning"]),
            ]
            row = nodes.row()
            for cell in cells:
                row += nodes.entry("", nodes.paragraph("", "", *cell))
            body += row
        return [table]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("config-table", ConfigTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
