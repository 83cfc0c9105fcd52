"""The regression comparison and its gate for the engine and the CLI, with core's errors.

The arithmetic (metrics, flips, McNemar's exact p, the gate rules) is the regression workload's
own module, imported here so the numbers a member checks outside are computed by the very code
that ran inside the clean room. What this adds: refusals as :class:`InvalidInputError` one-liners,
reading a gate file a member is about to vote for, and reading the sealed report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from containers.regression import comparison as _comparison
from containers.regression.comparison import (
    GATE_KEYS,
    REPORT_FILE,
    REPORT_KIND,
    ClassificationMetrics,
    Comparison,
    GateVerdict,
    RegressionInputError,
)
from core.errors import IntegrityError, InvalidInputError, NotFoundError

__all__ = [
    "GATE_KEYS",
    "ClassificationMetrics",
    "Comparison",
    "GateVerdict",
    "classification_metrics",
    "compare",
    "evaluate_gate",
    "load_gate",
    "mcnemar_exact_p",
    "read_report",
    "validate_gate",
]


def _refusal(exc: RegressionInputError) -> InvalidInputError:
    return InvalidInputError(exc.message, hint=exc.hint)


def classification_metrics(truth: Sequence[Any], predicted: Sequence[Any]) -> ClassificationMetrics:
    """Accuracy and macro/micro/weighted F1 of one version's predictions."""
    try:
        return _comparison.classification_metrics(truth, predicted)
    except RegressionInputError as exc:
        raise _refusal(exc) from None


def mcnemar_exact_p(regressions: int, fixes: int) -> float:
    """Two-sided exact McNemar p from the two discordant counts."""
    try:
        return _comparison.mcnemar_exact_p(regressions, fixes)
    except RegressionInputError as exc:
        raise _refusal(exc) from None


def compare(truth: Sequence[Any], baseline: Sequence[Any], candidate: Sequence[Any]) -> Comparison:
    """Both versions scored on the same cases, with their flips and McNemar's p."""
    try:
        return _comparison.compare(truth, baseline, candidate)
    except RegressionInputError as exc:
        raise _refusal(exc) from None


def validate_gate(gate: Mapping[str, Any]) -> dict[str, float]:
    """The gate's rules as numbers; an unknown key or a bad value is refused."""
    try:
        return _comparison.validate_gate(gate)
    except RegressionInputError as exc:
        raise _refusal(exc) from None


def evaluate_gate(gate: Mapping[str, Any], comparison: Comparison) -> GateVerdict:
    """Passed, or the reasons (one line per rule missed)."""
    try:
        return _comparison.evaluate_gate(gate, comparison)
    except RegressionInputError as exc:
        raise _refusal(exc) from None


def load_gate(path: Path) -> dict[str, float]:
    """A gate file (JSON object) checked before anyone proposes or votes it."""
    if not path.is_file():
        raise NotFoundError(f"gate file '{path}' does not exist", hint='write e.g. {"min_accuracy_delta": 0.0}')
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"gate file '{path}' is not JSON ({exc})", hint="write one JSON object") from None
    return validate_gate(document)


REPORT_KEYS = frozenset(
    {"report", "cases", "labels", "models", "baseline", "candidate", "flips", "mcnemar_p", "verdict"}
)


def read_report(folder: Path) -> dict[str, Any]:
    """The aggregate report the regression workload sealed (``regression_report.json``), checked
    for the fields a member reads before it is shown; anything else in the folder is ignored."""
    path = folder / REPORT_FILE
    if not path.is_file():
        raise NotFoundError(
            f"'{folder.name}' holds no {REPORT_FILE}", hint="the hoster runs the regression contract's clean room first"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{REPORT_FILE} in '{folder.name}' is not JSON ({exc})") from None
    missing = REPORT_KEYS - set(document) if isinstance(document, dict) else REPORT_KEYS
    if missing or document.get("report") != REPORT_KIND:
        raise IntegrityError(
            f"{REPORT_FILE} in '{folder.name}' is not a regression report (missing {', '.join(sorted(missing))})",
            hint="read the datasink the regression workload writes",
        )
    return dict(document)
