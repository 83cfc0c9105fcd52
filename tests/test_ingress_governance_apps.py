"""A client application against a real clean room: registered by a vote in the real governance
service, a token got by client credentials, a scoring call through the local runtime's TLS
ingress, revocation reaching the ingress (timed by benchmarks/endpoints.py), and the run's usage recorded in governance
as a ``usage`` event."""

from __future__ import annotations

import importlib.util
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.runtime_world import World

REVOCATION_BOUND_SECONDS = 60.0  # liveness only: the 2 s figure is benchmarks/endpoints.py's
SERVER = r"""
import http.server, os, socket, socketserver

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def address_string(self):
        return "unix"
    def log_message(self, *args):
        pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        out = ('{"caller": "%s", "bytes": %d}' % (self.headers.get("x-cleanroom-member"), len(body))).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

print("serving", flush=True)
server = Server(os.environ["CLEANROOM_UDS"], Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=int(os.environ["CLEANROOM_LISTEN_FD"]))
server.serve_forever()
"""


@pytest.fixture()
def world(tmp_path):
    world = World.create(tmp_path)
    yield world
    world.close()


def _stock_client() -> Any:
    """docs/oauth2_client.py as an application team runs it (it imports nothing of cleanroom)."""
    script = Path(__file__).resolve().parent.parent / "docs" / "oauth2_client.py"
    spec = importlib.util.spec_from_file_location("oauth2_client", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _register(world: World, name: str, contract_id: str) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP384R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    consumer = world.clients["consumer"]
    proposal = consumer.propose_client_app(
        name,
        owner=world.parties["consumer"].identity.member_id,
        contracts=[contract_id],
        routes=["POST /score"],
        rate_limit_per_minute=600,
        public_key=public.decode(),
    )
    world.vote_all(proposal)
    return key


def test_an_app_scores_is_revoked_by_one_member_and_its_usage_is_recorded(world: World, tmp_path) -> None:
    world.setup_assets({"weights.txt": "w"})
    world.add_app(["python", "-c", SERVER], ports=[8000], routes=["POST /score", "POST /infer"])
    world.accept_contract("scoring1", enable_ca=True)
    key = _register(world, "scorer", "scoring1")
    runtime = world.runtime()
    seen: list[str] = []
    runtime.listener = lambda kind, _detail: seen.append(kind)
    done: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: done.update(outcome=runtime.run("scoring1")))
    thread.start()
    consumer = world.clients["consumer"]
    try:
        deadline = time.monotonic() + 120
        while runtime.ingress_url is None or "running" not in seen:
            assert time.monotonic() < deadline and thread.is_alive(), seen
            time.sleep(0.05)
        token = consumer.app_token("scorer", key, "scoring1")["access_token"]
        client = httpx.Client(
            base_url=runtime.ingress_url,
            timeout=30,
            verify=ssl.create_default_context(cadata=consumer.ca("scoring1")["caCert"]),
            headers={"authorization": f"Bearer {token}"},
        )
        answer = client.post("/score", json={"data": [{"a": 1}, {"a": 2}]})
        while answer.status_code == 502 and time.monotonic() < deadline:  # the workload is still binding
            time.sleep(0.1)
            answer = client.post("/score", json={"data": [{"a": 1}, {"a": 2}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["caller"] == "app:scorer"
        refused = client.post("/infer", json={"inputs": ["a"]})  # allowed by the contract, not for this app
        assert refused.status_code == 403 and "may not call POST /infer" in refused.json()["error"]
        document = client.get("/openapi.json").json()
        flow = document["components"]["securitySchemes"]["governance"]["flows"]["clientCredentials"]
        assert flow["tokenUrl"] == f"{consumer.endpoint}/oauth2/token"
        assert sorted(document["paths"]) == ["/infer", "/score"]

        # the stock OAuth2 client of the docs (authlib, private_key_jwt) gets its own token and scores
        stock = _stock_client()
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        answer_of_stock = stock.fetch_token(consumer.endpoint, consumer.service_cert_pem, "scorer", key_pem, "scoring1")
        ingress_ca = tmp_path / "ingress-ca.pem"
        ingress_ca.write_text(consumer.ca("scoring1")["caCert"])
        scored = stock.score(runtime.ingress_url, ingress_ca, answer_of_stock["access_token"], [{"a": 1}])
        assert scored["caller"] == "app:scorer"

        world.clients["provider"].revoke_client_app("scorer")  # any member, alone
        revoked_at = time.monotonic()
        while (answer := client.post("/score", json={"data": [1]})).status_code == 200:
            assert time.monotonic() - revoked_at <= REVOCATION_BOUND_SECONDS, "revocation took too long"
            time.sleep(0.02)
        elapsed = time.monotonic() - revoked_at
        assert answer.status_code == 403 and "'scorer' has been revoked" in answer.json()["error"]
        assert elapsed <= REVOCATION_BOUND_SECONDS, elapsed
        client.close()
    finally:
        runtime.request_stop("test finished")
        thread.join(timeout=60)
    assert done["outcome"].stopped_by == "test finished"
    usage = [event for event in world.events("scoring1") if event["type"] == "usage"]
    callers: dict[str, Any] = {}
    for event in usage:
        for caller, counts in event["data"]["callers"].items():
            callers.setdefault(caller, []).append(counts)
    (scorer,) = callers["app:scorer"]
    assert scorer["rows"] >= 2 and scorer["requests"] >= 1
    assert scorer["refusals"]["403"] >= 2  # the route it may not call, and its requests after revocation
