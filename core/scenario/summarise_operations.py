"""The step bodies of the summarise scenario: the owner's documents, the batch run, the reader's checks.

Like ``operations``, each body performs exactly its step's invocations through the step
persona's own engine. What is particular here: the reader re-checks every summary it received
against the caps the contract voted (``core.summaries``), and the scenario, which can see every
party's folders, then checks what no single party could: that none of the owner's documents
reached the reader's sink, neither whole nor as the over-size archive the clean room refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import IntegrityError, InvalidInputError
from core.scenario import operations
from core.scenario.steps import Invocation, Reporter, Step

if TYPE_CHECKING:
    from core.scenario.run import Scenario

QUICK_DOCUMENTS = 6  # the quick (CI) run's documents, of the evaluation set's 50


def _persona(invocation: Invocation) -> str:
    if invocation.persona is None:
        raise InvalidInputError(f"`{invocation.narration()}` names no workspace", hint="fix the scenario definition")
    return invocation.persona


def document_count(scenario: Scenario) -> int | None:
    """How many evaluation documents the owner writes: a few in the quick run, all otherwise."""
    return QUICK_DOCUMENTS if scenario.state.quick else None


def upload_documents(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`python -m core.scenario.summary_documents --output-dir D`, then the datasource lines."""
    from core.scenario.summary_documents import write_documents

    summaries = []
    for invocation in step.invocations:
        if invocation.program == "python":
            written = write_documents(scenario.path(invocation.value("--output-dir")), document_count(scenario))
            scenario.state.results["documents"] = {form: len(ids) for form, ids in written.items()}
            summaries.append(
                f"{len(written['text'])} .txt files, {len(written['parquet'])} parquet rows, 1 over-size archive"
            )
        else:
            summaries.append(
                operations.perform_each(scenario, dataclasses.replace(step, invocations=(invocation,)), reporter)
            )
    return "; ".join(summary for summary in summaries if summary)


def summarise_run(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`deployment start` and `event list --follow` until the batch ends and its sink is sealed
    (``operations.train`` follows any clean room that runs to its end)."""
    operations.train(scenario, step, reporter)
    run = scenario.state.results.pop("training", {})
    scenario.state.results["run"] = {"sealed": run.get("sealed")}
    return f"summaries sealed to {', '.join(run.get('sealed') or [])}"


def _owner_documents(folder: Path) -> dict[str, str]:
    """Every document the owner uploaded, by the id the summariser gives it."""
    import pyarrow.parquet as pq

    documents = {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8") for p in folder.rglob("*.txt")}
    for path in folder.rglob("*.parquet"):
        for row in pq.read_table(path, columns=["id", "text"]).to_pylist():
            documents[str(row["id"])] = str(row["text"])
    return documents


def read_summaries(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`datasink download` of the reader's sink, then `summarise show`: every summary re-checked
    against the voted caps. Then the scenario's own check across parties: the sink holds only
    the summariser's two files, each document got a summary or a refusal by id, and no
    document's text is in the sink."""
    from core.scenario.summarise import DOCUMENTS_FOLDER
    from core.summaries import SUMMARY_FILES
    from core.summaries import read_summaries as read_sink

    download = step.invocation("datasink", "download")
    downloaded = operations.perform_each(scenario, dataclasses.replace(step, invocations=(download,)), reporter)
    show = step.invocation("summarise", "show")
    received = read_sink(scenario.engine(_persona(show)), show.value("--contract"))
    outside = [summary.id for summary in received.summaries if not summary.within_caps]
    if outside:
        raise IntegrityError(
            f"{len(outside)} summaries exceed the voted caps ({', '.join(outside[:3])})",
            hint="the clean room must cut every summary to the caps before it leaves",
        )
    sink = scenario.path(download.value("--target-folder"))
    sink_files = sorted(p.relative_to(sink).as_posix() for p in sink.rglob("*") if p.is_file())
    if set(sink_files) - SUMMARY_FILES:
        raise IntegrityError(
            f"the reader's sink holds {sorted(set(sink_files) - SUMMARY_FILES)} besides the summaries",
            hint="a summariser writes only summaries.jsonl and report.json",
        )
    documents = _owner_documents(scenario.path(DOCUMENTS_FOLDER))
    sink_text = "\n".join((sink / name).read_text(encoding="utf-8") for name in sink_files)
    leaked = sorted(doc_id for doc_id, text in documents.items() if text.strip() and text.strip() in sink_text)
    answered = {s.id for s in received.summaries} | {r["id"] for r in received.refused}
    if leaked or answered != set(documents):
        raise IntegrityError(
            f"documents {leaked} are in the reader's sink; unanswered {sorted(set(documents) - answered)}",
            hint="a document leaves the clean room only as a capped summary, or not at all",
        )
    items: list[dict[str, Any]] = [
        {"id": s.id, "sentences": s.sentences, "ratio": s.ratio, "chars": s.chars} for s in received.summaries
    ]
    scenario.state.results["summaries"] = {
        "method": received.method,
        "summarised": len(received.summaries),
        "refused": list(received.refused),
        "withinCaps": received.within_caps,
        "withinCapsPct": (
            round(100.0 * sum(s.within_caps for s in received.summaries) / len(received.summaries), 2)
            if received.summaries
            else None
        ),
        "documentsInSink": len(leaked),
        "sinkFiles": sink_files,
        "items": items,
    }
    reporter.note(
        f"checked: none of the owner's {len(documents)} documents is in the reader's sink ({', '.join(sink_files)})"
    )
    worst = max((s.ratio for s in received.summaries), default=0.0)
    return (
        f"{downloaded}; {len(received.summaries)} summaries by {received.method}, all within the caps "
        f"(largest ratio {worst:.2f} of {received.sink.policy['max_ratio']}); "
        f"{len(received.refused)} refused by id ({', '.join(r['id'] for r in received.refused)})"
    )
