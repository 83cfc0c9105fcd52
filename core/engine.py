"""The engine facade: one persona workspace and the operations its operator can perform.

Front ends (the console, the demo narration) talk to this module only, and this module only
delegates: governance calls go through ``core.governance.client``, the runtime through
``core.runtime``, evaluations through ``core.ml.evaluation``. Results come back as the small
frozen records below so a front end never depends on a service's wire format.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CleanroomError, NotFoundError, ServiceUnavailableError
from core.workspace import Workspace

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
class PersonaEngine:
    """One persona's view of the clean room; every method acts with that persona's keys only."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        identity = workspace.identity
        self.member_id = identity.member_id
        self._client: Any = None

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
        settings = self.workspace.settings
        endpoint = settings.get("governance_endpoint") or settings.get("governance", {}).get("endpoint")
        return str(endpoint) if endpoint else None

    def close(self) -> None:
        if self._client is not None and hasattr(self._client, "close"):
            self._client.close()
        self._client = None

    # governance -------------------------------------------------------------------------
    def _governance(self) -> Any:
        """The step-2 governance client for this workspace, created on first use."""
        if self._client is None:
            try:
                from core.governance import client as governance_client
            except ModuleNotFoundError as exc:
                raise ServiceUnavailableError(
                    "the governance client (core.governance.client) is not available in this build",
                    hint="install the full cleanroom-console package",
                ) from exc
            self._client = governance_client.GovernanceClient.for_workspace(self.workspace)
        return self._client

    def health(self) -> EndpointHealth:
        endpoint = self.governance_endpoint
        if endpoint is None:
            return EndpointHealth(None, False, "no governance endpoint in workspace.json")
        try:
            self._governance().health()
        except CleanroomError as exc:
            return EndpointHealth(endpoint, False, exc.one_line())
        return EndpointHealth(endpoint, True, "ok")

    def members(self) -> list[Member]:
        return [Member(m["member_id"], m.get("name", m["member_id"][:SHORT_ID]))
                for m in self._governance().list_members()]

    def proposals(self) -> list[Proposal]:
        return [self._proposal(raw) for raw in self._governance().list_proposals()]

    def _proposal(self, raw: dict[str, Any]) -> Proposal:
        return Proposal(
            proposal_id=raw["proposal_id"], action=raw["action"],
            contract_id=raw.get("contract_id", ""), proposer_id=raw["proposer_id"],
            state=raw["state"], created_at=float(raw.get("created_at", 0.0)),
            ballots=dict(raw.get("ballots", {})), content=dict(raw.get("content", {})),
            previous_content=raw.get("previous_content"),
        )

    def contracts(self) -> list[Contract]:
        return [Contract(c["contract_id"], c["state"], str(c.get("version", "")),
                         c.get("hash"), bool(c.get("execution_enabled", True)))
                for c in self._governance().list_contracts()]

    def vote(self, proposal_id: str, accept: bool) -> Proposal:
        """Sign and submit one ballot; returns the proposal as the service now sees it."""
        return self._proposal(self._governance().vote(proposal_id, "accept" if accept else "reject"))

    def withdraw(self, proposal_id: str) -> Proposal:
        return self._proposal(self._governance().withdraw(proposal_id))

    def disable_execution(self, contract_id: str) -> None:
        """The kill switch: this member alone stops the contract from running."""
        self._governance().set_runtime_option(contract_id, "execution", enabled=False)

    def ledger(self) -> list[LedgerEntry]:
        return [LedgerEntry(int(e["seqno"]), float(e["time"]), e["signer"], e["action"])
                for e in self._governance().ledger_entries()]

    def verify_ledger(self) -> LedgerVerification:
        result = self._governance().verify_ledger()
        return LedgerVerification(bool(result["ok"]), int(result["entries"]), str(result["detail"]))

    def follow_events(self, should_stop: Callable[[], bool],
                      poll_seconds: float = 1.0) -> Iterator[CleanroomEvent]:
        """Every contract's new events, in order, until ``should_stop()``.

        An unreachable service is not an error here: the feed waits and retries (the context
        bar reports health), so a console opened before ``cleanroom up`` catches up on its own.
        Polls are short so a closing console never waits on a blocked read.
        """
        seen: dict[str, int] = {}
        while not should_stop():
            try:
                for contract in self.contracts():
                    since = seen.get(contract.contract_id, 0)
                    for raw in self._governance().list_events(contract.contract_id, since=since):
                        event = CleanroomEvent(contract.contract_id, int(raw["seqno"]),
                                               float(raw.get("time", time.time())), raw["kind"],
                                               dict(raw.get("data", {})))
                        seen[contract.contract_id] = event.seqno + 1
                        yield event
            except ServiceUnavailableError:
                pass
            time.sleep(poll_seconds)

    # data -------------------------------------------------------------------------------
    def data_assets(self) -> list[DataAsset]:
        """This persona's datasources and datasinks, from its own config fragment."""
        import json

        path = self.workspace.fragment_path
        if not path.is_file():
            return []
        fragment = json.loads(path.read_text())
        assets = []
        for kind, key in (("datasource", "datasources"), ("datasink", "datasinks")):
            for item in fragment.get(key, []):
                assets.append(DataAsset(kind, item["name"], str(item.get("store", self.workspace.store_dir)),
                                        item.get("mount_path")))
        return assets

    # runtime ----------------------------------------------------------------------------
    def deployments(self) -> list[ApplicationStatus]:
        raise ServiceUnavailableError("the clean-room runtime (core.runtime) is not available",
                                      hint="start it with `cleanroom up`")

    def stop_deployment(self, contract_id: str) -> None:
        raise ServiceUnavailableError("the clean-room runtime (core.runtime) is not available",
                                      hint="start it with `cleanroom up`")

    # evaluation -------------------------------------------------------------------------
    def run_evaluation(self, contract_id: str,
                       on_progress: Callable[[int, int, int], None]) -> dict[str, Any]:
        """Evaluate the consumer's test set; ``on_progress(done, correct, total)`` per batch."""
        raise NotFoundError(f"no evaluation endpoint for contract {contract_id}",
                            hint="deploy an inference contract first")


def open_personas(paths: list[Path]) -> list[PersonaEngine]:
    return [PersonaEngine.open(path) for path in paths]


def open_embedded_default(root: Path) -> list[PersonaEngine]:
    """Start (or reuse) the embedded default's services and open its three personas."""
    try:
        from core import embedded
    except ModuleNotFoundError as exc:
        raise ServiceUnavailableError(
            "the embedded default (core.embedded) is not available in this build",
            hint="pass persona workspaces with --workspace DIR (one per persona)") from exc
    return open_personas(embedded.persona_workspaces(root))
