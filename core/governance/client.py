"""The governance client: what the CLI, the console and the clean-room runtime call.

One ``GovernanceClient`` talks to one service over TLS, trusting only the service certificate
the workspace pinned (``client deploy``). Member writes are signed with the member identity
given at construction; reads need no identity except the members-only ones (events, their
stream, secret names), which carry a signed read header; clean-room calls (``endorse_csr``,
``get_secret``, ``append_event``) carry an attestation token instead.

Every failure is a ``CleanroomError`` with the service's one-line message: 400 ->
InvalidInputError, 401/403 -> AccessDeniedError, 404 -> NotFoundError, 409 -> ConflictError,
412 -> StaleVersionError (a ConflictError), unreachable/5xx -> ServiceUnavailableError.

Example::

    with GovernanceClient.from_workspace(Workspace.open(path)) as gov:
        gov.create_contract("inference-initial", merged_spec)
        proposal = gov.propose_contract("inference-initial", gov.contract("inference-initial")["version"])
        gov.vote(proposal["proposalId"], "accept")
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from core.crypto.identity import MemberIdentity
from core.crypto.secret_file import write_public_file
from core.errors import (
    AccessDeniedError,
    CleanroomError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
)
from core.governance.client_apps import ASSERTION_TYPE, GRANT_TYPE, SCOPE_PREFIX, TOKEN_PATH, client_assertion
from core.governance.models import RUNTIME_OPTIONS, VOTED_OPTIONS, Action, OptionStatus, StaleVersionError
from core.governance.signing import CONTENT_TYPE, sign_read, sign_request, sign_secret_put
from core.keys.measurement import policy_hash_of

WORKSPACE_KEY = "governance"

_ERRORS: dict[int, type[CleanroomError]] = {
    400: InvalidInputError,
    401: AccessDeniedError,
    403: AccessDeniedError,
    404: NotFoundError,
    409: ConflictError,
    412: StaleVersionError,
}


def deploy_to_workspace(workspace: Any, endpoint: str, service_cert_pem: str) -> None:
    """Record the governance endpoint and the certificate to pin in ``workspace.settings``."""
    if not endpoint.startswith("https://"):
        raise InvalidInputError(
            f"governance endpoint {endpoint!r} is not https://",
            hint="pass the endpoint printed by `cleanroom governance service start`",
        )
    ssl.create_default_context(cadata=service_cert_pem)  # refuses a PEM that is not a certificate
    workspace.settings[WORKSPACE_KEY] = {"endpoint": endpoint.rstrip("/"), "service_cert_pem": service_cert_pem}
    workspace.save()


class GovernanceClient:
    """A pinned-TLS httpx client for one governance service, optionally acting as one member."""

    def __init__(
        self, endpoint: str, service_cert_pem: str, identity: MemberIdentity | None = None, *, timeout: float = 30.0
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.service_cert_pem = service_cert_pem
        self.identity = identity
        try:
            context = ssl.create_default_context(cadata=service_cert_pem)
        except ssl.SSLError as exc:
            raise InvalidInputError(
                "the pinned governance service certificate is not a PEM certificate",
                hint="run `cleanroom governance client deploy` again",
            ) from exc
        self._http = httpx.Client(base_url=self.endpoint, verify=context, timeout=timeout)

    @classmethod
    def from_workspace(cls, workspace: Any, *, with_identity: bool = True) -> GovernanceClient:
        """The client a persona workspace was deployed against (``client deploy`` / ``cleanroom up``)."""
        settings = workspace.settings.get(WORKSPACE_KEY)
        if not settings:
            raise NotFoundError(
                f"workspace {workspace.root} has no governance service",
                hint="run `cleanroom up` or `cleanroom governance client deploy --endpoint URL --service-cert PEM`",
            )
        identity = workspace.identity if with_identity else None
        return cls(settings["endpoint"], settings["service_cert_pem"], identity)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GovernanceClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(
                f"governance service at {self.endpoint} is not reachable ({exc})",
                hint="start it with `cleanroom up` or `cleanroom governance service start`",
            ) from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            error = _ERRORS.get(response.status_code, ServiceUnavailableError)
            raise error(f"governance service refused {method} {path} ({response.status_code}): {message}")
        return response

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        """The JSON object a governance answer carries; anything else is not a governance service."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ServiceUnavailableError(
                f"{self.endpoint} answered {response.request.url.path} with something that is not a JSON object",
                hint="check that the endpoint is a cleanroom governance service",
            )
        return body

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._object(self._send("GET", path, params={k: v for k, v in params.items() if v is not None}))

    def _read_headers(self, path: str) -> dict[str, str]:
        """``Authorization`` for a members-only read: a fresh read signed for ``path``."""
        if self.identity is None:
            raise AccessDeniedError(
                f"reading {path} needs a member identity (events and secret names are for members only)",
                hint="open the client from a member's workspace",
            )
        return {"Authorization": sign_read(self.identity, path)}

    def _member_get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._object(
            self._send(
                "GET", path, params={k: v for k, v in params.items() if v is not None}, headers=self._read_headers(path)
            )
        )

    def _signed(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.identity is None:
            raise AccessDeniedError(
                "this governance client has no member identity to sign with", hint="open it from a persona workspace"
            )
        payload = sign_request(self.identity, path, body)
        return self._object(self._send(method, path, content=payload, headers={"Content-Type": CONTENT_TYPE}))

    def send_raw(self, method: str, path: str, content: bytes, content_type: str = CONTENT_TYPE) -> httpx.Response:
        """Send bytes as they are (tests and tools that craft messages); raises like every call."""
        return self._send(method, path, content=content, headers={"Content-Type": content_type})

    # -- service and members -----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._get("/health")

    def service_info(self) -> dict[str, Any]:
        return self._get("/service")

    def members(self) -> list[dict[str, Any]]:
        return list(self._get("/members")["value"])

    def member(self, member_id: str) -> dict[str, Any]:
        return self._get(f"/members/{member_id}")

    def propose_member(
        self, cert_pem: str, name: str = "", member_data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Open a set_member proposal; once accepted the new member runs ``activate_member``."""
        return self.propose(Action.SET_MEMBER, {"cert": cert_pem, "name": name, "member_data": member_data or {}})

    def activate_member(self) -> dict[str, Any]:
        return self._signed("POST", "/members/activate", {})

    # -- contracts and proposals -------------------------------------------------------------------
    def contracts(self) -> list[dict[str, Any]]:
        return list(self._get("/contracts")["value"])

    def contract(self, contract_id: str) -> dict[str, Any]:
        """``{id, data, version, state, proposalId, hash, createdBy}``."""
        return self._get(f"/contracts/{contract_id}")

    def create_contract(self, contract_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._signed("PUT", f"/contracts/{contract_id}", {"data": data})

    def update_contract(self, contract_id: str, data: dict[str, Any], version: str) -> dict[str, Any]:
        """Replace a Draft/Proposed contract's data; ``version`` must be the current one (else 412)."""
        return self._signed("PUT", f"/contracts/{contract_id}", {"data": data, "version": version})

    def propose_contract(self, contract_id: str, version: str) -> dict[str, Any]:
        return self.propose(Action.SET_CONTRACT, {"contract_id": contract_id, "version": version})

    def propose(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """Open a proposal; returns it (``proposalId``, ``proposalState``, ``ballots``...)."""
        return self._signed("POST", "/proposals", {"action": action, "args": args})

    def proposals(
        self, *, state: str | None = None, contract_id: str | None = None, action: str | None = None
    ) -> list[dict[str, Any]]:
        return list(self._get("/proposals", state=state, contract_id=contract_id, action=action)["value"])

    def proposal(self, proposal_id: str) -> dict[str, Any]:
        return self._get(f"/proposals/{proposal_id}")

    def vote(self, proposal_id: str, ballot: str) -> dict[str, Any]:
        """Cast ``accept`` or ``reject``; returns the proposal after the ballot (maybe now closed)."""
        return self._signed("POST", f"/proposals/{proposal_id}/ballots", {"ballot": ballot})

    def withdraw(self, proposal_id: str) -> dict[str, Any]:
        return self._signed("POST", f"/proposals/{proposal_id}/withdraw", {})

    # -- deployment spec, clean-room policy, CA, options -------------------------------------------
    def propose_deployment_spec(self, contract_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.propose(Action.SET_DEPLOYMENT_SPEC, {"contract_id": contract_id, "data": spec})

    def propose_clean_room_policy(self, contract_id: str, policy: dict[str, Any]) -> dict[str, Any]:
        return self.propose(Action.SET_CLEAN_ROOM_POLICY, {"contract_id": contract_id, "data": policy})

    def deployment_spec(self, contract_id: str) -> dict[str, Any]:
        """``{data (accepted spec or None), hash, acceptedProposalId, proposalIds (open)}``."""
        return self._get(f"/contracts/{contract_id}/documents/deployment_spec")

    def clean_room_policy(self, contract_id: str) -> dict[str, Any]:
        return self._get(f"/contracts/{contract_id}/documents/clean_room_policy")

    def accepted_policy_hash(self, contract_id: str) -> str | None:
        """The measurement attested clean rooms of this contract must present (None if no policy)."""
        policy = self.clean_room_policy(contract_id)["data"]
        return policy_hash_of(policy) if policy else None

    def propose_enable_ca(self, contract_id: str) -> dict[str, Any]:
        return self.propose(Action.ENABLE_CA, {"contract_id": contract_id})

    def ca(self, contract_id: str) -> dict[str, Any]:
        """``{enabled, caCert (PEM or ""), acceptedProposalId, proposalIds (open enable_ca)}``."""
        return self._get(f"/contracts/{contract_id}/ca")

    def generate_ca_key(self, contract_id: str) -> dict[str, Any]:
        return self._signed("POST", f"/contracts/{contract_id}/ca/generate-key", {})

    def runtime_option(self, contract_id: str, option: str) -> dict[str, Any]:
        """``{status: enabled|disabled, disabledBy (execution) or proposalIds (the voted options)}``."""
        return self._get(f"/contracts/{contract_id}/runtime-options/{option}")

    def execution_enabled(self, contract_id: str) -> bool:
        return bool(self.runtime_option(contract_id, "execution")["status"] == OptionStatus.ENABLED)

    def set_runtime_option(self, contract_id: str, option: str, enable: bool) -> dict[str, Any]:
        """Execution: the kill switch, immediate. Logging, telemetry, loss_telemetry: opens a proposal (returned)."""
        if option == "execution":
            return self._signed(
                "POST",
                f"/contracts/{contract_id}/runtime-options/execution",
                {"action": "enable" if enable else "disable"},
            )
        if option not in VOTED_OPTIONS:
            raise InvalidInputError(
                f"runtime option {option!r} is not known", hint=f"use one of: {', '.join(RUNTIME_OPTIONS)}"
            )
        return self.propose(f"{'enable' if enable else 'disable'}_{option}", {"contract_id": contract_id})

    def traffic(self, contract_id: str) -> dict[str, Any]:
        """``{version, split {app: percent} or {}, rolledBackTo, applications (serving), proposalIds}``."""
        return self._get(f"/contracts/{contract_id}/traffic")

    def propose_traffic_split(self, contract_id: str, split: dict[str, int]) -> dict[str, Any]:
        """Open a set_traffic_split proposal (every member votes it)."""
        return self.propose(Action.SET_TRAFFIC_SPLIT, {"contract_id": contract_id, "split": split})

    def rollback_traffic(self, contract_id: str, application: str) -> dict[str, Any]:
        """Send all traffic to ``application`` at once: this member alone, recorded in the ledger."""
        return self._signed("POST", f"/contracts/{contract_id}/traffic/rollback", {"to": application})

    # -- secrets, tokens ---------------------------------------------------------------------------
    def put_secret(self, contract_id: str, name: str, value: bytes) -> dict[str, Any]:
        """Store opaque bytes (e.g. a wrapped DEK) that only an attested clean room can read."""
        if self.identity is None:
            raise AccessDeniedError(
                "this governance client has no member identity to sign with", hint="open it from a persona workspace"
            )
        path = f"/contracts/{contract_id}/secrets/{name}"
        return self._object(
            self._send(
                "PUT", path, content=sign_secret_put(self.identity, path, value), headers={"Content-Type": CONTENT_TYPE}
            )
        )

    def secrets(self, contract_id: str) -> list[dict[str, Any]]:
        """Names, owners and seqnos of a contract's secrets (members only; never values)."""
        return list(self._member_get(f"/contracts/{contract_id}/secrets")["value"])

    def issue_token(self, contract_id: str) -> dict[str, Any]:
        """``{token (ES384 JWT, aud "cleanroom:<contract>"), expiresAt, audience, issuer}``."""
        return self._signed("POST", f"/contracts/{contract_id}/tokens", {})

    def jwks(self) -> dict[str, Any]:
        return self._get("/jwks")

    def rotate_token_key(self) -> dict[str, Any]:
        """Make a fresh token key current; the previous one stays in /jwks until its tokens expire."""
        return self._signed("POST", "/token-keys/rotate", {})

    # -- client applications (core.governance.client_apps) -------------------------------------------
    def propose_client_app(
        self,
        name: str,
        *,
        owner: str,
        contracts: list[str],
        routes: list[str],
        rate_limit_per_minute: int,
        public_key: str,
    ) -> dict[str, Any]:
        """Open a ``register_client_app`` proposal (every member must accept)."""
        args = {
            "name": name,
            "owner": owner,
            "contracts": contracts,
            "routes": routes,
            "rate_limit_per_minute": rate_limit_per_minute,
            "public_key": public_key,
        }
        return self.propose(Action.REGISTER_CLIENT_APP, args)

    def client_apps(self) -> list[dict[str, Any]]:
        """Registered applications' metadata (never their keys)."""
        return list(self._get("/oauth2/apps")["value"])

    def revoke_client_app(self, name: str) -> dict[str, Any]:
        """Revoke an application at once: this member alone, recorded in the ledger."""
        return self._signed("POST", f"/oauth2/apps/{name}/revoke", {})

    def app_revocations(self) -> dict[str, Any]:
        """``{version, revoked: [{app, revokedAt}]}``, the feed the ingress polls."""
        return self._get("/oauth2/revocations")

    def app_token(self, name: str, private_key: Any, contract_id: str) -> dict[str, Any]:
        """An access token for application ``name``, got as any OAuth2 client gets one: client
        credentials with a private_key_jwt assertion (no member identity is involved)."""
        url = f"{self.endpoint}{TOKEN_PATH}"
        form = {
            "grant_type": GRANT_TYPE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(name, private_key, url),
            "scope": f"{SCOPE_PREFIX}{contract_id}",
        }
        try:
            response = self._http.post(TOKEN_PATH, data=form)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(
                f"governance service at {self.endpoint} is not reachable ({exc})",
                hint="start it with `cleanroom up` or `cleanroom governance service start`",
            ) from exc
        if response.status_code >= 400:
            try:
                refusal = response.json()
                code, description = refusal["error"], refusal["error_description"]
            except (ValueError, KeyError, TypeError):
                code, description = "error", response.text[:200]
            error = _ERRORS.get(response.status_code, ServiceUnavailableError)
            raise error(f"governance refused a token for client application '{name}' ({code}): {description}")
        return self._object(response)

    # -- clean-room (attested) calls ---------------------------------------------------------------
    def endorse_csr(self, contract_id: str, attestation: str, csr_pem: str) -> dict[str, Any]:
        """``{certificate, caCert}``: the contract CA signs the attested clean room's CSR."""
        return self._object(
            self._send(
                "POST", f"/contracts/{contract_id}/ca/endorse", json={"attestation": attestation, "csr": csr_pem}
            )
        )

    def get_secret(self, contract_id: str, name: str, attestation: str) -> bytes:
        return self.get_secret_with_writer(contract_id, name, attestation)[0]

    def get_secret_with_writer(self, contract_id: str, name: str, attestation: str) -> tuple[bytes, str]:
        """The secret and the member id that wrote it (a DEK counts only if its asset's owner did)."""
        response = self._object(
            self._send("POST", f"/contracts/{contract_id}/secrets/{name}/get", json={"attestation": attestation})
        )
        return base64.b64decode(response["value"]), str(response.get("writer", ""))

    def append_event(
        self,
        contract_id: str,
        attestation: str,
        event_type: str,
        data: dict[str, Any] | None = None,
        *,
        category: str = "audit",
    ) -> dict[str, Any]:
        """Record a clean-room event; ``category`` audit, telemetry or logging (the latter two
        are shown to members only when the contract enabled them)."""
        return self._object(
            self._send(
                "POST",
                f"/contracts/{contract_id}/events",
                json={"attestation": attestation, "type": event_type, "category": category, "data": data or {}},
            )
        )

    def reserve_privacy(self, contract_id: str, application: str, attestation: str) -> dict[str, Any]:
        """``{runId, reserved, datasets: [{dataset, left, ...}]}``: the run's epsilon, charged
        before any DEK of a budgeted datasource is released (403 when a dataset would overspend)."""
        return self._object(
            self._send(
                "POST",
                f"/contracts/{contract_id}/privacy/reservations",
                json={"attestation": attestation, "application": application},
            )
        )

    def record_privacy(self, contract_id: str, run_id: str, record: dict[str, Any], attestation: str) -> dict[str, Any]:
        """Report a run's privacy accounting; governance recomputes epsilon (409 on a mismatch)."""
        return self._object(
            self._send(
                "POST",
                f"/contracts/{contract_id}/privacy/reservations/{run_id}/record",
                json={**record, "attestation": attestation},
            )
        )

    # -- privacy ledger ------------------------------------------------------------------------------
    def privacy_datasets(self) -> list[dict[str, Any]]:
        """Every budgeted dataset: ``{dataset, owner, name, privacyUnit, epsilonTotal, delta, spent,
        reserved, left}`` (members only)."""
        return list(self._member_get("/privacy/datasets")["value"])

    def privacy_history(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Privacy ledger entries in ledger order, optionally of one dataset (members only)."""
        return list(self._member_get("/privacy/history", dataset=dataset)["value"])

    def lower_privacy_budget(self, dataset: str, epsilon_total: float) -> dict[str, Any]:
        """The owner lowers its dataset's lifetime epsilon (alone: lowering only protects its data)."""
        return self._signed("POST", "/privacy/budgets/lower", {"dataset": dataset, "epsilon_total": epsilon_total})

    def propose_privacy_budget(self, dataset: str, epsilon_total: float) -> dict[str, Any]:
        """Open a ``set_privacy_budget`` proposal raising a dataset's budget (every member must accept)."""
        return self.propose(Action.SET_PRIVACY_BUDGET, {"dataset": dataset, "epsilon_total": epsilon_total})

    # -- model registry (core.governance.model_registry) ---------------------------------------------
    def onboard_model(
        self, name: str, version: str, *, package_hash: str, wrapper_hash: str, description: str = ""
    ) -> dict[str, Any]:
        """Register a model version (status created); the signer becomes the model's owner."""
        body = {
            "name": name,
            "version": version,
            "description": description,
            "packageHash": package_hash,
            "wrapperHash": wrapper_hash,
        }
        return self._signed("POST", "/models", body)

    def models(self) -> list[dict[str, Any]]:
        return list(self._get("/models")["value"])

    def model(self, name: str) -> dict[str, Any]:
        return self._get(f"/models/{name}")

    def propose_publish_model(self, name: str, version: str) -> dict[str, Any]:
        """Open a ``publish_model_version`` proposal (every member must accept; only a verified version)."""
        return self.propose(Action.PUBLISH_MODEL_VERSION, {"model": name, "version": version})

    def unpublish_model(self, name: str, version: str) -> dict[str, Any]:
        return self._signed("POST", f"/models/{name}/unpublish", {"version": version})

    def delete_model(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self._signed("POST", f"/models/{name}/delete", {"version": version})

    def record_model_status(
        self, contract_id: str, name: str, version: str, status: str, details: dict[str, Any], attestation: str
    ) -> dict[str, Any]:
        """The clean room reports a model version's new status (attested; 403 for another contract)."""
        return self._object(
            self._send(
                "POST",
                f"/contracts/{contract_id}/models/{name}/versions/{version}/status",
                json={"status": status, "details": details, "attestation": attestation},
            )
        )

    def record_model_regression(
        self, contract_id: str, name: str, version: str, report: dict[str, Any], attestation: str
    ) -> dict[str, Any]:
        """The clean room reports a regression run's aggregate for candidate ``version`` (attested)."""
        return self._object(
            self._send(
                "POST",
                f"/contracts/{contract_id}/models/{name}/versions/{version}/regression",
                json={"report": report, "attestation": attestation},
            )
        )

    def record_model_loadtest(
        self, name: str, version: str, contract_id: str, report: dict[str, Any]
    ) -> dict[str, Any]:
        """Record a load-test report (camelCase, as `model loadtest` prints it) on a version, signed by this member."""
        return self._signed(
            "POST", f"/models/{name}/loadtest", {"version": version, "contractId": contract_id, "report": report}
        )

    # -- events ------------------------------------------------------------------------------------
    def events(self, contract_id: str, from_seqno: int = 1, *, wait: float = 0.0) -> dict[str, Any]:
        """``{events: [...], nextSeqno}``; ``wait`` > 0 long-polls up to that many seconds (members only)."""
        return self._member_get(f"/contracts/{contract_id}/events", from_seqno=from_seqno, wait=wait or None)

    def stream_events(self, contract_id: str, from_seqno: int = 1) -> Iterator[dict[str, Any]]:
        """Yield events as they arrive (server-sent events, members only); stop by closing the generator."""
        path = f"/contracts/{contract_id}/events/stream"
        headers = self._read_headers(path)
        try:
            with self._http.stream(
                "GET", path, params={"from_seqno": from_seqno}, headers=headers, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _ERRORS.get(response.status_code, ServiceUnavailableError)(
                        f"governance service refused the event stream ({response.status_code})"
                    )
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line[len("data: ") :])
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(
                f"event stream from {self.endpoint} broke ({exc})", hint="reconnect from the last seqno you saw"
            ) from exc

    # -- ledger ------------------------------------------------------------------------------------
    def ledger_head(self) -> dict[str, Any]:
        return self._get("/ledger/head")

    def export_ledger(self, path: Path) -> int:
        """Write the ledger export to ``path`` (atomically); returns the number of bytes."""
        content = self._send("GET", "/ledger/export").content
        write_public_file(path, content)
        return len(content)

    def receipt(self, seqno: int) -> dict[str, Any]:
        return self._get(f"/ledger/receipt/{seqno}")
