"""The runtime's and key service's view of governance: a thin adapter over ``GovernanceClient``.

Only what a clean room does: reads (contract, accepted documents, runtime options, JWKS) and
attested calls (secret get, CA endorse, event append, privacy reserve/record), whose body carries the attestation
token instead of a member signature.
"""

from __future__ import annotations

from typing import Any

from core.errors import AccessDeniedError, ConflictError, NotFoundError
from core.governance.client import GovernanceClient
from core.governance.client_apps import TOKEN_PATH
from core.governance.models import MemberStatus, OptionStatus
from core.keys.attestation import KeyServiceAttester
from core.runtime.deployment import accepted_policy_hash


class HttpGovernance:
    """Implements ``core.runtime.local.GovernancePort`` and the key service's reads."""

    def __init__(self, endpoint: str, service_cert_pem: str) -> None:
        self.client = GovernanceClient(endpoint, service_cert_pem)

    def close(self) -> None:
        self.client.close()

    def contract(self, contract_id: str) -> dict[str, Any]:
        return self.client.contract(contract_id)

    def document(self, contract_id: str, kind: str) -> dict[str, Any] | None:
        reader = self.client.deployment_spec if kind == "deployment_spec" else self.client.clean_room_policy
        return reader(contract_id).get("data")

    def option_enabled(self, contract_id: str, option: str) -> bool:
        return self.client.runtime_option(contract_id, option).get("status") == OptionStatus.ENABLED

    def jwks(self) -> dict[str, Any]:
        return self.client.jwks()

    def app_revocations(self) -> dict[str, Any]:
        return self.client.app_revocations()

    def token_url(self) -> str:
        return f"{self.client.endpoint}{TOKEN_PATH}"

    def traffic(self, contract_id: str) -> dict[str, Any]:
        return self.client.traffic(contract_id)

    def secret(self, contract_id: str, name: str, attestation: str) -> bytes:
        return self.client.get_secret(contract_id, name, attestation)

    def secret_with_writer(self, contract_id: str, name: str, attestation: str) -> tuple[bytes, str]:
        return self.client.get_secret_with_writer(contract_id, name, attestation)

    def endorse(self, contract_id: str, csr_pem: bytes, attestation: str) -> bytes:
        answer = self.client.endorse_csr(contract_id, attestation, csr_pem.decode())
        certificate, ca_cert = str(answer["certificate"]), str(answer.get("caCert", ""))
        return (certificate.rstrip("\n") + "\n" + ca_cert).encode()

    def record_event(
        self, contract_id: str, event: dict[str, Any], *, category: str = "audit", attestation: str | None = None
    ) -> None:
        if attestation is None:
            raise AccessDeniedError("the runtime has not attested yet, so governance will not take its events")
        data = {k: v for k, v in event.items() if k != "type"}
        self.client.append_event(contract_id, attestation, event["type"], data, category=category)

    def reserve_privacy(self, contract_id: str, application: str, attestation: str) -> dict[str, Any]:
        return self.client.reserve_privacy(contract_id, application, attestation)

    def record_privacy(self, contract_id: str, run_id: str, record: dict[str, Any], attestation: str) -> dict[str, Any]:
        return self.client.record_privacy(contract_id, run_id, record, attestation)

    def record_model_status(
        self, contract_id: str, name: str, version: str, status: str, details: dict[str, Any], attestation: str
    ) -> dict[str, Any]:
        return self.client.record_model_status(contract_id, name, version, status, details, attestation)

    def record_model_regression(
        self, contract_id: str, name: str, version: str, report: dict[str, Any], attestation: str
    ) -> dict[str, Any]:
        return self.client.record_model_regression(contract_id, name, version, report, attestation)

    def model(self, name: str) -> dict[str, Any]:
        return self.client.model(name)

    def accepted_policy_hash(self, contract_id: str) -> str | None:
        return accepted_policy_hash(self.document(contract_id, "clean_room_policy"))

    def execution_enabled(self, contract_id: str) -> bool:
        return self.option_enabled(contract_id, "execution")

    def member_active(self, member_id: str) -> bool:
        try:
            return self.client.member(member_id).get("status") == MemberStatus.ACTIVE
        except NotFoundError:
            return False

    def contract_exists(self, contract_id: str) -> bool:
        try:
            self.client.contract(contract_id)
        except NotFoundError:
            return False
        return True


class KeyServiceAuthority:
    """The key service's ReleaseAuthority: governance reads, events signed as the key service."""

    def __init__(self, governance: HttpGovernance, attester: KeyServiceAttester) -> None:
        self.governance = governance
        self.attester = attester

    def accepted_policy_hash(self, contract_id: str) -> str | None:
        return self.governance.accepted_policy_hash(contract_id)

    def execution_enabled(self, contract_id: str) -> bool:
        return self.governance.execution_enabled(contract_id)

    def member_active(self, member_id: str) -> bool:
        return self.governance.member_active(member_id)

    def contract_exists(self, contract_id: str) -> bool:
        return self.governance.contract_exists(contract_id)

    def record_event(self, contract_id: str, event: dict[str, Any]) -> None:
        accepted = self.accepted_policy_hash(contract_id)
        if accepted is None:
            raise ConflictError(f"contract '{contract_id}' has no accepted policy, so governance takes no events")
        self.governance.record_event(contract_id, event, attestation=self.attester.token(contract_id, accepted))
