"""Strict number parsing and range checks, shared by every setting.

Python's own parsers are generous in ways configuration must not be:
``int()`` and ``str.isdigit()`` take any Unicode digit (``"٣"`` is 3,
``"²"`` passes ``isdigit`` and then fails ``int``), ``int()`` and ``float()``
take underscores (``"1_0"``) and surrounding whitespace, and ``float()`` takes
``"nan"``, ``"inf"`` and exponents. A value that a human reads one way must
not be taken another way, so here only plain ASCII decimal numbers count.
"""

from __future__ import annotations

import re

__all__ = ["ascii_decimal", "ascii_integer", "in_range", "is_number"]

#: More digits than any setting can use; it also keeps ``int()`` clear of
#: its 4,300-digit conversion limit, which would raise a bare ValueError.
_MAX_DIGITS = 30

_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def ascii_integer(text: str) -> int | None:
    """The value of ``text`` if it is ASCII digits only (no sign, no spaces), else None."""
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def ascii_decimal(text: str) -> float | None:
    """The value of ``text`` if it is a plain ASCII decimal (``3``, ``0.25``,
    ``.5``), else None: no sign, exponent, underscore, ``nan`` or ``inf``."""
    if _DECIMAL.fullmatch(text) is None:
        return None
    return float(text)


def is_number(value: object) -> bool:
    """An ``int`` or ``float`` that is not a ``bool`` (``True`` is not 1 second)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def in_range(value: object, minimum: float, maximum: float) -> bool:
    """``minimum <= value <= maximum`` for a number (see :func:`is_number`).

    Plain comparisons, on purpose: NaN fails them, infinity fails the
    maximum, and an int too large for a float compares exactly where
    ``math.isfinite`` would raise ``OverflowError``.
    """
    return is_number(value) and minimum <= value <= maximum  # type: ignore[operator]
