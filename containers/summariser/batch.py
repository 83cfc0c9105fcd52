"""Batch mode: every document of the input mount summarised into the datasink mount.

The sink gets ``summaries.jsonl`` (one line per summarised document) and ``report.json`` (the
method, the policy, counts, one line per refused document and whether every summary was
re-checked within the caps). Both are written to temporary names and renamed, so a run that
fails half-way leaves no half summary set that could be mistaken for a complete one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from containers.summariser.caps import within_caps
from containers.summariser.documents import read_documents
from containers.summariser.summarising import DocumentSummariser, Refusal

OUTPUT_NAMES = ("summaries.jsonl", "report.json")


class OutputFolderError(ValueError):
    """The datasink mount already holds a result."""


def check_output(output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    existing = [name for name in OUTPUT_NAMES if (output_dir / name).exists()]
    if existing:
        raise OutputFolderError(
            f"output folder '{output_dir}' already holds {', '.join(existing)}; "
            "give an empty datasink mount so no earlier result is overwritten"
        )


def run_batch(
    summariser: DocumentSummariser,
    input_dir: Path,
    output_dir: Path,
    *,
    id_column: str = "id",
    text_column: str = "text",
) -> dict[str, Any]:
    """Summarise the folder and write the sink; returns the report written."""
    check_output(output_dir)
    started = time.perf_counter()
    refusals: list[dict[str, str]] = []
    summarised = 0
    within = 0
    summaries_tmp = output_dir / ".summaries.jsonl.partial"
    try:
        with summaries_tmp.open("w", encoding="utf-8") as sink:
            for item in read_documents(input_dir, summariser.policy, id_column=id_column, text_column=text_column):
                if isinstance(item, Refusal):
                    refusals.append(item.record())
                    continue
                result = summariser.summarise(item.id, item.text)
                if isinstance(result, Refusal):
                    refusals.append(result.record())
                    continue
                summarised += 1
                within += within_caps(summariser.policy, item.text, result.text)
                sink.write(json.dumps(result.record(), ensure_ascii=False) + "\n")
    except BaseException:
        summaries_tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    report = {
        "method": summariser.method.method,
        "policy": summariser.policy.as_dict(),
        "documents": summarised + len(refusals),
        "summarised": summarised,
        "refused": len(refusals),
        "refusals": refusals,
        "caps_respected_pct": round(100.0 * within / summarised, 2) if summarised else 100.0,
        "seconds": round(seconds, 3),
        "documents_per_second": round(summarised / seconds, 2) if seconds > 0 else None,
    }
    os.replace(summaries_tmp, output_dir / "summaries.jsonl")
    report_tmp = output_dir / ".report.json.partial"
    report_tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(report_tmp, output_dir / "report.json")
    return report
