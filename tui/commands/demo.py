"""`cleanroom demo`: a scenario (the three-persona one unless --scenario says otherwise), acted
out for real and narrated.

The steps, their personas and their command lines come from ``core.scenario`` (the very
invocations each step performs); this module only renders: a rule and a progress display per
phase (the phase's steps plus a bar for each long task: uploads, the evaluation, the training
run), one line per step with the commands a team would have typed, then the summary. Narration
goes to stderr; the summary is the verb's result (``tui.output``), so ``-o json`` leaves exactly
one JSON document on stdout and ``--query`` picks a figure out of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import threading
from collections.abc import Callable, Iterator
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

from core import embedded
from core.errors import InvalidInputError
from core.scenario import (
    BASE_CONTRACT,
    FINETUNED_CONTRACT,
    REFERENCE_SCENARIO,
    SCENARIOS,
    SHIPPED_SCENARIOS,
    TRAINING_CONTRACT,
    Reporter,
    Scenario,
    ScenarioDefinition,
    Step,
    scenario_definition,
    scenario_root,
)
from tui.output import Result, camel_keys, generic_table, stderr_console, verb_output
from tui.scenario_session import running_deployments, say
from tui.session_lock import SessionLock

DEFAULT_ROOT = Path("cleanroom-demo")
PERSONA_STYLE = {"hoster": "magenta", "provider": "cyan", "consumer": "green", "all": "yellow"}
OTHER_PERSONA_STYLES = ("blue", "bright_cyan", "bright_magenta", "bright_green", "bright_blue")
# what every scenario's summary says about the run itself; the rest is the definition's results
RUN_KEYS = frozenset(
    {"workspace", "scenario", "quick", "status", "stepsDone", "stepsTotal", "durationsSeconds", "totalSeconds"}
)


def persona_style(persona: str) -> str:
    """The persona's colour: the reference personas keep theirs, any other gets one by its name
    (stable from run to run, so a persona reads the same in every narration)."""
    if persona in PERSONA_STYLE:
        return PERSONA_STYLE[persona]
    return OTHER_PERSONA_STYLES[sum(persona.encode()) % len(OTHER_PERSONA_STYLES)]


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
        style = persona_style(step.persona)
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


# -- the summary ---------------------------------------------------------------------------------
def _accuracy(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _seconds(value: Any) -> str:
    return f"{value:.1f}s" if isinstance(value, (int, float)) else "-"


def _three_personas_view(console: Console, summary: dict[str, Any]) -> None:
    """The reference scenario's own view: one row per phase with its contract, state and accuracy,
    the accuracy gain, the isolation proofs grouped by attempt, the ledger and the events."""
    contracts = {c["id"]: c for c in summary["contracts"]}
    durations = summary["durationsSeconds"]
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
        ("baseline", BASE_CONTRACT, _accuracy(summary["baselineAccuracy"]), durations.get("baseline")),
        (
            "fine-tuning",
            TRAINING_CONTRACT,
            f"val {_accuracy(training.get('valAccuracy'))}" if training else "-",
            durations.get("fine-tuning"),
        ),
        ("fine-tuned", FINETUNED_CONTRACT, _accuracy(summary["finetunedAccuracy"]), durations.get("fine-tuned")),
        ("proofs", "", "", durations.get("proofs")),
    ]
    for phase, contract_id, accuracy, seconds in rows:
        state = contracts.get(contract_id, {}).get("state", "") if contract_id else ""
        table.add_row(phase, contract_id, state, accuracy, _seconds(seconds))
    table.add_row("[bold]total", "", "", "", f"[bold]{_seconds(summary['totalSeconds'])}")
    console.print(table)
    if summary["gain"] is not None:
        console.print(
            f"accuracy on {summary['testRows']} test rows: {_accuracy(summary['baselineAccuracy'])} → "
            f"{_accuracy(summary['finetunedAccuracy'])} ([bold]{summary['gain'] * 100:+.1f} points[/])"
        )
    checks = summary["isolationChecks"]
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
    if summary["ledgerVerified"] is not None:
        ledger = summary.get("ledger") or {}
        console.print(
            f"ledger verified by every party: {summary['ledgerVerified']} "
            f"({ledger.get('entries')} entries, {ledger.get('checkpoints')} signed checkpoints)"
        )
    for contract_id, counts in summary["eventCounts"].items():
        console.print(f"events of {contract_id}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)


def _generic_view(console: Console, definition: ScenarioDefinition, summary: dict[str, Any]) -> None:
    """Any scenario's summary, from the document alone: the phases and what each took, the
    definition's figures as field/value rows, then each of its lists and mappings as a table."""
    title = f"{definition.name} scenario"
    phases = Table(title=title, min_width=len(title) + 4)  # a title wider than its table would fold
    phases.add_column("phase")
    phases.add_column("duration", justify="right")
    durations = summary.get("durationsSeconds", {})
    for phase in definition.phases:
        phases.add_row(phase.title, _seconds(durations.get(phase.key)))
    phases.add_row("[bold]total", f"[bold]{_seconds(summary.get('totalSeconds'))}")
    console.print(phases)
    results = {key: value for key, value in summary.items() if key not in RUN_KEYS}
    figures = {key: value for key, value in results.items() if not isinstance(value, (dict, list))}
    if figures:
        console.print(generic_table(figures, title="results"))
    for key, value in results.items():
        if key in figures or not value:
            continue
        table = generic_table(value, title=key)
        if table is not None:
            console.print(table)
        else:  # a list of plain values
            console.print(f"{key}: {json.dumps(value)}", highlight=False)


# a scenario with a view of its own; any other is drawn by _generic_view
SUMMARY_VIEWS: dict[str, Callable[[Console, dict[str, Any]], None]] = {REFERENCE_SCENARIO: _three_personas_view}


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


class ScenarioName(click.Choice[str]):
    """A name in ``core.scenario.SCENARIOS``: help lists the shipped scenarios; a value is checked
    against the registry as it is when the option is parsed (whoever added to it since), and the
    listed choices are left as they were, so a later registration never leaks into help."""

    def __init__(self) -> None:
        super().__init__(SHIPPED_SCENARIOS)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        listed, self.choices = self.choices, tuple(SCENARIOS)
        try:
            return super().convert(value, param, ctx)
        finally:
            self.choices = listed


def _steps_result(definition: ScenarioDefinition) -> Result:
    """``--list-steps``: every step, its persona and the command lines it runs, by phase."""
    steps = [
        {
            "key": step.key,
            "phase": step.phase,
            "persona": step.persona,
            "title": step.title,
            "commands": list(step.commands),
        }
        for step in definition.steps
    ]

    def render(console: Console) -> None:
        phase = None
        titles = definition.phase_titles
        for step in definition.steps:
            if step.phase != phase:
                phase = step.phase
                # not console.rule: piped output is unbounded (never wrapped), and a rule fills it
                console.print(f"[bold]── {titles[phase]} ──[/]", highlight=False)
            console.print(f"[{persona_style(step.persona)}]{step.persona:>8}[/] [bold]{step.key}[/]: {step.title}")
            for command in step.commands:
                console.print(f"         [dim]$ {command}[/]", highlight=False, soft_wrap=True)
            if not step.commands:
                console.print("         [dim]· no command line: the scenario's own bookkeeping[/]")

    return Result(steps, render=render)


@click.command("demo")
@click.option(
    "--scenario",
    "name",
    type=ScenarioName(),
    default=REFERENCE_SCENARIO,
    show_default=True,
    help="The scenario to play. Each keeps its own folder: ./cleanroom-demo for three-personas, "
    "./cleanroom-demo-NAME for another, unless -w names one.",
)
@click.option("--quick", is_flag=True, help="Train at most 50 steps (a few minutes) instead of a full epoch.")
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
    help="Print the `cleanroom` command lines each step runs under it (narration, on stderr).",
)
@click.option("--list-steps", is_flag=True, help="Print the scenario's steps and commands, then exit.")
@verb_output
@click.pass_context
def demo(
    ctx: click.Context,
    name: str,
    quick: bool,
    keep_running: bool,
    stop_after: str | None,
    show_commands: bool,
    list_steps: bool,
) -> Result:
    """Run a scenario end to end on the embedded default (the three-persona one by default).

    A hoster, a model provider and a model consumer each get a workspace with their own keys.
    Acting as each in turn through governance, key release and the sandboxed runtime:
    inference on the base model (~50%), a governed fine-tuning run sealed to the provider,
    inference on the fine-tuned model (>= 80% with a full run), then isolation proofs and an
    offline ledger verification. Re-running on the same folder (-w, default ./cleanroom-demo)
    resumes an interrupted run and refuses a finished one. Ctrl+C, SIGTERM or a closed
    terminal stops the services (unless --keep-running) and says what is left running. The
    folder must be yours and writable by you alone. Narration goes to stderr; -o json prints
    the results as one JSON document on stdout.

    \b
    Example:
      cleanroom demo --quick
      cleanroom demo -w /tmp/demo -o json > results.json
      cleanroom demo -w /tmp/demo --stop-after inference-base:evaluate --keep-running
      cleanroom demo --quick --query finetunedAccuracy
      cleanroom demo --scenario three-personas --list-steps
    """
    definition = scenario_definition(name)
    if list_steps:
        return _steps_result(definition)
    given = Path(ctx.obj.get("workspace", Path("."))) if ctx.obj else Path(".")
    root = given if given != Path(".") else scenario_root(DEFAULT_ROOT, name)
    scenario = Scenario.open(private_folder(root), quick=quick, definition=definition)
    with SessionLock(scenario.root, "demo"):  # not while a console drives the same scenario
        try:
            with _signals_interrupt():
                return _run(
                    stderr_console(),
                    scenario,
                    quick=quick,
                    keep_running=keep_running,
                    stop_after=stop_after,
                    show_commands=show_commands,
                )
        except Signalled as exc:
            say(_after_interruption(scenario, str(exc)))
            raise SystemExit(128 + signal.Signals[str(exc)].value) from None
        except KeyboardInterrupt:
            say(_after_interruption(scenario, "Ctrl+C"))
            raise  # click's own abort: "aborted", exit 130


INTERRUPTING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a closed terminal) during the demo, raised where Ctrl+C raises
    KeyboardInterrupt: the scenario's own interruption path then runs for it too (the step
    recorded as interrupted, the services stopped unless --keep-running, the lock released),
    instead of the process dying between two steps with the services orphaned silently."""

    def __repr__(self) -> str:  # what the scenario records as the interrupted step's error
        return f"{self.args[0]} received"


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While the demo runs, SIGTERM/SIGHUP interrupt it as Ctrl+C does; a second one while that
    cleanup runs is ignored, so the cleanup cannot itself be cut short half way."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def interrupted(signum: int, frame: object) -> None:
        for other in INTERRUPTING_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        raise Signalled(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupted) for signum in INTERRUPTING_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _after_interruption(scenario: Scenario, why: str) -> str:
    """The one line said once the interrupted demo has cleaned up: what is still running (with
    --keep-running, the services and any clean room) and how to stop it, or that nothing is."""
    done, total = scenario.progress
    resume = f"`cleanroom demo -w {scenario.root}` resumes it ({done}/{total} steps done)"
    rooms = running_deployments(scenario)
    home = scenario.services_home
    services = sorted(name for name, record in embedded.status(home_dir=home).items() if record.get("healthy"))
    if not rooms and not services:
        return f"{why} received: the demo in {scenario.root} stopped; nothing left running. {resume}"
    stops = "; ".join(f"CLEANROOM_HOME={home} cleanroom deployment stop --contract-id {c}" for c, _ in rooms)
    what = ", ".join([*(f"clean room '{c}' ({state})" for c, state in rooms), *services])
    return (
        f"{why} received: left running {what} under {home}; to stop them: "
        f"{stops + '; ' if stops else ''}CLEANROOM_HOME={home} cleanroom down. {resume}"
    )


def _run(
    console: Console,
    scenario: Scenario,
    *,
    quick: bool,
    keep_running: bool,
    stop_after: str | None,
    show_commands: bool,
) -> Result:
    """Run the pending steps, narrated on ``console`` (stderr), and return the summary."""
    narration = Narration(console, scenario, show_commands=show_commands)
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
        console.print(f"{scenario.definition.name} demo in {scenario.root}" + (" (--quick)" if quick else ""))
    try:
        scenario.run(narration.reporter(), stop_after=stop_after, keep_services=keep_running)
    finally:
        narration.close()
    summary = camel_keys(scenario.summary())

    def render(out: Console) -> None:
        if not scenario.complete:
            done, total = scenario.progress
            upcoming = scenario.next_step()
            out.print(
                f"{scenario.root}: {done}/{total} steps done" + (f", next: {upcoming.key}" if upcoming else ""),
                highlight=False,
            )
            if not already:
                console.print(
                    f"stopped after {stop_after}; run it again without --stop-after, or with a later step, to continue",
                    highlight=False,
                )
            return
        view = SUMMARY_VIEWS.get(scenario.definition.name)
        if view is not None:
            view(out, summary)
        else:
            _generic_view(out, scenario.definition, summary)
        console.print(f"results kept in {scenario.root / 'demo.json'}; `-o json` prints them as one document")
        if keep_running:
            console.print(f"services left running: CLEANROOM_HOME={scenario.services_home} cleanroom down")

    return Result(summary, render=render)
