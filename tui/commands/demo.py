"""`cleanroom demo`: the three-persona scenario, acted out for real and narrated.

The steps, their personas and their command lines come from ``core.scenario`` (the very
invocations each step performs); this module only renders: a rule and a progress display per
phase (the phase's steps plus a bar for each long task: uploads, the evaluation, the training
run), one line per step with the commands a team would have typed, then the summary tables. Narration goes to stderr so
``--output json`` leaves exactly one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from core.errors import InvalidInputError
from core.scenario import (
    BASE_CONTRACT,
    FINETUNED_CONTRACT,
    THREE_PERSONAS,
    TRAINING_CONTRACT,
    Reporter,
    Scenario,
    ScenarioDefinition,
    Step,
)
from tui.session_lock import SessionLock

DEFAULT_ROOT = Path("cleanroom-demo")
PERSONA_STYLE = {"hoster": "magenta", "provider": "cyan", "consumer": "green", "all": "yellow"}


class Narration:
    """Turns the scenario's callbacks into rich output: one live progress display per phase."""

    def __init__(self, console: Console, scenario: Scenario, *, show_commands: bool) -> None:
        self.console = console
        self.show_commands = show_commands
        self.titles = scenario.definition.phase_titles
        self.phase_steps = {phase: [s for s in scenario.steps if s.phase == phase] for phase in self.titles}
        self.done = set(scenario.state.completed)
        self.phase: str | None = None
        self.progress: Progress | None = None
        self.phase_task: TaskID | None = None
        self.tasks: dict[str, TaskID] = {}

    def reporter(self) -> Reporter:
        return Reporter(
            step_started=self.step_started,
            step_finished=self.step_finished,
            step_skipped=lambda step: None,
            progress=self.task_progress,
            note=self.note,
        )

    # -- phases --------------------------------------------------------------------------------
    def _enter(self, phase: str) -> None:
        if phase == self.phase:
            return
        self.close()
        self.phase = phase
        self.console.rule(f"[bold]{self.titles[phase]}")
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        steps = self.phase_steps[phase]
        self.phase_task = self.progress.add_task(
            f"[bold]{phase}[/] steps", total=len(steps), completed=sum(s.key in self.done for s in steps), detail=""
        )
        self.tasks = {}

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.progress = None

    # -- callbacks -----------------------------------------------------------------------------
    def step_started(self, step: Step) -> None:
        self._enter(step.phase)
        if self.progress is not None and self.phase_task is not None:
            self.progress.update(self.phase_task, detail=f"{step.persona}: {step.title}")

    def step_finished(self, step: Step, seconds: float, summary: str) -> None:
        self.done.add(step.key)
        style = PERSONA_STYLE.get(step.persona, "white")
        self.console.print(f"[{style}]{step.persona:>8}[/] [green]✓[/] {step.title} [dim]({seconds:.1f}s)[/]")
        self.console.print(f"         [dim]→[/] {summary}", highlight=False)
        if self.show_commands:
            for command in step.commands:
                self.console.print(f"         [dim]$ {command}[/]", highlight=False, soft_wrap=True)
        if self.progress is not None and self.phase_task is not None:
            self.progress.advance(self.phase_task)

    def task_progress(self, task: str, done: float, total: float | None, detail: str) -> None:
        if self.progress is None:
            return
        if task not in self.tasks:
            self.tasks[task] = self.progress.add_task(f"  {task}", total=total, detail="")
        self.progress.update(self.tasks[task], completed=done, total=total, detail=detail)

    def note(self, text: str) -> None:
        self.console.print(f"         [dim]· {text}[/]", highlight=False)


# -- output --------------------------------------------------------------------------------------
def _accuracy(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _render(console: Console, summary: dict[str, Any]) -> None:
    contracts = {c["id"]: c for c in summary["contracts"]}
    durations = summary["durations_s"]
    table = Table(title="three-persona scenario")
    for column, justify in (
        ("phase", "left"),
        ("contract id", "left"),
        ("state", "left"),
        ("accuracy", "right"),
        ("duration", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    training = summary.get("training") or {}
    rows = [
        ("setup", "", "", durations.get("setup")),
        ("baseline", BASE_CONTRACT, _accuracy(summary["baseline_accuracy"]), durations.get("baseline")),
        (
            "fine-tuning",
            TRAINING_CONTRACT,
            f"val {_accuracy(training.get('val_accuracy'))}" if training else "-",
            durations.get("fine-tuning"),
        ),
        ("fine-tuned", FINETUNED_CONTRACT, _accuracy(summary["finetuned_accuracy"]), durations.get("fine-tuned")),
        ("proofs", "", "", durations.get("proofs")),
    ]
    for phase, contract_id, accuracy, seconds in rows:
        state = contracts.get(contract_id, {}).get("state", "") if contract_id else ""
        table.add_row(phase, contract_id, state, accuracy, f"{seconds:.1f}s" if seconds is not None else "-")
    table.add_row("[bold]total", "", "", "", f"[bold]{summary['total_s']:.1f}s")
    console.print(table)
    if summary["gain"] is not None:
        console.print(
            f"accuracy on {summary['test_rows']} test rows: {_accuracy(summary['baseline_accuracy'])} → "
            f"{_accuracy(summary['finetuned_accuracy'])} ([bold]{summary['gain'] * 100:+.1f} points[/])"
        )
    checks = summary["isolation_checks"]
    if checks:
        proofs = Table(title="isolation checks: every attempt must be refused")
        proofs.add_column("persona")
        proofs.add_column("tries to")
        proofs.add_column("refused", justify="right")
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for check in checks:
            groups.setdefault((check["persona"], check.get("kind", check["check"])), []).append(check)
        for (persona, kind), group in groups.items():
            passed = sum(c["passed"] for c in group)
            style = "green" if passed == len(group) else "red"
            proofs.add_row(persona, kind, f"[{style}]{passed}/{len(group)}[/]")
        console.print(proofs)
        for check in checks:
            if not check["passed"]:
                console.print(f"[red]LEAK[/] {check['persona']}: {check['check']} ({check['detail']})")
    if summary["ledger_verified"] is not None:
        ledger = summary.get("ledger") or {}
        console.print(
            f"ledger verified by every party: {summary['ledger_verified']} "
            f"({ledger.get('entries')} entries, {ledger.get('checkpoints')} signed checkpoints)"
        )
    for contract_id, counts in summary["event_counts"].items():
        console.print(f"events of {contract_id}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)


def private_folder(root: Path) -> Path:
    """The demo's folder, made (0700) if missing, refused unless only this user can write it.

    It holds three members' private keys, their DEKs and the services' state, and the demo
    runs what it finds there: a folder another user owns, or one group or world can write,
    lets them swap a workspace, a model or a service binary path under us."""
    root = root.expanduser()
    if not root.exists():
        root.mkdir(parents=True, mode=0o700)
    resolved = root.resolve()
    info = os.stat(resolved)
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidInputError(f"demo workspace {resolved} is not a folder", hint="pass a folder to --workspace")
    if info.st_uid != os.getuid():
        raise InvalidInputError(
            f"demo workspace {resolved} is owned by uid {info.st_uid}, not by you (uid {os.getuid()})",
            hint="pass a folder you own to --workspace, e.g. --workspace ~/cleanroom-demo",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InvalidInputError(
            f"demo workspace {resolved} is writable by others (mode {stat.S_IMODE(info.st_mode):04o})",
            hint=f"run `chmod go-w {resolved}` or pass a folder only you can write to",
        )
    return resolved


def _list_steps(console: Console, definition: ScenarioDefinition) -> None:
    phase = None
    titles = definition.phase_titles
    for step in definition.steps:
        if step.phase != phase:
            phase = step.phase
            console.rule(titles[phase])
        console.print(
            f"[{PERSONA_STYLE.get(step.persona, 'white')}]{step.persona:>8}[/] [bold]{step.key}[/]: {step.title}"
        )
        for command in step.commands:
            console.print(f"         [dim]$ {command}[/]", highlight=False, soft_wrap=True)
        if not step.commands:
            console.print("         [dim]· no command line: an attack no verb mounts (see its checks)[/]")


@click.command("demo")
@click.option(
    "--workspace",
    "-w",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding the three persona workspaces and the services' state "
    "(default: the global --workspace if given, else ./cleanroom-demo).",
)
@click.option("--quick", is_flag=True, help="Train at most 100 steps (a few minutes) instead of a full epoch.")
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: one JSON object with the results on stdout (narration stays on stderr).",
)
@click.option("--keep-running", is_flag=True, help="Leave the embedded services running at the end.")
@click.option(
    "--stop-after",
    metavar="STEP",
    default=None,
    help="Stop after this step (see --list-steps). Run again with a later step, or without "
    "--stop-after, to continue; the same step again does nothing.",
)
@click.option(
    "--show-commands/--hide-commands",
    default=True,
    show_default=True,
    help="Print the `cleanroom` command lines each step runs under it.",
)
@click.option("--list-steps", is_flag=True, help="Print the scenario's steps and commands, then exit.")
@click.pass_context
def demo(
    ctx: click.Context,
    root: Path | None,
    quick: bool,
    output: str,
    keep_running: bool,
    stop_after: str | None,
    show_commands: bool,
    list_steps: bool,
) -> None:
    """Run the three-persona scenario end to end on the embedded default.

    A hoster, a model provider and a model consumer each get a workspace with their own keys.
    Acting as each in turn through governance, key release and the sandboxed runtime:
    inference on the base model (~50%), a governed fine-tuning run sealed to the provider,
    inference on the fine-tuned model (>= 80% with a full run), then isolation proofs and an
    offline ledger verification. Re-running on the same folder resumes an interrupted run
    and refuses a finished one. The folder must be yours and writable by you alone.

    \b
    Example:
      cleanroom demo --quick
      cleanroom demo --workspace /tmp/demo --output json > results.json
      cleanroom demo --workspace /tmp/demo --stop-after inference-base:evaluate --keep-running
    """
    console = Console(stderr=True)
    if list_steps:
        _list_steps(Console(), THREE_PERSONAS)
        return
    if root is None:
        given = Path(ctx.obj.get("workspace", Path("."))) if ctx.obj else Path(".")
        root = given if given != Path(".") else DEFAULT_ROOT
    scenario = Scenario.open(private_folder(root), quick=quick)
    with SessionLock(scenario.root, "demo"):  # not while a console drives the same scenario
        _run(
            console,
            scenario,
            quick=quick,
            output=output,
            keep_running=keep_running,
            stop_after=stop_after,
            show_commands=show_commands,
        )


def _run(
    console: Console,
    scenario: Scenario,
    *,
    quick: bool,
    output: str,
    keep_running: bool,
    stop_after: str | None,
    show_commands: bool,
) -> None:
    narration = Narration(console, scenario, show_commands=show_commands and output == "table")
    already = scenario.stopped_at(stop_after) and not scenario.complete
    if already:
        done, total = scenario.progress
        console.print(
            f"the demo in {scenario.root} is already past {stop_after} ({done}/{total} steps done); "
            "nothing to run. Run it without --stop-after, or with a later step, to continue",
            highlight=False,
        )
    elif scenario.state.completed and not scenario.complete:
        console.print(
            f"resuming the demo in {scenario.root} at step "
            f"[bold]{scenario.pending()[0].key}[/] ({len(scenario.state.completed)} steps done)"
        )
    else:
        console.print(f"three-persona demo in {scenario.root}" + (" (--quick)" if quick else ""))
    try:
        scenario.run(narration.reporter(), stop_after=stop_after, keep_services=keep_running)
    finally:
        narration.close()
    summary = scenario.summary()
    if output == "json":
        click.echo(json.dumps(summary, sort_keys=True))
        return
    if not scenario.complete:
        if not already:
            console.print(
                f"stopped after {stop_after}; run it again without --stop-after, or with a later step, to continue",
                highlight=False,
            )
        return
    _render(Console(), summary)
    console.print(f"results kept in {scenario.root / 'demo.json'}; `--output json` prints them as one document")
    if keep_running:
        console.print(f"services left running: CLEANROOM_HOME={scenario.services_home} cleanroom down")
