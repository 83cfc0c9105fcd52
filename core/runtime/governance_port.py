"""The runtime's and key service's view of governance, over its HTTPS API (pinned cert).

Only the calls a clean room makes live here: reads (contract, accepted documents, runtime
options, JWKS, events) and attested writes (secret get, CA endorse, event append), whose
body carries the attestation token instead of a member signature. Member-signed writes
belong to the governance client.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from core.errors import (AccessDeniedError, CleanroomError, ConflictError, InvalidInputError, NotFoundError,
                         ServiceUnavailableError)
from core.keys.attestation import KeyServiceAttester
from core.runtime.deployment import accepted_policy_hash

_ERRORS: dict[int, type[CleanroomError]] = {400: InvalidInputError, 401: AccessDeniedError, 403: AccessDeniedError,
                                            404: NotFoundError, 409: ConflictError, 412: ConflictError}


class HttpGovernance:
    def __init__(self, endpoint: str, service_cert_pem: str, *, timeout: float = 15.0,
                 key_service: KeyServiceAttester | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout,
                                  verify=ssl.create_default_context(cadata=service_cert_pem))

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(f"governance at {self.endpoint} is not reachable ({exc})",
                                          hint="start the local services with `cleanroom up`") from exc
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"message": response.text[:200]}}
        if response.status_code >= 400:
            message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
            raise _ERRORS.get(response.status_code, ServiceUnavailableError)(
                f"governance refused {method} {path}: {message or response.status_code}")
        return body

    # -- reads ---------------------------------------------------------------------------------
    def contract(self, contract_id: str) -> dict[str, Any]:
        return self._call("GET", f"/contracts/{contract_id}")

    def document(self, contract_id: str, kind: str) -> dict[str, Any] | None:
        return self._call("GET", f"/contracts/{contract_id}/documents/{kind}").get("data")

    def option_enabled(self, contract_id: str, option: str) -> bool:
        return self._call("GET", f"/contracts/{contract_id}/runtime-options/{option}").get("status") == "enabled"

    def jwks(self) -> dict[str, Any]:
        return self._call("GET", "/jwks")

    def events(self, contract_id: str, from_seqno: int = 1) -> dict[str, Any]:
        return self._call("GET", f"/contracts/{contract_id}/events", params={"from_seqno": from_seqno})

    def ca_certificate(self, contract_id: str) -> str:
        return str(self._call("GET", f"/contracts/{contract_id}/ca").get("caCert", ""))

    # -- attested writes -----------------------------------------------------------------------
    def secret(self, contract_id: str, name: str, attestation: str) -> str:
        return str(self._call("POST", f"/contracts/{contract_id}/secrets/{name}/get",
                              json={"attestation": attestation})["value"])

    def endorse(self, contract_id: str, csr_pem: bytes, attestation: str) -> bytes:
        answer = self._call("POST", f"/contracts/{contract_id}/ca/endorse",
                            json={"attestation": attestation, "csr": csr_pem.decode()})
        return (answer["certificate"].rstrip("\n") + "\n" + answer.get("caCert", "")).encode()

    def record_event(self, contract_id: str, event: dict[str, Any], *, category: str = "audit",
                     attestation: str | None = None) -> None:
        if attestation is None:
            raise AccessDeniedError("the runtime has not attested yet, so governance will not take its events")
        data = {k: v for k, v in event.items() if k != "type"}
        self._call("POST", f"/contracts/{contract_id}/events",
                   json={"attestation": attestation, "type": event["type"], "category": category, "data": data})

    # -- the key service's release authority ---------------------------------------------------
    def accepted_policy_hash(self, contract_id: str) -> str | None:
        return accepted_policy_hash(self.document(contract_id, "clean_room_policy"))

    def execution_enabled(self, contract_id: str) -> bool:
        return self.option_enabled(contract_id, "execution")


class KeyServiceAuthority:
    """ReleaseAuthority for the key service: governance reads, events signed as the key service."""

    def __init__(self, governance: HttpGovernance, attester: KeyServiceAttester) -> None:
        self.governance = governance
        self.attester = attester

    def accepted_policy_hash(self, contract_id: str) -> str | None:
        return self.governance.accepted_policy_hash(contract_id)

    def execution_enabled(self, contract_id: str) -> bool:
        return self.governance.execution_enabled(contract_id)

    def record_event(self, contract_id: str, event: dict[str, Any]) -> None:
        accepted = self.accepted_policy_hash(contract_id)
        if accepted is None:
            raise ConflictError(f"contract '{contract_id}' has no accepted policy, so governance takes no events")
        self.governance.record_event(contract_id, event, attestation=self.attester.token(contract_id, accepted))
