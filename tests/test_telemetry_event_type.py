"""A workload's telemetry record cannot choose the type of the governance event it becomes.

The console and the privacy gauge pick events by type (``privacy_recorded``, ``exited``, ...);
a record ``{"type": "privacy_recorded", ...}`` written by the workload must still arrive as a
``telemetry`` event, on the local runtime and on the Azure sidecar alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.runtime.local import LocalRuntime


class RecordingGovernance:
    """Only the call the forwarding makes; the event body is what governance would store."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], str]] = []

    def record_event(
        self, contract_id: str, event: dict[str, Any], *, category: str, attestation: str | None = None
    ) -> None:
        self.events.append((contract_id, event, category))


FORGED = {"type": "privacy_recorded", "dataset": "labels", "epsilon": 0.0, "event": "step"}


def test_the_local_runtime_keeps_a_forged_type_out_of_the_event(tmp_path: Path) -> None:
    governance = RecordingGovernance()
    runtime = LocalRuntime(tmp_path, governance, keys=None)  # type: ignore[arg-type]
    runtime._forward_telemetry("c1", dict(FORGED), "token")
    [(contract_id, event, category)] = governance.events
    assert (contract_id, category) == ("c1", "telemetry")
    assert event["type"] == "telemetry" and event["event"] == "step"


def test_the_sidecar_keeps_a_forged_type_out_of_the_event(tmp_path: Path) -> None:
    from core.runtime.sidecar import RuntimeSidecar

    governance = RecordingGovernance()
    sidecar = RuntimeSidecar.__new__(RuntimeSidecar)  # only the forwarding is exercised
    sidecar.governance = governance  # type: ignore[assignment]
    sidecar.config = type("Config", (), {"contract_id": "c1"})()  # type: ignore[assignment]
    sidecar._attestation = lambda: "token"  # type: ignore[method-assign]
    sidecar._forward_telemetry(dict(FORGED))
    [(contract_id, event, category)] = governance.events
    assert (contract_id, category) == ("c1", "telemetry")
    assert event["type"] == "telemetry" and event["event"] == "step"
