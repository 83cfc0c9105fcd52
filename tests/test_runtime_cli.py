"""The runtime through the `cleanroom` verbs: generate, wrap-deks, deployment start|status|logs|stop,
the TLS ingress with governance tokens, no egress from inside, and SIGKILL + `cleanroom up` sweep."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import ssl
import time

import httpx
import pytest

from core.datasource import download_asset
from core.errors import NotFoundError
from core.governance import launcher as governance_launcher
from tests.cli_runner import cleanroom
from tests.runtime_world import World

SERVER = r"""
import http.server, os, pathlib, socket, socketserver, sys
port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    verdict = "CONNECTED"
except OSError as exc:
    verdict = "BLOCKED " + type(exc).__name__
pathlib.Path("/mnt/remote/results/egress.txt").write_text(verdict)
weights = pathlib.Path("/mnt/remote/model/weights.txt").read_text()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def address_string(self):
        return "unix"
    def log_message(self, *args):
        pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        out = ("%s|%s|%d" % (self.headers.get("x-cleanroom-member"), weights, len(body))).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

print("serving", flush=True)
server = Server(os.environ["CLEANROOM_UDS"], Handler, bind_and_activate=False)  # the runtime bound it:
server.socket.close()
server.socket = socket.socket(fileno=int(os.environ["CLEANROOM_LISTEN_FD"]))  # serve on the fd it passed
server.serve_forever()
"""


@pytest.fixture()
def world(tmp_path, monkeypatch):
    world = World.create(tmp_path)
    monkeypatch.setenv("CLEANROOM_HOME", str(world.home))
    yield world
    for contract_id in ("collab1",):
        cleanroom("deployment", "stop", "--contract-id", contract_id)
    world.close()


def _accept_with_cli(world: World, tmp_path, contract_id: str) -> None:
    """Contract voted as in step 2; deployment spec + policy generated and wrapped with our verbs."""
    from core.config.merge import merge_fragments
    from core.config.party import party_fragment

    merged = merge_fragments(party_fragment(ws) for ws in world.parties.values()).document()
    hoster = world.clients["hoster"]
    hoster.create_contract(contract_id, merged)
    world.vote_all(hoster.propose_contract(contract_id, hoster.contract(contract_id)["version"]))
    out = tmp_path / f"out-{contract_id}"
    generated = cleanroom(
        "-w",
        world.parties["hoster"].root,
        "governance",
        "deployment",
        "generate",
        "--contract-id",
        contract_id,
        "--output-dir",
        out,
        "-o",
        "json",
    )
    assert generated.code == 0, generated.stderr
    summary = json.loads(generated.stdout)
    spec = json.loads((out / "deployment-spec.json").read_text())
    policy = json.loads((out / "clean-room-policy.json").read_text())
    assert summary["policyHash"] == policy["policy_hash"]
    world.vote_all(hoster.propose_deployment_spec(contract_id, spec))
    world.vote_all(hoster.propose_clean_room_policy(contract_id, policy))
    world.vote_all(hoster.propose_enable_ca(contract_id))
    hoster.generate_ca_key(contract_id)
    for persona in ("provider", "consumer"):
        wrapped = cleanroom(
            "-w", world.parties[persona].root, "config", "wrap-deks", "--contract-id", contract_id, "-o", "json"
        )
        assert wrapped.code == 0, wrapped.stderr
        assert json.loads(wrapped.stdout)["assets"] == (["model"] if persona == "provider" else ["results"])


def test_deployment_verbs_ingress_and_no_egress(world, tmp_path) -> None:
    world.setup_assets({"weights.txt": "w-provider"})
    governance_port = governance_launcher.info(world.governance_state).endpoint.rsplit(":", 1)[1]
    world.add_app(["python", "-c", SERVER, governance_port], ports=[8000], routes=["POST /infer"])
    _accept_with_cli(world, tmp_path, "collab1")
    _accept_with_cli(world, tmp_path, "other")

    started = cleanroom(
        "-w", world.parties["hoster"].root, "deployment", "start", "--contract-id", "collab1", "-o", "json"
    )
    assert started.code == 0, started.stderr
    status = json.loads(started.stdout)
    assert status["state"] == "running" and status["sandbox"] == "bubblewrap"
    ingress = status["ingress"]

    consumer = world.clients["consumer"]
    ca_pem = consumer.ca("collab1")["caCert"]
    client = httpx.Client(base_url=ingress, verify=ssl.create_default_context(cadata=ca_pem), timeout=10)
    issued = cleanroom("-w", world.parties["consumer"].root, "governance", "contract", "token", "--id", "collab1")
    assert issued.code == 0, issued.stderr
    token = issued.stdout.strip()  # what the consumer passes to `cleanroom infer --token`
    bearer = {"authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    answer = client.post("/infer", content=b"12345", headers=bearer)
    while answer.status_code == 502 and time.monotonic() < deadline:  # the workload is still binding
        time.sleep(0.1)
        answer = client.post("/infer", content=b"12345", headers=bearer)
    assert answer.status_code == 200
    assert answer.text == f"{world.parties['consumer'].identity.member_id}|w-provider|5"

    assert client.post("/infer", content=b"{}").status_code == 401
    other = consumer.issue_token("other")["token"]
    assert client.post("/infer", content=b"{}", headers={"authorization": f"Bearer {other}"}).status_code == 403
    assert client.post("/admin", content=b"{}", headers=bearer).status_code == 404
    assert client.get("/infer", headers=bearer).status_code == 404
    with pytest.raises(httpx.HTTPError):
        httpx.post(ingress.replace("https://", "http://") + "/infer", content=b"{}", headers=bearer, timeout=5)
    client.close()

    shown = cleanroom(
        "-w", world.parties["consumer"].root, "deployment", "status", "--contract-id", "collab1", "-o", "json"
    )
    assert shown.code == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["status"]["state"] == "running"
    assert {"deploying", "attested", "keys_released", "running"} <= {e["type"] for e in document["events"]}
    logged = cleanroom("deployment", "logs", "--contract-id", "collab1", "-o", "json")
    assert logged.code == 0
    assert "running" in [json.loads(line)["type"] for line in logged.stdout.splitlines()]

    stopped = cleanroom("deployment", "stop", "--contract-id", "collab1", "-o", "json")
    assert stopped.code == 0, stopped.stderr
    final = json.loads(stopped.stdout)
    assert final["state"] == "exited" and final["sealed"] == ["results"]
    download_asset(world.parties["consumer"], "datasink", "results", tmp_path / "got")
    assert (tmp_path / "got" / "egress.txt").read_text().startswith("BLOCKED")
    assert not any((world.runtime_state / "mounts").iterdir())


SLEEPER = (
    "import pathlib, time; pathlib.Path('/mnt/remote/results/partial.txt').write_text('half'); "
    "print('up', flush=True); time.sleep(600)"
)


def test_sigkill_leaves_nothing_after_the_next_up(world, tmp_path) -> None:
    world.setup_assets({"weights.txt": "plaintext-weights"})
    world.add_app(["python", "-c", SLEEPER])
    _accept_with_cli(world, tmp_path, "collab1")
    started = cleanroom(
        "-w", world.parties["hoster"].root, "deployment", "start", "--contract-id", "collab1", "-o", "json"
    )
    assert started.code == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    mounts = world.runtime_state / "mounts"
    deadline = time.monotonic() + 30
    while not list(mounts.glob("*/plaintext.path")) and time.monotonic() < deadline:
        time.sleep(0.05)
    # the plaintext sits at a neutral path (not under the state dir, see RunDirectory), recorded here
    plaintext = [pathlib.Path(p.read_text()) for p in mounts.glob("*/plaintext.path")]
    while not [f for d in plaintext for f in d.rglob("partial.txt")] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p.read_text() for d in plaintext for p in d.rglob("weights.txt")] == ["plaintext-weights"]
    assert all(oct(d.stat().st_mode & 0o777) == "0o700" for d in [*mounts.iterdir(), *plaintext])

    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert [f for d in plaintext for f in d.rglob("weights.txt")]  # a killed runtime cannot clean up...
    up = cleanroom("up", "-o", "json")
    assert up.code == 0, up.stderr
    assert not list(mounts.rglob("*"))  # ...the next `cleanroom up` sweeps it
    assert not any(d.exists() for d in plaintext)
    with pytest.raises(NotFoundError):  # and the datasink was never half-sealed
        download_asset(world.parties["consumer"], "datasink", "results", tmp_path / "got")
    shown = cleanroom("deployment", "status", "--contract-id", "collab1", "-o", "json")
    assert json.loads(shown.stdout)["status"]["state"] == "lost"


def test_deployment_verbs_bad_input(world, tmp_path) -> None:
    world.setup_assets({"weights.txt": "w"})
    world.add_app(["python", "-c", "print(1)"])
    from core.config.merge import merge_fragments
    from core.config.party import party_fragment

    merged = merge_fragments(party_fragment(ws) for ws in world.parties.values()).document()
    world.clients["hoster"].create_contract("draft1", merged)
    hoster = world.parties["hoster"].root
    refused = cleanroom("-w", hoster, "deployment", "start", "--contract-id", "draft1")
    assert refused.code == 5 and refused.stderr.startswith("error: ") and "not Accepted" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    missing = cleanroom("deployment", "logs", "--contract-id", "nosuch")
    assert missing.code == 3 and "deployment start --contract-id nosuch" in missing.stderr
    assert cleanroom("deployment", "stop", "--contract-id", "nosuch").code == 3
    shown = cleanroom("deployment", "status", "--contract-id", "nosuch", "-o", "json")
    assert shown.code == 0 and json.loads(shown.stdout)["status"]["state"] == "not deployed on this machine"
    no_wrap = cleanroom("-w", world.parties["hoster"].root, "config", "wrap-deks", "--contract-id", "draft1")
    assert no_wrap.code == 2 and "no datasource or datasink owned by this workspace" in no_wrap.stderr
    unknown = cleanroom(
        "-w", hoster, "governance", "deployment", "generate", "--contract-id", "nosuch", "--output-dir", tmp_path / "o"
    )
    assert unknown.code == 3 and not (tmp_path / "o").exists()


def _state(contract_id: str) -> str:
    shown = cleanroom("deployment", "status", "--contract-id", contract_id, "-o", "json")
    return json.loads(shown.stdout)["status"]["state"]


def test_insecure_no_sandbox_is_said_loudly(world, tmp_path) -> None:
    world.setup_assets({"weights.txt": "w"})
    world.add_app(["python", "-c", "print('plain process', flush=True)"])
    world.accept_contract("collab1")
    started = cleanroom(
        "-w",
        world.parties["hoster"].root,
        "deployment",
        "start",
        "--contract-id",
        "collab1",
        "--insecure-no-sandbox",
        "-o",
        "json",
    )
    assert started.code == 0, started.stderr
    assert "WARNING: --insecure-no-sandbox" in started.stderr and "not a clean room" in started.stderr
    assert json.loads(started.stdout)["sandbox"] == "none (INSECURE)"
    deadline = time.monotonic() + 30
    while _state("collab1") not in ("exited", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _state("collab1") == "exited"
    running = [e for e in world.events("collab1") if e["type"] == "running"]
    assert running and running[-1]["data"]["sandbox"] == "none (INSECURE)"
