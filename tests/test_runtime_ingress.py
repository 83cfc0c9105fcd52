"""The TLS ingress over real sockets: refusals, and a forwarded request reaching the workload."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import socketserver
import ssl
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.errors import IntegrityError
from core.runtime.ingress import IngressProxy, RouteAllowList, TokenPolicy, normalised_path
from core.runtime.ingress_cert import endorsed_ingress_identity


class _Workload(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        seen = {
            "path": self.path,
            "body": body.decode(),
            "member": self.headers.get("x-cleanroom-member"),
            "authorization": self.headers.get("authorization"),
        }
        payload = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _make_ca(tmp_path: Path):
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "contract CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA384())
    )
    (tmp_path / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def endorse(csr_pem: bytes) -> bytes:
        csr = x509.load_pem_x509_csr(csr_pem)
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        leaf = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(name)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(san, critical=False)
            .sign(key, hashes.SHA384())
        )
        return leaf.public_bytes(serialization.Encoding.PEM) + cert.public_bytes(serialization.Encoding.PEM)

    return endorse


@pytest.fixture(scope="module")
def ingress(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ingress")
    sock = tmp_path / "app.sock"
    workload = _UnixServer(str(sock), _Workload)
    threading.Thread(target=workload.serve_forever, daemon=True).start()
    identity = endorsed_ingress_identity(tmp_path, "collab1", _make_ca(tmp_path))
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(issuer_key.public_key()))
    jwks = {"keys": [{**jwk, "kid": "gov-1", "alg": "ES256", "use": "sig"}]}
    refusals: list[tuple[str, str, str]] = []
    proxy = IngressProxy(
        upstream_socket=sock,
        cert_chain=identity.cert_chain,
        key_file=identity.key_file,
        routes=RouteAllowList.from_policy(["POST /infer", "GET /health/*"]),
        tokens=TokenPolicy(contract_id="collab1", jwks=lambda: jwks),
        on_refusal=lambda *r: refusals.append(r),
    ).start()

    def token(contract="collab1", exp_in=300, key=issuer_key, kid="gov-1"):
        now = int(time.time())
        return jwt.encode(
            {"sub": "consumer-id", "contract_id": contract, "iat": now, "exp": now + exp_in},
            key,
            algorithm="ES256",
            headers={"kid": kid},
        )

    client = httpx.Client(base_url=proxy.url, verify=ssl.create_default_context(cafile=str(tmp_path / "ca.pem")))
    yield proxy, client, token, refusals, tmp_path / "ca.pem"
    client.close()
    proxy.stop()
    workload.shutdown()


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_allowed_request_is_forwarded_without_the_token(ingress) -> None:
    _, client, token, _, _ = ingress
    for _ in range(3):  # keep-alive: several requests on one TLS connection
        answer = client.post("/infer?x=1", content=b'{"text": "hi"}', headers=_auth(token()))
        assert answer.status_code == 200
        seen = answer.json()
        assert seen == {"path": "/infer?x=1", "body": '{"text": "hi"}', "member": "consumer-id", "authorization": None}
    assert client.get("/health/live", headers=_auth(token())).status_code == 200


def test_no_token_is_refused(ingress) -> None:
    _, client, _, refusals, _ = ingress
    answer = client.post("/infer", content=b"{}")
    assert answer.status_code == 401 and "bearer token" in answer.json()["error"]
    assert refusals[-1][1] == "401"


def test_token_for_another_contract_is_refused(ingress) -> None:
    _, client, token, _, _ = ingress
    answer = client.post("/infer", content=b"{}", headers=_auth(token(contract="collab2")))
    assert answer.status_code == 403 and "collab2" in answer.json()["error"]


def test_expired_token_is_refused(ingress) -> None:
    _, client, token, _, _ = ingress
    answer = client.post("/infer", content=b"{}", headers=_auth(token(exp_in=-60)))
    assert answer.status_code == 401 and "expired" in answer.json()["error"]


def test_token_signed_by_another_key_is_refused(ingress) -> None:
    _, client, token, _, _ = ingress
    forged = token(key=ec.generate_private_key(ec.SECP256R1()))
    assert client.post("/infer", content=b"{}", headers=_auth(forged)).status_code == 401
    assert client.post("/infer", content=b"{}", headers=_auth(token(kid="unknown"))).status_code == 401


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/infer"),
        ("POST", "/admin"),
        ("POST", "/infer/../admin"),
        ("POST", "/%2e%2e/admin"),
        ("POST", "/health/live"),
    ],
)
def test_route_outside_the_policy_is_refused(ingress, method, path) -> None:
    _, client, token, _, _ = ingress
    answer = client.request(method, path, content=b"{}", headers=_auth(token()))
    assert answer.status_code == 404 and "network policy" in answer.json()["error"]


def test_plain_http_is_refused(ingress) -> None:
    proxy, _, token, _, _ = ingress
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://127.0.0.1:{proxy.port}/infer", content=b"{}", headers=_auth(token()), timeout=5)


def test_server_certificate_not_from_the_contract_ca_is_rejected_by_clients(ingress, tmp_path) -> None:
    proxy, _, token, _, _ = ingress
    other_ca = tmp_path / "other"
    other_ca.mkdir()
    _make_ca(other_ca)
    with pytest.raises(httpx.ConnectError):
        httpx.post(
            f"{proxy.url}/infer",
            headers=_auth(token()),
            verify=ssl.create_default_context(cafile=str(other_ca / "ca.pem")),
        )


def test_ca_endorsing_another_key_is_detected(tmp_path) -> None:
    endorse = _make_ca(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1())
    from core.runtime.ingress_cert import ingress_csr

    with pytest.raises(IntegrityError, match="different key"):
        endorsed_ingress_identity(tmp_path, "c", lambda _csr: endorse(ingress_csr(other, "c")))


def test_path_normalisation() -> None:
    assert normalised_path("/a/./b/../c?q=1") == "/a/c"
    assert normalised_path("//infer") == "/infer"
    assert normalised_path("http://evil/infer") is None
    assert normalised_path("/a%00b") is None
    assert RouteAllowList.from_policy(["POST /infer"]).allows("POST", "/infer")
    assert not RouteAllowList.from_policy(["POST /infer"]).allows("POST", "/inferX")


def _raw(proxy, request: bytes, ca: str) -> bytes:
    context = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("lengths", [("5", "30"), ("1_0",), ("+5",)])
def test_ambiguous_body_framing_is_refused(ingress, lengths) -> None:
    proxy, _, token, _, ca = ingress
    smuggled = b"GET /admin HTTP/1.1\r\nhost: x\r\n\r\n"
    head = (
        f"POST /infer HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token()}\r\n"
        + "".join(f"content-length: {value}\r\n" for value in lengths)
        + "connection: close\r\n\r\n"
    )
    answer = _raw(proxy, head.encode() + b"hello" + smuggled, str(ca))
    assert answer.startswith(b"HTTP/1.1 400") and b"/admin" not in answer
