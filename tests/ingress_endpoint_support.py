"""A secured scoring endpoint over real sockets, for the ingress tests and benchmarks/endpoints.py.

* ``TokenIssuer``: a loopback HTTP server publishing ``GET /jwks`` and ``GET /oauth2/revocations``
  as governance does (the shared interface of issue #16), minting app and member tokens with its
  ES384 key, and revoking apps. The ingress reaches it over HTTP like it reaches governance.
* ``RecordingWorkload``: an HTTP/1.1 server on a unix socket that records every request it sees,
  so a test can assert that a refused request reached nobody.
* ``Endpoint``: a real ``IngressProxy`` in front of the workload, with the revocation feed, rate
  limits and usage meter wired as ``core.runtime.local`` wires them.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from core.governance.ca import endorse_csr, generate_ca
from core.runtime.ingress import IngressProxy, RouteAllowList, TokenPolicy
from core.runtime.ingress_cert import endorsed_ingress_identity
from core.runtime.rate_limit import CallerRateLimits
from core.runtime.revocations import RevocationFeed
from core.runtime.usage import UsageMeter

CONTRACT = "scoring1"
ISSUER = "cleanroom-governance:test"
MEMBER = "a" * 64  # a member id: the SHA-256 of a certificate, in hex
ROUTES = ("POST /infer", "POST /score", "GET /v2/health/ready", "GET /v2/models/*", "POST /v2/models/*")


class TokenIssuer:
    """Governance's token side as the ingress sees it, on a loopback HTTP server."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwks_document = {"keys": [{**jwk, "kid": "gov-1", "alg": "ES384", "use": "sig"}]}
        self.revoked: list[dict[str, Any]] = []
        self.version = 0
        self.revocation_fetches = 0
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/jwks":
                    document: dict[str, Any] = issuer.jwks_document
                elif self.path == "/oauth2/revocations":
                    issuer.revocation_fetches += 1
                    document = {"version": issuer.version, "revoked": list(issuer.revoked)}
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.http = httpx.Client(base_url=self.url, timeout=5)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwks(self) -> dict[str, Any]:
        return dict(self.http.get("/jwks").raise_for_status().json())

    def revocations(self) -> dict[str, Any]:
        return dict(self.http.get("/oauth2/revocations").raise_for_status().json())

    def revoke(self, app: str) -> float:
        """Revoke ``app`` now; returns the monotonic time it happened."""
        self.revoked.append({"app": app, "revokedAt": int(time.time())})
        self.version += 1
        return time.monotonic()

    def app_token(
        self,
        app: str,
        *,
        routes: tuple[str, ...] = ("POST /score",),
        rate_limit: int = 600,
        contract: str = CONTRACT,
        exp_in: int = 300,
        key: Any = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": f"app:{app}",
            "aud": f"cleanroom:{contract}",
            "contract_id": contract,
            "app": app,
            "owner": MEMBER,
            "routes": list(routes),
            "rate_limit_per_minute": rate_limit,
            "iat": now,
            "nbf": now - 5,
            "exp": now + exp_in,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, key or self.key, algorithm="ES384", headers={"kid": "gov-1"})

    def member_token(self, member: str = MEMBER, *, contract: str = CONTRACT, exp_in: int = 300) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": member,
            "aud": f"cleanroom:{contract}",
            "contract_id": contract,
            "iat": now,
            "nbf": now - 5,
            "exp": now + exp_in,
        }
        return jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": "gov-1"})

    def close(self) -> None:
        self.http.close()
        self.server.shutdown()
        self.server.server_close()


class RecordingWorkload:
    """A JSON workload on a unix socket that records every request reaching it."""

    def __init__(self, sock: Path) -> None:
        self.seen: list[dict[str, Any]] = []
        workload = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def address_string(self) -> str:
                return "unix"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                record = {
                    "method": self.command,
                    "path": self.path,
                    "member": self.headers.get("x-cleanroom-member"),
                    "authorization": self.headers.get("authorization"),
                    "body": body.decode("latin-1"),
                }
                workload.seen.append(record)
                payload = json.dumps(record).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(str(sock), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Endpoint:
    """Workload + ingress + token issuer, wired as the local runtime wires them."""

    def __init__(
        self,
        work: Path,
        *,
        routes: tuple[str, ...] = ROUTES,
        max_body: int | None = None,
        member_rate_limit: int | None = None,
        usage_period: float = 60.0,
        token_url: str | None = "https://127.0.0.1:1/oauth2/token",
    ) -> None:
        folder = work / "ingress"
        folder.mkdir(mode=0o700)  # the ingress refuses a socket folder others can enter
        self.issuer = TokenIssuer()
        self.workload = RecordingWorkload(folder / "app.sock")
        ca_key, ca_cert = generate_ca(CONTRACT)
        identity = endorsed_ingress_identity(
            work, CONTRACT, lambda csr: endorse_csr(ca_key, ca_cert, csr.decode()) + ca_cert
        )
        self.context = ssl.create_default_context(cadata=ca_cert.decode())
        self.minutes: list[dict[str, Any]] = []
        self.refusals: list[tuple[str, str, str]] = []
        self.revocations = RevocationFeed(self.issuer.revocations)
        self.usage = UsageMeter(self.minutes.append, period_seconds=usage_period)
        self.rate_limits = CallerRateLimits()
        self.proxy = IngressProxy(
            upstream_socket=folder / "app.sock",
            cert_chain=identity.cert_chain,
            key_file=identity.key_file,
            routes=RouteAllowList.from_policy(list(routes)),
            tokens=TokenPolicy(
                contract_id=CONTRACT, jwks=self.issuer.jwks, issuer=ISSUER, audience=f"cleanroom:{CONTRACT}"
            ),
            on_refusal=lambda *refusal: self.refusals.append(refusal),
            revocations=self.revocations,
            rate_limits=self.rate_limits,
            member_rate_limit_per_minute=member_rate_limit,
            usage=self.usage,
            token_url=token_url,
        )
        if max_body is not None:
            self.proxy.max_body = max_body
        self.proxy.start()
        self.client = httpx.Client(base_url=self.proxy.url, verify=self.context, timeout=10)

    @property
    def port(self) -> int:
        return self.proxy.port

    def close(self) -> None:
        self.client.close()
        self.proxy.stop()
        self.workload.close()
        self.issuer.close()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
