"""Comparing two versions of a classifier on the same regression cases, and the gate that decides.

Only aggregates are computed here (accuracy, F1 averages, flip counts, McNemar's p): the cases
belong to the consumer, so the report that leaves the clean room must not let anyone rebuild a
row. McNemar's exact test looks only at the discordant pairs (rows exactly one version gets
right), which is what makes a paired comparison on the same cases far more sensitive than
comparing two accuracies: a fine-tuned model against its base separates at p far below 1e-6 on a
few hundred cases.

The gate is voted as data (``{"min_accuracy_delta": 0.0, "max_p": 0.01}``), so every member
sees exactly what a candidate must meet before it can be published.

This module lives with the workload because the comparison runs inside the clean room and a
workload imports nothing from ``core``; ``core.ml.regression`` imports it (as
``core.ml.model_preparation`` imports the trainer's export), so there is one implementation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REPORT_FILE = "regression_report.json"
REPORT_KIND = "model_regression"  # the report's "report" field and its telemetry record's "event"


class RegressionInputError(ValueError):
    """Bad cases, predictions or gate: ``message`` names the thing, ``hint`` the fix."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}; {hint}")


GATE_KEYS: dict[str, str] = {
    "min_accuracy_delta": "candidate accuracy minus baseline accuracy must be at least this",
    "min_macro_f1_delta": "candidate macro F1 minus baseline macro F1 must be at least this",
    "min_accuracy": "candidate accuracy must be at least this",
    "max_p": "McNemar's exact p must be at most this (the difference is not chance)",
    "max_regressions": "cases the baseline got right and the candidate gets wrong: at most this many",
}


@dataclass(frozen=True)
class ClassificationMetrics:
    """One version's scores over the cases (labels are compared as given, any hashable kind)."""

    accuracy: float
    macro_f1: float
    micro_f1: float
    weighted_f1: float

    def as_dict(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "micro_f1": self.micro_f1,
            "weighted_f1": self.weighted_f1,
        }


@dataclass(frozen=True)
class Comparison:
    """Baseline against candidate on the same cases: what the regression report holds."""

    cases: int
    baseline: ClassificationMetrics
    candidate: ClassificationMetrics
    baseline_right_candidate_wrong: int  # regressions
    baseline_wrong_candidate_right: int  # fixes
    label_flips: dict[str, int]  # "a->b": rows the baseline predicted a and the candidate b
    mcnemar_p: float

    @property
    def accuracy_delta(self) -> float:
        return self.candidate.accuracy - self.baseline.accuracy

    @property
    def macro_f1_delta(self) -> float:
        return self.candidate.macro_f1 - self.baseline.macro_f1

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "baseline": self.baseline.as_dict(),
            "candidate": self.candidate.as_dict(),
            "accuracy_delta": self.accuracy_delta,
            "macro_f1_delta": self.macro_f1_delta,
            "flips": {
                "baseline_right_candidate_wrong": self.baseline_right_candidate_wrong,
                "baseline_wrong_candidate_right": self.baseline_wrong_candidate_right,
                "labels": dict(self.label_flips),
            },
            "mcnemar_p": self.mcnemar_p,
        }


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reasons: list[str]  # one line per rule the candidate missed; empty when it passed

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons)}


def classification_metrics(truth: Sequence[Any], predicted: Sequence[Any]) -> ClassificationMetrics:
    """Accuracy and macro/micro/weighted F1 over the labels present in ``truth`` or ``predicted``
    (a label never true and never predicted has no F1; one predicted but never true counts 0)."""
    _check_lengths(truth, predicted, "predictions")
    if not truth:
        raise RegressionInputError(
            "the regression cases are empty", hint="upload at least one case with text and label"
        )
    labels = sorted(set(truth) | set(predicted), key=str)
    true_positive = dict.fromkeys(labels, 0)
    predicted_count = dict.fromkeys(labels, 0)
    support = dict.fromkeys(labels, 0)
    for actual, guess in zip(truth, predicted, strict=True):
        support[actual] += 1
        predicted_count[guess] += 1
        if actual == guess:
            true_positive[actual] += 1
    f1 = {
        label: _f1(true_positive[label], predicted_count[label], support[label]) for label in labels
    }  # F1 = 2tp / (2tp + fp + fn) = 2tp / (predicted + support)
    correct = sum(true_positive.values())
    total = len(truth)
    return ClassificationMetrics(
        accuracy=correct / total,
        macro_f1=sum(f1.values()) / len(labels),
        micro_f1=correct / total,  # single-label: micro precision = micro recall = accuracy
        weighted_f1=sum(f1[label] * support[label] for label in labels) / total,
    )


def _f1(true_positive: int, predicted: int, support: int) -> float:
    return 2 * true_positive / (predicted + support) if predicted + support else 0.0


def mcnemar_exact_p(regressions: int, fixes: int) -> float:
    """Two-sided exact McNemar p: the binomial(n, 1/2) tail of the smaller discordant count.

    scipy's binomtest when it is installed, else the same sum with exact integers
    (``math.comb``) taken to logarithms only at the end, so p values far below 1e-300 neither
    underflow nor lose precision."""
    if regressions < 0 or fixes < 0:
        raise RegressionInputError(f"discordant counts {regressions}, {fixes} are negative")
    n = regressions + fixes
    if n == 0:
        return 1.0
    smaller = min(regressions, fixes)
    try:
        from scipy.stats import binomtest  # type: ignore[import-untyped]
    except ImportError:
        tail = sum(math.comb(n, k) for k in range(smaller + 1))
        return min(1.0, math.exp(math.log(2 * tail) - n * math.log(2)))
    return float(min(1.0, binomtest(smaller, n, 0.5, alternative="two-sided").pvalue))


def compare(truth: Sequence[Any], baseline: Sequence[Any], candidate: Sequence[Any]) -> Comparison:
    """Score both versions' predictions on the same cases and count how they disagree."""
    _check_lengths(truth, baseline, "baseline predictions")
    _check_lengths(truth, candidate, "candidate predictions")
    regressions = fixes = 0
    flips: dict[str, int] = {}
    for actual, old, new in zip(truth, baseline, candidate, strict=True):
        if old == actual and new != actual:
            regressions += 1
        elif old != actual and new == actual:
            fixes += 1
        if old != new:
            key = f"{old}->{new}"
            flips[key] = flips.get(key, 0) + 1
    return Comparison(
        cases=len(truth),
        baseline=classification_metrics(truth, baseline),
        candidate=classification_metrics(truth, candidate),
        baseline_right_candidate_wrong=regressions,
        baseline_wrong_candidate_right=fixes,
        label_flips=dict(sorted(flips.items())),
        mcnemar_p=mcnemar_exact_p(regressions, fixes),
    )


def _check_lengths(truth: Sequence[Any], other: Sequence[Any], what: str) -> None:
    if len(truth) != len(other):
        raise RegressionInputError(
            f"{what} cover {len(other)} cases but there are {len(truth)} labels",
            hint="predict every case exactly once",
        )


def validate_gate(gate: Mapping[str, Any]) -> dict[str, float]:
    """The gate as numbers, or a one-line refusal naming the bad key (an unknown key is refused:
    a misspelt rule silently ignored would let a candidate through that the members meant to stop)."""
    if not isinstance(gate, Mapping) or not gate:
        raise RegressionInputError(
            "the regression gate is empty or not a mapping",
            hint=f"give at least one of {', '.join(sorted(GATE_KEYS))}",
        )
    checked: dict[str, float] = {}
    for key, value in gate.items():
        if key not in GATE_KEYS:
            raise RegressionInputError(
                f"regression gate key '{key}' is unknown", hint=f"use only {', '.join(sorted(GATE_KEYS))}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise RegressionInputError(f"regression gate '{key}' must be a finite number, not {value!r}")
        if key in ("max_p", "min_accuracy") and not 0 <= value <= 1:
            raise RegressionInputError(f"regression gate '{key}' is {value}; give a value between 0 and 1")
        if key == "max_regressions" and (value < 0 or value != int(value)):
            raise RegressionInputError(f"regression gate 'max_regressions' is {value}; give a whole number >= 0")
        checked[key] = float(value)
    return checked


def evaluate_gate(gate: Mapping[str, Any], comparison: Comparison) -> GateVerdict:
    """Every rule of the gate against the comparison; the verdict lists each one missed."""
    rules = validate_gate(gate)
    reasons: list[str] = []
    if "min_accuracy_delta" in rules and comparison.accuracy_delta < rules["min_accuracy_delta"]:
        reasons.append(
            f"accuracy delta {comparison.accuracy_delta:+.4f} is below the gate's {rules['min_accuracy_delta']:+.4f}"
        )
    if "min_macro_f1_delta" in rules and comparison.macro_f1_delta < rules["min_macro_f1_delta"]:
        reasons.append(
            f"macro F1 delta {comparison.macro_f1_delta:+.4f} is below the gate's {rules['min_macro_f1_delta']:+.4f}"
        )
    if "min_accuracy" in rules and comparison.candidate.accuracy < rules["min_accuracy"]:
        reasons.append(
            f"candidate accuracy {comparison.candidate.accuracy:.4f} is below the gate's {rules['min_accuracy']:.4f}"
        )
    if "max_p" in rules and comparison.mcnemar_p > rules["max_p"]:
        reasons.append(f"McNemar p {comparison.mcnemar_p:.3g} is above the gate's {rules['max_p']:.3g}")
    if "max_regressions" in rules and comparison.baseline_right_candidate_wrong > rules["max_regressions"]:
        reasons.append(
            f"{comparison.baseline_right_candidate_wrong} cases regressed (baseline right, candidate wrong), "
            f"over the gate's {int(rules['max_regressions'])}"
        )
    return GateVerdict(passed=not reasons, reasons=reasons)
