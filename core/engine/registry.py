"""Model registry operations: onboarding, versions, statuses, publication, regression and load tests.

The registry (``core.governance.model_registry``) holds each model's owner and each version's
status, details and history; only an onboarding clean room moves a version past ``created``.
Publishing is a proposal every member accepts; unpublishing is any member's act alone; deleting
is the owner's, never while a version is published.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from core.engine.session import GovernanceSession
from core.errors import NotFoundError

if TYPE_CHECKING:
    from core.engine.persona import Contract, DeploymentStatus
    from core.onboarding.loadtest import LoadTestReport, StepResult


class _ServingContract(Protocol):
    """What a load test needs of the engine beyond the registry: where and how the contract serves."""

    def ingress_endpoint(self, contract_id: str) -> str: ...
    def ca_certificate(self, contract_id: str) -> str | None: ...
    def contract(self, contract_id: str) -> Contract: ...
    def contract_token(self, contract_id: str) -> dict[str, Any]: ...
    def deployment_status(self, contract_id: str) -> DeploymentStatus | None: ...


def _finite(value: Any) -> Any:
    """The report with NaN (a step nobody answered has no latency) as null: JSON has no NaN."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


class RegistryOperations(GovernanceSession):
    """What a member does with the governance model registry."""

    def models(self) -> list[dict[str, Any]]:
        """The model registry (``core.governance.model_registry``): every model, each version's
        status, details and history, as `cleanroom model list -o json` prints it."""
        return self._governance().models()

    def model(self, name: str) -> dict[str, Any]:
        """One model with each version's status, details and history (`cleanroom model show`)."""
        return self._governance().model(name)

    def onboard_model(
        self, name: str, version: str, *, package_hash: str, wrapper_hash: str, description: str = ""
    ) -> dict[str, Any]:
        """Register a model version (status created; `cleanroom model onboard`): this member owns the model."""
        return self._governance().onboard_model(
            name, version, package_hash=package_hash, wrapper_hash=wrapper_hash, description=description
        )

    def propose_publish_model(self, name: str, version: str) -> dict[str, Any]:
        """Open a ``publish_model_version`` proposal (every member must accept; verified versions only)."""
        return self._governance().propose_publish_model(name, version)

    def unpublish_model(self, name: str, version: str) -> dict[str, Any]:
        """Take a version off publication, on this member's signature alone (ledgered); the model as it now is."""
        return self._governance().unpublish_model(name, version)

    def delete_model(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Delete a model, or one version of it (the owner only, never while a version is published)."""
        return self._governance().delete_model(name, version)

    def record_load_test(self, name: str, version: str, contract_id: str, report: dict[str, Any]) -> dict[str, Any]:
        """Record a load-test report (camelCase, as `cleanroom model loadtest -o json` prints it) in
        the version's ``loadtest`` field, signed by this member; the model as it now is."""
        return self._governance().record_model_loadtest(name, version, contract_id, _finite(report))

    def load_test(
        self: _ServingContract,
        contract_id: str,
        mode: str,
        steps: list[int],
        *,
        duration_s: float,
        slo_ms: float,
        route: str,
        endpoint: str | None = None,
        on_step: Callable[[StepResult], None] = lambda step: None,
    ) -> LoadTestReport:
        """Load-test the model the contract serves through its own TLS ingress only.

        The URL is the ingress the clean room announced (``endpoint``, if given, must equal it, so
        a load test is never pointed elsewhere), TLS is pinned to the contract's CA, and each step
        gets a fresh token issued to this member. When the clean room runs on this machine the
        report carries the workload's CPU and memory. A contract serving a registry version serves
        a model package, which takes the package's record rather than a bare text."""
        from core.governance.serving_contract import serving_targets
        from core.onboarding.loadtest import (
            LoadTarget,
            check_plan,
            contract_endpoint,
            max_payload_text,
            request_body,
            run_load_test,
        )

        check_plan(mode, steps, duration_s, slo_ms)  # before anything is looked up or sent
        url = contract_endpoint(self.ingress_endpoint(contract_id), endpoint)
        ca_pem = self.ca_certificate(contract_id)
        if not ca_pem:
            raise NotFoundError(
                f"contract '{contract_id}' has no CA certificate", hint="enable the CA by vote and generate its key"
            )
        status = self.deployment_status(contract_id)
        package = bool(serving_targets(self.contract(contract_id).document))
        body = request_body(max_payload_text(), package=package)
        target = LoadTarget(url, ca_pem, lambda: str(self.contract_token(contract_id)["token"]), route=route, body=body)
        return run_load_test(
            target,
            mode,
            steps,
            duration_s=duration_s,
            slo_ms=slo_ms,
            runtime_pid=status.pid if status is not None and status.alive else None,
            on_step=on_step,
        )
