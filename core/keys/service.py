"""The key service: holds each party's per-contract KEK and releases it only under its policy.

A party asks (with a request signed by its member key) for the KEK of a contract; the service
creates an RSA-3072 KEK bound to the release policy ``{contract_id, policy: accepted clean-room
policy}`` and returns only its public key, to which the party re-wraps its DEKs. The private
key leaves the service only wrapped to an attested workload's ephemeral key, and only when

* the virtual attestation verifies (signature, lifetime),
* its report_data names the workload key the release is sealed to,
* it names the KEK's contract, and
* its policy hash equals the clean-room policy governance accepted for that contract,
* and execution of that contract is enabled (kill switch).

Every release and every refusal is recorded as a governance event; a release that cannot be
recorded does not happen (fail closed), so the audit trail never misses a key leaving.

Nothing a caller sends reaches the audit trail as text: a refusal event has a fixed schema
(``kek_owner`` of an existing KEK, a ``reason_code`` from ``REFUSAL_REASONS`` with its fixed
text, and the policy hash / contract the VERIFIED attestation names), and a request naming no
existing KEK is answered 404 without an event. A KEK is made only for an active member of the
consortium and a contract governance knows, and both KEK creation and release attempts are
rate-bounded (429), so nobody can fill the disk with KEKs or the trail with refusals.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core import http_guard
from core.crypto.identity import load_certificate, member_id_of
from core.crypto.kek import KEK_PUBLIC_FILE, Kek, load_kek_public_key
from core.crypto.secret_file import write_public_file
from core.errors import AccessDeniedError, CleanroomError, NotFoundError, ServiceUnavailableError
from core.keys.attestation import verify_report_data
from core.keys.kek_request import AUDIENCE
from core.keys.loopback_tls import loopback_tls
from core.keys.release import KeyReleaseEvent, seal_to_workload

_CONTRACT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
REQUEST_MAX_AGE_SECONDS = 300
RATE_WINDOW_SECONDS = 60.0
NEW_KEKS_PER_MEMBER = 20  # new KEKs one member may create per window (re-fetching is free)
RELEASE_ATTEMPTS_PER_KEK = 30  # release attempts per (owner, contract) KEK per window

# reason_code -> the fixed text a refusal event carries (the HTTP answer may say more)
REFUSAL_REASONS = {
    "attestation_rejected": "the attestation token did not verify",
    "report_data_mismatch": "the attestation does not bind the workload key the release is sealed to",
    "wrong_contract": "the attestation names another contract",
    "no_accepted_policy": "the contract has no accepted clean-room policy",
    "policy_mismatch": "the attested policy differs from the accepted clean-room policy",
    "execution_disabled": "execution of the contract is disabled",
    "malformed": "the release request is malformed",
}


class _Refusal(Exception):
    """A release refusal: ``code`` (a REFUSAL_REASONS key) for the event, ``message`` for the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RateBound:
    """At most ``limit`` events per key in any ``window`` seconds (a sliding log, in memory)."""

    def __init__(self, limit: int, window: float = RATE_WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._log: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._log) > 10_000:  # forget idle keys so the log itself stays bounded
                self._log = {k: v for k, v in self._log.items() if v and v[-1] > now - self.window}
            recent = [t for t in self._log.get(key, []) if t > now - self.window]
            if len(recent) >= self.limit:
                self._log[key] = recent
                return False
            recent.append(now)
            self._log[key] = recent
            return True


class ReleaseAuthority(Protocol):
    """What the key service asks governance (an adapter over the governance client)."""

    def accepted_policy_hash(self, contract_id: str) -> str | None: ...

    def execution_enabled(self, contract_id: str) -> bool: ...

    def member_active(self, member_id: str) -> bool:
        """True if governance lists ``member_id`` as an active member of the consortium."""
        ...

    def contract_exists(self, contract_id: str) -> bool:
        """True if governance has a contract ``contract_id`` (in any state)."""
        ...

    def record_event(self, contract_id: str, event: dict[str, Any]) -> None: ...


class KekStore:
    """Per-(member, contract) KEKs on disk: ``<state>/keks/<member_id>/<contract_id>/``."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "keks"
        self._lock = threading.Lock()
        self._private: dict[str, bytes] = {}

    def _dir(self, member_id: str, contract_id: str) -> Path:
        if len(member_id) != 64 or not all(c in "0123456789abcdef" for c in member_id):
            raise NotFoundError(f"member id {member_id!r} is not a hex SHA-256", hint="use the member's id")
        if not _CONTRACT_ID.match(contract_id or ""):
            raise NotFoundError(f"contract id {contract_id!r} is not valid", hint="use the contract's id")
        return self.root / member_id / contract_id

    def exists(self, member_id: str, contract_id: str) -> bool:
        return (self._dir(member_id, contract_id) / "release_policy.json").is_file()

    def create_or_get(
        self, member_id: str, contract_id: str, may_create: Callable[[], None] = lambda: None
    ) -> dict[str, Any]:
        """The KEK's description, creating it first (after ``may_create`` did not raise) if new."""
        with self._lock:
            directory = self._dir(member_id, contract_id)
            if not (directory / "release_policy.json").is_file():
                may_create()
                kek = Kek.generate()
                kek.save(directory)
                self._private[f"{member_id}/{contract_id}"] = kek.private_key_pem
                policy = {
                    "contract_id": contract_id,
                    "owner": member_id,
                    "policy_hash": "accepted-clean-room-policy",
                    "created_at": int(time.time()),
                }
                # the policy is written last: its presence marks a complete KEK
                write_public_file(directory / "release_policy.json", json.dumps(policy).encode())
            return self.describe(member_id, contract_id)

    def describe(self, member_id: str, contract_id: str) -> dict[str, Any]:
        directory = self._dir(member_id, contract_id)
        if not (directory / "release_policy.json").is_file():
            raise NotFoundError(
                f"no KEK for member {member_id[:12]}… in contract '{contract_id}'",
                hint=f"the owner runs `cleanroom config wrap-deks --contract-id {contract_id}`",
            )
        public_pem = (directory / KEK_PUBLIC_FILE).read_bytes()
        return {
            "kid": f"{member_id}/{contract_id}",
            "public_key_pem": public_pem.decode(),
            "fingerprint": hashlib.sha256(
                load_kek_public_key(public_pem).public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ).hexdigest(),
            "release_policy": json.loads((directory / "release_policy.json").read_text()),
        }

    def warm(self) -> None:
        """Load every KEK once in the background, so the first release after a start is fast."""
        for policy in sorted(self.root.glob("*/*/release_policy.json")):
            try:
                self.private_pem(policy.parent.parent.name, policy.parent.name)
            except CleanroomError:
                continue

    def private_pem(self, member_id: str, contract_id: str) -> bytes:
        """The KEK's private key (kept in memory after first use: loading RSA keys is slow)."""
        kid = f"{member_id}/{contract_id}"
        if kid not in self._private:
            self.describe(member_id, contract_id)
            self._private[kid] = Kek.load(self._dir(member_id, contract_id)).private_key_pem
        return self._private[kid]


class CreateKekRequest(BaseModel):
    member_cert: str
    request: str  # JWT (ES384) signed by the member key: {aud, action, contract_id, iat}


class ReleaseRequest(BaseModel):
    attestation: str
    workload_public_key: str  # base64 DER SubjectPublicKeyInfo


def _verify_member_request(body: CreateKekRequest) -> tuple[str, dict[str, Any]]:
    cert = load_certificate(body.member_cert)
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise AccessDeniedError(
            "key request signature rejected (the member certificate's key is not an EC key)",
            hint="sign with the member identity of a cleanroom workspace (P-384)",
        )
    try:
        claims = jwt.decode(
            body.request, public_key, algorithms=["ES384"], audience=AUDIENCE, options={"require": ["iat", "aud"]}
        )
    except jwt.PyJWTError as exc:
        raise AccessDeniedError(
            f"key request signature rejected ({exc})", hint="sign it with the member key of this workspace"
        ) from exc
    if abs(time.time() - claims["iat"]) > REQUEST_MAX_AGE_SECONDS or claims.get("action") != "create_kek":
        raise AccessDeniedError("key request is stale or not a create_kek request", hint="send a fresh one")
    return member_id_of(cert), claims


def _verified_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """What a refusal event may say about a VERIFIED attestation: its policy hash and contract,
    each only if it has the expected form (no free text reaches the audit trail)."""
    recorded: dict[str, Any] = {}
    if isinstance(claims.get("policy_hash"), str) and _HEX64.match(claims["policy_hash"]):
        recorded["policy_hash"] = claims["policy_hash"]
    if isinstance(claims.get("contract_id"), str) and _CONTRACT_ID.match(claims["contract_id"]):
        recorded["attestation_contract"] = claims["contract_id"]
    return recorded


def create_app(state_dir: Path, *, verifier: Callable[[str], dict[str, Any]], authority: ReleaseAuthority) -> FastAPI:
    store = KekStore(state_dir)
    new_keks, release_attempts = RateBound(NEW_KEKS_PER_MEMBER), RateBound(RELEASE_ATTEMPTS_PER_KEK)
    threading.Thread(target=store.warm, name="kek-warm", daemon=True).start()
    app = FastAPI(title="cleanroom key service", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def _malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
        """A body that is not the request model (bad JSON, bad UTF-8, missing field): one line, 400."""
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
        message = f"request {where} is not valid: {first.get('msg', 'malformed')}"
        return JSONResponse({"detail": " ".join(message.split())}, status_code=400)

    def fail(exc: CleanroomError) -> HTTPException:
        return HTTPException(status_code={3: 404, 6: 403, 7: 503}.get(exc.exit_code, 400), detail=exc.one_line())

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/keks")
    def create_kek(body: CreateKekRequest) -> dict[str, Any]:
        try:
            member_id, claims = _verify_member_request(body)
            contract_id = str(claims.get("contract_id", ""))

            def may_create() -> None:
                """A new KEK only for an active member and a contract governance has, at a bounded rate."""
                if not authority.member_active(member_id):
                    raise AccessDeniedError(
                        f"member {member_id[:16]}… is not an active member of the consortium",
                        hint="join (and activate) before asking for a KEK",
                    )
                if not authority.contract_exists(contract_id):
                    raise NotFoundError(
                        f"contract '{contract_id}' does not exist in governance",
                        hint="create the contract before wrapping DEKs for it",
                    )
                if not new_keks.take(member_id):
                    raise HTTPException(
                        status_code=429,
                        detail=f"member {member_id[:16]}… created "
                        f"{NEW_KEKS_PER_MEMBER} KEKs in {int(RATE_WINDOW_SECONDS)} s; retry later",
                    )

            return store.create_or_get(member_id, contract_id, may_create)
        except CleanroomError as exc:
            raise fail(exc) from exc

    @app.get("/keks/{member_id}/{contract_id}")
    def show_kek(member_id: str, contract_id: str) -> dict[str, Any]:
        try:
            return store.describe(member_id, contract_id)
        except CleanroomError as exc:
            raise fail(exc) from exc

    @app.post("/keks/{member_id}/{contract_id}/release")
    def release(member_id: str, contract_id: str, body: ReleaseRequest) -> dict[str, Any]:
        try:
            if not store.exists(member_id, contract_id):
                store.describe(member_id, contract_id)  # raises the 404 naming the fix
        except CleanroomError as exc:  # no such KEK: nothing to audit, so no event either
            raise HTTPException(status_code=404, detail=exc.one_line()) from exc
        if not release_attempts.take(f"{member_id}/{contract_id}"):
            raise HTTPException(
                status_code=429,
                detail=f"{RELEASE_ATTEMPTS_PER_KEK} release attempts for this KEK "
                f"in {int(RATE_WINDOW_SECONDS)} s; retry later",
            )
        claimed: dict[str, Any] = {}
        try:
            try:
                claims = verifier(body.attestation)
            except (CleanroomError, ValueError, KeyError) as exc:
                reason = exc.one_line() if isinstance(exc, CleanroomError) else f"malformed attestation ({exc})"
                raise _Refusal("attestation_rejected", reason) from exc
            claimed = _verified_claims(claims)
            try:
                workload_der = base64.b64decode(body.workload_public_key, validate=True)
                verify_report_data(claims, workload_der)
            except (ValueError, KeyError) as exc:
                raise _Refusal("malformed", f"malformed request ({exc})") from exc
            except CleanroomError as exc:
                raise _Refusal("report_data_mismatch", exc.one_line()) from exc
            if claims.get("contract_id") != contract_id:
                raise _Refusal(
                    "wrong_contract",
                    f"attestation names contract '{claims.get('contract_id')}', "
                    f"not '{contract_id}': release only within the contract",
                )
            accepted = authority.accepted_policy_hash(contract_id)
            if accepted is None:
                raise _Refusal(
                    "no_accepted_policy",
                    f"contract '{contract_id}' has no accepted clean-room policy: "
                    "propose and accept it with `cleanroom governance deployment`",
                )
            if claims.get("policy_hash") != accepted:
                raise _Refusal(
                    "policy_mismatch",
                    f"attested policy {str(claims.get('policy_hash'))[:12]}… differs from the accepted "
                    f"clean-room policy {accepted[:12]}…: run exactly the accepted deployment",
                )
            if not authority.execution_enabled(contract_id):
                raise _Refusal(
                    "execution_disabled",
                    f"execution of contract '{contract_id}' is disabled: a member must enable execution again",
                )
        except _Refusal as refusal:
            try:
                authority.record_event(
                    contract_id,
                    {
                        "type": KeyReleaseEvent.REFUSED,
                        "kek_owner": member_id,
                        "reason_code": refusal.code,
                        "reason": REFUSAL_REASONS[refusal.code],
                        **claimed,
                    },
                )
            except CleanroomError:
                pass  # the refusal stands even if it cannot be recorded
            raise HTTPException(status_code=403, detail=refusal.message) from refusal
        except CleanroomError as exc:  # governance unreachable while checking: refuse, nothing to record
            raise HTTPException(status_code=503, detail=f"release refused: {exc.one_line()}") from exc
        try:
            authority.record_event(
                contract_id,
                {
                    "type": KeyReleaseEvent.RELEASED,
                    "kek_owner": member_id,
                    "policy_hash": claims["policy_hash"],
                    "report_data": claims["report_data"],
                },
            )
        except CleanroomError as exc:
            raise HTTPException(status_code=503, detail=f"release not recorded, so refused: {exc.one_line()}") from exc
        sealed = seal_to_workload(
            workload_der, store.private_pem(member_id, contract_id), aad=f"{member_id}/{contract_id}".encode()
        )
        return {"kid": f"{member_id}/{contract_id}", "sealed_kek": sealed}

    return app


class KeyServiceServer:
    """Runs the key service with TLS on 127.0.0.1 in a background thread.

    Bodies are capped (``http_guard.BodyLimit``) and heads timed and capped
    (``http_guard.GuardedHttpProtocol``) before FastAPI or any signature check runs: the
    service answers unauthenticated clients, who must not be able to hold its memory or sockets.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        verifier: Callable[[str], dict[str, Any]],
        authority: ReleaseAuthority,
        port: int = 0,
        header_timeout: float = http_guard.HEADER_TIMEOUT_SECONDS,
        max_connections: int = http_guard.MAX_CONNECTIONS,
        max_body_bytes: int = http_guard.MAX_BODY_BYTES,
    ) -> None:
        self.state_dir = state_dir
        self.tls = loopback_tls(state_dir, "key_service")
        app = http_guard.BodyLimit(
            create_app(state_dir, verifier=verifier, authority=authority), limit=max_body_bytes, json_bodies=True
        )
        protocol = http_guard.guarded_protocol(header_timeout=header_timeout, max_connections=max_connections)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            http=protocol,
            **http_guard.uvicorn_limits(header_timeout=header_timeout, max_connections=max_connections),
            ssl_certfile=str(self.tls.cert_path),
            ssl_keyfile=str(self.tls.key_path),
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="key-service", daemon=True)

    @property
    def url(self) -> str:
        sockets = self._server.servers[0].sockets
        return f"https://127.0.0.1:{sockets[0].getsockname()[1]}"

    def start(self, timeout: float = 10.0) -> KeyServiceServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    "key service did not start on loopback", hint="check that the port is free"
                )
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
