"""Confidential summarisation: ROUGE of the workload's summaries against a lead-3 baseline, speed, caps.

The real workload runs as the clean room runs it (``python -m containers.summariser`` in batch
mode, the voted policy in ``$CLEANROOM_SUMMARY_POLICY``) over the project's evaluation set
(``core/ml/data/summaries/evaluation.json``: 50 documents with reference summaries written for
this project, see its README) written as a parquet datasource. ROUGE-1/2/L F1 (rouge-score,
Porter stemming) of its summaries and of lead-3 (the first three sentences by the same
splitter, the standard extractive baseline) are compared with the references. Documents/s is
the workload's own figure (model load excluded); caps respected is re-checked here on what the
sink holds. Targets: ROUGE-L at least lead-3 + 1 point, >= 5 documents/s, 100 % within caps.

    python benchmarks/summarisation.py [--quick] [--threads 1]

The last line of output is one JSON object with the figures, the targets and ``targets_met``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rouge_score import rouge_scorer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from containers.summariser.caps import within_caps  # noqa: E402
from containers.summariser.policy import POLICY_ENV, SummaryPolicy  # noqa: E402
from containers.summariser.sentences import split_sentences  # noqa: E402

EVALUATION_SET = ROOT / "core" / "ml" / "data" / "summaries" / "evaluation.json"
POLICY = SummaryPolicy(max_sentences=3, max_ratio=0.5, max_document_bytes=20_000)
TARGET_ROUGE_L_MARGIN = 1.0  # points over lead-3
TARGET_DOCS_PER_S = 5.0
TARGET_CAPS_PCT = 100.0
QUICK_DOCUMENTS = 20
METRICS = ("rouge1", "rouge2", "rougeL")


def rouge(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Mean ROUGE F1 in points over (reference, candidate) pairs."""
    scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
    scores = [scorer.score(reference, candidate) for reference, candidate in pairs]
    return {metric: round(100 * statistics.fmean(s[metric].fmeasure for s in scores), 2) for metric in METRICS}


def run_workload(documents: list[dict[str, str]], threads: int) -> tuple[dict[str, dict[str, object]], dict]:
    with tempfile.TemporaryDirectory(prefix="summarise-bench-") as tmp:
        source, sink = Path(tmp) / "documents", Path(tmp) / "summaries"
        source.mkdir()
        table = pa.table({"id": [d["id"] for d in documents], "text": [d["text"] for d in documents]})
        pq.write_table(table, source / "documents.parquet")
        env = {**os.environ, POLICY_ENV: json.dumps(POLICY.as_dict()), "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "containers.summariser", "--input-dir", str(source)]
        command += ["--output-dir", str(sink), "--threads", str(threads)]
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        lines = (sink / "summaries.jsonl").read_text(encoding="utf-8").splitlines()
        summaries = {record["id"]: record for record in map(json.loads, lines)}
        report = json.loads((sink / "report.json").read_text(encoding="utf-8"))
    return summaries, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_DOCUMENTS} documents only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the workload (default 1)")
    args = parser.parse_args(argv)
    documents = json.loads(EVALUATION_SET.read_text(encoding="utf-8"))
    if args.quick:
        documents = documents[:QUICK_DOCUMENTS]
    summaries, report = run_workload(documents, args.threads)
    missing = [d["id"] for d in documents if d["id"] not in summaries]
    ours = rouge([(d["reference"], str(summaries[d["id"]]["summary"])) for d in documents if d["id"] in summaries])
    lead3 = rouge([(d["reference"], " ".join(split_sentences(d["text"])[:3])) for d in documents])
    within = sum(
        within_caps(POLICY, d["text"], str(summaries[d["id"]]["summary"])) for d in documents if d["id"] in summaries
    )
    caps_pct = round(100.0 * within / len(documents), 2)
    docs_per_s = float(report["documents_per_second"] or 0.0)
    print(f"summarisation benchmark: {len(documents)} documents, policy {POLICY.as_dict()}, method {report['method']}")
    print(f"{'':<28}{'ROUGE-1':>9}{'ROUGE-2':>9}{'ROUGE-L':>9}")
    for name, scores in ((report["method"], ours), ("lead-3 baseline", lead3)):
        print(f"{name:<28}" + "".join(f"{scores[m]:>9.2f}" for m in METRICS))
    print(f"documents/s {docs_per_s:.1f}   caps respected {caps_pct:.1f} %   refused {report['refused']}")
    targets = {
        "rouge_l_over_lead3_points": TARGET_ROUGE_L_MARGIN,
        "documents_per_s": TARGET_DOCS_PER_S,
        "caps_respected_pct": TARGET_CAPS_PCT,
    }
    margin = round(ours["rougeL"] - lead3["rougeL"], 2)
    met = {
        "rouge_l_over_lead3_points": margin >= TARGET_ROUGE_L_MARGIN,
        "documents_per_s": docs_per_s >= TARGET_DOCS_PER_S,
        "caps_respected_pct": caps_pct >= TARGET_CAPS_PCT and not missing,
    }
    result = {
        "benchmark": "summarisation",
        "documents": len(documents),
        "method": report["method"],
        "policy": POLICY.as_dict(),
        "rouge": ours,
        "lead3_rouge": lead3,
        "rouge_l_over_lead3_points": margin,
        "documents_per_s": docs_per_s,
        "caps_respected_pct": caps_pct,
        "not_summarised": missing,
        "targets": targets,
        "targets_detail": met,
        "targets_met": all(met.values()),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
