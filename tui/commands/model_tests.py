"""`cleanroom model loadtest` and `cleanroom model regression ...`: how a model version performs.

The load test goes to the contract's own TLS ingress only (looked up from the running
deployment, CA pinned, a token governance issues to this member before each step). The
regression verbs check a gate before it is voted, read the aggregate report the regression
workload sealed to a datasink, or run the same comparison locally on the caller's own cases.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from core.errors import InvalidInputError, NotFoundError
from core.onboarding.loadtest import DEFAULT_ROUTE, DEFAULT_STEPS, MODES, StepResult
from tui.output import Result, camel, stderr_console, verb_output

if TYPE_CHECKING:
    from core.engine import PersonaEngine


def register(group: click.Group) -> None:
    """Add this module's verbs to `cleanroom model`."""
    group.add_command(loadtest)
    group.add_command(regression)


def _camel_document(value: Any) -> Any:
    """camelCase keys at every level: every key in these reports is ours, none is user data."""
    if isinstance(value, dict):
        return {camel(str(key)): _camel_document(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel_document(item) for item in value]
    return value


def _steps(text: str | None, mode: str) -> list[int]:
    if text is None:
        return list(DEFAULT_STEPS[mode])
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInputError(
            f"--steps '{text}' is not a list of whole numbers", hint="e.g. --steps 10,50,100"
        ) from None


def _engine(ctx: click.Context) -> PersonaEngine:
    from core.engine import PersonaEngine
    from core.services_home import services_home
    from core.workspace import Workspace

    home, _elsewhere = services_home(Path(ctx.obj["workspace"]))
    return PersonaEngine(Workspace.open(ctx.obj["workspace"]), services_home=home)


# -- load test -----------------------------------------------------------------------------------------
@click.command("loadtest")
@click.option("--contract", "contract_id", required=True, help="The contract whose clean room serves the model.")
@click.option("--mode", type=click.Choice(MODES), required=True, help="Open-loop target rates, or concurrent clients.")
@click.option(
    "--steps",
    default=None,
    metavar="N,N,...",
    help=f"Rates (per-rps) or client counts (per-concurrency); default {DEFAULT_STEPS['per-rps']} / "
    f"{DEFAULT_STEPS['per-concurrency']}.",
)
@click.option("--duration", default=10.0, show_default=True, type=float, help="Seconds per step.")
@click.option("--slo-ms", default=200.0, show_default=True, type=float, help="The p99 latency a step must hold.")
@click.option("--route", default=DEFAULT_ROUTE, show_default=True, help="The POST route the contract allows.")
@click.option(
    "--endpoint",
    default=None,
    help="Optional check: must equal the contract's own ingress (any other URL is refused).",
)
@click.option(
    "--record",
    "record",
    default=None,
    metavar="NAME@VERSION",
    help="Record the report in this registry version's load test (signed by you; the contract must serve it).",
)
@verb_output
@click.pass_context
def loadtest(
    ctx: click.Context,
    contract_id: str,
    mode: str,
    steps: str | None,
    duration: float,
    slo_ms: float,
    route: str,
    endpoint: str | None,
    record: str | None,
) -> Result:
    """Load-test the model a contract serves, through its TLS ingress, with the task's largest
    input (1,000 characters): per step the target and achieved rate, latency mean/p50/p90/p99
    (per-rps: from each request's intended send time), ok/failed, the workload's CPU and memory
    (when the clean room runs on this machine) and the knee, the highest step within --slo-ms.

    \b
    Example:
      cleanroom -w W/consumer model loadtest --contract inference1 --mode per-rps --steps 10,25,50
    Example (clients back to back, JSON):
      cleanroom -w W/consumer model loadtest --contract inference1 --mode per-concurrency -o json
    Example (recorded on the registry version the contract serves, for every member to read):
      cleanroom -w W/consumer model loadtest --contract inference1 --mode per-rps --record minilm@1
    """
    plan = _steps(steps, mode)
    console = stderr_console()
    with _engine(ctx) as engine:
        target = _registry_version(engine, record) if record is not None else None  # before anything is sent
        report = engine.load_test(
            contract_id,
            mode,
            plan,
            duration_s=duration,
            slo_ms=slo_ms,
            route=route,
            endpoint=endpoint,
            on_step=lambda step: console.print(_step_line(step), highlight=False),
        )
        document = report.as_dict()
        if target is not None:
            shown = engine.record_load_test(*target, contract_id, document)
            document["recorded"] = {"model": target[0], "version": target[1]} | {
                key: shown["versions"][target[1]]["loadtest"][key] for key in ("writer", "at")
            }

    def render(out: Console) -> None:
        _render_loadtest(out, document)
        if target is not None:
            out.print(f"recorded as the load test of {target[0]} version {target[1]}", highlight=False)

    return Result(document, render=render)


def _registry_version(engine: PersonaEngine, record: str) -> tuple[str, str]:
    """``NAME@VERSION`` of a version the registry holds (checked before the load test runs)."""
    name, at, version = record.rpartition("@")
    if not at or not name or not version:
        raise InvalidInputError(f"--record {record!r} is not NAME@VERSION", hint="e.g. --record minilm@1")
    if version not in engine.model(name)["versions"]:
        raise NotFoundError(f"model '{name}' has no version '{version}'", hint=f"see `cleanroom model versions {name}`")
    return name, version


def _step_line(step: StepResult) -> str:
    unit = "rps" if step.mode == "per-rps" else "clients"
    return (
        f"{step.target} {unit}: {step.actual_rps:.1f} rps, p99 {step.latency_ms['p99']:.1f} ms, "
        f"{step.ok} ok, {step.failed} failed"
    )


def _render_loadtest(console: Console, document: dict[str, Any]) -> None:
    unit = "rps" if document["mode"] == "per-rps" else "clients"
    table = Table(title=f"{document['mode']} load test of {document['endpoint']}{document['route']}")
    for column in (
        unit,
        "actual rps",
        "mean ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "ok",
        "failed",
        "cpu %",
        "rss MB",
        "SLO",
    ):
        table.add_column(column, justify="right")
    for step in document["steps"]:
        latency = step["latencyMs"]
        table.add_row(
            str(step["target"]),
            f"{step['actualRps']:.1f}",
            *("-" if latency[k] is None else f"{latency[k]:.1f}" for k in ("mean", "p50", "p90", "p99")),
            str(step["ok"]),
            str(step["failed"]),
            "-" if step["cpuPercent"] is None else f"{step['cpuPercent']:.0f}",
            "-" if step["peakRssMb"] is None else f"{step['peakRssMb']:.0f}",
            "ok" if step["withinSlo"] else "MISSED",
        )
    console.print(table)
    best = document["knee"]
    console.print(
        f"knee (p99 <= {document['sloMs']:g} ms, no failures): "
        + (f"{best['target']} {unit} ({best['actualRps']:.1f} rps)" if best else "no step held the SLO"),
        highlight=False,
    )
    console.print(f"payload {document['payloadChars']} characters; workload: {document['workloadMeasured']}")


# -- regression ----------------------------------------------------------------------------------------
@click.group("regression")
def regression() -> None:
    """Compare two versions of a model on a consumer's regression cases; a voted gate decides.

    \b
    Example:
      cleanroom model regression gate ./gate.json
      cleanroom -w W/provider model regression show --datasink regression-report
    """


@regression.command("gate")
@click.argument("gate_file", type=click.Path(dir_okay=False, path_type=Path))
@verb_output
def gate(gate_file: Path) -> Result:
    """Check a gate file before it is proposed: known rules only, each a number in range.

    \b
    Example:
      echo '{"min_accuracy_delta": 0.0, "max_p": 0.01}' > gate.json
      cleanroom model regression gate gate.json
    """
    from core.ml.regression import GATE_KEYS, load_gate

    rules = load_gate(gate_file)
    rows = [{"rule": key, "value": value, "meaning": GATE_KEYS[key]} for key, value in rules.items()]
    return Result(_camel_document(rules), render=lambda console: _render_rows(console, rows, f"gate {gate_file}"))


@regression.command("show")
@click.option("--datasink", required=True, help="Your datasink the regression workload sealed its report to.")
@verb_output
@click.pass_context
def show(ctx: click.Context, datasink: str) -> Result:
    """Decrypt the aggregate regression report from your datasink (into a private temporary
    folder, removed before this returns) and show both versions' metrics, flips, McNemar p and
    the gate's verdict.

    \b
    Example:
      cleanroom -w W/provider model regression show --datasink regression-report -o json
    """
    from core.ml.regression import read_report

    engine = _engine(ctx)
    try:
        with tempfile.TemporaryDirectory(prefix="cleanroom-regression-") as tmp:
            folder = Path(tmp) / datasink
            engine.download_asset("datasink", datasink, folder, lambda done, total: None)
            report = read_report(folder)
    finally:
        engine.close()
    document = _camel_document(report)
    return Result(document, render=lambda console: _render_regression(console, document))


@regression.command("run")
@click.option(
    "--cases",
    "cases_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder with one .parquet or .jsonl cases file (text, label): your own cases.",
)
@click.option("--baseline", required=True, type=click.Path(file_okay=False, path_type=Path), help="ONNX folder.")
@click.option("--candidate", required=True, type=click.Path(file_okay=False, path_type=Path), help="ONNX folder.")
@click.option("--gate", "gate_file", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Gate file.")
@verb_output
def run(cases_dir: Path, baseline: Path, candidate: Path, gate_file: Path | None) -> Result:
    """Run the regression workload's comparison here, on cases you own (a dry run before the
    consumer's cases are compared inside the clean room): the same code, the same report.

    \b
    Example:
      cleanroom model regression run --cases ./cases --baseline ./v1/onnx --candidate ./v2/onnx --gate gate.json
    """
    from containers.inference_server.classifier import ModelFolderError, OnnxClassifier
    from containers.regression.__main__ import report
    from containers.regression.cases import CasesError, load_cases
    from core.ml.regression import load_gate

    rules = load_gate(gate_file) if gate_file is not None else None
    try:
        cases = load_cases(cases_dir)
        with stderr_console().status("classifying the cases with both versions"):
            document = report(cases, OnnxClassifier(baseline), OnnxClassifier(candidate), rules)
    except (CasesError, ModelFolderError) as exc:
        raise InvalidInputError(str(exc)) from None
    camel_document = _camel_document(document)
    return Result(camel_document, render=lambda console: _render_regression(console, camel_document))


def _render_rows(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for column in rows[0] if rows else ():
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)


def _render_regression(console: Console, document: dict[str, Any]) -> None:
    table = Table(title=f"regression over {document['cases']} cases")
    for column in ("", "baseline", "candidate", "delta"):
        table.add_column(column, justify="right")
    for key, label in (
        ("accuracy", "accuracy"),
        ("macroF1", "macro F1"),
        ("microF1", "micro F1"),
        ("weightedF1", "weighted F1"),
    ):
        old, new = document["baseline"][key], document["candidate"][key]
        table.add_row(label, f"{old:.4f}", f"{new:.4f}", f"{new - old:+.4f}")
    console.print(table)
    flips = document["flips"]
    console.print(
        f"flips: {flips['baselineRightCandidateWrong']} regressed, {flips['baselineWrongCandidateRight']} fixed "
        f"({', '.join(f'{k}: {v}' for k, v in flips['labels'].items()) or 'no label changed'}); "
        f"McNemar exact p = {document['mcnemarP']:.3g}",
        highlight=False,
    )
    verdict = document.get("verdict")
    if verdict is None:
        console.print("gate: none given")
    elif verdict["passed"]:
        console.print("gate: passed")
    else:
        console.print("gate: FAILED: " + "; ".join(verdict["reasons"]), highlight=False)
