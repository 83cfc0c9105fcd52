"""A regression run's aggregate as the registry keeps it: checked, and the gate's verdict recomputed.

The regression workload (containers/regression) sends its aggregate as a ``model_regression``
telemetry record; the runtime hands it to governance with the clean room's attestation. The
record is the workload's word, so nothing in it is taken on trust that governance can check:
every number is type- and range-checked, the gate must be the one the contract voted, and the
verdict is recomputed here from the aggregate with the workload's own rules
(``containers.regression.comparison.evaluate_gate``), so a workload claiming "passed" for a
candidate that misses the voted gate is stored as failed.

The stored ``regression`` field uses the keys `cleanroom model regression show -o json` prints
(camelCase), so the CLI and the console draw the registry's copy and the sealed report alike.
"""

from __future__ import annotations

import math
from typing import Any

from containers.regression.comparison import (
    ClassificationMetrics,
    Comparison,
    RegressionInputError,
    evaluate_gate,
    validate_gate,
)
from core.errors import InvalidInputError

METRICS = ("accuracy", "macro_f1", "micro_f1", "weighted_f1")
MAX_FLIP_KINDS = 64


def _number(report: dict[str, Any], key: str, *, low: float = 0.0, high: float = 1.0) -> float:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"model_regression field {key!r} must be a finite number", hint="send the aggregate")
    if not low <= value <= high:
        raise InvalidInputError(f"model_regression field {key!r} is {value}, outside [{low}, {high}]")
    return float(value)


def _count(report: dict[str, Any], key: str) -> int:
    value = report.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"model_regression field {key!r} must be a whole number >= 0", hint="send the counts")
    return value


def _metrics(report: dict[str, Any], role: str) -> ClassificationMetrics:
    scores = report.get(role)
    if not isinstance(scores, dict):
        raise InvalidInputError(f"model_regression field {role!r} must hold {', '.join(METRICS)}")
    return ClassificationMetrics(**{key: _number(scores, key) for key in METRICS})


def comparison_of(report: dict[str, Any]) -> Comparison:
    """The aggregate rebuilt as the workload's ``Comparison``; a one-line refusal naming a bad field."""
    flips = report.get("flips")
    if not isinstance(flips, dict) or not isinstance(flips.get("labels", {}), dict):
        raise InvalidInputError("model_regression field 'flips' must hold the two discordant counts and label flips")
    labels = flips.get("labels", {})
    if len(labels) > MAX_FLIP_KINDS or not all(
        isinstance(k, str) and len(k) <= 200 and not isinstance(v, bool) and isinstance(v, int) and v >= 0
        for k, v in labels.items()
    ):
        raise InvalidInputError(f"model_regression label flips must be at most {MAX_FLIP_KINDS} 'a->b': count entries")
    cases = _count(report, "cases")
    regressions = _count(flips, "baseline_right_candidate_wrong")
    fixes = _count(flips, "baseline_wrong_candidate_right")
    if cases < 1 or regressions + fixes > cases:
        raise InvalidInputError(f"model_regression counts do not add up ({regressions} + {fixes} of {cases} cases)")
    return Comparison(
        cases=cases,
        baseline=_metrics(report, "baseline"),
        candidate=_metrics(report, "candidate"),
        baseline_right_candidate_wrong=regressions,
        baseline_wrong_candidate_right=fixes,
        label_flips=dict(labels),
        mcnemar_p=_number(report, "mcnemar_p"),
    )


def regression_result(report: dict[str, Any], voted_gate: dict[str, Any]) -> dict[str, Any]:
    """The ``regression`` field for the candidate: the aggregate, the voted gate and the verdict
    governance recomputed (not the workload's). Refuses a report whose gate is not the voted one."""
    try:
        gate = validate_gate(voted_gate)
    except RegressionInputError as exc:
        raise InvalidInputError(f"the contract's voted gate is not valid: {exc.message}", hint=exc.hint) from None
    sent = report.get("gate")
    try:
        same = isinstance(sent, dict) and validate_gate(sent) == gate
    except RegressionInputError:
        same = False
    if not same:
        raise InvalidInputError(
            "the model_regression record's gate is not the contract's voted gate",
            hint="run the regression application the contract pins, unchanged",
        )
    comparison = comparison_of(report)
    verdict = evaluate_gate(gate, comparison)
    aggregate = comparison.as_dict()
    flips = aggregate["flips"]
    return {
        "cases": comparison.cases,
        "baseline": _camel_metrics(aggregate["baseline"]),
        "candidate": _camel_metrics(aggregate["candidate"]),
        "accuracyDelta": aggregate["accuracy_delta"],
        "macroF1Delta": aggregate["macro_f1_delta"],
        "flips": {
            "baselineRightCandidateWrong": flips["baseline_right_candidate_wrong"],
            "baselineWrongCandidateRight": flips["baseline_wrong_candidate_right"],
            "labels": flips["labels"],
        },
        "mcnemarP": comparison.mcnemar_p,
        "gate": {_camel(key): value for key, value in gate.items()},
        "verdict": verdict.as_dict(),
        "passed": verdict.passed,
    }


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {_camel(key): value for key, value in metrics.items()}
