"""The runner: a scenario root on disk, the definition it plays, and the order steps run in.

It knows no particular scenario: the steps, personas, phases and contracts come from a
``ScenarioDefinition``. The same runner drives ``cleanroom demo`` (every pending step in
order, narrated) and the console (``perform_next(persona)`` takes the next step if it is that
persona's turn). Each step checks what already exists before acting, so doing a half-done
step again never duplicates or corrupts anything.

Layout of a scenario root::

    <root>/
      demo.json        progress and results (steps done, accuracies, durations)
      demo.lock        pid of the run in progress (a second run refuses)
      hoster/ provider/ consumer/   the persona workspaces (keys, fragment, store)
      services/        CLEANROOM_HOME of the embedded services (governance, keys, runtime)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import embedded
from core.engine import DeploymentStatus, PersonaEngine, deployment_status, runtime_environment
from core.errors import CleanroomError, ConflictError, InvalidInputError, NotFoundError
from core.scenario.state import REFERENCE_SCENARIO, STATE_FILE, RunLock, RunStatus, ScenarioState
from core.scenario.steps import ROOT_NAME, SERVICES_DIR, Reporter, ScenarioDefinition, Step
from core.workspace import Workspace

if TYPE_CHECKING:
    from core.runtime.process import RuntimeEnvironment

SERVICES_STEP = "services-up"  # the step that starts the services a resumed run restarts


class Scenario:
    """A scenario root on disk plus its definition; one instance per run (or per console session)."""

    def __init__(self, root: Path, state: ScenarioState, definition: ScenarioDefinition | None = None) -> None:
        self.root = root
        self.state = state
        self.definition = definition or _reference()
        if state.scenario != self.definition.name:
            raise ConflictError(
                f"{root} holds the scenario '{state.scenario}', not '{self.definition.name}'",
                hint=f"resume it with --scenario {state.scenario}, or use a new --workspace directory for this one",
            )
        self.steps = list(self.definition.steps)
        self._engines: dict[str, PersonaEngine] = {}
        self._lock = RunLock(root)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, *, quick: bool | None = None, definition: ScenarioDefinition | None = None) -> Scenario:
        """Open a scenario root: new (missing or empty folder) or one a previous run left.

        ``quick`` None accepts whichever mode an existing root was started in (a new one is
        a full run); True/False refuses a root started in the other mode."""
        root = root.expanduser().resolve()
        state_path = root / STATE_FILE
        if state_path.is_file():
            state = ScenarioState.load(state_path)
            if quick is not None and state.quick != quick:
                was = "with" if state.quick else "without"
                raise ConflictError(
                    f"the demo in {root} was started {was} --quick",
                    hint=f"run it again {was} --quick to resume, or use a new --workspace",
                )
            return cls(root, state, definition)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ConflictError(
                f"{root} is not empty and holds no demo", hint="pass a new or empty --workspace directory for the demo"
            )
        root.mkdir(parents=True, exist_ok=True)
        name = (definition or _reference()).name
        scenario = cls(root, ScenarioState(quick=bool(quick), scenario=name), definition)
        scenario.save()
        return scenario

    # -- layout --------------------------------------------------------------------------------
    @property
    def personas(self) -> tuple[str, ...]:
        return self.definition.personas

    @property
    def services_home(self) -> Path:
        return self.root / SERVICES_DIR

    def workspace_dir(self, persona: str) -> Path:
        return self.root / persona

    def path(self, narrated: str) -> Path:
        """The real path of a path as narration names it (``W/consumer/data`` -> <root>/consumer/data)."""
        head, _, rest = narrated.partition("/")
        if head != ROOT_NAME:
            raise InvalidInputError(f"'{narrated}' is not under {ROOT_NAME}/", hint="fix the scenario definition")
        return self.root / rest

    def workspace(self, persona: str) -> Workspace:
        return Workspace.open(self.workspace_dir(persona))

    def runtime_environment(self) -> RuntimeEnvironment:
        return runtime_environment(self.services_home)

    def deployment_status(self, contract_id: str) -> DeploymentStatus | None:
        """A clean room of this scenario as its runtime records it; None if it never ran."""
        return deployment_status(self.runtime_environment(), contract_id)

    def engine(self, persona: str) -> PersonaEngine:
        """The persona's engine: its own keys and its pinned governance, nobody else's (every
        governance call of a step goes through it)."""
        if persona not in self._engines:
            self._engines[persona] = PersonaEngine(self.workspace(persona), services_home=self.services_home)
        return self._engines[persona]

    def key_service(self) -> Any:
        from core.keys import launcher as key_launcher

        return key_launcher.info(embedded.key_service_state_dir(self.services_home)).client()

    def _close_clients(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    # -- state ---------------------------------------------------------------------------------
    def save(self) -> None:
        self.state.save(self.root / STATE_FILE)

    @property
    def complete(self) -> bool:
        return self.state.status is RunStatus.COMPLETE

    @property
    def progress(self) -> tuple[int, int]:
        """(steps done, steps in all)."""
        return len(self.state.completed), len(self.steps)

    def pending(self) -> list[Step]:
        return [step for step in self.steps if step.key not in self.state.completed]

    def next_step(self, persona: str | None = None) -> Step | None:
        """The next step to do; with ``persona``, None unless that persona acts next (or all do)."""
        pending = self.pending()
        if not pending:
            return None
        step = pending[0]
        if persona is None or step.persona in (persona, "all"):
            return step
        return None

    # -- running -------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Refuse a second run on the same root while one is in progress (pid in demo.lock)."""
        self._lock.acquire()

    def release(self) -> None:
        self._close_clients()
        self._lock.release()

    def open_consortium(self, reporter: Reporter) -> None:
        """Create the workspaces and start the services, whatever of that is not done yet.

        What the console does before it opens: it needs every persona's workspace, and every
        later step is the operators' to take, one at a time, from the palette."""
        self.acquire()
        try:
            self._resume_services(reporter)
            for step in self.pending():
                if step.key not in self.definition.consortium_steps:
                    break
                self.run_step(step, reporter)
        finally:
            self.release()

    def services_started(self) -> bool:
        return SERVICES_STEP in self.state.completed

    def ensure_services(self, reporter: Reporter) -> None:
        """Start (or restart, on resume) the embedded services this scenario's consortium uses."""
        reporter.note(f"embedded services: {self.services_home}")
        embedded.up(
            [self.workspace(p) for p in self.personas],
            home_dir=self.services_home,
            progress=lambda name: reporter.note(f"starting {name} on loopback"),
        )
        self._close_clients()  # endpoints were (re)deployed into the workspaces

    def stop_services(self) -> list[str]:
        """Stop deployments this scenario started, then the services."""
        from core.runtime import process

        env = self.runtime_environment()
        for contract_id in self.definition.contracts:
            try:
                process.stop(env, contract_id)
            except (NotFoundError, ValueError):
                pass
        self._close_clients()
        return embedded.down(home_dir=self.services_home)

    def run_step(self, step: Step, reporter: Reporter) -> str:
        """Do one step and record it; a failure is recorded and re-raised (the state stays valid)."""
        if step.key in self.state.completed:
            reporter.step_skipped(step)
            return "already done"
        reporter.step_started(step)
        began = time.monotonic()
        try:
            summary = step.perform(self, step, reporter)
        except BaseException as exc:
            self.state.status = RunStatus.FAILED
            self.state.error = f"{step.key}: {exc.one_line() if isinstance(exc, CleanroomError) else exc!r}"
            self.save()
            raise
        seconds = time.monotonic() - began
        self.state.completed.append(step.key)
        self.state.durations_s[step.key] = round(seconds, 3)
        self.state.status = RunStatus.COMPLETE if not self.pending() else RunStatus.RUNNING
        self.state.error = None
        self.save()
        reporter.step_finished(step, seconds, summary)
        return summary

    def stopped_at(self, stop_after: str | None) -> bool:
        """True when ``stop_after`` names a step this root has already done: a run asked to stop
        there has nothing to do (re-running `--stop-after STEP` must not run past STEP)."""
        return stop_after is not None and stop_after in self.state.completed

    def run(self, reporter: Reporter, *, stop_after: str | None = None, keep_services: bool = False) -> None:
        """Run every pending step in order (resuming) up to and including ``stop_after``, then stop
        the services unless asked not to. A ``stop_after`` already done runs nothing: the
        resumed run stops where it was asked to, instead of never meeting its step again."""
        if self.complete:
            raise ConflictError(
                f"the demo in {self.root} already ran to the end",
                hint="read its results in demo.json, or run it again in a new --workspace",
            )
        if stop_after is not None and stop_after not in {s.key for s in self.steps}:
            raise InvalidInputError(
                f"step '{stop_after}' is not a step of the scenario",
                hint=f"use one of: {', '.join(s.key for s in self.steps)}",
            )
        if self.stopped_at(stop_after):
            return
        self.acquire()
        try:
            self._resume_services(reporter)
            for step in self.pending():
                self.run_step(step, reporter)
                if step.key == stop_after:
                    break
        finally:
            try:
                if not keep_services:
                    self.stop_services()
            finally:
                self.release()

    def _resume_services(self, reporter: Reporter) -> None:
        """A root whose services were started before gets them back, and the clean room an
        interrupted evaluation needs."""
        if self.services_started():
            self.ensure_services(reporter)
            self._reopen_stopped_deployment(reporter)

    def _reopen_stopped_deployment(self, reporter: Reporter) -> None:
        """An interrupted run stops its clean rooms with the services; if the step to resume is
        an evaluation, the hoster's start is done again first (the endpoint must be live)."""
        pending = self.pending()
        contract_id, _, action = pending[0].key.partition(":") if pending else ("", "", "")
        start = f"{contract_id}:start"
        if action != "evaluate" or start not in self.state.completed:
            return
        status = self.deployment_status(contract_id)
        if status is None or not status.alive:
            reporter.note(f"the clean room of '{contract_id}' stopped with the interrupted run; starting it again")
            self.state.completed.remove(start)
            self.save()

    def perform_next(self, persona: str, reporter: Reporter) -> str:
        """Do the next step if ``persona`` (or every party) acts next; services are left running.

        What the console calls for "the next step for the current persona"."""
        step = self.next_step(persona)
        if step is None:
            upcoming = self.next_step()
            raise ConflictError(
                f"it is not {persona}'s turn"
                + (f": {upcoming.persona} must '{upcoming.title}' first" if upcoming else ": the scenario is complete"),
                hint="switch to that persona",
            )
        self.acquire()
        try:
            if self.services_started():
                self.ensure_services(reporter)
            return self.run_step(step, reporter)
        finally:
            self.release()

    # -- results -------------------------------------------------------------------------------
    def phase_durations(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for step in self.steps:
            if step.key in self.state.durations_s:
                totals[step.phase] = round(totals.get(step.phase, 0.0) + self.state.durations_s[step.key], 3)
        return totals

    def summary(self) -> dict[str, Any]:
        """The JSON document ``cleanroom demo --output json`` prints (camelCase keys, the CLI's
        one JSON style): the run's progress, then what the definition reports about its results
        (``definition.summarise``), then the seconds each phase took."""
        return {
            "workspace": str(self.root),
            "scenario": self.definition.name,
            "quick": self.state.quick,
            "status": self.state.status.value,
            "stepsDone": len(self.state.completed),
            "stepsTotal": len(self.steps),
            **self.definition.summarise(self),
            "durationsSeconds": self.phase_durations(),
            "totalSeconds": round(sum(self.state.durations_s.values()), 3),
        }


def _reference() -> ScenarioDefinition:
    """The reference scenario, the default of `cleanroom demo` and the console (imported late:
    the definition imports the step bodies, which import this runner's types)."""
    from core.scenario import scenario_definition

    return scenario_definition(REFERENCE_SCENARIO)


def scenario_root(base: Path, name: str) -> Path:
    """Where scenario ``name`` keeps its state when the reference one keeps its at ``base``:
    ``base`` itself for the reference scenario, ``<base>-<name>`` beside it for any other, so
    two scenarios never share a root (and ``Scenario.open`` refuses a root holding another)."""
    return base if name == REFERENCE_SCENARIO else base.with_name(f"{base.name}-{name}")


def open_embedded_scenario(
    root: Path | None = None,
    *,
    quick: bool | None = None,
    reporter: Reporter | None = None,
    definition: ScenarioDefinition | None = None,
) -> tuple[Scenario, list[PersonaEngine]]:
    """The embedded default as the console opens it: a scenario of `cleanroom demo` (the
    three-persona one unless ``definition`` says otherwise), under ``<CLEANROOM_HOME>/scenario``
    (see :func:`scenario_root`) unless ``root`` says otherwise.

    Its workspaces are created and its services started on loopback on first use; later runs
    resume where the last one stopped. Every step after that is left to the operators.
    """
    name = definition.name if definition is not None else REFERENCE_SCENARIO
    scenario = Scenario.open(
        root or scenario_root(embedded.home() / "scenario", name), quick=quick, definition=definition
    )
    scenario.open_consortium(reporter or Reporter())
    return scenario, [
        PersonaEngine(scenario.workspace(persona), services_home=scenario.services_home)
        for persona in scenario.personas
    ]
