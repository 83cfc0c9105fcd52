"""A load-test report as the registry keeps it on a version: a member's signed, checked word.

A load test runs from a member's machine against a contract's TLS ingress
(``core.onboarding.loadtest``), so its figures are that member's measurement, not the clean
room's: the registry records who wrote it and through which contract, and checks the shape and
size so a reader (the console's chart, `cleanroom model show`) can draw any recorded report.
The stored keys are the ones `cleanroom model loadtest -o json` prints (camelCase).
"""

from __future__ import annotations

import math
from typing import Any

from core.config.canonical import canonical_json
from core.errors import InvalidInputError

MODES = ("per-rps", "per-concurrency")  # core.onboarding.loadtest.MODES (a lower layer does not import it)
MAX_STEPS = 50
MAX_REPORT_BYTES = 32 * 1024
MAX_TEXT = 300
LATENCIES = ("mean", "p50", "p90", "p99", "max")  # each null when no request of the step was answered
STEP_NUMBERS = ("durationS", "actualRps", "sendRps", "sendLagP99Ms")
STEP_COUNTS = ("target", "sent", "ok", "failed")


def _bad(field: str, want: str) -> InvalidInputError:
    return InvalidInputError(
        f"load-test report field {field!r} must be {want}",
        hint="record the report `cleanroom model loadtest` prints, unchanged",
    )


def _number(document: dict[str, Any], key: str, where: str, *, optional: bool = False) -> float | None:
    value = document.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _bad(f"{where}{key}", "a finite number >= 0")
    return float(value)


def _count(document: dict[str, Any], key: str, where: str) -> int:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{where}{key}", "a whole number >= 0")
    return value


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _bad(key, f"text of at most {MAX_TEXT} characters")
    return value


def _step(step: object, index: int) -> dict[str, Any]:
    where = f"steps[{index}]."
    if not isinstance(step, dict):
        raise _bad(f"steps[{index}]", "an object")
    latency = step.get("latencyMs")
    if not isinstance(latency, dict):
        raise _bad(f"{where}latencyMs", f"an object of {', '.join(LATENCIES)}")
    errors = step.get("errors", {})
    if (
        not isinstance(errors, dict)
        or len(errors) > 20
        or not all(
            isinstance(k, str) and len(k) <= 100 and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in errors.items()
        )
    ):
        raise _bad(f"{where}errors", "at most 20 reason: count entries")
    if step.get("mode") not in MODES:
        raise _bad(f"{where}mode", f"one of {', '.join(MODES)}")
    if not isinstance(step.get("withinSlo"), bool):
        raise _bad(f"{where}withinSlo", "true or false")
    return {
        "mode": step["mode"],
        **{key: _count(step, key, where) for key in STEP_COUNTS},
        **{key: _number(step, key, where) for key in STEP_NUMBERS},
        "latencyMs": {key: _number(latency, key, f"{where}latencyMs.", optional=True) for key in LATENCIES},
        "errors": dict(errors),
        "cpuPercent": _number(step, "cpuPercent", where, optional=True),
        "peakRssMb": _number(step, "peakRssMb", where, optional=True),
        "withinSlo": step["withinSlo"],
    }


def loadtest_result(report: object) -> dict[str, Any]:
    """The report checked field by field and rebuilt from the checked fields only (an unknown key
    is dropped, so what is stored is exactly what a reader is promised)."""
    if not isinstance(report, dict):
        raise _bad("report", "an object")
    if len(canonical_json(report)) > MAX_REPORT_BYTES:
        raise InvalidInputError(
            f"load-test report exceeds {MAX_REPORT_BYTES} bytes", hint=f"record at most {MAX_STEPS} steps"
        )
    if report.get("mode") not in MODES:
        raise _bad("mode", f"one of {', '.join(MODES)}")
    steps = report.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise _bad("steps", f"a list of 1 to {MAX_STEPS} steps")
    checked = [_step(step, index) for index, step in enumerate(steps)]
    knee = report.get("knee")
    if knee is not None:
        if not isinstance(knee, dict):
            raise _bad("knee", "null or {target, actualRps}")
        knee = {"target": _count(knee, "target", "knee."), "actualRps": _number(knee, "actualRps", "knee.")}
    return {
        "mode": report["mode"],
        "endpoint": _text(report, "endpoint"),
        "route": _text(report, "route"),
        "payloadChars": _count(report, "payloadChars", ""),
        "sloMs": _number(report, "sloMs", ""),
        "steps": checked,
        "knee": knee,
        "workloadMeasured": _text(report, "workloadMeasured"),
    }
