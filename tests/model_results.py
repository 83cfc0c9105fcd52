"""Model version views carrying a load test and a regression result, built by the real code.

The documents go through the very functions governance stores them with
(``core.governance.model_loadtest.loadtest_result`` for a member's recorded report,
``core.governance.model_regression.regression_result`` for a clean room's aggregate, which
recomputes the gate's verdict) onto the registry's own ``ModelVersion``, so the console is tested
on what `cleanroom model list -o json` would return, not on a hand-written guess. The figures are
fixed (a load test needs a serving clean room; tests/test_loadtest.py runs the real one) so
snapshots stay byte-stable.
"""

from __future__ import annotations

from typing import Any

from containers.regression.comparison import compare
from core.governance.model_loadtest import loadtest_result
from core.governance.model_registry import ModelVersion
from core.governance.model_regression import regression_result
from core.onboarding.loadtest import PER_RPS, LoadTestReport, StepResult, WorkloadUsage
from tests.tui_seeded import MEMBERS, MODELS, NOW

SLO_MS = 200.0
# target rps -> (achieved rps, p50 ms, p99 ms, failed): holds to 50 rps, p99 breaks the SLO at
# 75, and at 100 the server falls behind its target and requests time out
RPS_STEPS = {
    10: (10.0, 21.0, 30.5, 0),
    25: (25.0, 21.4, 34.0, 0),
    50: (49.6, 23.9, 88.2, 0),
    75: (71.0, 61.0, 412.0, 0),
    100: (61.2, 840.0, 2950.0, 17),
}
GATE = {"min_accuracy_delta": 0.0, "max_p": 0.01}


def loadtest_report(mode: str = PER_RPS, steps: dict[int, tuple[float, float, float, int]] = RPS_STEPS) -> dict:
    """What `cleanroom model loadtest -o json` prints for these steps (camelCase, knee computed)."""
    results = [
        StepResult(
            mode=mode,
            target=target,
            duration_s=10.0,
            sent=round(actual * 10),
            ok=round(actual * 10) - failed,
            failed=failed,
            actual_rps=actual,
            send_rps=float(target),
            latency_ms={"mean": p50 * 1.1, "p50": p50, "p90": (p50 + p99) / 2, "p99": p99, "max": p99 * 1.2},
            send_lag_p99_ms=0.4,
            errors={"timeout": failed} if failed else {},
            workload=WorkloadUsage(cpu_percent=min(100.0, 2.0 * target), peak_rss_bytes=310 * 2**20, processes=3),
            slo_ms=SLO_MS,
        )
        for target, (actual, p50, p99, failed) in steps.items()
    ]
    report = LoadTestReport(mode, "https://127.0.0.1:8443", "/infer", 1000, SLO_MS, results, "from /proc")
    return report.as_dict()


def recorded_loadtest(report: dict | None = None) -> dict[str, Any]:
    """The report as the registry keeps it: checked, with the contract, the writer and the time."""
    checked = loadtest_result(report if report is not None else loadtest_report())
    return checked | {"contractId": "serve-minilm-2", "writer": MEMBERS[2].member_id, "at": NOW - 120}


def regression_aggregate(candidate_right: int, *, cases: int = 200, baseline_right: int = 100) -> dict[str, Any]:
    """A regression clean room's aggregate over ``cases`` binary cases (the first ``baseline_right``
    the baseline gets right, the first ``candidate_right`` the candidate does), with the voted gate."""
    truth = [index % 2 for index in range(cases)]
    baseline = [label if index < baseline_right else 1 - label for index, label in enumerate(truth)]
    candidate = [label if index < candidate_right else 1 - label for index, label in enumerate(truth)]
    return compare(truth, baseline, candidate).as_dict() | {"gate": dict(GATE)}


def recorded_regression(candidate_right: int = 170) -> dict[str, Any]:
    """The aggregate as governance stores it on the candidate: verdict recomputed, versions pinned."""
    return regression_result(regression_aggregate(candidate_right), GATE) | {
        "contractId": "regress-minilm-2",
        "baselineVersion": "1",
        "baselinePackageHash": "ab" * 32,
        "candidatePackageHash": "ef" * 32,
        "at": NOW - 300,
    }


def models_with_results(loadtest: object, regression: object) -> list[dict[str, Any]]:
    """The seeded registry plus a verified version 3 carrying ``loadtest`` and ``regression`` as given
    (documents of any shape: governance's copy is input to the console)."""
    seeded: dict[str, Any] = MODELS[0]
    verified = seeded["versions"]["1"]
    version = ModelVersion(
        package_hash="ef" * 32,
        wrapper_hash="cd" * 32,
        status=verified["status"],
        details=verified["details"],
        history=verified["history"],
    )
    version.loadtest, version.regression = loadtest, regression  # type: ignore[assignment]
    versions = dict(seeded["versions"]) | {"3": version.view()}
    return [seeded | {"versions": versions}]
