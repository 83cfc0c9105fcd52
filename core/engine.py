"""The engine facade: one persona workspace and the operations its operator can perform.

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

from core.errors import CleanroomError, IntegrityError, NotFoundError, ServiceUnavailableError
from core.workspace import PERSONAS, Workspace

if TYPE_CHECKING:  # the scenario pulls in the services; only the embedded console needs it
    from core.scenario import Reporter, Scenario

OPEN_STATES = frozenset({"Open"})
SHORT_ID = 8


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
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class Contract:
    contract_id: str
    state: str
    version: str
    contract_hash: str | None
    execution_enabled: bool = True


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


@dataclass(frozen=True)
class DataAsset:
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
class EndpointHealth:
    endpoint: str | None
    reachable: bool
    detail: str


# -- the facade -----------------------------------------------------------------------------
LIFECYCLE = ("deploying", "attested", "keys_released", "running", "stopping", "exited", "failed")


class PersonaEngine:
    """One persona's view of the clean room; every method acts with that persona's keys only.

    Methods block (they are network calls): front ends call them off their UI thread.
    """

    def __init__(self, workspace: Workspace, *, services_home: Path | None = None) -> None:
        self.workspace = workspace
        self.services_home = services_home  # the embedded services' home; None: $CLEANROOM_HOME
        self.member_id = workspace.identity.member_id
        self._client: Any = None
        self._ledger_times: dict[int, float] = {}

    @classmethod
    def open(cls, path: Path) -> "PersonaEngine":
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

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    # governance -------------------------------------------------------------------------
    def _governance(self) -> Any:
        """The workspace's pinned-TLS governance client (step 2), created on first use."""
        if self._client is None:
            from core.governance.client import GovernanceClient

            self._client = GovernanceClient.from_workspace(self.workspace)
        return self._client

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
        return [Member(m["memberId"], m.get("name") or m["memberId"][:SHORT_ID])
                for m in self._governance().members()]

    def proposals(self) -> list[Proposal]:
        """Every proposal, oldest first, each with the previous version of what it proposes."""
        raws = sorted(self._governance().proposals(), key=lambda r: int(r.get("seqno", 0)))
        times = self._times_of([int(r.get("seqno", 0)) for r in raws])
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        proposals = []
        for raw in raws:
            subject = (raw["action"], raw.get("contractId") or "")
            previous = latest.get(subject)
            proposals.append(Proposal(
                proposal_id=raw["proposalId"], action=raw["action"], contract_id=raw.get("contractId") or "",
                proposer_id=raw["proposerId"], state=raw["proposalState"],
                created_at=times.get(int(raw.get("seqno", 0)), 0.0), ballots=dict(raw.get("ballots", {})),
                content=dict(raw.get("args", {})), previous_content=previous))
            latest[subject] = dict(raw.get("args", {}))
        return proposals

    def _proposal(self, raw: dict[str, Any]) -> Proposal:
        seqno = int(raw.get("seqno", 0))
        return Proposal(raw["proposalId"], raw["action"], raw.get("contractId") or "", raw["proposerId"],
                        raw["proposalState"], self._times_of([seqno]).get(seqno, 0.0),
                        dict(raw.get("ballots", {})), dict(raw.get("args", {})))

    def contracts(self) -> list[Contract]:
        client = self._governance()
        return [Contract(c["id"], c["state"], str(c.get("version", "")), c.get("hash") or None,
                         client.execution_enabled(c["id"]) if c["state"] == "Accepted" else True)
                for c in client.contracts()]

    def vote(self, proposal_id: str, accept: bool) -> Proposal:
        """Sign and submit one ballot; returns the proposal as the service now sees it."""
        return self._proposal(self._governance().vote(proposal_id, "accept" if accept else "reject"))

    def withdraw(self, proposal_id: str) -> Proposal:
        return self._proposal(self._governance().withdraw(proposal_id))

    def disable_execution(self, contract_id: str) -> None:
        """The kill switch: this member alone stops the contract from running."""
        self._governance().set_runtime_option(contract_id, "execution", enable=False)

    # ledger -----------------------------------------------------------------------------
    def _export_ledger(self, directory: Path) -> Path:
        path = directory / "ledger.jsonl"
        self._governance().export_ledger(path)
        return path

    def ledger(self) -> list[LedgerEntry]:
        """The audit trail from a fresh export; times are the signers' ``created_at`` headers."""
        from core.governance.ledger import unb64
        from core.governance.signing import SignatureRejected, parse_message

        with tempfile.TemporaryDirectory(prefix="cleanroom-ledger-") as tmp:
            lines = self._export_ledger(Path(tmp)).read_text().splitlines()
        entries = []
        for line in lines[1:]:
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
        return LedgerVerification(True, report.entries,
                                  f"{report.checkpoints} signed checkpoints, "
                                  f"{report.member_signatures_checked} member signatures checked")

    # events and deployments -------------------------------------------------------------
    def events(self, contract_id: str, since: int = 1) -> list[CleanroomEvent]:
        answer = self._governance().events(contract_id, from_seqno=since)
        return [CleanroomEvent(contract_id, int(e["seqno"]), float(e["timestamp"]), e["type"],
                               dict(e.get("data", {})), e.get("category", "audit"))
                for e in answer["events"]]

    def follow_events(self, should_stop: Callable[[], bool],
                      poll_seconds: float = 1.0) -> Iterator[CleanroomEvent]:
        """Every contract's new events, in order, until ``should_stop()``.

        An unreachable service is not an error here: the feed waits and retries (the context
        bar reports health), so a console opened before ``cleanroom up`` catches up on its own.
        Polls are short so a closing console never waits on a blocked read.
        """
        next_seqno: dict[str, int] = {}
        while not should_stop():
            try:
                for contract in self._governance().contracts():
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
            if contract.state != "Accepted":
                continue
            lifecycle = [e for e in self.events(contract.contract_id) if e.kind in LIFECYCLE]
            if lifecycle:
                statuses.extend(application_statuses(contract.contract_id, lifecycle))
        return statuses

    def stop_deployment(self, contract_id: str) -> dict[str, Any]:
        """Stop a clean room the embedded runtime on this machine runs (step 3's `deployment stop`).

        Only the machine that runs the clean room can stop it this way; any member anywhere can
        use the kill switch instead.
        """
        from core import embedded
        from core.runtime import process

        home = self.services_home or embedded.home()
        environment = process.RuntimeEnvironment(embedded.runtime_state_dir(home),
                                                 embedded.governance_state_dir(home),
                                                 embedded.key_service_state_dir(home))
        return process.stop(environment, contract_id)

    def ingress_endpoint(self, contract_id: str) -> str:
        running = [e for e in self.events(contract_id) if e.kind == "running" and e.data.get("ingress")]
        if not running:
            raise NotFoundError(f"contract {contract_id} has no running clean room with an ingress",
                                hint="deploy it first (`cleanroom deployment start`)")
        return str(running[-1].data["ingress"])

    # data -------------------------------------------------------------------------------
    def data_assets(self) -> list[DataAsset]:
        """This persona's datasources and datasinks with what their current upload holds."""
        from core.config.party import party_fragment
        from core.datasource import KINDS, list_assets

        if not self.workspace.fragment_path.is_file():
            return []
        fragment = party_fragment(self.workspace)
        mounts = {m.source: m.target for app in fragment.applications for m in app.mounts}
        return [DataAsset(status.kind, status.name, status.location, mounts.get(status.name),
                          status.uploaded, status.files, status.plaintext_bytes)
                for kind in KINDS for status in list_assets(self.workspace, kind)]

    def upload_datasource(self, name: str, folder: Path,
                          on_progress: Callable[[int, int], None]) -> int:
        """Encrypt and upload ``folder`` as datasource ``name``; ``on_progress(bytes_done, total)``."""
        from core.datasource import upload_datasource

        manifest = upload_datasource(self.workspace, name, folder,
                                     progress=lambda s: on_progress(s.bytes_done, s.bytes_total))
        return len(manifest.files)

    def download_asset(self, kind: str, name: str, target: Path,
                       on_progress: Callable[[int, int], None]) -> int:
        """Download and decrypt a datasource or datasink of this persona into ``target``."""
        from core.datasource import download_asset

        manifest = download_asset(self.workspace, kind, name, target,
                                  progress=lambda s: on_progress(s.bytes_done, s.bytes_total))
        return len(manifest.files)

    # evaluation -------------------------------------------------------------------------
    def run_evaluation(self, contract_id: str, on_progress: Callable[[int, int, int], None], *,
                       dataset: str | Path = "rotten_tomatoes", split: str = "test") -> dict[str, Any]:
        """Send this persona's test split to the contract's endpoint and score it (step 4's client).

        TLS is pinned to the contract's CA and the bearer token is issued to this member by
        governance, exactly as `cleanroom infer` does; ``on_progress(done, correct, total)``.
        """
        from core.ml.datasets import load_split
        from core.ml.evaluation import evaluate

        endpoint = self.ingress_endpoint(contract_id)
        client = self._governance()
        ca_pem = client.ca(contract_id).get("caCert")
        if not ca_pem:
            raise NotFoundError(f"contract {contract_id} has no CA certificate",
                                hint="enable the CA by vote and generate its key")
        token = client.issue_token(contract_id)["token"]
        rows = load_split(dataset, split)
        with tempfile.TemporaryDirectory(prefix="cleanroom-eval-") as tmp:
            ca_path = Path(tmp) / "ca.pem"
            ca_path.write_text(ca_pem)
            report = evaluate(rows, endpoint, ca=ca_path, token=token,
                              on_progress=lambda p: on_progress(p.done, p.correct, p.total))
        return report.as_dict()


def application_statuses(contract_id: str, lifecycle: list[CleanroomEvent]) -> list[ApplicationStatus]:
    """Fold one contract's lifecycle events into a status per application."""
    applications: list[str] = []
    started: float | None = None
    state = "deploying"
    exit_codes: dict[str, int] = {}
    for event in lifecycle:
        if event.kind == "running":
            applications = list(event.data.get("applications", [])) or applications
            started, state = event.time, "running"
        elif event.kind == "exited":
            exit_codes = {k: int(v) for k, v in dict(event.data.get("exit_codes", {})).items()}
            state = "stopped" if event.data.get("stopped_by") else "exited"
        elif event.kind == "failed":
            state = "failed"
        elif event.kind in ("deploying", "attested", "keys_released"):
            applications, started, exit_codes, state = applications, None, {}, event.kind
    names = applications or sorted(exit_codes) or ["(starting)"]
    return [ApplicationStatus(contract_id, name, state, started, exit_codes.get(name)) for name in names]


def open_personas(paths: list[Path]) -> list[PersonaEngine]:
    return [PersonaEngine.open(path) for path in paths]


def open_embedded_scenario(root: Path | None = None, *, quick: bool | None = None,
                           reporter: Reporter | None = None) -> tuple[Scenario, list[PersonaEngine]]:
    """The embedded default as the console opens it: the three-persona scenario of `cleanroom
    demo`, under ``<CLEANROOM_HOME>/scenario`` unless ``root`` says otherwise.

    Its workspaces are created and its services started on loopback on first use; later runs
    resume where the last one stopped. Every step after that is left to the operators.
    """
    from core import embedded
    from core.scenario import Reporter, Scenario

    scenario = Scenario.open(root or embedded.home() / "scenario", quick=quick)
    scenario.open_consortium(reporter or Reporter())
    return scenario, [PersonaEngine(scenario.workspace(persona), services_home=scenario.services_home)
                      for persona in PERSONAS]
