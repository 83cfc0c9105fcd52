"""The runtime's side of onboarding: the workload's ``model_status`` records go to the registry.

The onboarding workload (containers/onboarding) writes one telemetry record per status a model
version reaches: ``{"event": "model_status", "model", "version", "status", "details"}``. Like a
private run's ``privacy_record`` (core.runtime.private_training), these are taken out of the
telemetry stream on the reader thread, before the bounded queue a flood could push them out of,
and whatever the telemetry option says: they are the version's statuses, which the provider and
every member need, not progress. Each is sent to governance with the clean room's attestation, in
order; governance takes it only if the attested contract onboards that model version with the
registry's hashes and the state machine allows the step, so a workload naming another model, or
skipping a step, gets a ``model_status_refused`` audit event and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from core.errors import CleanroomError
from core.governance.onboarding_contract import onboarding_targets

MODEL_STATUS = "model_status"

Note = Callable[..., None]  # (event type, **detail): the runtime's audit-event note


class ModelStatusPort(Protocol):
    """What this module needs from governance (a subset of the runtime's GovernancePort)."""

    def record_model_status(
        self, contract_id: str, name: str, version: str, status: str, details: dict[str, Any], attestation: str
    ) -> dict[str, Any]: ...


def is_model_status(record: dict[str, Any]) -> bool:
    return MODEL_STATUS in (record.get("event"), record.get("type"))


class ModelStatusRecords:
    """Routes an onboarding run's ``model_status`` records to governance's model registry."""

    def __init__(
        self, governance: ModelStatusPort, contract_id: str, attestation: Callable[[], str], note: Note
    ) -> None:
        self._governance = governance
        self._contract_id = contract_id
        self._attestation = attestation
        self._note = note
        self.recorded: list[tuple[str, str, str]] = []  # (model, version, status) governance took

    @classmethod
    def for_spec(
        cls,
        governance: ModelStatusPort,
        contract_id: str,
        spec: dict[str, Any],
        attestation: Callable[[], str],
        note: Note,
    ) -> ModelStatusRecords | None:
        """A router when the spec runs an onboarding application, else None (nothing to route)."""
        return cls(governance, contract_id, attestation, note) if onboarding_targets(spec) else None

    def take(self, record: dict[str, Any]) -> bool:
        """True when ``record`` was a model status (consumed here: never forwarded as telemetry)."""
        if not is_model_status(record):
            return False
        model, version, status = record.get("model"), record.get("version"), record.get("status")
        details = record.get("details", {})
        if not all(isinstance(value, str) and value for value in (model, version, status)) or not isinstance(
            details, dict
        ):
            self._note("model_status_refused", reason="a model_status record needs model, version, status and details")
            return True
        assert isinstance(model, str) and isinstance(version, str) and isinstance(status, str)
        try:
            self._governance.record_model_status(
                self._contract_id, model, version, status, details, self._attestation()
            )
        except CleanroomError as refused:
            self._note("model_status_refused", model=model, version=version, status=status, reason=refused.one_line())
            return True
        self.recorded.append((model, version, status))
        return True


def claim_first(*takers: Callable[[dict[str, Any]], bool] | None) -> Callable[[dict[str, Any]], bool] | None:
    """One ``claim`` for the telemetry forwarder from several routers (privacy, model status)."""
    present = [taker for taker in takers if taker is not None]
    if not present:
        return None
    return lambda record: any(taker(record) for taker in present)
