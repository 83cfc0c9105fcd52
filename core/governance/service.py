"""The governance service over HTTPS (FastAPI + uvicorn) on loopback.

Writes are ``POST``/``PUT`` with a COSE_Sign1 body (``application/cose``, see ``signing``);
the service checks signature, membership, freshness and replay before touching state.
Clean-room calls (CA endorsement, secret get, event append, privacy reserve and record) carry
an attestation token and are checked by the injected ``attestation_verifier``; until step 3
plugs one in, they are refused. Reads are plain ``GET``s over the pinned TLS connection; the
members-only ones (a contract's events and their stream, its secret names, the privacy budgets
and history) also need ``Authorization: COSE-Sign1 <message>``, a fresh signed read bound to
the path, from an active member (``signing.verify_read``).

Errors are ``{"error": {"code", "message"}}`` with 400 (malformed), 401 (signature, membership,
freshness, replay), 403 (not allowed), 404, 409 (state forbids it) or 412 (stale version).

Run one with ``python -m core.governance.service --state-dir DIR`` (``launcher`` does this).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import re
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from core import http_guard
from core.errors import AccessDeniedError, CleanroomError, ConflictError, InvalidInputError, NotFoundError
from core.governance.client_apps import OAuth2Error, token_endpoints
from core.governance.launcher import CONFIG_FILE, IDENTITY_DIR
from core.governance.models import DOCUMENT_ACTIONS, MemberStatus, StaleVersionError
from core.governance.service_identity import ServiceIdentity
from core.governance.signing import CONTENT_TYPE, SignatureRejected, VerifiedRequest, verify_read, verify_request
from core.governance.state import AttestationVerifier, GovernanceState

CHECKPOINT_INTERVAL_SECONDS = 1.0
LONG_POLL_MAX_SECONDS = 30.0
GRACEFUL_SHUTDOWN_SECONDS = 1  # idle keep-alive and event-stream connections must not hold a stop
BALLOT_THREADS = 40  # as many as FastAPI's pool: ballots wait on a group commit's fsync in them
MAX_SEQNO = 2**63 - 1  # SQLite's INTEGER: a larger seqno cannot name an entry, and overflows the driver


def _status_of(exc: CleanroomError) -> int:
    if isinstance(exc, StaleVersionError):
        return 412
    for cls, status in ((InvalidInputError, 400), (AccessDeniedError, 403), (NotFoundError, 404), (ConflictError, 409)):
        if isinstance(exc, cls):
            return status
    return 500


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


_BALLOT_PATH = re.compile(r"/proposals/([^/]+)/ballots")


class SignedBallotRoute:
    """ASGI front that serves ``POST /proposals/{id}/ballots`` ahead of FastAPI's stack.

    Why: ballots are the write that must sustain hundreds a second on one GIL, and FastAPI's
    middleware layers, dependency solving and response classes cost a ballot about as much CPU
    as its ECDSA check. The checks are the routed endpoint's, unchanged: COSE content type,
    ``verify_request`` (signature, membership, freshness, path), then ``GovernanceState.ballot``
    (replay, one ballot per member, durable group commit) on a thread; errors have the same
    statuses and ``{"error": {...}}`` bodies. Everything else goes to ``app``. Its own thread
    pool hands work over through a C ``SimpleQueue`` rather than anyio's ``queue.Queue``, whose
    Python-level condition variable was a measurable share of a ballot.
    """

    def __init__(self, app: FastAPI, state: GovernanceState, *, threads: int = BALLOT_THREADS) -> None:
        self.app = app
        self.state = state
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ballot")

    def close(self) -> None:
        """Let ballots already being written finish before the state is closed."""
        self._pool.shutdown(wait=True)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = _BALLOT_PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # every body is read here, capped in size and time, before any route or signature check:
        # an unauthenticated client can make the service hold at most MAX_BODY_BYTES per request
        try:
            raw = await http_guard.read_body(scope, receive)
        except http_guard.HttpRefusal as refusal:
            await http_guard.send_json(
                send, refusal.status, {"error": {"code": "HttpRefusal", "message": refusal.message}}
            )
            return
        if raw is None:  # the client went away
            return
        if match is None:
            await self.app(scope, http_guard.replay(raw, receive), send)
            return
        content_type = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
        try:
            payload = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._ballot, content_type, raw, scope["path"], match.group(1)
            )
            status = 200
        except CleanroomError as exc:
            status, payload = _status_of(exc), {"error": {"code": type(exc).__name__, "message": exc.one_line()}}
        except SignatureRejected as exc:
            status, payload = exc.status, {"error": {"code": "SignatureRejected", "message": exc.message}}
        body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _ballot(self, content_type: bytes, raw: bytes, path: str, proposal_id: str) -> dict[str, Any]:
        if content_type.split(b";")[0].strip().decode("latin-1") != CONTENT_TYPE:
            raise SignatureRejected(
                401, f"request is unsigned: send a COSE_Sign1 body with Content-Type {CONTENT_TYPE}"
            )
        verified = verify_request(
            raw, path=path, window_seconds=self.state.window_seconds, member_key=self.state.member_key
        )
        return self.state.ballot(verified, proposal_id)


class _CoalescingTransport:
    """A transport that hands every write made in one event-loop step to TLS as one write.

    Why: uvicorn writes a response's head and its body separately; over TLS with TCP_NODELAY
    each write is its own TLS record, ``send`` syscall and loopback segment, and those run on
    the event loop under the GIL. Joining them halves that cost per response and still sends
    the response in the step that produced it (``call_soon``).
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpProtocol(http_guard.GuardedHttpProtocol):
    """uvicorn's httptools protocol over a ``_CoalescingTransport``, with the head timeout, head
    size cap and connection cap of ``http_guard.GuardedHttpProtocol``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))


def load_attestation_verifier(spec: dict[str, Any] | None) -> AttestationVerifier | None:
    """Resolve ``{"factory": "module:attr", "args": [str, ...]}`` to ``factory(*args)``.

    The factory returns a callable ``verifier(token) -> claims`` that raises a CleanroomError
    when the token is not good; claims must carry ``contract_id`` and ``policy_hash``.
    """
    if not spec:
        return None
    module_name, _, attribute = str(spec["factory"]).partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    verifier: AttestationVerifier = target(*spec.get("args", []))
    return verifier


def create_app(state: GovernanceState) -> FastAPI:
    """The HTTP surface over ``state``.

    Handlers are plain functions, so FastAPI runs them on its thread pool: while one batch of
    writes waits for its fsync, the next requests are verified and join the next batch
    (``GovernanceState._write``). Ballots, the hot write, are served by ``SignedBallotRoute``
    in front of this app with the same checks; their route here stays so the endpoint is in
    the OpenAPI schema. Only body reads and long-poll waits run on the event loop.
    """
    event_waiters: dict[str, asyncio.Event] = {}

    def notify(contract_id: str) -> None:
        waiter = event_waiters.pop(contract_id, None)
        if waiter is not None:
            waiter.set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def notify_soon(contract_id: str) -> None:  # called on a write thread; waiters live on the loop
            loop.call_soon_threadsafe(notify, contract_id)

        state.on_event = notify_soon

        async def checkpointer() -> None:  # a checkpoint a second while entries are pending
            while True:
                await asyncio.sleep(CHECKPOINT_INTERVAL_SECONDS)
                await run_in_threadpool(state.checkpoint)
                await run_in_threadpool(state.prune_seen)

        task = asyncio.create_task(checkpointer())
        yield
        task.cancel()

    app = FastAPI(title="cleanroom governance", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(CleanroomError)
    async def _cleanroom_error(_: Request, exc: CleanroomError) -> JSONResponse:
        return _error(_status_of(exc), type(exc).__name__, exc.one_line())

    @app.exception_handler(SignatureRejected)
    async def _signature_error(_: Request, exc: SignatureRejected) -> JSONResponse:
        return _error(exc.status, "SignatureRejected", exc.message)

    @app.exception_handler(RequestValidationError)
    async def _parameter_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        """A bad path or query parameter (``from_seqno=1e30``, ``wait=nan``): one line naming it."""
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path")) or "request"
        value = first.get("input")
        shown = "" if value is None else f" {str(value)[:40]!r}"
        message = (
            f"parameter {where}{shown} is not valid: {str(first.get('msg', 'invalid')).removeprefix('Value error, ')}"
        )
        return _error(400, "InvalidInputError", " ".join(message.split()))

    async def raw_body(request: Request) -> bytes:  # a dependency: reads the body on the loop
        return await request.body()

    async def json_body(request: Request) -> dict[str, Any]:
        # strict UTF-8, no NaN, nesting capped: these bodies come before the caller is verified
        body = http_guard.loads_json(await request.body() or b"{}")
        if not isinstance(body, dict):
            raise InvalidInputError("request body must be a JSON object", hint="send {...}")
        return body

    def signed(request: Request, raw: bytes, statuses: tuple[str, ...] = (MemberStatus.ACTIVE,)) -> VerifiedRequest:
        if request.headers.get("content-type", "").split(";")[0].strip() != CONTENT_TYPE:
            raise SignatureRejected(
                401, f"request is unsigned: send a COSE_Sign1 body with Content-Type {CONTENT_TYPE}"
            )
        return verify_request(
            raw,
            path=request.url.path,
            window_seconds=state.window_seconds,
            member_key=lambda member_id: state.member_key(member_id, statuses=statuses),
        )

    def member_read(request: Request) -> str:
        """The active member a members-only read (events, secret names) is signed by, else 401."""
        return verify_read(
            request.headers.get("authorization"),
            path=request.url.path,
            window_seconds=state.window_seconds,
            member_key=state.member_key,
        )

    RAW = Depends(raw_body)
    JSON = Depends(json_body)

    # -- service ---------------------------------------------------------------------------------
    @app.get("/health")
    def health() -> Response:
        return JSONResponse({"status": "ok", "serviceId": state.identity.service_id, "ledger": state.head()})

    @app.get("/service")
    def service_info() -> Response:
        return JSONResponse(
            {
                "serviceId": state.identity.service_id,
                "serviceCert": state.identity.cert_pem,
                "replayWindowSeconds": state.window_seconds,
                "checkpointEvery": state.checkpoint_every,
                "tokenIssuer": state.token_issuer,
            }
        )

    @app.get("/jwks")
    def jwks() -> Response:
        return JSONResponse(state.jwks())

    @app.post("/token-keys/rotate")
    def rotate_token_key(request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.rotate_token_key(signed(request, raw)))

    # -- client applications and OAuth2 client credentials (core.governance.client_apps) ---------
    @app.post("/oauth2/token")
    def oauth2_token(request: Request, raw: bytes = RAW) -> Response:
        """RFC 6749 4.4 with RFC 7523 client assertions; errors in RFC 6749 5.2's shape, never cached."""
        try:
            answer, status = state.client_apps.issue(raw, request.headers.get("content-type", "")), 200
        except OAuth2Error as exc:
            answer, status = exc.body(), exc.status
        return JSONResponse(answer, status_code=status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @app.get("/oauth2/apps")
    def client_apps() -> Response:
        return JSONResponse({"value": state.client_apps.list()})

    @app.post("/oauth2/apps/{name}/revoke")
    def revoke_client_app(name: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.client_apps.revoke(signed(request, raw), name))

    @app.get("/oauth2/revocations")
    def revocations() -> Response:
        return JSONResponse(state.client_apps.revocations())

    # -- members ---------------------------------------------------------------------------------
    @app.get("/members")
    def members() -> Response:
        return JSONResponse({"value": state.members()})

    @app.get("/members/{member_id}")
    def member(member_id: str) -> Response:
        found = state.member(member_id)
        if found is None:
            raise NotFoundError(
                f"member {member_id[:16]}… is not in the consortium",
                hint="list members with `cleanroom governance member list`",
            )
        return JSONResponse(found)

    @app.post("/members/activate")
    def activate(request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.activate_member(signed(request, raw, (MemberStatus.ACCEPTED,))))

    # -- contracts and proposals -----------------------------------------------------------------
    @app.get("/contracts")
    def contracts() -> Response:
        return JSONResponse({"value": state.contracts()})

    @app.get("/contracts/{contract_id}")
    def contract(contract_id: str) -> Response:
        return JSONResponse(state.get_contract(contract_id))

    @app.put("/contracts/{contract_id}")
    def put_contract(contract_id: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.put_contract(signed(request, raw), contract_id))

    @app.post("/proposals")
    def propose(request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.create_proposal(signed(request, raw)))

    @app.get("/proposals")
    def proposals(
        proposal_state: str | None = Query(None, alias="state"),
        contract_id: str | None = None,
        action: str | None = None,
    ) -> Response:
        return JSONResponse({"value": state.proposals(state=proposal_state, contract_id=contract_id, action=action)})

    @app.get("/proposals/{proposal_id}")
    def proposal(proposal_id: str) -> Response:
        return JSONResponse(state.proposal(proposal_id))

    @app.post("/proposals/{proposal_id}/ballots")
    def ballot(proposal_id: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.ballot(signed(request, raw), proposal_id))

    @app.post("/proposals/{proposal_id}/withdraw")
    def withdraw(proposal_id: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.withdraw(signed(request, raw), proposal_id))

    @app.get("/contracts/{contract_id}/documents/{kind}")
    def document(contract_id: str, kind: str) -> Response:
        if kind not in DOCUMENT_ACTIONS:
            raise NotFoundError(f"document kind {kind!r} is not known", hint=f"use {', '.join(DOCUMENT_ACTIONS)}")
        return JSONResponse(state.document(contract_id, kind))

    # -- runtime options -------------------------------------------------------------------------
    @app.get("/contracts/{contract_id}/runtime-options/{option}")
    def runtime_option(contract_id: str, option: str) -> Response:
        return JSONResponse(state.runtime_option(contract_id, option))

    @app.post("/contracts/{contract_id}/runtime-options/execution")
    def set_execution(contract_id: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.set_execution(signed(request, raw), contract_id))

    # -- traffic split between serving applications (the ingress polls it; no secrets in it) ------
    @app.get("/contracts/{contract_id}/traffic")
    def traffic(contract_id: str) -> Response:
        return JSONResponse(state.traffic(contract_id))

    @app.post("/contracts/{contract_id}/traffic/rollback")
    def rollback_traffic(contract_id: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.rollback_traffic(signed(request, raw), contract_id))

    # -- CA --------------------------------------------------------------------------------------
    @app.get("/contracts/{contract_id}/ca")
    def ca_info(contract_id: str) -> Response:
        return JSONResponse(state.ca_info(contract_id))

    @app.post("/contracts/{contract_id}/ca/generate-key")
    def ca_generate(contract_id: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.generate_ca_key(signed(request, raw), contract_id))

    @app.post("/contracts/{contract_id}/ca/endorse")
    def ca_endorse(contract_id: str, body: dict[str, Any] = JSON) -> Response:
        return JSONResponse(state.endorse(contract_id, body))

    # -- secrets and tokens ----------------------------------------------------------------------
    @app.put("/contracts/{contract_id}/secrets/{name}")
    def put_secret(contract_id: str, name: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.put_secret(signed(request, raw), contract_id, name))

    @app.get("/contracts/{contract_id}/secrets")
    def secrets(contract_id: str, request: Request) -> Response:
        member_read(request)
        return JSONResponse({"value": state.secrets(contract_id)})

    @app.post("/contracts/{contract_id}/secrets/{name}/get")
    def get_secret(contract_id: str, name: str, body: dict[str, Any] = JSON) -> Response:
        value, writer = state.get_secret(contract_id, name, body)
        return JSONResponse({"name": name, "value": base64.b64encode(value).decode(), "writer": writer})

    @app.post("/contracts/{contract_id}/tokens")
    def token(contract_id: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.issue_token(signed(request, raw), contract_id))

    # -- privacy ledger --------------------------------------------------------------------------
    @app.post("/contracts/{contract_id}/privacy/reservations")
    def reserve_privacy(contract_id: str, body: dict[str, Any] = JSON) -> Response:
        return JSONResponse(state.reserve_privacy(contract_id, body))

    @app.post("/contracts/{contract_id}/privacy/reservations/{run_id}/record")
    def record_privacy(contract_id: str, run_id: str, body: dict[str, Any] = JSON) -> Response:
        return JSONResponse(state.record_privacy(contract_id, run_id, body))

    @app.post("/privacy/budgets/lower")
    def lower_privacy_budget(request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.lower_privacy_budget(signed(request, raw)))

    @app.get("/privacy/datasets")
    def privacy_datasets(request: Request) -> Response:
        member_read(request)
        return JSONResponse({"value": state.privacy_datasets()})

    @app.get("/privacy/history")
    def privacy_history(request: Request, dataset: str | None = Query(None, max_length=300)) -> Response:
        member_read(request)
        return JSONResponse({"value": state.privacy_history(dataset)})

    # -- model registry (core.governance.model_registry) ------------------------------------------
    @app.post("/models")
    def onboard_model(request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.models.onboard(signed(request, raw)))

    @app.get("/models")
    def models() -> Response:
        return JSONResponse({"value": state.models.all_models()})

    @app.get("/models/{name}")
    def model(name: str) -> Response:
        return JSONResponse(state.models.show(name))

    @app.post("/models/{name}/unpublish")
    def unpublish_model(name: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.models.unpublish(signed(request, raw), name))

    @app.post("/models/{name}/delete")
    def delete_model(name: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.models.delete(signed(request, raw), name))

    @app.post("/contracts/{contract_id}/models/{name}/versions/{version}/status")
    def model_status(contract_id: str, name: str, version: str, body: dict[str, Any] = JSON) -> Response:
        return JSONResponse(state.models.record_status(contract_id, name, version, body))

    @app.post("/contracts/{contract_id}/models/{name}/versions/{version}/regression")
    def model_regression(contract_id: str, name: str, version: str, body: dict[str, Any] = JSON) -> Response:
        return JSONResponse(state.models.record_regression(contract_id, name, version, body))

    @app.post("/models/{name}/loadtest")
    def model_loadtest(name: str, request: Request, raw: bytes = RAW) -> Response:
        return JSONResponse(state.models.record_loadtest(signed(request, raw), name))

    # -- events ----------------------------------------------------------------------------------
    @app.post("/contracts/{contract_id}/events")
    def append_event(contract_id: str, body: dict[str, Any] = JSON) -> Response:
        return JSONResponse(state.append_event(contract_id, body))

    async def wait_for_events(contract_id: str, from_seqno: int, wait: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait, 0.0), LONG_POLL_MAX_SECONDS)
        while True:
            waiter = event_waiters.setdefault(contract_id, asyncio.Event())  # before reading: no lost wake-up
            result = await run_in_threadpool(state.events, contract_id, from_seqno)
            remaining = deadline - loop.time()
            if result["events"] or result["nextSeqno"] != from_seqno or remaining <= 0:
                return result
            try:
                await asyncio.wait_for(waiter.wait(), timeout=remaining)
            except TimeoutError:
                return result

    @app.get("/contracts/{contract_id}/events")
    async def events(
        contract_id: str,
        request: Request,
        from_seqno: int = Query(1, ge=0, le=MAX_SEQNO),
        wait: float = Query(0.0, ge=0.0, le=LONG_POLL_MAX_SECONDS, allow_inf_nan=False),
    ) -> Response:
        await run_in_threadpool(member_read, request)
        return JSONResponse(await wait_for_events(contract_id, from_seqno, wait))

    @app.get("/contracts/{contract_id}/events/stream")
    async def event_stream(
        contract_id: str, request: Request, from_seqno: int = Query(1, ge=0, le=MAX_SEQNO)
    ) -> StreamingResponse:
        await run_in_threadpool(member_read, request)
        await run_in_threadpool(state.get_contract, contract_id)

        async def stream() -> AsyncIterator[bytes]:
            cursor = from_seqno
            while True:
                batch = await wait_for_events(contract_id, cursor, LONG_POLL_MAX_SECONDS)
                for event in batch["events"]:
                    yield f"id: {event['seqno']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                if not batch["events"] and batch["nextSeqno"] == cursor:
                    yield b": keep-alive\n\n"
                cursor = batch["nextSeqno"]

        return StreamingResponse(stream(), media_type="text/event-stream")

    # -- ledger ----------------------------------------------------------------------------------
    @app.get("/ledger/head")
    def ledger_head() -> Response:
        return JSONResponse(state.head())

    @app.get("/ledger/export")
    def ledger_export() -> Response:
        return Response("\n".join(state.export()) + "\n", media_type="application/x-ndjson")

    @app.get("/ledger/receipt/{seqno}")
    def receipt(seqno: int = PathParam(ge=0, le=MAX_SEQNO)) -> Response:
        return JSONResponse(state.receipt(seqno))

    return app


def serve(state_dir: Path) -> None:
    """Run the service of ``state_dir`` in the foreground until SIGTERM/SIGINT."""
    config = json.loads((state_dir / CONFIG_FILE).read_text())
    identity = ServiceIdentity.load(state_dir / IDENTITY_DIR)
    verifier = load_attestation_verifier(config.get("attestation"))
    maa = None
    if config.get("maa_endpoints"):  # Azure: the sidecar's MAA tokens, besides the configured verifier
        from core.keys.maa import CompositeAttestationVerifier, MaaAttestationVerifier

        maa = MaaAttestationVerifier(config["maa_endpoints"], ca_file=config.get("maa_ca_file"))
        verifier = CompositeAttestationVerifier(maa, verifier)
    state = GovernanceState(
        state_dir,
        identity,
        window_seconds=config["window_seconds"],
        checkpoint_every=config["checkpoint_every"],
        attestation_verifier=verifier,
    )
    state.client_apps.token_endpoints = token_endpoints(int(config["port"]))
    if maa is not None:

        def accepted_policy(contract_id: str) -> dict[str, Any] | None:
            try:
                policy: dict[str, Any] | None = state.document(contract_id, "clean_room_policy")["data"]
            except NotFoundError:  # a token naming an unknown contract has no accepted policy either
                return None
            return policy

        maa.bind_accepted_policy(accepted_policy)
    # proto IPPROTO_TCP (not 0) so asyncio sets TCP_NODELAY on accepted connections; without it
    # Nagle holds each response body ~40 ms behind its headers.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(config["port"])))
    app = SignedBallotRoute(create_app(state), state)
    header_timeout = float(config.get("header_timeout_seconds", http_guard.HEADER_TIMEOUT_SECONDS))
    max_connections = int(config.get("max_connections", http_guard.MAX_CONNECTIONS))
    protocol = http_guard.guarded_protocol(
        CoalescingHttpProtocol, header_timeout=header_timeout, max_connections=max_connections
    )
    http_guard.limit_tls_handshakes(header_timeout)  # this process serves only governance
    uv_config = uvicorn.Config(
        app,
        http=protocol,
        **http_guard.uvicorn_limits(header_timeout=header_timeout, max_connections=max_connections),
        ssl_keyfile=str(identity.key_path),
        ssl_certfile=str(identity.cert_path),
        log_level="warning",
        access_log=False,
        lifespan="on",
        proxy_headers=False,  # nothing proxies it: no X-Forwarded-* to trust or parse
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(uv_config)
    try:
        server.run(sockets=[sock])
    finally:
        app.close()
        state.checkpoint()
        state.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a cleanroom governance service in the foreground.")
    parser.add_argument("--state-dir", type=Path, required=True)
    serve(parser.parse_args(argv).state_dir.resolve())


if __name__ == "__main__":
    main()
