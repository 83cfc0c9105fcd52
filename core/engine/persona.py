"""A persona's engine: its identity, governance session, records and the operations on them.

Front ends (the console, the demo narration) talk to this module only, and this module only
delegates: governance calls go through ``core.governance.client``, the runtime through
``core.runtime``, evaluations through ``core.ml.evaluation``. Results come back as the small
frozen records below so a front end never depends on a service's wire format.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.engine.applications import ApplicationOperations
from core.engine.consortium import ConsortiumOperations
from core.engine.privacy_budget import PrivacyBudgetOperations
from core.engine.registry import RegistryOperations
from core.engine.session import GovernanceSession
from core.engine.traffic import TrafficOperations
from core.engine.usage import UsageOperations
from core.errors import CleanroomError, IntegrityError, InvalidInputError, NotFoundError, ServiceUnavailableError
from core.governance.models import ContractState, MemberStatus, OptionStatus, ProposalState, Vote
from core.runtime.lifecycle import LIFECYCLE_EVENTS, LIVE_STATES, ApplicationState, DeploymentState, LifecycleEvent
from core.workspace import Workspace

if TYPE_CHECKING:
    from core.runtime.process import RuntimeEnvironment

SHORT_ID = 8
ENDPOINT_READY_TIMEOUT_S = 180.0  # the runtime says `running` when the workload starts; the model loads later


# -- records a front end renders ------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    member_id: str
    name: str

    @property
    def short_id(self) -> str:
        return self.member_id[:SHORT_ID]


@dataclass(frozen=True)
class Proposal:
    """A governance proposal as an operator sees it; ``ballots`` maps member id -> accept|reject."""

    proposal_id: str
    action: str
    contract_id: str
    proposer_id: str
    state: str
    created_at: float
    ballots: dict[str, str] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)
    previous_content: dict[str, Any] | None = None

    @property
    def is_open(self) -> bool:
        return self.state == ProposalState.OPEN


@dataclass(frozen=True)
class Contract:
    """A contract; ``document`` (the merged spec the parties vote on) only when read alone."""

    contract_id: str
    state: str
    version: str
    contract_hash: str | None
    execution_enabled: bool = True
    document: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerEntry:
    seqno: int
    time: float
    signer_id: str
    action: str


@dataclass(frozen=True)
class LedgerVerification:
    ok: bool
    entries: int
    detail: str
    checkpoints: int = 0
    member_signatures_checked: int = 0


@dataclass(frozen=True)
class DataAssetStatus:
    """A datasource (read-only mount) or datasink (write-only mount) of this persona."""

    kind: str  # "datasource" | "datasink"
    name: str
    store: str
    mount_path: str | None
    uploaded: bool = False
    files: int = 0
    plaintext_bytes: int = 0


@dataclass(frozen=True)
class ApplicationStatus:
    contract_id: str
    application: str
    state: str  # deploying | running | exited | failed | stopped
    started_at: float | None
    exit_code: int | None


@dataclass(frozen=True)
class CleanroomEvent:
    """One event a clean room or the governance service reported, in sequence order."""

    contract_id: str
    seqno: int
    time: float
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    category: str = "audit"  # audit | telemetry | logging, as governance classifies it


@dataclass(frozen=True)
class DeploymentStatus:
    """A clean room as the runtime on this machine records it (``status.json``)."""

    contract_id: str
    state: str  # starting | running | exited | failed | lost (its runtime died unrecorded)
    pid: int | None
    ingress: str | None
    exit_codes: dict[str, int] = field(default_factory=dict)
    sealed: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def alive(self) -> bool:
        return self.state in LIVE_STATES

    @classmethod
    def from_status(cls, contract_id: str, status: dict[str, Any]) -> DeploymentStatus:
        pid = status.get("pid")
        return cls(
            contract_id,
            str(status.get("state")),
            int(pid) if pid else None,
            status.get("ingress"),
            {k: int(v) for k, v in dict(status.get("exit_codes") or {}).items()},
            list(status.get("sealed") or []),
            status.get("error"),
        )


@dataclass(frozen=True)
class EvaluationReport:
    """What one evaluation through a contract's endpoint measured."""

    contract_id: str
    endpoint: str
    accuracy: float
    total_rows: int
    correct: int
    rows_per_s: float


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: str | None
    reachable: bool
    detail: str


# -- the facade -----------------------------------------------------------------------------


class PersonaEngine(
    ConsortiumOperations,
    RegistryOperations,
    ApplicationOperations,
    PrivacyBudgetOperations,
    TrafficOperations,
    UsageOperations,
    GovernanceSession,
):
    """One persona's view of the clean room; every method acts with that persona's keys only.

    Methods block (they are network calls): front ends call them off their UI thread.
    """

    def __init__(self, workspace: Workspace, *, services_home: Path | None = None) -> None:
        super().__init__(workspace, services_home=services_home)
        self._ledger_times: dict[int, float] = {}

    @classmethod
    def open(cls, path: Path) -> PersonaEngine:
        return cls(Workspace.open(path))

    # identity ---------------------------------------------------------------------------
    @property
    def persona(self) -> str:
        return self.workspace.persona

    @property
    def name(self) -> str:
        return self.workspace.name

    @property
    def short_member_id(self) -> str:
        return self.member_id[:SHORT_ID]

    @property
    def governance_endpoint(self) -> str | None:
        endpoint = self.workspace.settings.get("governance", {}).get("endpoint")
        return str(endpoint) if endpoint else None

    # governance -------------------------------------------------------------------------
    def health(self) -> EndpointHealth:
        endpoint = self.governance_endpoint
        if endpoint is None:
            return EndpointHealth(None, False, "no governance service in workspace.json")
        try:
            self._governance().health()
        except CleanroomError as exc:
            return EndpointHealth(endpoint, False, exc.one_line())
        return EndpointHealth(endpoint, True, "ok")

    def members(self) -> list[Member]:
        return [Member(m["memberId"], m.get("name") or m["memberId"][:SHORT_ID]) for m in self.list_members()]

    def proposals(self) -> list[Proposal]:
        """Every proposal, oldest first, each with the previous version of what it proposes."""
        raws = sorted(self.list_proposals(), key=lambda r: int(r.get("seqno", 0)))
        times = self._times_of([int(r.get("seqno", 0)) for r in raws])
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        proposals = []
        for raw in raws:
            subject = (raw["action"], raw.get("contractId") or "")
            previous = latest.get(subject)
            proposals.append(
                Proposal(
                    proposal_id=raw["proposalId"],
                    action=raw["action"],
                    contract_id=raw.get("contractId") or "",
                    proposer_id=raw["proposerId"],
                    state=raw["proposalState"],
                    created_at=times.get(int(raw.get("seqno", 0)), 0.0),
                    ballots=dict(raw.get("ballots", {})),
                    content=dict(raw.get("args", {})),
                    previous_content=previous,
                )
            )
            latest[subject] = dict(raw.get("args", {}))
        return proposals

    def _proposal(self, raw: dict[str, Any]) -> Proposal:
        seqno = int(raw.get("seqno", 0))
        return Proposal(
            raw["proposalId"],
            raw["action"],
            raw.get("contractId") or "",
            raw["proposerId"],
            raw["proposalState"],
            self._times_of([seqno]).get(seqno, 0.0),
            dict(raw.get("ballots", {})),
            dict(raw.get("args", {})),
        )

    def contracts(self) -> list[Contract]:
        client = self._governance()
        return [
            Contract(
                c["id"],
                c["state"],
                str(c.get("version", "")),
                c.get("hash") or None,
                client.execution_enabled(c["id"]) if c["state"] == ContractState.ACCEPTED else True,
            )
            for c in client.contracts()
        ]

    def voted_document(self, proposal_id: str) -> dict[str, Any]:
        """What a ballot on this proposal accepts (a set_contract's contract data, a proposed
        document, or the args), for the vote modal's summary and diff (core.governance.review)."""
        from core.governance.review import voted_document

        return voted_document(*self.proposal_under_review(proposal_id))

    def vote(self, proposal_id: str, accept: bool) -> Proposal:
        """Sign and submit one ballot; returns the proposal as the service now sees it."""
        return self._proposal(self.cast_ballot(proposal_id, Vote.ACCEPT if accept else Vote.REJECT))

    def withdraw(self, proposal_id: str) -> Proposal:
        return self._proposal(self.withdraw_proposal(proposal_id))

    def disable_execution(self, contract_id: str) -> None:
        """The kill switch: this member alone stops the contract from running."""
        self.set_runtime_option(contract_id, "execution", enable=False)

    # governance writes of an operator's verbs (what `cleanroom governance ...` does) ------
    def ensure_active(self) -> bool:
        """Activate this member if governance has it as accepted but not yet active; True if it did."""
        if self.read_member().get("status") == MemberStatus.ACTIVE:
            return False
        self.activate_member()
        return True

    def contract(self, contract_id: str) -> Contract:
        """One contract with its document (raises NotFoundError if governance has none)."""
        raw = self.read_contract(contract_id)
        return Contract(
            contract_id,
            raw["state"],
            str(raw.get("version", "")),
            raw.get("hash") or None,
            document=dict(raw.get("data") or {}),
        )

    def create_contract(self, contract_id: str, document: dict[str, Any]) -> Contract:
        self.write_contract(contract_id, document)
        return self.contract(contract_id)

    def open_proposals(self, contract_id: str) -> list[Proposal]:
        """The contract's open proposals, without the ledger look-up ``proposals()`` does for times."""
        return [
            Proposal(
                raw["proposalId"],
                raw["action"],
                raw.get("contractId") or "",
                raw["proposerId"],
                raw["proposalState"],
                0.0,
                dict(raw.get("ballots", {})),
                dict(raw.get("args", {})),
            )
            for raw in self.list_proposals(state=ProposalState.OPEN, contract_id=contract_id)
        ]

    def deployment_spec(self, contract_id: str) -> dict[str, Any] | None:
        """The accepted deployment spec, None until a proposal for it is accepted."""
        data = self.deployment_spec_state(contract_id).get("data")
        return dict(data) if data is not None else None

    def clean_room_policy(self, contract_id: str) -> dict[str, Any] | None:
        """The accepted clean-room policy, None until a proposal for it is accepted."""
        data = self.clean_room_policy_state(contract_id).get("data")
        return dict(data) if data is not None else None

    def accepted_policy_hash(self, contract_id: str) -> str | None:
        return self._governance().accepted_policy_hash(contract_id)

    def ca_enabled(self, contract_id: str) -> bool:
        return bool(self.ca_state(contract_id).get("enabled"))

    def ca_certificate(self, contract_id: str) -> str | None:
        """The contract CA's certificate (PEM), None until its key was generated."""
        return self.ca_state(contract_id).get("caCert") or None

    def runtime_option_enabled(self, contract_id: str, option: str) -> bool:
        return bool(self.runtime_option(contract_id, option).get("status") == OptionStatus.ENABLED)

    def request_secret(self, contract_id: str, name: str, attestation: str) -> bytes:
        """What a clean room does to get a wrapped DEK: governance releases it only to an
        attestation of the accepted policy (the isolation proofs try it with a forged one)."""
        return self._governance().get_secret(contract_id, name, attestation)

    # ledger -----------------------------------------------------------------------------
    def _export_ledger(self, directory: Path) -> Path:
        path = directory / "ledger.jsonl"
        self.export_ledger(path)
        return path

    def ledger(self) -> list[LedgerEntry]:
        """The audit trail from a fresh export; times are the signers' ``created_at`` headers."""
        from core.governance.ledger import unb64
        from core.governance.signing import SignatureRejected, parse_message

        entries = []
        for line in self._ledger_lines()[1:]:
            entry = json.loads(line).get("entry")
            if entry is None:
                continue
            try:
                created = float(parse_message(unb64(entry["request"])).created_at)
            except SignatureRejected:  # genesis and clean-room (attested) writes are not COSE
                created = 0.0
            self._ledger_times[int(entry["seqno"])] = created
            entries.append(LedgerEntry(int(entry["seqno"]), created, entry["signer"], entry["kind"]))
        return entries

    def _times_of(self, seqnos: list[int]) -> dict[int, float]:
        if any(seqno not in self._ledger_times for seqno in seqnos):
            self.ledger()
        return self._ledger_times

    def verify_ledger(self) -> LedgerVerification:
        """Verify a fresh export offline against the service certificate this workspace pinned."""
        from core.governance.ledger import verify_export_file

        pinned = self.workspace.settings.get("governance", {}).get("service_cert_pem")
        with tempfile.TemporaryDirectory(prefix="cleanroom-ledger-") as tmp:
            path = self._export_ledger(Path(tmp))
            try:
                report = verify_export_file(path, expected_service_cert_pem=pinned, full=True)
            except IntegrityError as exc:
                return LedgerVerification(False, 0, exc.one_line())
        return LedgerVerification(
            True,
            report.entries,
            f"{report.checkpoints} signed checkpoints, {report.member_signatures_checked} member signatures checked",
            report.checkpoints,
            report.member_signatures_checked,
        )

    # events and deployments -------------------------------------------------------------
    def events(self, contract_id: str, since: int = 1, *, wait: float | None = None) -> list[CleanroomEvent]:
        """One page of the contract's events from ``since``; ``wait`` long-polls for the next one."""
        client = self._governance()
        answer = client.events(contract_id, from_seqno=since, wait=wait or 0.0)
        return [
            CleanroomEvent(
                contract_id,
                int(e["seqno"]),
                float(e["timestamp"]),
                e["type"],
                dict(e.get("data", {})),
                e.get("category", "audit"),
            )
            for e in answer["events"]
        ]

    def all_events(self, contract_id: str) -> list[CleanroomEvent]:
        """Every event of the contract, page after page."""
        events: list[CleanroomEvent] = []
        while batch := self.events(contract_id, events[-1].seqno + 1 if events else 1):
            events.extend(batch)
        return events

    def follow_events(self, should_stop: Callable[[], bool], poll_seconds: float = 1.0) -> Iterator[CleanroomEvent]:
        """Every contract's new events, in order, until ``should_stop()``.

        An unreachable service is not an error here: the feed waits and retries (the context
        bar reports health), so a console opened before ``cleanroom up`` catches up on its own.
        Polls are short so a closing console never waits on a blocked read.
        """
        next_seqno: dict[str, int] = {}
        while not should_stop():
            try:
                for contract in self.list_contracts():
                    for event in self.events(contract["id"], next_seqno.get(contract["id"], 1)):
                        next_seqno[contract["id"]] = event.seqno + 1
                        yield event
            except (ServiceUnavailableError, NotFoundError):
                pass
            deadline = time.monotonic() + poll_seconds
            while time.monotonic() < deadline and not should_stop():
                time.sleep(0.05)

    def deployments(self) -> list[ApplicationStatus]:
        """Each application's state, folded from the lifecycle events the runtime recorded."""
        statuses: list[ApplicationStatus] = []
        for contract in self.contracts():
            if contract.state != ContractState.ACCEPTED:
                continue
            lifecycle = [e for e in self.all_events(contract.contract_id) if e.kind in LIFECYCLE_EVENTS]
            if lifecycle:
                statuses.extend(application_statuses(contract.contract_id, lifecycle))
        return statuses

    def runtime_environment(self) -> RuntimeEnvironment:
        """The embedded runtime on this machine (under ``services_home``, else $CLEANROOM_HOME)."""
        from core import embedded

        return runtime_environment(self.services_home or embedded.home())

    def deployment_status(self, contract_id: str) -> DeploymentStatus | None:
        """The clean room as this machine's runtime records it; None if it never ran here."""
        return deployment_status(self.runtime_environment(), contract_id)

    def start_deployment(self, contract_id: str) -> DeploymentStatus:
        """Start the accepted contract's clean room on this machine (`deployment start`); a
        clean room already starting or running is left as it is."""
        from core.runtime import process

        current = self.deployment_status(contract_id)
        if current is not None and current.alive:
            return current
        status = DeploymentStatus.from_status(
            contract_id, process.start_background(self.runtime_environment(), contract_id)
        )
        if status.state == DeploymentState.FAILED:
            raise ServiceUnavailableError(
                f"the clean room of '{contract_id}' failed to start: {status.error}",
                hint=f"see `cleanroom deployment logs --contract-id {contract_id}`",
            )
        return status

    def stop_deployment(self, contract_id: str) -> dict[str, Any]:
        """Stop a clean room the embedded runtime on this machine runs (step 3's `deployment stop`).

        Only the machine that runs the clean room can stop it this way; any member anywhere can
        use the kill switch instead.
        """
        from core.runtime import process

        return process.stop(self.runtime_environment(), contract_id)

    def ingress_endpoint(self, contract_id: str) -> str:
        """The ingress URL the clean room announced in its (attested) ``running`` event."""
        running = [
            e for e in self.all_events(contract_id) if e.kind == LifecycleEvent.RUNNING and e.data.get("ingress")
        ]
        if not running:
            raise NotFoundError(
                f"contract '{contract_id}' has no running clean room with an ingress",
                hint=f"the hoster starts it with `cleanroom deployment start --contract-id {contract_id}`",
            )
        return str(running[-1].data["ingress"])

    # data -------------------------------------------------------------------------------
    def data_assets(self) -> list[DataAssetStatus]:
        """This persona's datasources and datasinks with what their current upload holds."""
        from core.config.party import party_fragment
        from core.datasource import KINDS, list_assets

        if not self.workspace.fragment_path.is_file():
            return []
        fragment = party_fragment(self.workspace)
        mounts = {m.source: m.target for app in fragment.applications for m in app.mounts}
        return [
            DataAssetStatus(
                status.kind,
                status.name,
                status.location,
                mounts.get(status.name),
                status.uploaded,
                status.files,
                status.plaintext_bytes,
            )
            for kind in KINDS
            for status in list_assets(self.workspace, kind)
        ]

    def upload_datasource(self, name: str, folder: Path, on_progress: Callable[[int, int], None]) -> int:
        """Encrypt and upload ``folder`` as datasource ``name``; ``on_progress(bytes_done, total)``."""
        from core.datasource import upload_datasource

        manifest = upload_datasource(
            self.workspace, name, folder, progress=lambda s: on_progress(s.bytes_done, s.bytes_total)
        )
        return len(manifest.files)

    def download_asset(self, kind: str, name: str, target: Path, on_progress: Callable[[int, int], None]) -> int:
        """Download and decrypt a datasource or datasink of this persona into ``target``."""
        from core.datasource import download_asset

        manifest = download_asset(
            self.workspace, kind, name, target, progress=lambda s: on_progress(s.bytes_done, s.bytes_total)
        )
        return len(manifest.files)

    # evaluation -------------------------------------------------------------------------
    def run_evaluation(
        self,
        contract_id: str,
        on_progress: Callable[[int, int, int], None],
        *,
        dataset: str | Path = "rotten_tomatoes",
        split: str = "test",
        on_wait: Callable[[str], None] = lambda endpoint: None,
    ) -> EvaluationReport:
        """Send this persona's test split to the contract's endpoint and score it (step 4's client).

        TLS is pinned to the contract's CA and the bearer token is issued to this member by
        governance, exactly as `cleanroom infer` does; a clean room that has just started is
        waited for (``on_wait(endpoint)``) until its model serves. ``on_progress(done, correct, total)``.
        """
        from core.ml.datasets import load_split
        from core.ml.evaluation import evaluate

        endpoint = self.ingress_endpoint(contract_id)
        ca_pem = self.ca_certificate(contract_id)
        if not ca_pem:
            raise NotFoundError(
                f"contract '{contract_id}' has no CA certificate", hint="enable the CA by vote and generate its key"
            )
        token = str(self.contract_token(contract_id)["token"])
        rows = load_split(dataset, split)
        with tempfile.TemporaryDirectory(prefix="cleanroom-eval-") as tmp:
            ca_path = Path(tmp) / "ca.pem"
            ca_path.write_text(ca_pem)
            on_wait(endpoint)
            _wait_until_serving(endpoint, ca_path, token)
            report = evaluate(
                rows, endpoint, ca=ca_path, token=token, on_progress=lambda p: on_progress(p.done, p.correct, p.total)
            )
        return EvaluationReport(
            contract_id, endpoint, report.accuracy, report.total, report.correct, float(report.as_dict()["rows_per_s"])
        )


def _wait_until_serving(endpoint: str, ca_path: Path, token: str) -> None:
    """The runtime reports ``running`` when the workload starts; the model loads a moment later."""
    from core.ml.evaluation import InferenceClient

    deadline = time.monotonic() + ENDPOINT_READY_TIMEOUT_S
    last: CleanroomError | None = None
    while time.monotonic() < deadline:
        try:
            with InferenceClient(endpoint, ca=ca_path, token=token) as client:
                client.metadata()
            return
        except (ServiceUnavailableError, InvalidInputError) as exc:
            last = exc
            time.sleep(0.5)
    raise ServiceUnavailableError(
        f"endpoint {endpoint} did not serve within {ENDPOINT_READY_TIMEOUT_S:.0f}s "
        f"({last.one_line() if last else 'no answer'})",
        hint="see `cleanroom deployment logs`",
    )


def deployment_status(environment: RuntimeEnvironment, contract_id: str) -> DeploymentStatus | None:
    """A clean room as the runtime of ``environment`` records it; None if it never ran there."""
    from core.runtime.local import read_status

    try:
        return DeploymentStatus.from_status(contract_id, read_status(environment.runtime_state_dir, contract_id))
    except NotFoundError:
        return None


def runtime_environment(home: Path) -> RuntimeEnvironment:
    """The embedded runtime's environment under a services home (CLEANROOM_HOME)."""
    from core import embedded
    from core.runtime.process import RuntimeEnvironment

    return RuntimeEnvironment(
        embedded.runtime_state_dir(home), embedded.governance_state_dir(home), embedded.key_service_state_dir(home)
    )


def application_statuses(contract_id: str, lifecycle: list[CleanroomEvent]) -> list[ApplicationStatus]:
    """Fold one contract's lifecycle events into a status per application."""
    applications: list[str] = []
    started: float | None = None
    state = ApplicationState.DEPLOYING
    exit_codes: dict[str, int] = {}
    for event in lifecycle:
        if event.kind == LifecycleEvent.RUNNING:
            applications = list(event.data.get("applications", [])) or applications
            started, state = event.time, ApplicationState.RUNNING
        elif event.kind == LifecycleEvent.EXITED:
            exit_codes = {k: int(v) for k, v in dict(event.data.get("exit_codes", {})).items()}
            state = ApplicationState.STOPPED if event.data.get("stopped_by") else ApplicationState.EXITED
        elif event.kind == LifecycleEvent.FAILED:
            state = ApplicationState.FAILED
        elif event.kind in (LifecycleEvent.DEPLOYING, LifecycleEvent.ATTESTED, LifecycleEvent.KEYS_RELEASED):
            applications, started, exit_codes, state = applications, None, {}, ApplicationState(event.kind)
    names = applications or sorted(exit_codes) or ["(starting)"]
    return [ApplicationStatus(contract_id, name, state, started, exit_codes.get(name)) for name in names]


def open_personas(paths: list[Path]) -> list[PersonaEngine]:
    return [PersonaEngine.open(path) for path in paths]
