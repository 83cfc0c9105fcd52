"""Talking to the key service over pinned loopback TLS."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import httpx

from core.crypto.identity import MemberIdentity
from core.errors import AccessDeniedError, CleanroomError, NotFoundError, ServiceUnavailableError
from core.keys.kek_request import signed_kek_request
from core.keys.release import WorkloadKey


class KeyServiceClient:
    def __init__(self, url: str, ca_cert: Path, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, verify=ssl.create_default_context(cafile=str(ca_cert)), timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(
                f"key service at {self.url} is not reachable ({exc})",
                hint="start the local services with `cleanroom up`",
            ) from exc
        if response.status_code >= 400:
            detail = (
                response.json().get("detail", response.text)
                if response.headers.get("content-type", "").startswith("application/json")
                else response.text
            )
            error: type[CleanroomError] = {403: AccessDeniedError, 404: NotFoundError}.get(
                response.status_code, ServiceUnavailableError
            )
            raise error(f"key service refused: {detail}")
        answer: dict[str, Any] = response.json()
        return answer

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def create_kek(self, identity: MemberIdentity, contract_id: str) -> dict[str, Any]:
        """Create (or fetch) the member's KEK for ``contract_id``; returns its public description."""
        return self._call("POST", "/keks", json=signed_kek_request(identity, contract_id))

    def describe_kek(self, member_id: str, contract_id: str) -> dict[str, Any]:
        return self._call("GET", f"/keks/{member_id}/{contract_id}")

    def release(self, member_id: str, contract_id: str, *, attestation: str, workload_key: WorkloadKey) -> bytes:
        """Ask for a KEK release; returns the KEK private key PEM opened with the workload key."""
        body = {"attestation": attestation, "workload_public_key": base64.b64encode(workload_key.public_der).decode()}
        answer = self._call("POST", f"/keks/{member_id}/{contract_id}/release", json=body)
        return workload_key.open(answer["sealed_kek"], aad=f"{member_id}/{contract_id}".encode())
