"""Reading a result document governance holds for a model version (its load test, its regression).

These documents arrive from governance, written by a member's CLI or by a clean room, so the
console treats them as input, not as its own data: a key may be spelt in the reports' snake_case
(``actual_rps``, as the workload and ``as_dict`` write them) or in the CLI's camelCase
(``actualRps``, as `-o json` prints them), a figure may be missing, null, a string or NaN, and a
section may not be a mapping at all. Each reader answers None for anything it cannot use, and the
views print "—" there, so one odd field costs one cell, never the console.
"""

from __future__ import annotations

import math
from typing import Any

from tui.output import camel

MISSING = "—"


def field(document: object, name: str) -> Any:
    """``document[name]`` under either spelling of ``name`` (snake_case first); None if absent."""
    if not isinstance(document, dict):
        return None
    if name in document:
        return document[name]
    return document.get(camel(name))


def section(document: object, name: str) -> dict[str, Any]:
    """A nested mapping, or an empty one when it is missing or not a mapping."""
    value = field(document, name)
    return value if isinstance(value, dict) else {}


def number(document: object, name: str) -> float | None:
    """A finite number (never a bool, which JSON would also give for ``true``)."""
    value = field(document, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def count(document: object, name: str) -> int | None:
    """A whole number of at least zero (requests, cases, flips)."""
    value = number(document, name)
    return int(value) if value is not None and value >= 0 and value.is_integer() else None


def text(document: object, name: str) -> str | None:
    value = field(document, name)
    return value if isinstance(value, str) and value else None


def flag(document: object, name: str) -> bool | None:
    value = field(document, name)
    return value if isinstance(value, bool) else None


def shown(value: float | None, spec: str = ".1f") -> str:
    """A figure in ``spec``, or the placeholder when there is none."""
    return MISSING if value is None else format(value, spec)
