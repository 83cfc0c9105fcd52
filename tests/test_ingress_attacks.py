"""Attacks on the TLS ingress over real sockets, and on the inference server behind it.

The workload here parses HTTP like Python's ``http.server`` (a lenient parser that splits
header lines on a bare LF) and records every request it receives, so each test can assert
both the ingress's refusal and that nothing reached the workload.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.runtime.ingress import MAX_HEAD, IngressProxy, RouteAllowList, TokenPolicy
from core.runtime.ingress_cert import endorsed_ingress_identity
from tests.raw_http import connect, exchange, read_response, seconds_until_closed
from tests.test_runtime_ingress import _make_ca

ROOT = Path(__file__).resolve().parent.parent
HEADER_TIMEOUT = 1.5
CLOSE_BOUND = HEADER_TIMEOUT + 5.0
MAX_CONNECTIONS = 12


class _RecordingWorkload(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, Any]]] = []  # every request that reached the workload

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        record = {
            "path": self.path,
            "members": self.headers.get_all("x-cleanroom-member") or [],
            "headers": dict(self.headers.items()),
            "body": body.decode("latin-1"),
        }
        self.seen.append(record)
        payload = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Governance:
    """Governance's JWKS endpoint as the ingress sees it: counts fetches and can be held up."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        self.document = {"keys": [{**jwk, "kid": "gov-1", "alg": "ES256", "use": "sig"}]}
        self.fetches = 0
        self.open = threading.Event()
        self.open.set()

    def jwks(self) -> dict[str, Any]:
        self.fetches += 1
        assert self.open.wait(timeout=30)
        return self.document

    def token(self, *, kid: str = "gov-1", sub: str = "consumer-id", key: Any = None, algorithm: str = "ES256") -> str:
        now = int(time.time())
        claims = {"sub": sub, "contract_id": "collab1", "iat": now, "exp": now + 300}
        return jwt.encode(claims, self.key if key is None else key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("ingress-attacks")
    sock = tmp_path / "app.sock"
    workload = _UnixServer(str(sock), _RecordingWorkload)
    threading.Thread(target=workload.serve_forever, daemon=True).start()
    identity = endorsed_ingress_identity(tmp_path, "collab1", _make_ca(tmp_path))
    governance = _Governance()
    tokens = TokenPolicy(contract_id="collab1", jwks=governance.jwks, refetch_seconds=0.5)
    proxy = IngressProxy(
        upstream_socket=sock,
        cert_chain=identity.cert_chain,
        key_file=identity.key_file,
        routes=RouteAllowList.from_policy(["POST /infer", "GET /health/*"]),
        tokens=tokens,
    )
    proxy.header_timeout = proxy.idle_timeout = proxy.body_timeout = HEADER_TIMEOUT
    proxy.max_connections = MAX_CONNECTIONS
    proxy.start()
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    yield proxy, governance, context
    proxy.stop()
    workload.shutdown()


def _head(method: str, target: str, token: str, *extra: str, body: bytes = b"") -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "host: 127.0.0.1",
        f"authorization: Bearer {token}",
        f"content-length: {len(body)}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _refused(world, request: bytes, status: int, words: str) -> None:
    proxy, _, context = world
    before = len(_RecordingWorkload.seen)
    answer = exchange(proxy.port, context, request)
    assert answer.status == status, answer
    assert words in answer.one_line_error()
    assert len(_RecordingWorkload.seen) == before, "the request reached the workload"


def test_a_valid_request_still_reaches_the_workload_once(world) -> None:
    proxy, governance, context = world
    answer = exchange(proxy.port, context, _head("POST", "/infer", governance.token(), body=b"{}"))
    assert answer.status == 200 and answer.json()["members"] == ["consumer-id"]


# -- request smuggling and header injection ------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "/health/x%0d%0aX-Cleanroom-Member:%20admin",
        "/health/x%0aGET%20/admin%20HTTP/1.1",
        "/health/a%0db",
        "/health/tab%09x",
        "/health/nul%00",
    ],
)
def test_encoded_control_characters_in_the_path_are_refused(world, target: str) -> None:
    _, governance, _ = world
    _refused(world, _head("GET", target, governance.token()), 400, "control character")


def test_a_double_encoded_path_is_forwarded_encoded_once_more() -> None:
    # '%25' decodes to '%': forwarded as '%25' again, so a workload that decodes sees '%2e', not '.'
    from urllib.parse import quote

    from core.runtime.ingress import _PATH_SAFE, normalised_path

    assert quote(normalised_path("/health/%252e%252e/admin"), safe=_PATH_SAFE) == "/health/%252e%252e/admin"


def test_a_bare_lf_cannot_spoof_the_member_header(world) -> None:
    _, governance, _ = world
    spoof = _head("POST", "/infer", governance.token(), "x-note: hi\nX-Cleanroom-Member: admin", body=b"{}")
    _refused(world, spoof, 400, "bare CR or LF")
    bare_cr = _head("POST", "/infer", governance.token(), "x-note: hi\rX-Cleanroom-Member: admin", body=b"{}")
    _refused(world, bare_cr, 400, "bare CR or LF")


@pytest.mark.parametrize("line", ["x-bad: a\x00b", "x-bad: a\x1bb", "bad name: x", "x-bad\x7f: y"])
def test_control_characters_and_bad_names_in_headers_are_refused(world, line: str) -> None:
    _, governance, _ = world
    _refused(world, _head("POST", "/infer", governance.token(), line, body=b"{}"), 400, "header")


def test_two_authorization_headers_are_refused(world) -> None:
    _, governance, _ = world
    request = _head(
        "POST", "/infer", governance.token(), f"authorization: Bearer {governance.token(sub='other')}", body=b"{}"
    )
    _refused(world, request, 400, "one Authorization header")


def test_an_oversized_head_gets_431(world) -> None:
    _, governance, _ = world
    _refused(
        world,
        _head("POST", "/infer", governance.token(), "x-pad: " + "a" * (MAX_HEAD + 1024)),
        431,
        "request head is over",
    )


# -- tokens ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["RS256", "HS256", "none"])
def test_tokens_in_another_algorithm_are_401(world, algorithm: str) -> None:
    key = {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "HS256": "a shared secret anyone could guess",
        "none": None,
    }[algorithm]
    now = int(time.time())
    token = jwt.encode(
        {"sub": "x", "contract_id": "collab1", "iat": now, "exp": now + 300},
        key,
        algorithm=algorithm,
        headers={"kid": "gov-1"},
    )
    _refused(world, _head("POST", "/infer", token, body=b"{}"), 401, "algorithm")


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"])
def test_garbage_tokens_are_401(world, token: str) -> None:
    _refused(world, _head("POST", "/infer", token, body=b"{}"), 401, "token")


def test_unknown_kids_cost_one_jwks_fetch_and_never_block_other_clients(world) -> None:
    proxy, governance, context = world
    valid = governance.token()
    assert exchange(proxy.port, context, _head("POST", "/infer", valid, body=b"{}")).status == 200  # now cached
    time.sleep(0.6)  # past the refetch interval: the next unknown kid may fetch once
    governance.open.clear()  # governance hangs
    fetches = governance.fetches
    stuck: list[int] = []
    hung = threading.Thread(
        target=lambda: stuck.append(
            exchange(
                proxy.port, context, _head("POST", "/infer", governance.token(kid="rotated"), body=b"{}"), timeout=30
            ).status
        )
    )
    hung.start()
    try:
        deadline = time.monotonic() + 10
        while governance.fetches == fetches and time.monotonic() < deadline:
            time.sleep(0.02)
        assert governance.fetches == fetches + 1  # the fetch is in progress and hanging
        # meanwhile the event loop serves everyone else: a known token, and unknown kids (no new fetch)
        assert exchange(proxy.port, context, _head("POST", "/infer", valid, body=b"{}"), timeout=5).status == 200
    finally:
        governance.open.set()
    hung.join(timeout=30)
    assert stuck == [401]
    # No refetch falls due during the flood, however slowly a loaded machine sends it, so every
    # fetch beyond the hung one would be a made-up kid's.
    interval, proxy.tokens.refetch_seconds = proxy.tokens.refetch_seconds, 3600.0
    try:
        for index in range(20):
            answer = exchange(
                proxy.port, context, _head("POST", "/infer", governance.token(kid=f"made-up-{index}"), body=b"{}")
            )
            assert answer.status == 401 and "does not publish" in answer.one_line_error()
    finally:
        proxy.tokens.refetch_seconds = interval
    assert governance.fetches == fetches + 1, "made-up kids must not each refetch the JWKS"


# -- slow and idle clients, the connection cap ---------------------------------------------------------------
def test_slow_header_and_idle_clients_are_disconnected(world) -> None:
    proxy, _, context = world
    slow = [connect(proxy.port, context) for _ in range(5)]
    idle = [connect(proxy.port, context) for _ in range(3)]
    for conn in slow:
        conn.sendall(b"POST /infer HTTP/1.1\r\nhost: x\r\n")
    try:
        waited = [seconds_until_closed(conn, limit=CLOSE_BOUND + 5) for conn in slow + idle]
        assert max(waited) < CLOSE_BOUND, waited
    finally:
        for conn in slow + idle:
            conn.close()


def test_a_trickled_head_gets_408(world) -> None:
    proxy, _, context = world
    with connect(proxy.port, context) as conn:
        conn.sendall(b"POST /infer HTTP/1.1\r\n")
        for _ in range(20):
            time.sleep(0.25)
            try:
                conn.sendall(b"x-slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
        answer = read_response(conn)
    assert answer.status == 408 and "did not arrive" in answer.one_line_error()


def test_a_body_that_never_arrives_gets_408_and_reaches_no_one(world) -> None:
    proxy, governance, context = world
    before = len(_RecordingWorkload.seen)
    with connect(proxy.port, context) as conn:
        conn.sendall(
            _head("POST", "/infer", governance.token(), "content-length: 100")[:-4].replace(
                b"content-length: 0\r\n", b""
            )
            + b"\r\n\r\n"
            + b"0123456789"
        )
        answer = read_response(conn)
    assert answer.status == 408 and "body did not arrive" in answer.one_line_error()
    assert len(_RecordingWorkload.seen) == before


def test_connections_above_the_cap_get_503(world) -> None:
    proxy, governance, context = world
    held = [connect(proxy.port, context) for _ in range(MAX_CONNECTIONS)]
    try:
        for conn in held:  # make sure each is being served (the handshake alone does not count)
            conn.sendall(_head("POST", "/infer", governance.token(), body=b"{}"))
            assert read_response(conn).status == 200
        refused = exchange(proxy.port, context, _head("POST", "/infer", governance.token(), body=b"{}"))
        assert refused.status == 503 and "too many open connections" in refused.one_line_error()
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = exchange(proxy.port, context, _head("POST", "/infer", governance.token(), body=b"{}"))
        if answer.status == 200:
            break
        time.sleep(0.1)
    assert answer.status == 200


# -- the inference server behind the ingress -------------------------------------------------------------------
@pytest.fixture(scope="module")
def inference(tmp_path_factory: pytest.TempPathFactory):
    from core.ml.model_preparation import prepare
    from tests.ml_tiny_model import build_tiny_base

    root = tmp_path_factory.mktemp("inference-attacks")
    build_tiny_base(root / "base")
    model = prepare(root / "base", root / "model", max_length=32).output
    sock = root / "infer.sock"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "containers.inference_server",
            "--model-dir",
            str(model),
            "--uds",
            str(sock),
            "--threads",
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    direct = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://workload")
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read() if process.stderr else ""
        try:
            if direct.get("/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    identity = endorsed_ingress_identity(root, "collab1", _make_ca(root))
    governance = _Governance()
    proxy = IngressProxy(
        upstream_socket=sock,
        cert_chain=identity.cert_chain,
        key_file=identity.key_file,
        routes=RouteAllowList.from_policy(["POST /infer"]),
        tokens=TokenPolicy(contract_id="collab1", jwks=governance.jwks),
    ).start()
    client = httpx.Client(
        base_url=proxy.url,
        verify=ssl.create_default_context(cafile=str(root / "ca.pem")),
        headers={"authorization": f"Bearer {governance.token()}"},
    )
    yield client, direct
    client.close()
    proxy.stop()
    direct.close()
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"data": "good film"}', "text/plain", 415, "not application/json"),
        (b'{"data": "good film"}', None, 415, "not application/json"),
        (b'{"data": "good film"}', "application/x-www-form-urlencoded", 415, "not application/json"),
        (b"[" * 10_000 + b"]" * 10_000, "application/json", 400, "nests deeper than"),
        (b'{"a":' * 40 + b'"x"' + b"}" * 40, "application/json", 400, "nests deeper than"),
        (b'{"data": "\\ud800 lone"}', "application/json", 400, "lone surrogate"),
        (b'{"inputs": ["fine", "\\udfff"]}', "application/json", 400, '"inputs"[1] has a lone surrogate'),
        (b'{"data": "\xff"}', "application/json", 400, "not UTF-8"),
    ],
    ids=["text-plain", "no-type", "form", "deep-list", "deep-object", "surrogate", "surrogate-batch", "latin1"],
)
def test_the_inference_server_answers_4xx_through_the_ingress(
    inference, body: bytes, content_type: str | None, status: int, words: str
) -> None:
    client, direct = inference
    answer = client.post("/infer", content=body, headers={"content-type": content_type or ""})
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert words in message and "\n" not in message
    assert client.post("/infer", json={"data": "good film"}).status_code == 200
    assert direct.get("/healthz").json() == {"status": "ok"}
