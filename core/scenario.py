"""The three-persona scenario as data: an ordered list of steps, each done by one persona.

This is the reference collaboration (inference on a base model, a governed fine-tuning run,
inference on the fine-tuned model, then the proofs), acted out for real on the embedded
default: every step uses only the acting persona's workspace and keys, and only the public
interfaces a separate organisation would have (its governance client, its datasource
uploads, the hoster's runtime, the consumer's evaluation client). No step reaches into a
service's internals, so what the demo shows is what three teams typing the ``commands`` of
each step would get.

The same list drives ``cleanroom demo`` (all steps in order, rich narration) and the console
(``Scenario.next_step(persona)`` offers the next thing the current persona should do). State
lives in ``<root>/demo.json``, written atomically after every step, so an interrupted run
resumes at the step that did not finish; each step checks what already exists before acting,
so doing a half-done step again never duplicates or corrupts anything.

Layout of a scenario root::

    <root>/
      demo.json        progress and results (steps done, accuracies, durations)
      demo.lock        pid of the run in progress (a second run refuses)
      hoster/ provider/ consumer/   the three persona workspaces (keys, fragment, store)
      services/        CLEANROOM_HOME of the embedded services (governance, keys, runtime)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import embedded
from core.config.canonical import document_hash
from core.config.merge import merge_fragments
from core.config.party import add_application, add_data_asset, init_party, party_fragment, set_network_policy
from core.crypto.kek import dek_for
from core.crypto.secret_file import write_public_file
from core.errors import (AccessDeniedError, CleanroomError, ConflictError, IntegrityError, InvalidInputError,
                         NotFoundError, ServiceUnavailableError)
from core.governance.client import GovernanceClient
from core.workspace import Workspace

STATE_FILE = "demo.json"
LOCK_FILE = "demo.lock"
SERVICES_DIR = "services"
STATE_VERSION = 1
PERSONAS = ("hoster", "provider", "consumer")
PHASES = ("setup", "baseline", "fine-tuning", "fine-tuned", "proofs")
# the steps without which no persona can be opened: workspaces, then the services they talk to
CONSORTIUM_STEPS = frozenset({*(f"init:{persona}" for persona in PERSONAS), "services-up"})
PHASE_TITLES = {
    "setup": "Setup: three organisations, three workspaces, one consortium",
    "baseline": "1. Inference on the base model",
    "fine-tuning": "2. Fine-tuning in the clean room",
    "fine-tuned": "3. Inference on the fine-tuned model",
    "proofs": "4. Proofs: isolation, ledger, events",
}

BASE_CONTRACT = "inference-base"
TRAINING_CONTRACT = "finetune"
FINETUNED_CONTRACT = "inference-finetuned"

# Full run: one epoch of the 8,530 training rows (the field's recipe). Quick: at most 100 steps
# at a higher learning rate, which still moves the untrained head well clear of chance.
FULL_TRAINING = {"epochs": 1, "learning_rate": 5e-5, "batch_size": 32, "max_length": 64,
                 "warmup_ratio": 0.1, "weight_decay": 0.01, "seed": 42, "eval_each_epoch": True}
QUICK_TRAINING = {**FULL_TRAINING, "learning_rate": 1e-4, "max_steps": 100}

ENDPOINT_READY_TIMEOUT_S = 180.0
TRAINING_TIMEOUT_S = 3600.0
INFERENCE_ROUTES = ["GET /metadata", "POST /infer"]


# -- progress reporting (plain callbacks; front ends render them) ---------------------------------
@dataclass
class Reporter:
    """What a front end hears. ``progress(phase_task, done, total, detail)`` drives one bar per
    long task (upload, evaluation, training); ``note`` is one narration line."""

    step_started: Callable[["Step"], None] = lambda step: None
    step_finished: Callable[["Step", float, str], None] = lambda step, seconds, summary: None
    step_skipped: Callable[["Step"], None] = lambda step: None
    progress: Callable[[str, float, float | None, str], None] = lambda task, done, total, detail: None
    note: Callable[[str], None] = lambda text: None
    # an evaluation's running score: (contract id, rows done, rows correct, rows in all)
    evaluation: Callable[[str, int, int, int], None] = lambda contract_id, done, correct, total: None


# -- the state kept between runs -----------------------------------------------------------------
@dataclass
class ScenarioState:
    quick: bool
    completed: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)
    status: str = "running"  # running | failed | complete
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "quick": self.quick, "completed": self.completed,
                "results": self.results, "durations_s": self.durations_s, "status": self.status,
                "error": self.error}

    @classmethod
    def from_dict(cls, document: dict[str, Any], where: Path) -> "ScenarioState":
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            raise InvalidInputError(f"{where} is not a demo state file of this version",
                                    hint="run the demo in a new --workspace directory")
        return cls(quick=bool(document["quick"]), completed=list(document.get("completed", [])),
                   results=dict(document.get("results", {})), durations_s=dict(document.get("durations_s", {})),
                   status=str(document.get("status", "running")), error=document.get("error"))


@dataclass(frozen=True)
class Step:
    """One thing one persona does. ``commands`` are what a real team would type for it."""

    key: str
    phase: str
    persona: str  # hoster | provider | consumer | all
    title: str
    commands: tuple[str, ...]
    perform: Callable[["Scenario", Reporter], str]  # returns a one-line summary


# -- the scenario --------------------------------------------------------------------------------
class Scenario:
    """A scenario root on disk plus the steps; one instance per run (or per console session)."""

    def __init__(self, root: Path, state: ScenarioState) -> None:
        self.root = root
        self.state = state
        self.steps = build_steps()
        self._clients: dict[str, GovernanceClient] = {}
        self._lock_held = False

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, *, quick: bool | None = None) -> "Scenario":
        """Open a scenario root: new (missing or empty folder) or one a previous run left.

        ``quick`` None accepts whichever mode an existing root was started in (a new one is
        a full run); True/False refuses a root started in the other mode."""
        root = root.expanduser().resolve()
        state_path = root / STATE_FILE
        if state_path.is_file():
            try:
                document = json.loads(state_path.read_text())
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{state_path} is not valid JSON ({exc.msg})",
                                        hint="run the demo in a new --workspace directory") from exc
            state = ScenarioState.from_dict(document, state_path)
            if quick is not None and state.quick != quick:
                was = "with" if state.quick else "without"
                raise ConflictError(f"the demo in {root} was started {was} --quick",
                                    hint=f"run it again {was} --quick to resume, or use a new --workspace")
            return cls(root, state)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ConflictError(f"{root} is not empty and holds no demo",
                                hint="pass a new or empty --workspace directory for the demo")
        root.mkdir(parents=True, exist_ok=True)
        scenario = cls(root, ScenarioState(quick=bool(quick)))
        scenario.save()
        return scenario

    # -- layout --------------------------------------------------------------------------------
    @property
    def services_home(self) -> Path:
        return self.root / SERVICES_DIR

    def workspace_dir(self, persona: str) -> Path:
        return self.root / persona

    def workspace(self, persona: str) -> Workspace:
        return Workspace.open(self.workspace_dir(persona))

    def runtime_environment(self) -> Any:
        from core.runtime.process import RuntimeEnvironment

        home = self.services_home
        return RuntimeEnvironment(embedded.runtime_state_dir(home), embedded.governance_state_dir(home),
                                  embedded.key_service_state_dir(home))

    def key_service(self) -> Any:
        from core.keys import launcher as key_launcher

        return key_launcher.info(embedded.key_service_state_dir(self.services_home)).client()

    def governance(self, persona: str) -> GovernanceClient:
        """The persona's own governance client (its member key signs; its pinned cert checks TLS)."""
        if persona not in self._clients:
            self._clients[persona] = GovernanceClient.from_workspace(self.workspace(persona))
        return self._clients[persona]

    # -- state ---------------------------------------------------------------------------------
    def save(self) -> None:
        write_public_file(self.root / STATE_FILE,
                          (json.dumps(self.state.as_dict(), indent=2, sort_keys=True) + "\n").encode())

    @property
    def complete(self) -> bool:
        return self.state.status == "complete"

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
        lock = self.root / LOCK_FILE
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                raise ConflictError(f"another demo (pid {pid}) is running in {self.root}",
                                    hint="wait for it to finish, or use another --workspace") from None
            lock.unlink(missing_ok=True)  # left by a run that was killed
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        self._lock_held = True

    def release(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._lock_held:
            (self.root / LOCK_FILE).unlink(missing_ok=True)
            self._lock_held = False

    def open_consortium(self, reporter: Reporter) -> None:
        """Create the three workspaces and start the services, whatever of that is not done yet.

        What the console does before it opens: it needs every persona's workspace, and every
        later step is the operators' to take, one at a time, from the palette."""
        self.acquire()
        try:
            self._resume_services(reporter)
            for step in self.pending():
                if step.key not in CONSORTIUM_STEPS:
                    break
                self.run_step(step, reporter)
        finally:
            self.release()

    def services_started(self) -> bool:
        return "services-up" in self.state.completed

    def ensure_services(self, reporter: Reporter) -> None:
        """Start (or restart, on resume) the embedded services this scenario's consortium uses."""
        reporter.note(f"embedded services: {self.services_home}")
        embedded.up([self.workspace(p) for p in PERSONAS], home_dir=self.services_home,
                    progress=lambda name: reporter.note(f"starting {name} on loopback"))
        self._clients.clear()  # endpoints were (re)deployed into the workspaces

    def stop_services(self) -> list[str]:
        """Stop deployments this scenario started, then the services."""
        from core.runtime import process

        env = self.runtime_environment()
        for contract_id in (BASE_CONTRACT, TRAINING_CONTRACT, FINETUNED_CONTRACT):
            try:
                process.stop(env, contract_id)
            except (NotFoundError, ValueError):
                pass
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        return embedded.down(home_dir=self.services_home)

    def run_step(self, step: Step, reporter: Reporter) -> str:
        """Do one step and record it; a failure is recorded and re-raised (the state stays valid)."""
        if step.key in self.state.completed:
            reporter.step_skipped(step)
            return "already done"
        reporter.step_started(step)
        began = time.monotonic()
        try:
            summary = step.perform(self, reporter)
        except BaseException as exc:
            self.state.status = "failed"
            self.state.error = f"{step.key}: {exc.one_line() if isinstance(exc, CleanroomError) else exc!r}"
            self.save()
            raise
        seconds = time.monotonic() - began
        self.state.completed.append(step.key)
        self.state.durations_s[step.key] = round(seconds, 3)
        self.state.status = "complete" if not self.pending() else "running"
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
            raise ConflictError(f"the demo in {self.root} already ran to the end",
                                hint="read its results in demo.json, or run it again in a new --workspace")
        if stop_after is not None and stop_after not in {s.key for s in self.steps}:
            raise InvalidInputError(f"step '{stop_after}' is not a step of the scenario",
                                    hint=f"use one of: {', '.join(s.key for s in self.steps)}")
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
        from core.runtime.local import read_status

        pending = self.pending()
        contract_id, _, action = pending[0].key.partition(":") if pending else ("", "", "")
        start = f"{contract_id}:start"
        if action != "evaluate" or start not in self.state.completed:
            return
        try:
            state = read_status(self.runtime_environment().runtime_state_dir, contract_id).get("state")
        except NotFoundError:
            state = None
        if state not in ("starting", "running"):
            reporter.note(f"the clean room of '{contract_id}' stopped with the interrupted run; starting it again")
            self.state.completed.remove(start)
            self.save()

    def perform_next(self, persona: str, reporter: Reporter) -> str:
        """Do the next step if ``persona`` (or every party) acts next; services are left running.

        What the console calls for "the next step for the current persona"."""
        step = self.next_step(persona)
        if step is None:
            upcoming = self.next_step()
            raise ConflictError(f"it is not {persona}'s turn" + (
                f": {upcoming.persona} must '{upcoming.title}' first" if upcoming else ": the scenario is complete"),
                hint="switch to that persona")
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
        """The JSON document ``cleanroom demo --output json`` prints."""
        results = self.state.results
        baseline = results.get("evaluation", {}).get(BASE_CONTRACT, {})
        finetuned = results.get("evaluation", {}).get(FINETUNED_CONTRACT, {})
        checks = results.get("isolation_checks", [])
        return {
            "workspace": str(self.root),
            "quick": self.state.quick,
            "status": self.state.status,
            "steps_done": len(self.state.completed),
            "steps_total": len(self.steps),
            "baseline_accuracy": baseline.get("accuracy"),
            "finetuned_accuracy": finetuned.get("accuracy"),
            "gain": (round(finetuned["accuracy"] - baseline["accuracy"], 6)
                     if "accuracy" in baseline and "accuracy" in finetuned else None),
            "test_rows": finetuned.get("total_rows", baseline.get("total_rows")),
            "training": results.get("training"),
            "contracts": results.get("contracts", []),
            "ledger_verified": results.get("ledger", {}).get("verified"),
            "ledger": results.get("ledger"),
            "isolation_checks": checks,
            "isolation_passed": bool(checks) and all(c["passed"] for c in checks),
            "event_counts": results.get("event_counts", {}),
            "durations_s": self.phase_durations(),
            "total_s": round(sum(self.state.durations_s.values()), 3),
        }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- persona helpers (each uses only that persona's keys and public interfaces) -------------------
def _ensure_asset(workspace: Workspace, kind: str, name: str) -> None:
    fragment = party_fragment(workspace)
    existing = fragment.datasources if kind == "datasource" else fragment.datasinks
    if all(asset.name != name for asset in existing):
        add_data_asset(workspace, kind, name)


def _ensure_application(workspace: Workspace, name: str, **fields: Any) -> None:
    if all(app.name != name for app in party_fragment(workspace).applications):
        add_application(workspace, name=name, **fields)


def _upload(scenario: Scenario, reporter: Reporter, persona: str, name: str, folder: Path) -> str:
    from core.datasource import upload_datasource

    workspace = scenario.workspace(persona)
    _ensure_asset(workspace, "datasource", name)
    task = f"{persona}: encrypt + upload '{name}'"
    manifest = upload_datasource(workspace, name, folder, progress=lambda s: reporter.progress(
        task, s.bytes_done, s.bytes_total, s.current))
    return f"'{name}': {len(manifest.files)} files, {manifest.total_bytes / 1e6:.1f} MB sealed with its DEK"


def contract_document(scenario: Scenario, applications: list[str]) -> dict[str, Any]:
    """What ``config view --configs W/hoster W/provider W/consumer --application A`` prints:
    the three fragments merged, scoped to the applications this contract runs."""
    fragments = [party_fragment(scenario.workspace(p)) for p in PERSONAS]
    return merge_fragments(fragments).for_applications(applications).document()


def _propose_contract(scenario: Scenario, contract_id: str, applications: list[str]) -> str:
    hoster = scenario.governance("hoster")
    try:
        current = hoster.contract(contract_id)
    except NotFoundError:
        current = hoster.create_contract(contract_id, contract_document(scenario, applications))
        current = hoster.contract(contract_id)
    if current["state"] == "Draft":
        proposal = hoster.propose_contract(contract_id, current["version"])
        return (f"contract '{contract_id}' proposed ({proposal['proposalId'][:8]}); every party can recompute "
                f"its hash {document_hash(current['data'])[:16]} from the three fragments")
    return f"contract '{contract_id}' is already {current['state']}"


def _review(scenario: Scenario, persona: str, proposal: dict[str, Any]) -> str | None:
    """What a careful party checks before accepting; returns the reason to reject, or None.

    The deployment spec and the clean-room policy are regenerated by the voter from the
    contract it already accepted, so a hoster cannot slip in a different command or mount.
    """
    from core.runtime.deployment import deployment_spec, policy_document

    args = proposal.get("args", {})
    contract_id = args.get("contract_id")
    if proposal["action"] == "set_deployment_spec":
        expected = deployment_spec(contract_id, scenario.governance(persona).contract(contract_id)["data"])
        return None if args.get("data") == expected else "the deployment spec differs from the accepted contract's"
    if proposal["action"] == "set_clean_room_policy":
        expected = policy_document(deployment_spec(contract_id, scenario.governance(persona).contract(contract_id)["data"]))
        return None if args.get("data") == expected else "the clean-room policy hash differs from the accepted contract's"
    return None


def _vote_open(scenario: Scenario, persona: str, contract_id: str) -> str:
    client = scenario.governance(persona)
    me = client.identity.member_id if client.identity else ""
    cast = []
    for proposal in client.proposals(state="Open", contract_id=contract_id):
        if me in proposal.get("ballots", {}):
            continue
        reason = _review(scenario, persona, proposal)
        if reason is not None:
            client.vote(proposal["proposalId"], "reject")
            raise IntegrityError(f"{persona} rejected {proposal['action']} on '{contract_id}': {reason}",
                                 hint="the hoster must propose the document generated from the accepted contract")
        after = client.vote(proposal["proposalId"], "accept")
        cast.append(f"{proposal['action']} {proposal['proposalId'][:8]} -> {after['proposalState']}")
    return "; ".join(cast) if cast else "nothing open to vote on"


def _require_accepted(scenario: Scenario, contract_id: str) -> None:
    state = scenario.governance("hoster").contract(contract_id)["state"]
    if state != "Accepted":
        raise ConflictError(f"contract '{contract_id}' is {state}, not Accepted",
                            hint="every party must accept it first (`cleanroom governance proposal vote`)")


def _propose_deployment(scenario: Scenario, contract_id: str, *, enable_ca: bool, telemetry: bool) -> str:
    from core.runtime.deployment import deployment_spec, policy_document

    _require_accepted(scenario, contract_id)
    hoster = scenario.governance("hoster")
    spec = deployment_spec(contract_id, hoster.contract(contract_id)["data"])
    policy = policy_document(spec)
    open_actions = {p["action"] for p in hoster.proposals(state="Open", contract_id=contract_id)}
    proposed = []
    if hoster.deployment_spec(contract_id).get("data") is None and "set_deployment_spec" not in open_actions:
        hoster.propose_deployment_spec(contract_id, spec)
        proposed.append("deployment spec")
    if hoster.clean_room_policy(contract_id).get("data") is None and "set_clean_room_policy" not in open_actions:
        hoster.propose_clean_room_policy(contract_id, policy)
        proposed.append(f"policy {policy['policy_hash'][:16]}")
    if enable_ca and not hoster.ca(contract_id).get("enabled") and "enable_ca" not in open_actions:
        hoster.propose_enable_ca(contract_id)
        proposed.append("enable CA")
    if telemetry and hoster.runtime_option(contract_id, "telemetry").get("status") != "enabled" \
            and "enable_telemetry" not in open_actions:
        hoster.set_runtime_option(contract_id, "telemetry", enable=True)
        proposed.append("enable telemetry")
    return "proposed " + ", ".join(proposed) if proposed else "already proposed"


def _check_deployment_accepted(scenario: Scenario, contract_id: str, *, enable_ca: bool, telemetry: bool) -> None:
    hoster = scenario.governance("hoster")
    missing = []
    if hoster.deployment_spec(contract_id).get("data") is None:
        missing.append("deployment spec")
    if hoster.clean_room_policy(contract_id).get("data") is None:
        missing.append("clean-room policy")
    if enable_ca and not hoster.ca(contract_id).get("enabled"):
        missing.append("CA")
    if telemetry and hoster.runtime_option(contract_id, "telemetry").get("status") != "enabled":
        missing.append("telemetry")
    if missing:
        raise ConflictError(f"contract '{contract_id}': {', '.join(missing)} not accepted yet",
                            hint="every party must vote on the open proposals")


def _generate_ca(scenario: Scenario, contract_id: str) -> str:
    _check_deployment_accepted(scenario, contract_id, enable_ca=True, telemetry=False)
    hoster = scenario.governance("hoster")
    if not hoster.ca(contract_id).get("caCert"):
        hoster.generate_ca_key(contract_id)
    return f"CA certificate of '{contract_id}' published in governance"


def _wrap_deks(scenario: Scenario, persona: str, contract_id: str) -> str:
    from core.keys.wrap_deks import wrap_deks

    keys = scenario.key_service()
    try:
        wrapped = wrap_deks(scenario.workspace(persona), contract_id, governance=scenario.governance(persona), keys=keys)
    finally:
        keys.close()
    return f"DEKs of {', '.join(wrapped.assets)} wrapped to {persona}'s contract KEK {wrapped.kek_fingerprint[:16]}"


def _start_deployment(scenario: Scenario, contract_id: str, reporter: Reporter) -> dict[str, Any]:
    from core.runtime import process
    from core.runtime.local import read_status

    env = scenario.runtime_environment()
    try:
        current = read_status(env.runtime_state_dir, contract_id)
    except NotFoundError:
        current = {}
    if current.get("state") in ("starting", "running"):
        return current
    reporter.note(f"hoster starts the clean room of '{contract_id}' (attest, key release, sandbox)")
    status = process.start_background(env, contract_id)
    if status.get("state") == "failed":
        raise ServiceUnavailableError(f"the clean room of '{contract_id}' failed to start: {status.get('error')}",
                                      hint=f"see `cleanroom deployment logs --contract-id {contract_id}`")
    return status


def _stop_deployment(scenario: Scenario, contract_id: str) -> str:
    from core.runtime import process

    try:
        status = process.stop(scenario.runtime_environment(), contract_id)
    except NotFoundError:
        return f"'{contract_id}' was not running"
    return f"'{contract_id}' {status.get('state')}; plaintext mounts removed"


def _all_events(client: GovernanceClient, contract_id: str, from_seqno: int = 1) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        answer = client.events(contract_id, from_seqno=from_seqno)
        batch = answer.get("events", [])
        if not batch:
            return events
        events.extend(batch)
        from_seqno = int(answer.get("nextSeqno") or int(batch[-1]["seqno"]) + 1)


def _endpoint_of(client: GovernanceClient, contract_id: str) -> str:
    """The ingress URL the clean room announced in its (attested) ``running`` event."""
    running = [e for e in _all_events(client, contract_id) if e["type"] == "running" and e.get("data", {}).get("ingress")]
    if not running:
        raise NotFoundError(f"contract '{contract_id}' has no running clean room",
                            hint=f"the hoster starts it with `cleanroom deployment start --contract-id {contract_id}`")
    return str(running[-1]["data"]["ingress"])


def _evaluate(scenario: Scenario, contract_id: str, reporter: Reporter) -> str:
    from core.ml.datasets import load_split
    from core.ml.evaluation import evaluate

    consumer = scenario.governance("consumer")
    endpoint = _endpoint_of(consumer, contract_id)
    ca_pem = consumer.ca(contract_id).get("caCert")
    if not ca_pem:
        raise NotFoundError(f"contract '{contract_id}' has no CA certificate", hint="enable the CA by vote first")
    token = consumer.issue_token(contract_id)["token"]
    rows = load_split(scenario.workspace_dir("consumer") / "data" / "test.parquet", "test")
    with tempfile.TemporaryDirectory(prefix="cleanroom-demo-") as tmp:
        ca_path = Path(tmp) / "ca.crt"
        ca_path.write_text(ca_pem)
        _wait_until_serving(endpoint, ca_path, token, reporter)
        task = f"consumer: evaluate {len(rows)} test rows on '{contract_id}'"
        def on_progress(p: Any) -> None:
            reporter.progress(task, p.done, p.total, f"accuracy {p.accuracy:.3f}")
            reporter.evaluation(contract_id, p.done, p.correct, p.total)

        report = evaluate(rows, endpoint, ca=ca_path, token=token, on_progress=on_progress)
    scenario.state.results.setdefault("evaluation", {})[contract_id] = {
        "accuracy": round(report.accuracy, 6), "total_rows": report.total, "correct": report.correct,
        "rows_per_s": report.as_dict()["rows_per_s"], "endpoint": endpoint}
    return f"accuracy {report.accuracy:.3f} on {report.total} rows ({report.correct} correct)"


def _wait_until_serving(endpoint: str, ca_path: Path, token: str, reporter: Reporter) -> None:
    """The runtime reports ``running`` when the workload starts; the model loads a moment later."""
    from core.ml.evaluation import InferenceClient

    deadline = time.monotonic() + ENDPOINT_READY_TIMEOUT_S
    last: CleanroomError | None = None
    reporter.note(f"consumer waits for {endpoint} (TLS pinned to the contract's CA)")
    while time.monotonic() < deadline:
        try:
            with InferenceClient(endpoint, ca=ca_path, token=token) as client:
                client.metadata()
            return
        except (ServiceUnavailableError, InvalidInputError) as exc:
            last = exc
            time.sleep(0.5)
    raise ServiceUnavailableError(f"endpoint {endpoint} did not serve within {ENDPOINT_READY_TIMEOUT_S:.0f}s "
                                  f"({last.one_line() if last else 'no answer'})",
                                  hint="see `cleanroom deployment logs`")


# -- the steps' bodies -----------------------------------------------------------------------------
def _init(persona: str) -> Callable[[Scenario, Reporter], str]:
    def perform(scenario: Scenario, reporter: Reporter) -> str:
        directory = scenario.workspace_dir(persona)
        if not (directory / "workspace.json").is_file():
            if directory.exists():
                shutil.rmtree(directory)  # a half-created workspace from an interrupted run holds no asset
            init_party(directory, persona)
        workspace = scenario.workspace(persona)
        return f"member {workspace.identity.member_id[:16]}, KEK and config fragment in {directory}"
    return perform


def _services_up(scenario: Scenario, reporter: Reporter) -> str:
    scenario.ensure_services(reporter)
    for persona in PERSONAS:
        client = scenario.governance(persona)
        member = client.member(client.identity.member_id)  # type: ignore[union-attr]
        if member.get("status") != "Active":
            client.activate_member()
    records = embedded.load_records(scenario.services_home)
    return ", ".join(f"{name} {record['endpoint']}" for name, record in records.items())


def _consumer_data(scenario: Scenario, reporter: Reporter) -> str:
    """The consumer's own copy of its data: the test split it keeps, the training data it shares."""
    from core.ml.datasets import VENDORED_DIR

    source = VENDORED_DIR / "rotten_tomatoes"
    data = scenario.workspace_dir("consumer") / "data"
    training = data / "training"
    training.mkdir(parents=True, exist_ok=True)
    for split, target in (("test", data / "test.parquet"), ("train", training / "train.parquet"),
                          ("validation", training / "validation.parquet")):
        if not target.is_file():
            write_public_file(target, (source / f"{split}.parquet").read_bytes())
    return f"test split kept locally; train + validation staged in {training}"


def _model_prepare(scenario: Scenario, reporter: Reporter) -> str:
    from core.ml.model_preparation import prepare

    output = scenario.workspace_dir("provider") / "model"
    if (output / "onnx").is_dir() and (output / "pytorch").is_dir():
        return f"already prepared in {output}"
    task = "provider: model prepare (all-MiniLM-L6-v2, offline)"
    stages = ["loading base model", "writing pytorch/ (safetensors)", "exporting onnx/ (fp32 + int8)"]
    reporter.progress(task, 0, len(stages), "")

    def on_stage(name: str) -> None:
        reporter.progress(task, stages.index(name) if name in stages else 0, len(stages), name)

    prepared = prepare(None, output, on_stage=on_stage)
    reporter.progress(task, len(stages), len(stages), "done")
    return f"{len(prepared.files)} files: pytorch/ (safetensors) and onnx/ (fp32 + int8), fresh 2-label head"


def _upload_base_model(scenario: Scenario, reporter: Reporter) -> str:
    return _upload(scenario, reporter, "provider", "base-onnx", scenario.workspace_dir("provider") / "model" / "onnx")


def _inference_command(socket: str) -> list[str]:
    return ["python", "-m", "containers.inference_server", "--model-dir", "/mnt/remote/model", "--uds", socket]


def _add_inference_app(name: str, model: str) -> Callable[[Scenario, Reporter], str]:
    def perform(scenario: Scenario, reporter: Reporter) -> str:
        from core.runtime.deployment import socket_path

        hoster = scenario.workspace("hoster")
        _ensure_application(hoster, name, entrypoint="containers/inference_server",
                            command=_inference_command(socket_path(name)),
                            mounts=[{"source": model, "target": "/mnt/remote/model"}], ports=[8000])
        set_network_policy(hoster, inbound_allow=INFERENCE_ROUTES, allow_all_outbound=False)
        return f"application '{name}' serves '{model}' (inbound: {', '.join(INFERENCE_ROUTES)}; no outbound)"
    return perform


def _propose(contract_id: str, applications: list[str]) -> Callable[[Scenario, Reporter], str]:
    return lambda scenario, reporter: _propose_contract(scenario, contract_id, applications)


def _vote(persona: str, contract_id: str) -> Callable[[Scenario, Reporter], str]:
    return lambda scenario, reporter: _vote_open(scenario, persona, contract_id)


def _deploy_proposals(contract_id: str, *, enable_ca: bool, telemetry: bool) -> Callable[[Scenario, Reporter], str]:
    return lambda scenario, reporter: _propose_deployment(scenario, contract_id, enable_ca=enable_ca,
                                                          telemetry=telemetry)


def _ca(contract_id: str) -> Callable[[Scenario, Reporter], str]:
    return lambda scenario, reporter: _generate_ca(scenario, contract_id)


def _wrap(persona: str, contract_id: str) -> Callable[[Scenario, Reporter], str]:
    return lambda scenario, reporter: _wrap_deks(scenario, persona, contract_id)


def _serve(contract_id: str) -> Callable[[Scenario, Reporter], str]:
    def perform(scenario: Scenario, reporter: Reporter) -> str:
        status = _start_deployment(scenario, contract_id, reporter)
        return f"clean room of '{contract_id}' running (pid {status.get('pid')}), ingress {status.get('ingress')}"
    return perform


def _evaluate_step(contract_id: str) -> Callable[[Scenario, Reporter], str]:
    return lambda scenario, reporter: _evaluate(scenario, contract_id, reporter)


def _stop(contract_id: str) -> Callable[[Scenario, Reporter], str]:
    return lambda scenario, reporter: _stop_deployment(scenario, contract_id)


def _record_contract(scenario: Scenario, contract_id: str) -> None:
    contract = scenario.governance("consumer").contract(contract_id)
    contracts = [c for c in scenario.state.results.get("contracts", []) if c["id"] != contract_id]
    contracts.append({"id": contract_id, "state": contract["state"], "hash": contract.get("hash")})
    scenario.state.results["contracts"] = contracts


def _training_assets(scenario: Scenario, reporter: Reporter) -> str:
    provider = scenario.workspace_dir("provider")
    config_dir = provider / "training-config"
    config = QUICK_TRAINING if scenario.state.quick else FULL_TRAINING
    write_public_file(config_dir / "training_config.json", (json.dumps(config, indent=2) + "\n").encode())
    first = _upload(scenario, reporter, "provider", "base-pytorch", provider / "model" / "pytorch")
    second = _upload(scenario, reporter, "provider", "training-config", config_dir)
    _ensure_asset(scenario.workspace("provider"), "datasink", "trained-model")
    return f"{first}; {second}; datasink 'trained-model' declared (only the provider holds its DEK)"


def _training_data(scenario: Scenario, reporter: Reporter) -> str:
    return _upload(scenario, reporter, "consumer", "training-data",
                   scenario.workspace_dir("consumer") / "data" / "training")


def _add_trainer(scenario: Scenario, reporter: Reporter) -> str:
    _ensure_application(scenario.workspace("hoster"), "trainer", entrypoint="containers/trainer",
                        command=["python", "-m", "containers.trainer", "--model-dir", "/mnt/remote/model",
                                 "--data-dir", "/mnt/remote/data", "--config-dir", "/mnt/remote/config",
                                 "--output-dir", "/mnt/remote/output"],
                        mounts=[{"source": "base-pytorch", "target": "/mnt/remote/model"},
                                {"source": "training-data", "target": "/mnt/remote/data"},
                                {"source": "training-config", "target": "/mnt/remote/config"},
                                {"source": "trained-model", "target": "/mnt/remote/output"}],
                        cpu=2.0, memory_gb=4.0)
    return "application 'trainer': reads model, data and config read-only; writes only 'trained-model'"


def _train(scenario: Scenario, reporter: Reporter) -> str:
    """The hoster runs the training clean room; every party watches the telemetry it voted for."""
    from core.runtime.local import read_status

    contract_id = TRAINING_CONTRACT
    env = scenario.runtime_environment()
    status = _start_deployment(scenario, contract_id, reporter)
    watcher = scenario.governance("hoster")
    seqno = 1
    task = "clean room: fine-tuning (telemetry events)"
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    last_eval: dict[str, Any] = {}
    steps = 0
    while True:
        answer = watcher.events(contract_id, from_seqno=seqno, wait=1.0)
        for event in answer.get("events", []):
            seqno = int(event["seqno"]) + 1
            data = event.get("data", {})
            if event["type"] == "telemetry" and data.get("event") == "step":
                steps = int(data.get("step", 0))
                reporter.progress(task, steps, float(data.get("total_steps") or 0) or None,
                                  f"loss {data.get('loss')}")
            elif event["type"] == "telemetry" and data.get("event") == "eval":
                last_eval = data
                reporter.note(f"telemetry: epoch {data.get('epoch')} validation accuracy {data.get('val_accuracy')}")
            elif event["type"] in ("keys_released", "running", "exited", "sealed", "failed"):
                reporter.note(f"event: {event['type']} {json.dumps(data, sort_keys=True)[:120]}")
        status = read_status(env.runtime_state_dir, contract_id)
        if status.get("state") in ("exited", "failed", "lost"):
            break
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(f"training of '{contract_id}' did not end within {TRAINING_TIMEOUT_S:.0f}s",
                                          hint=f"stop it with `cleanroom deployment stop --contract-id {contract_id}`")
    if status.get("state") != "exited" or any(code != 0 for code in status.get("exit_codes", {}).values()):
        raise ServiceUnavailableError(f"training of '{contract_id}' ended {status.get('state')} "
                                      f"(exit codes {status.get('exit_codes')}, {status.get('error', '')})",
                                      hint=f"see `cleanroom deployment logs --contract-id {contract_id}`")
    if "trained-model" not in status.get("sealed", []):
        raise NotFoundError("the trainer wrote nothing to 'trained-model'", hint="see the deployment logs")
    scenario.state.results["training"] = {"steps": steps, "val_accuracy": last_eval.get("val_accuracy"),
                                          "config": QUICK_TRAINING if scenario.state.quick else FULL_TRAINING}
    return f"{steps} steps; validation accuracy {last_eval.get('val_accuracy')}; sealed to the provider's 'trained-model'"


def _download_trained(scenario: Scenario, reporter: Reporter) -> str:
    from core.datasource import download_asset

    provider = scenario.workspace("provider")
    target = scenario.workspace_dir("provider") / "finetuned"
    if not (target / "onnx").is_dir():
        partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:6]}")
        task = "provider: download + decrypt 'trained-model'"
        try:
            download_asset(provider, "datasink", "trained-model", partial,
                           progress=lambda s: reporter.progress(task, s.bytes_done, s.bytes_total, s.current))
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    metrics = json.loads((target / "metrics.json").read_text()) if (target / "metrics.json").is_file() else {}
    scenario.state.results.setdefault("training", {})["metrics"] = {
        k: metrics.get(k) for k in ("steps", "wall_time_s", "train_loop_s") if k in metrics}
    return f"decrypted pytorch/, onnx/ and metrics.json into {target}"


def _upload_finetuned(scenario: Scenario, reporter: Reporter) -> str:
    return _upload(scenario, reporter, "provider", "finetuned-onnx",
                   scenario.workspace_dir("provider") / "finetuned" / "onnx")


def _contracts_summary(scenario: Scenario, reporter: Reporter) -> str:
    for contract_id in (BASE_CONTRACT, TRAINING_CONTRACT, FINETUNED_CONTRACT):
        _record_contract(scenario, contract_id)
    return ", ".join(f"{c['id']} {c['state']} {str(c['hash'])[:12]}" for c in scenario.state.results["contracts"])


# -- proofs ------------------------------------------------------------------------------------------
# What each isolation check attempts (the console and the demo's table group checks by these).
KIND_SECRET = "wrapped DEK from governance with a self-made attestation"
KIND_RELEASE = "KEK release from the key service with a self-made attestation"
KIND_DECRYPT = "decrypt another party's blobs with its own DEKs"
KIND_STORES = "find plaintext in any blob store on the hoster's machine"
KIND_MOUNTS = "find a decrypted mount left after the runs"


def _forged_attestation(contract_id: str, policy: str | None) -> str:
    """What a party without the clean room's attestation key can produce: a well-formed token
    with the right claims, signed by a key of its own."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    now = int(time.time())
    claims = {"iss": "cleanroom-virtual-attestation", "iat": now, "nbf": now - 5, "exp": now + 300,
              "attestation_type": "virtual", "contract_id": contract_id, "policy_hash": policy or "",
              "report_data": "00" * 32, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, ec.generate_private_key(ec.SECP384R1()), algorithm="ES384")


def _check(checks: list[dict[str, Any]], persona: str, kind: str, name: str, attempt: Callable[[], Any],
           refused: tuple[type[CleanroomError], ...]) -> None:
    """Run ``attempt``; the check passes only if it is refused with one of ``refused``."""
    record = {"persona": persona, "kind": kind, "check": name}
    try:
        attempt()
    except refused as exc:
        checks.append(record | {"passed": True, "detail": f"refused: {exc.one_line()[:160]}"})
        return
    except CleanroomError as exc:
        checks.append(record | {"passed": False, "detail": f"unexpected {type(exc).__name__}: {exc.one_line()[:160]}"})
        return
    checks.append(record | {"passed": False, "detail": "it succeeded"})


def _contract_assets(scenario: Scenario, owner_persona: str) -> list[tuple[str, dict[str, Any]]]:
    """(contract id, asset) for every datasource/datasink ``owner_persona`` put in a contract."""
    client = scenario.governance(owner_persona)
    member = client.identity.member_id  # type: ignore[union-attr]
    found = []
    for contract_id in (BASE_CONTRACT, TRAINING_CONTRACT, FINETUNED_CONTRACT):
        data = client.contract(contract_id)["data"]
        for asset in data.get("datasources", []) + data.get("datasinks", []):
            if asset["owner"] == member:
                found.append((contract_id, asset))
    return found


def _try_decrypt(scenario: Scenario, persona: str, asset: dict[str, Any]) -> None:
    """Read another party's sealed blobs straight from its store (the store spec is public in the
    contract) and try every DEK this persona holds; success would be a leak."""
    from core.config.fragment import DataAsset
    from core.storage.locator import open_store
    from core.storage.transfer import download_folder

    workspace = scenario.workspace(persona)
    fragment = party_fragment(workspace)
    names = [a.name for a in fragment.datasources + fragment.datasinks]
    spec = DataAsset.model_validate(asset)
    store = open_store(spec.store)
    if not names:
        raise AccessDeniedError(f"{persona} holds no DEK at all to try on '{spec.name}'")
    with tempfile.TemporaryDirectory(prefix="cleanroom-proof-") as tmp:
        for name in names:
            target = Path(tmp) / name
            try:
                download_folder(store, spec.container, dek_for(workspace.keys_dir, name), target,
                                label=f"{spec.owner[:8]}'s '{spec.name}' with {persona}'s DEK '{name}'")
            except IntegrityError:
                if target.exists() and any(p.is_file() for p in target.rglob("*")):
                    raise ConflictError(f"plaintext was written while decrypting '{spec.name}' with a wrong key") \
                        from None
                continue
            raise ConflictError(f"{persona}'s DEK '{name}' opened '{spec.name}'")
        raise IntegrityError(f"none of {persona}'s {len(names)} DEKs opens '{spec.name}'")


def _isolation(persona: str) -> Callable[[Scenario, Reporter], str]:
    def perform(scenario: Scenario, reporter: Reporter) -> str:
        checks = _isolation_checks(scenario, persona)
        kept = [c for c in scenario.state.results.get("isolation_checks", []) if c["persona"] != persona]
        scenario.state.results["isolation_checks"] = kept + checks
        for kind in dict.fromkeys(c["kind"] for c in checks):
            group = [c for c in checks if c["kind"] == kind]
            reporter.note(f"{persona} tries to {kind}: {sum(c['passed'] for c in group)}/{len(group)} refused")
        for check in checks:
            if not check["passed"]:
                reporter.note(f"LEAK {persona}: {check['check']} ({check['detail']})")
        passed = sum(c["passed"] for c in checks)
        return f"{passed}/{len(checks)} isolation checks passed"
    return perform


def _isolation_checks(scenario: Scenario, persona: str) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    client = scenario.governance(persona)
    others = [p for p in ("provider", "consumer") if p != persona]
    for owner in others:
        for contract_id, asset in _contract_assets(scenario, owner):
            secret = f"dek-{asset['name']}"
            policy = client.accepted_policy_hash(contract_id)
            _check(checks, persona, KIND_SECRET, f"cannot get {owner}'s wrapped DEK '{secret}' of '{contract_id}' from governance "
                   "with a self-made attestation",
                   lambda c=contract_id, s=secret, p=policy: client.get_secret(c, s, _forged_attestation(c, p)),
                   (AccessDeniedError,))
            _check(checks, persona, KIND_DECRYPT, f"cannot decrypt {owner}'s '{asset['name']}' blobs with its own DEKs",
                   lambda a=asset: _try_decrypt(scenario, persona, a), (IntegrityError, AccessDeniedError))
        owner_id = scenario.governance(owner).identity.member_id  # type: ignore[union-attr]
        contracts = sorted({c for c, _ in _contract_assets(scenario, owner)})
        for contract_id in contracts:
            policy = client.accepted_policy_hash(contract_id)

            def release(c: str = contract_id, p: str | None = policy) -> None:
                from core.keys.release import WorkloadKey

                keys = scenario.key_service()
                try:
                    keys.release(owner_id, c, attestation=_forged_attestation(c, p), workload_key=WorkloadKey())
                finally:
                    keys.close()

            _check(checks, persona, KIND_RELEASE, f"key service refuses to release {owner}'s KEK of '{contract_id}' "
                   "to a self-made attestation", release, (AccessDeniedError,))
    if persona == "hoster":
        checks.append(_stores_hold_no_plaintext(scenario))
        checks.append(_no_plaintext_mounts(scenario))
    return checks


def _stores_hold_no_plaintext(scenario: Scenario) -> dict[str, Any]:
    """The hoster can read every blob byte on its machine; none of it may be plaintext."""
    needles = {
        "a training sentence": _first_training_text(scenario).encode()[:48],
        "the model config": b'"num_attention_heads"',
        "the training config": b'"learning_rate"',
    }
    found = []
    scanned = 0
    for persona in PERSONAS:
        for path in scenario.workspace(persona).store_dir.rglob("*"):
            if not path.is_file():
                continue
            data = path.read_bytes()
            scanned += len(data)
            found += [f"{what} in {path.name}" for what, needle in needles.items() if needle in data]
    return {"persona": "hoster", "kind": KIND_STORES, "check": f"no plaintext in any party's blob store ({scanned / 1e6:.0f} MB scanned)",
            "passed": not found, "detail": "; ".join(found) or "only ciphertext"}


def _first_training_text(scenario: Scenario) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(scenario.workspace_dir("consumer") / "data" / "training" / "train.parquet")
    return str(max(table.column("text").to_pylist()[:50], key=len))


def _no_plaintext_mounts(scenario: Scenario) -> dict[str, Any]:
    from core.runtime.local import MOUNTS_DIR

    mounts = scenario.runtime_environment().runtime_state_dir / MOUNTS_DIR
    left = [p.name for p in mounts.iterdir()] if mounts.is_dir() else []
    return {"persona": "hoster", "kind": KIND_MOUNTS, "check": "no decrypted mount left on the hoster's machine after the runs",
            "passed": not left, "detail": ", ".join(left) or f"{mounts} is empty"}


def _ledger(scenario: Scenario, reporter: Reporter) -> str:
    from core.governance.ledger import verify_export_file

    verified = {}
    entries = 0
    for persona in PERSONAS:
        client = scenario.governance(persona)
        with tempfile.TemporaryDirectory(prefix="cleanroom-ledger-") as tmp:
            path = Path(tmp) / "ledger.jsonl"
            client.export_ledger(path)
            try:
                report = verify_export_file(path, expected_service_cert_pem=client.service_cert_pem, full=True)
            except IntegrityError as exc:
                verified[persona] = exc.one_line()
                continue
        verified[persona] = "ok"
        entries = report.entries
        scenario.state.results["ledger"] = {"entries": report.entries, "checkpoints": report.checkpoints,
                                            "member_signatures_checked": report.member_signatures_checked}
    ok = all(v == "ok" for v in verified.values())
    scenario.state.results.setdefault("ledger", {}).update({"verified": ok, "by_persona": verified})
    if not ok:
        raise IntegrityError(f"ledger verification failed: {verified}", hint="the ledger export was tampered with")
    return f"each party verified {entries} entries offline (hash chain, signed checkpoints, member signatures)"


def _events(scenario: Scenario, reporter: Reporter) -> str:
    client = scenario.governance("consumer")
    counts: dict[str, dict[str, int]] = {}
    for contract_id in (BASE_CONTRACT, TRAINING_CONTRACT, FINETUNED_CONTRACT):
        counts[contract_id] = dict(sorted(Counter(e["type"] for e in _all_events(client, contract_id)).items()))
    scenario.state.results["event_counts"] = counts
    _contracts_summary(scenario, reporter)
    return "; ".join(f"{c}: {sum(v.values())} events" for c, v in counts.items())


# -- the list --------------------------------------------------------------------------------------
def _contract_steps(phase: str, contract_id: str, applications: list[str], *, serves: bool,
                    data_owners: list[str], telemetry: bool = False) -> list[Step]:
    """Propose, vote, deploy-propose, vote, (CA), wrap DEKs: the governance of one contract."""
    w = {p: f"cleanroom -w W/{p}" for p in PERSONAS}
    views = " ".join(f"W/{p}" for p in PERSONAS)
    steps = [Step(f"{contract_id}:propose", phase, "hoster", f"propose contract '{contract_id}'", (
        f"{w['hoster']} config view --configs {views} {' '.join(f'--application {a}' for a in applications)} "
        f"--output json > {contract_id}.json",
        f"{w['hoster']} governance contract create --id {contract_id} --data @{contract_id}.json",
        f"{w['hoster']} governance contract propose --id {contract_id} --version VERSION"),
        _propose(contract_id, applications))]
    for persona in ("provider", "consumer", "hoster"):
        steps.append(Step(f"{contract_id}:vote-contract:{persona}", phase, persona,
                          f"review and accept contract '{contract_id}'", (
                              f"{w[persona]} governance contract show --id {contract_id}",
                              f"{w[persona]} governance contract vote --id {contract_id} "
                              f"--proposal-id ID --action accept"),
                          _vote(persona, contract_id)))
    proposals = [f"{w['hoster']} governance deployment generate --contract-id {contract_id} --output-dir {contract_id}",
                 f"{w['hoster']} governance deployment template propose --contract-id {contract_id} "
                 f"--template-file {contract_id}/cleanroom-deployment-spec.json",
                 f"{w['hoster']} governance deployment policy propose --contract-id {contract_id} "
                 f"--policy-file {contract_id}/cleanroom-governance-policy.json"]
    if serves:
        proposals.append(f"{w['hoster']} governance ca propose-enable --contract-id {contract_id}")
    if telemetry:
        proposals.append(f"{w['hoster']} governance contract runtime-option set --id {contract_id} "
                         "--option telemetry --action enable")
    steps.append(Step(f"{contract_id}:propose-deployment", phase, "hoster",
                      "propose the deployment spec, clean-room policy" + (" and CA" if serves else "")
                      + (" and telemetry" if telemetry else ""), tuple(proposals),
                      _deploy_proposals(contract_id, enable_ca=serves, telemetry=telemetry)))
    for persona in ("provider", "consumer", "hoster"):
        steps.append(Step(f"{contract_id}:vote-deployment:{persona}", phase, persona,
                          "regenerate the spec and policy from the contract, compare, accept", (
                              f"{w[persona]} governance deployment generate --contract-id {contract_id} "
                              f"--output-dir mine && diff mine {contract_id}",
                              f"{w[persona]} governance proposal list --contract-id {contract_id} --state Open",
                              f"{w[persona]} governance proposal vote --proposal-id ID --action accept"),
                          _vote(persona, contract_id)))
    if serves:
        steps.append(Step(f"{contract_id}:ca", phase, "hoster", "generate the contract's CA key in governance",
                          (f"{w['hoster']} governance ca generate-key --contract-id {contract_id}",), _ca(contract_id)))
    for persona in data_owners:
        steps.append(Step(f"{contract_id}:wrap-deks:{persona}", phase, persona,
                          "wrap its DEKs to its per-contract KEK (released only to the attested clean room)",
                          (f"{w[persona]} config wrap-deks --contract-id {contract_id}",), _wrap(persona, contract_id)))
    return steps


def _inference_steps(phase: str, contract_id: str, application: str) -> list[Step]:
    w = {p: f"cleanroom -w W/{p}" for p in PERSONAS}
    return [
        Step(f"{contract_id}:start", phase, "hoster", "start the clean room (attest, key release, TLS ingress)",
             (f"CLEANROOM_HOME=W/services {w['hoster']} deployment start --contract-id {contract_id}",),
             _serve(contract_id)),
        Step(f"{contract_id}:evaluate", phase, "consumer", "evaluate its 1,066 test rows through the endpoint", (
            f"{w['consumer']} governance ca show --contract-id {contract_id} --query caCert > ca.crt",
            f"{w['consumer']} governance contract event list --id {contract_id}   # the ingress URL",
            # the token goes through the environment, not argv: `ps` shows every user a command line
            f"export CLEANROOM_TOKEN=$({w['consumer']} governance contract token --id {contract_id})",
            f"{w['consumer']} infer --dataset W/consumer/data/test.parquet --endpoint URL --ca ca.crt"),
            _evaluate_step(contract_id)),
        Step(f"{contract_id}:stop", phase, "hoster", "stop the clean room (plaintext mounts removed)",
             (f"CLEANROOM_HOME=W/services {w['hoster']} deployment stop --contract-id {contract_id}",),
             _stop(contract_id)),
    ]


def build_steps() -> list[Step]:
    w = {p: f"cleanroom -w W/{p}" for p in PERSONAS}
    steps: list[Step] = []
    for persona in PERSONAS:
        steps.append(Step(f"init:{persona}", "setup", persona, "create its workspace: member identity and KEK",
                          (f"{w[persona]} config init --persona {persona}",), _init(persona)))
    steps.append(Step("services-up", "setup", "hoster", "start governance and the key service on loopback",
                      ("CLEANROOM_HOME=W/services cleanroom up --workspace-dirs W/hoster W/provider W/consumer",),
                      _services_up))
    steps.append(Step("consumer-data", "setup", "consumer", "keep its test split; stage its training data",
                      ("cp rotten_tomatoes/{train,validation}.parquet W/consumer/data/training/",), _consumer_data))
    # 1. inference on the base model
    steps += [
        Step("model-prepare", "baseline", "provider", "prepare the base model (MiniLM, untrained 2-label head)",
             (f"{w['provider']} model prepare --output W/provider/model",), _model_prepare),
        Step("upload-base-onnx", "baseline", "provider", "encrypt and upload the ONNX model as a datasource", (
            f"{w['provider']} config add-datasource --name base-onnx",
            f"{w['provider']} datasource upload --name base-onnx --dataset-folder W/provider/model/onnx"),
            _upload_base_model),
        Step("add-inference", "baseline", "hoster", "add the inference application and its network policy", (
            f"{w['hoster']} config add-application --name inference --entrypoint containers/inference_server "
            "--command 'python -m containers.inference_server --model-dir /mnt/remote/model "
            "--uds /run/cleanroom/inference.sock' --mounts src=base-onnx,dst=/mnt/remote/model --ports 8000",
            f"{w['hoster']} config set-network-policy --allow 'GET /metadata' --allow 'POST /infer'"),
            _add_inference_app("inference", "base-onnx")),
    ]
    steps += _contract_steps("baseline", BASE_CONTRACT, ["inference"], serves=True, data_owners=["provider"])
    steps += _inference_steps("baseline", BASE_CONTRACT, "inference")
    # 2. fine-tuning
    steps += [
        Step("upload-training-assets", "fine-tuning", "provider",
             "upload the PyTorch model and training config; declare the output datasink", (
                 f"{w['provider']} config add-datasource --name base-pytorch",
                 f"{w['provider']} datasource upload --name base-pytorch --dataset-folder W/provider/model/pytorch",
                 f"{w['provider']} config add-datasource --name training-config",
                 f"{w['provider']} datasource upload --name training-config --dataset-folder W/provider/training-config",
                 f"{w['provider']} config add-datasink --name trained-model"), _training_assets),
        Step("upload-training-data", "fine-tuning", "consumer", "encrypt and upload train + validation splits", (
            f"{w['consumer']} config add-datasource --name training-data",
            f"{w['consumer']} datasource upload --name training-data --dataset-folder W/consumer/data/training"),
            _training_data),
        Step("add-trainer", "fine-tuning", "hoster", "add the trainer application", (
            f"{w['hoster']} config add-application --name trainer --entrypoint containers/trainer "
            "--command 'python -m containers.trainer --model-dir /mnt/remote/model --data-dir /mnt/remote/data "
            "--config-dir /mnt/remote/config --output-dir /mnt/remote/output' "
            "--mounts src=base-pytorch,dst=/mnt/remote/model --mounts src=training-data,dst=/mnt/remote/data "
            "--mounts src=training-config,dst=/mnt/remote/config --mounts src=trained-model,dst=/mnt/remote/output",),
            _add_trainer),
    ]
    steps += _contract_steps("fine-tuning", TRAINING_CONTRACT, ["trainer"], serves=False,
                             data_owners=["provider", "consumer"], telemetry=True)
    steps += [
        Step(f"{TRAINING_CONTRACT}:train", "fine-tuning", "hoster",
             "run the training clean room; every party watches its telemetry", (
                 f"CLEANROOM_HOME=W/services {w['hoster']} deployment start --contract-id {TRAINING_CONTRACT}",
                 f"{w['consumer']} governance contract event list --id {TRAINING_CONTRACT} --follow"),
             _train),
        Step("download-trained-model", "fine-tuning", "provider", "download and decrypt the sealed trained model",
             (f"{w['provider']} datasink download --name trained-model --target-folder W/provider/finetuned",),
             _download_trained),
    ]
    # 3. inference on the fine-tuned model
    steps += [
        Step("upload-finetuned-onnx", "fine-tuned", "provider", "encrypt and upload the fine-tuned ONNX model", (
            f"{w['provider']} config add-datasource --name finetuned-onnx",
            f"{w['provider']} datasource upload --name finetuned-onnx --dataset-folder W/provider/finetuned/onnx"),
            _upload_finetuned),
        Step("add-inference-finetuned", "fine-tuned", "hoster", "add an inference application for the new model", (
            f"{w['hoster']} config add-application --name inference-finetuned "
            "--entrypoint containers/inference_server --command 'python -m containers.inference_server "
            "--model-dir /mnt/remote/model --uds /run/cleanroom/inference-finetuned.sock' "
            "--mounts src=finetuned-onnx,dst=/mnt/remote/model --ports 8000",),
            _add_inference_app("inference-finetuned", "finetuned-onnx")),
    ]
    steps += _contract_steps("fine-tuned", FINETUNED_CONTRACT, ["inference-finetuned"], serves=True,
                             data_owners=["provider"])
    steps += _inference_steps("fine-tuned", FINETUNED_CONTRACT, "inference-finetuned")
    # 4. proofs
    for persona in PERSONAS:
        steps.append(Step(f"isolation:{persona}", "proofs", persona,
                          "try to open the other parties' assets (every attempt must be refused)", (
                              f"{w[persona]} datasource download --name OTHERS-ASSET --target-folder x   # refused",),
                          _isolation(persona)))
    steps.append(Step("ledger-verify", "proofs", "all", "export the ledger and verify it offline", (
        f"{w['consumer']} governance ledger export --file ledger.jsonl",
        f"{w['consumer']} governance ledger verify --file ledger.jsonl --full"), _ledger))
    steps.append(Step("event-counts", "proofs", "consumer", "count every contract's events and record the contracts",
                      tuple(f"{w['consumer']} governance contract event list --id {c}"
                            for c in (BASE_CONTRACT, TRAINING_CONTRACT, FINETUNED_CONTRACT)), _events))
    return steps
