"""The runtime's side of a regression run: the workload's ``model_regression`` record goes to the registry.

The regression workload (containers/regression) writes its aggregate as one telemetry record
``{"event": "model_regression", "model", "candidate_version", "baseline_version", both package
hashes, metrics, flips, McNemar p, gate, verdict}``. When the contract pins registry versions
(``core.governance.regression_contract``), the record is taken out of the telemetry stream on
the reader thread, before the bounded queue a flood could push it out of, whatever the telemetry
option says (it is the candidate's result every member needs, not progress), and sent to
governance with the clean room's attestation. Governance writes the candidate's ``regression``
field only if the attested contract pins exactly those two versions' registry hashes and the gate;
anything else gets a ``model_regression_refused`` audit event and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from core.errors import CleanroomError
from core.governance.regression_contract import regression_targets
from core.runtime.model_status import Note

MODEL_REGRESSION = "model_regression"


class ModelRegressionPort(Protocol):
    """What this module needs from governance (a subset of the runtime's GovernancePort)."""

    def record_model_regression(
        self, contract_id: str, name: str, version: str, report: dict[str, Any], attestation: str
    ) -> dict[str, Any]: ...


class ModelRegressionRecords:
    """Routes a regression run's ``model_regression`` record to governance's model registry."""

    def __init__(
        self, governance: ModelRegressionPort, contract_id: str, attestation: Callable[[], str], note: Note
    ) -> None:
        self._governance = governance
        self._contract_id = contract_id
        self._attestation = attestation
        self._note = note
        self.recorded: list[tuple[str, str]] = []  # (model, candidate version) governance took

    @classmethod
    def for_spec(
        cls,
        governance: ModelRegressionPort,
        contract_id: str,
        spec: dict[str, Any],
        attestation: Callable[[], str],
        note: Note,
    ) -> ModelRegressionRecords | None:
        """A router when the spec compares registry versions, else None (the record stays telemetry)."""
        return cls(governance, contract_id, attestation, note) if regression_targets(spec) else None

    def take(self, record: dict[str, Any]) -> bool:
        """True when ``record`` was a regression result (consumed here: never forwarded as telemetry)."""
        if MODEL_REGRESSION not in (record.get("event"), record.get("type")):
            return False
        model, version = record.get("model"), record.get("candidate_version")
        if not (isinstance(model, str) and model and isinstance(version, str) and version):
            self._note("model_regression_refused", reason="a model_regression record needs model and candidate_version")
            return True
        report = {key: value for key, value in record.items() if key not in ("event", "type")}
        try:
            self._governance.record_model_regression(self._contract_id, model, version, report, self._attestation())
        except CleanroomError as refused:
            self._note("model_regression_refused", model=model, version=version, reason=refused.one_line())
            return True
        self.recorded.append((model, version))
        return True
