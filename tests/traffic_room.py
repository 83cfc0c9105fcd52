"""A blue/green room for the traffic-split tests and benchmark: the real TLS ingress in front of
two upstream HTTP servers on unix sockets, following a real governance service's voted split,
and a client that sends at a fixed rate while the split changes."""

from __future__ import annotations

import http.server
import json
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx

from core.runtime.ingress import IngressProxy, RouteAllowList, TokenPolicy
from core.runtime.ingress_cert import endorsed_ingress_identity
from core.runtime.traffic_split import TrafficPoller, TrafficRouter
from tests.governance_support import Consortium
from tests.test_runtime_ingress import _make_ca

VERSIONS = ("base", "tuned")


class Version(http.server.BaseHTTPRequestHandler):
    """One serving application: answers with its name after a short think (so requests are in
    flight while the split changes), records what it saw, and claims a version of its own in
    the answer's header (the ingress must replace it)."""

    protocol_version = "HTTP/1.1"
    name: ClassVar[str] = ""
    seen: ClassVar[list[dict[str, Any]]] = []
    think_seconds: ClassVar[float] = 0.01

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.seen.append({"app": self.name, "pin": self.headers.get("x-cleanroom-version")})
        time.sleep(self.think_seconds)
        payload = json.dumps({"app": self.name}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-cleanroom-version", "spoofed-by-the-workload")
        self.end_headers()
        self.wfile.write(payload)


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serving_contract(consortium: Consortium, serving: tuple[str, ...], *, batch: bool = True) -> dict[str, Any]:
    """Contract data with ``serving`` applications (with ports) and a non-serving ``batch`` one."""
    parties = [{"persona": m.name, "member_id": m.member_id, "member_cert": m.cert_pem} for m in consortium.members]
    hoster = consortium.members[0].member_id

    def application(name: str, ports: list[int]) -> dict[str, Any]:
        command = ["python", "-m", "containers.inference_server"]
        return {
            "name": name,
            "owner": hoster,
            "entrypoint": "containers/inference_server",
            "command": command,
            "ports": ports,
        }

    applications = [application(name, [8000]) for name in serving] + ([application("batch", [])] if batch else [])
    return {"parties": parties, "applications": applications, "network_policy": {"inbound_allow": ["POST /score"]}}


def set_split(consortium: Consortium, contract_id: str, split: dict[str, int]) -> dict[str, Any]:
    """Propose a split and have every member accept it; the feed after it applied."""
    proposal = consortium.clients[0].propose_traffic_split(contract_id, split)
    assert consortium.pass_proposal(proposal)["proposalState"] == "Accepted"
    return consortium.clients[0].traffic(contract_id)


class TrafficRoom:
    """The ingress of ``contract_id`` in front of the ``base`` and ``tuned`` servers."""

    def __init__(self, consortium: Consortium, directory: Path, contract_id: str) -> None:
        sockets = directory / "sockets"
        sockets.mkdir(mode=0o700)
        self.servers = []
        for name in VERSIONS:
            handler = type(f"_{name}", (Version,), {"name": name})
            server = UnixServer(str(sockets / f"{name}.sock"), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        self.router = TrafficRouter({name: sockets / f"{name}.sock" for name in VERSIONS})
        self.governance = consortium.client()
        self.poller = TrafficPoller(self.router, lambda: self.governance.traffic(contract_id)).start()
        identity = endorsed_ingress_identity(directory, contract_id, _make_ca(directory))
        self.proxy = IngressProxy(
            upstream_socket=sockets / "base.sock",
            cert_chain=identity.cert_chain,
            key_file=identity.key_file,
            routes=RouteAllowList.from_policy(["POST /score"]),
            tokens=TokenPolicy(contract_id=contract_id, jwks=self.governance.jwks, audience=f"cleanroom:{contract_id}"),
            traffic=self.router,
        ).start()
        self.token = consortium.clients[-1].issue_token(contract_id)["token"]
        self.context = ssl.create_default_context(cafile=str(directory / "ca.pem"))

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.proxy.url, verify=self.context, headers={"authorization": f"Bearer {self.token}"}
        )

    def wait_for_split(self, version: int, *, within: float = 5.0) -> float:
        """Seconds until the ingress applies split ``version`` (it polls every second)."""
        start = time.monotonic()
        while self.router.split.version < version:
            if time.monotonic() - start > within:
                raise AssertionError(f"the ingress did not pick up split version {version} within {within} s")
            time.sleep(0.01)
        return time.monotonic() - start

    def close(self) -> None:
        self.proxy.stop()
        self.poller.stop()
        self.governance.close()
        for server in self.servers:
            server.shutdown()
            server.server_close()


@dataclass
class SteadyLoad:
    """Clients sending ``POST /score`` at ``rps`` in all, half on one keep-alive connection and
    half on a new connection per request, recording (send time, status, answering version)."""

    room: TrafficRoom
    rps: float = 40.0
    results: list[tuple[float, int, str | None]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _senders: list[threading.Thread] = field(default_factory=list)

    def _send(self, keep_alive: bool) -> None:
        interval = 2 / self.rps
        with self.room.client() as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    headers = {} if keep_alive else {"connection": "close"}
                    started = time.monotonic()
                    answer = client.post("/score", json={"data": [1]}, headers=headers)
                    self.results.append((started, answer.status_code, answer.headers.get("x-cleanroom-version")))
                    if answer.status_code != 200:
                        self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    def wait_for_more(self, count: int, *, within: float = 60.0) -> None:
        """Until ``count`` more requests were answered (or failed): a phase of the load is seen."""
        target, deadline = len(self.results) + len(self.failures) + count, time.monotonic() + within
        while len(self.results) + len(self.failures) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} requests were answered within {within} s")
            time.sleep(0.01)

    def __enter__(self) -> SteadyLoad:
        self._senders = [threading.Thread(target=self._send, args=(keep_alive,)) for keep_alive in (True, False)]
        for sender in self._senders:
            sender.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for sender in self._senders:
            sender.join(timeout=30)
