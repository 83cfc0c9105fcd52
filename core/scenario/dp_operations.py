"""The step bodies of private training scenarios: runs charged to a privacy ledger, and its proofs.

Like ``operations``, each body performs exactly its step's invocations through the step
persona's own engine. What is particular here: a run's epsilon is reserved by the runtime
before any key is released, so a run that would overspend a budget never starts (the body of
the refused run asserts that: the refusal names the dataset and no key was released); the
consumer scores the model sealed to it on its own machine; and every party can recompute the
budgets from a ledger export (``privacy verify``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from core.errors import CleanroomError, IntegrityError, InvalidInputError
from core.runtime.lifecycle import LifecycleEvent
from core.scenario import operations
from core.scenario.steps import Invocation, Reporter, Step

if TYPE_CHECKING:
    from core.scenario.run import Scenario

# governance's audit events of a run's privacy accounting
RECORDED_EVENT = "privacy_recorded"
REFUSED_EVENT = "privacy_refused"


def _persona(invocation: Invocation) -> str:
    if invocation.persona is None:
        raise InvalidInputError(f"`{invocation.narration()}` names no workspace", hint="fix the scenario definition")
    return invocation.persona


def _module(invocation: Invocation) -> str:
    """The module a ``python -m MODULE ...`` line runs."""
    return invocation.args[1] if invocation.program == "python" and invocation.args[:1] == ("-m",) else ""


# -- data ------------------------------------------------------------------------------------------
def _write_split(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    """`python -m core.ml.dp_split --provider P --output-dir DIR`: the provider's own rows."""
    import pyarrow.parquet as pq

    from core.ml.dp_split import write_provider

    provider = invocation.value("--provider")
    folder = scenario.path(invocation.value("--output-dir"))
    target = folder / f"{provider}.parquet"
    if not target.is_file():
        write_provider(provider, folder)
    metadata = pq.read_metadata(target)
    columns = ", ".join(metadata.schema.names)
    return f"{metadata.num_rows} rows ({columns}) in {target}"


def perform_each(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """Each invocation in order: the split lines here, every ``cleanroom`` line (and ``cp``) by
    the reference scenario's operations."""
    summaries = []
    for invocation in step.invocations:
        if _module(invocation) == "core.ml.dp_split":
            summaries.append(_write_split(scenario, invocation, reporter))
        else:
            summaries.append(
                operations.perform_each(scenario, dataclasses.replace(step, invocations=(invocation,)), reporter)
            )
    return "; ".join(summary for summary in summaries if summary)


# -- runs ------------------------------------------------------------------------------------------
def _run_number(step: Step) -> str:
    """Which run a step is about: the number after ``run-``/``score-``/``budget-`` in its key."""
    return step.key.rpartition("-")[2]


def _runs(scenario: Scenario) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = scenario.state.results.setdefault("runs", {})
    return runs


def _budgets(scenario: Scenario, persona: str) -> list[dict[str, Any]]:
    """`governance privacy show` as ``persona``: every budgeted dataset, kept in the results."""
    datasets = scenario.engine(persona).privacy_budgets()
    scenario.state.results["budgets"] = {
        item["name"]: {key: round(float(item[key]), 4) for key in ("epsilonTotal", "spent", "reserved", "left")}
        for item in datasets
    }
    scenario.state.results["epsilonSpent"] = {item["name"]: round(float(item["spent"]), 6) for item in datasets}
    return datasets


def _budget_line(datasets: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{item['name']}: spent {float(item['spent']):.2f}, reserved {float(item['reserved']):.2f},"
        f" left {float(item['left']):.2f} of {float(item['epsilonTotal']):.2f}"
        for item in datasets
    )


def private_run(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`deployment start` and `event list --follow` until the run ends (``operations.train``),
    then the run's privacy record as governance accepted it."""
    contract_id = step.invocation("deployment", "start").value("--contract-id")
    watcher = scenario.engine(_persona(step.invocation("governance", "contract", "event", "list")))
    before = max((e.seqno for e in watcher.all_events(contract_id)), default=0)
    operations.train(scenario, step, reporter)
    training = scenario.state.results.pop("training", {})
    after = [e for e in watcher.all_events(contract_id) if e.seqno > before]
    recorded = [e for e in after if e.kind == RECORDED_EVENT]
    if not recorded:
        refusals = [str(e.data.get("reason")) for e in after if e.kind == REFUSED_EVENT]
        raise IntegrityError(
            f"run {_run_number(step)} of '{contract_id}' ended without a recorded privacy accounting"
            + (f": {refusals[-1]}" if refusals else ""),
            hint="its reservation stays charged; see `cleanroom governance privacy history`",
        )
    run = _runs(scenario).setdefault(_run_number(step), {})
    run.update(
        {
            "accepted": True,
            "steps": training.get("steps"),
            "sealed": training.get("sealed"),
            "runId": recorded[-1].data.get("runId"),
            "epsilon": recorded[-1].data.get("epsilonSpent"),
        }
    )
    return (
        f"{training.get('steps')} DP-SGD steps; sealed to {', '.join(training.get('sealed') or [])}; "
        f"governance recomputed epsilon {float(recorded[-1].data['epsilonSpent']):.3f} and charged it to every source"
    )


def refused_run(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`deployment start` of a run that would overspend a budget: the runtime's reservation is
    refused, so the clean room fails before any DEK is released. The body asserts exactly that
    (refusal naming the dataset, no ``keys_released`` event after it), then reads `privacy history`."""
    start = step.invocation("deployment", "start")
    contract_id = start.value("--contract-id")
    watcher = scenario.engine(_persona(step.invocation("governance", "contract", "event", "list")))
    before = max((e.seqno for e in watcher.all_events(contract_id)), default=0)
    try:
        status = scenario.engine(_persona(start)).start_deployment(contract_id)
    except CleanroomError as exc:
        refusal = exc.one_line()
    else:
        raise IntegrityError(
            f"run of '{contract_id}' was not refused (state {status.state}): the budget was not enforced",
            hint="governance must refuse a reservation that exceeds a dataset's remaining epsilon",
        )
    after = [e for e in watcher.all_events(contract_id) if e.seqno > before]
    if any(e.kind == LifecycleEvent.KEYS_RELEASED for e in after):
        raise IntegrityError(
            f"keys were released to the refused run of '{contract_id}'",
            hint="the runtime must reserve epsilon before asking for any key",
        )
    refused = [e for e in after if e.kind == REFUSED_EVENT]
    history = step.invocation("governance", "privacy", "history")
    dataset = history.value("--dataset")
    if not refused or refused[-1].data.get("dataset") != dataset or f"'{dataset}'" not in refusal:
        raise IntegrityError(
            f"run {_run_number(step)} of '{contract_id}' was not refused on dataset '{dataset}' "
            f"(events {[e.data for e in refused]}): {refusal}",
            hint="governance refuses a reservation with an audit event naming the dataset whose budget is short",
        )
    entries = scenario.engine(_persona(history)).privacy_history(dataset)
    reporter.note(f"refused: {refusal}")
    scenario.state.results["refusedRun"] = {
        "run": int(_run_number(step)),
        "dataset": dataset,
        "reason": refusal,
        "historyEntries": len(entries),
    }
    _runs(scenario).setdefault(_run_number(step), {})["accepted"] = False
    _budgets(scenario, _persona(history))
    return f"run {_run_number(step)} refused before any key: {refusal}"


def score_run(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`datasink download` of the sealed model, then `python -m core.ml.local_evaluation`: the
    consumer scores it (int8 ONNX) on its own test split, on its own machine."""
    from core.ml.local_evaluation import score_onnx

    download = step.invocation("datasink", "download")
    operations.perform_each(scenario, dataclasses.replace(step, invocations=(download,)), reporter)
    scoring = next(i for i in step.invocations if _module(i) == "core.ml.local_evaluation")
    model_dir = scenario.path(scoring.value("--model-dir"))
    task = f"{_persona(download)}: score the model of run {_run_number(step)}"
    score = score_onnx(
        model_dir,
        scenario.path(scoring.value("--dataset")),
        progress=lambda done, correct, total: reporter.progress(task, done, total, f"accuracy {correct / done:.3f}"),
    )
    run = _runs(scenario).setdefault(_run_number(step), {})
    run.update({"accuracy": round(score.accuracy, 6), "testRows": score.rows, "modelFile": score.model_file})
    # what left the clean room with the model: the join's counts (rounded to 100) and its accounting
    joined = json.loads((model_dir / "join_report.json").read_text())
    privacy = json.loads((model_dir / "privacy_report.json").read_text())
    run.update(
        {
            "joinedRows": joined.get("joined_rows"),
            "epsilonPrv": privacy["epsilon"]["prv"],
            "epsilonRdp": privacy["epsilon"]["rdp"],
            "noiseMultiplier": privacy["noise_multiplier"],
            "sampleRate": privacy["sample_rate"],
            "dpSteps": privacy["steps"],
        }
    )
    return (
        f"accuracy {score.accuracy:.3f} on {score.rows} test rows ({score.model_file}); "
        f"epsilon {privacy['epsilon']['prv']:.2f} (PRV), {privacy['epsilon']['rdp']:.2f} (RDP) "
        f"over {privacy['steps']} steps, about {joined.get('joined_rows')} joined rows"
    )


def privacy_show(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`governance privacy show`: spent / reserved / left of every budgeted dataset."""
    return _budget_line(_budgets(scenario, _persona(step.invocation("governance", "privacy", "show"))))


def privacy_verify(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`ledger export --file F`, `privacy verify --file F`: the export's chain and checkpoints
    checked, every recorded epsilon recomputed with opacus, the replayed budgets compared with
    what the service shows (the engine exports afresh into a private folder, as the reference
    scenario's `ledger verify` does)."""
    verify = step.invocation("governance", "privacy", "verify")
    step.invocation("governance", "ledger", "export")
    report = scenario.engine(_persona(verify)).verify_privacy()
    scenario.state.results["privacyVerified"] = report["verified"]
    scenario.state.results["privacyLedger"] = {"entries": report["entries"], "runsRecomputed": report["runs"]}
    if not report["verified"]:
        raise IntegrityError(
            f"privacy ledger verification failed: {'; '.join(report['problems'])}",
            hint="do not trust the service's budgets",
        )
    return (
        f"{report['runs']} runs' epsilon recomputed offline from {report['entries']} ledger entries;"
        " the budgets agree with the service's"
    )
