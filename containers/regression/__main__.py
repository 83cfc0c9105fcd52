"""Command line: ``python -m containers.regression --cases-dir C --baseline-dir B --candidate-dir N
--output-dir O [--gate JSON]``.

Runs inside the clean room: both model versions classify the consumer's cases, and only the
aggregate report (``regression_report.json``: metrics, flips, McNemar p, the gate's verdict)
is written, plus one ``model_regression`` telemetry record. No per-case output exists anywhere,
not even in the logs. The gate is given on the command line, which is part of the deployment
spec every member votes for (and the key release measures), so the rules are the voted ones.
Exit codes: 0 compared (whatever the verdict: a failed gate is a result,
not an error); 2 bad input, reported before any model runs; 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from containers.inference_server.classifier import ModelFolderError, OnnxClassifier
from containers.regression.cases import Cases, CasesError, load_cases
from containers.regression.comparison import (
    REPORT_FILE,
    REPORT_KIND,
    RegressionInputError,
    compare,
    evaluate_gate,
    validate_gate,
)
from containers.regression.pinned_versions import PinnedVersions, onnx_dir

TELEMETRY_ENV = "CLEANROOM_TELEMETRY_FILE"
EXIT_BAD_INPUT = 2
# label flips kept in the telemetry record (the most frequent first): the runtime reads a
# telemetry line of at most 16 KiB, and a task with many labels has labels squared flip kinds
MAX_TELEMETRY_FLIPS = 32


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m containers.regression",
        description="Compare two ONNX classifier versions on encrypted regression cases; write only the aggregate.",
        epilog="Example: python -m containers.regression --cases-dir /mnt/cases --baseline-dir /mnt/baseline "
        "--candidate-dir /mnt/candidate --gate '{\"min_accuracy_delta\": 0.0}' --output-dir /mnt/output. "
        "A regression contract over registry versions pins both package hashes and the gate in "
        "CLEANROOM_REGRESSION_* env names instead; other mounted bytes are refused.",
    )
    parser.add_argument("--cases-dir", type=Path, required=True, help="cases mount (one .parquet or .jsonl file)")
    parser.add_argument("--baseline-dir", type=Path, required=True, help="the version in service (ONNX folder)")
    parser.add_argument("--candidate-dir", type=Path, required=True, help="the version under test (ONNX folder)")
    parser.add_argument("--output-dir", type=Path, required=True, help="output mount (must not hold a report)")
    parser.add_argument("--gate", default=None, help='the voted gate, JSON: {"min_accuracy_delta": 0.0, ...}')
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: CPUs available)")
    return parser.parse_args(argv)


def load_gate(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    try:
        return validate_gate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise CasesError(f"--gate is not JSON ({exc}); give one JSON object") from None


def predictions(classifier: OnnxClassifier, cases: Cases) -> list[int | str]:
    """Label ids when the cases carry ids, else label names, so both compare like for like."""
    by_id = isinstance(cases.labels[0], int)
    return [p.label_id if by_id else p.label for p in classifier.classify(cases.texts)]


def report(
    cases: Cases, baseline: OnnxClassifier, candidate: OnnxClassifier, gate: dict[str, float] | None
) -> dict[str, Any]:
    if baseline.labels != candidate.labels:
        raise CasesError(
            f"the versions have different labels ({baseline.labels} and {candidate.labels}); "
            "compare versions of the same task"
        )
    comparison = compare(cases.labels, predictions(baseline, cases), predictions(candidate, cases))
    document: dict[str, Any] = {
        "report": REPORT_KIND,
        "labels": baseline.labels,
        "models": {
            "baseline": {"model_file": baseline.model_file.name, "model_sha256": baseline.model_sha256},
            "candidate": {"model_file": candidate.model_file.name, "model_sha256": candidate.model_sha256},
        },
        **comparison.as_dict(),
        "gate": gate,
        "verdict": evaluate_gate(gate, comparison).as_dict() if gate is not None else None,
    }
    return document


def telemetry_record(document: dict[str, Any], pinned: PinnedVersions | None = None) -> dict[str, Any]:
    """The aggregate as one telemetry record: with pinned registry versions, the runtime takes it
    out of telemetry and governance writes it to the candidate's ``regression`` field."""
    verdict = document["verdict"]
    flips = document["flips"]
    frequent = sorted(flips["labels"].items(), key=lambda item: (-item[1], item[0]))[:MAX_TELEMETRY_FLIPS]
    return {
        "event": REPORT_KIND,
        **(pinned.record() if pinned is not None else {}),
        "cases": document["cases"],
        "baseline_sha256": document["models"]["baseline"]["model_sha256"],
        "candidate_sha256": document["models"]["candidate"]["model_sha256"],
        "baseline_accuracy": document["baseline"]["accuracy"],
        "candidate_accuracy": document["candidate"]["accuracy"],
        "baseline": document["baseline"],
        "candidate": document["candidate"],
        "accuracy_delta": document["accuracy_delta"],
        "macro_f1_delta": document["macro_f1_delta"],
        "flips": {**flips, "labels": dict(frequent)},
        "mcnemar_p": document["mcnemar_p"],
        "gate": document["gate"],
        "verdict": verdict,
        "passed": None if verdict is None else verdict["passed"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # Everything is checked before a model runs, so a bad mount leaves nothing behind.
        gate = load_gate(args.gate)
        pinned = PinnedVersions.from_env(os.environ)
        if pinned is not None:
            voted = validate_gate(pinned.gate)
            if gate is not None and gate != voted:
                raise CasesError("--gate differs from the contract's pinned gate; give one gate (the pinned one)")
            gate = voted
        cases = load_cases(args.cases_dir)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        if (args.output_dir / REPORT_FILE).exists():
            raise CasesError(f"output folder '{args.output_dir}' already holds {REPORT_FILE}; give an empty mount")
        if pinned is not None:
            pinned.check_mounted(args.baseline_dir, args.candidate_dir)
        threads = args.threads or max(1, len(os.sched_getaffinity(0)))
        baseline = OnnxClassifier(onnx_dir(args.baseline_dir), threads=threads)
        candidate = OnnxClassifier(onnx_dir(args.candidate_dir), threads=threads)
        document = report(cases, baseline, candidate, gate)
    except (CasesError, ModelFolderError, RegressionInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    partial = args.output_dir / (REPORT_FILE + ".partial")
    partial.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.rename(args.output_dir / REPORT_FILE)
    telemetry = os.environ.get(TELEMETRY_ENV)
    if telemetry:
        with Path(telemetry).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(telemetry_record(document, pinned)) + "\n")
    verdict = document["verdict"]
    print(
        f"compared {document['cases']} cases: accuracy {document['baseline']['accuracy']:.4f} -> "
        f"{document['candidate']['accuracy']:.4f}, McNemar p {document['mcnemar_p']:.3g}"
        + ("" if verdict is None else f", gate {'passed' if verdict['passed'] else 'failed'}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
