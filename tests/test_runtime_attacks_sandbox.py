"""Attacks from inside the sandbox, through the real runtime (governance, key service, bubblewrap).

Each test runs a hostile workload as a party's application under an accepted contract and checks
the runtime's refusal: the ingress never follows a socket name the workload wrote, the sandbox's
mountinfo does not say where the runtime keeps its state, a memory hog ends as a ``failed`` run
naming its limit, and /tmp, /dev/shm, / and /dev cannot be used to fill the host's RAM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from core.config.party import add_application, set_network_policy
from core.datasource import download_asset
from core.errors import AccessDeniedError, InvalidInputError
from core.runtime import sandbox
from core.runtime.ingress import IngressProxy, RouteAllowList, TokenPolicy
from core.runtime.ingress_cert import endorsed_ingress_identity
from core.runtime.sandbox import MIB, LimitExceededError, ResourceLimits
from tests.runtime_world import World
from tests.test_runtime_ingress import _make_ca

pytestmark = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="needs bubblewrap")


@pytest.fixture()
def world(tmp_path):
    world = World.create(tmp_path)
    yield world
    world.close()


def _app(
    world: World,
    command: list[str],
    *,
    name: str = "app",
    memory_gb: float = 2.0,
    cpu: float = 1.0,
    ports: list[int] | None = None,
    routes: list[str] | None = None,
) -> None:
    add_application(
        world.parties["hoster"],
        name=name,
        entrypoint="containers/inference_server",
        command=command,
        mounts=[
            {"source": "model", "target": "/mnt/remote/model"},
            {"source": "results", "target": "/mnt/remote/results"},
        ],
        ports=ports or [],
        memory_gb=memory_gb,
        cpu=cpu,
    )
    if routes:
        set_network_policy(world.parties["hoster"], inbound_allow=routes, allow_all_outbound=False)


def _results(world: World, tmp_path: Path, name: str) -> str:
    download_asset(world.parties["consumer"], "datasink", "results", tmp_path / "got")
    return (tmp_path / "got" / name).read_text()


# -- 1. the workload's socket --------------------------------------------------------------------
class _Decoy:
    """A host socket the workload must never get the ingress to reach (standing in for
    governance's socket or another clean room's): it counts the connections it receives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nDECOY")
            client.close()

    def close(self) -> None:
        self._server.close()


SYMLINKER = """
import os, sys, time
target = sys.argv[1]
path = os.environ["CLEANROOM_UDS"]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
os.symlink(target, path)
print("planted", flush=True)
time.sleep(600)
"""


def _serving(world: World, contract_id: str) -> tuple[Any, threading.Thread, dict[str, Any], list[str]]:
    runtime = world.runtime()
    seen: list[str] = []
    runtime.listener = lambda kind, _detail: seen.append(kind)
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            done["outcome"] = runtime.run(contract_id)
        except Exception as exc:
            done["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while runtime.ingress_url is None or "first_output" not in seen:
        assert time.monotonic() < deadline and thread.is_alive(), (seen, done)
        time.sleep(0.05)
    return runtime, thread, done, seen


def test_a_symlinked_socket_does_not_lead_the_ingress_to_a_host_socket(world, tmp_path) -> None:
    decoy = _Decoy(tmp_path / "decoy.sock")
    world.setup_assets({"weights.txt": "w"})
    _app(world, ["python", "-c", SYMLINKER, str(decoy.path)], ports=[8000], routes=["POST /infer"])
    world.accept_contract("sockattack", enable_ca=True)
    runtime, thread, done, _seen = _serving(world, "sockattack")
    try:
        consumer = world.clients["consumer"]
        token = consumer.issue_token("sockattack")["token"]
        with httpx.Client(
            base_url=runtime.ingress_url,
            timeout=3,
            verify=ssl.create_default_context(cadata=consumer.ca("sockattack")["caCert"]),
        ) as client:
            for _ in range(2):
                # the ingress connects to the socket the runtime bound, which the workload holds but
                # does not serve on: no answer at all (a timeout), and never the decoy's
                try:
                    answer = client.post("/infer", content=b"{}", headers={"authorization": f"Bearer {token}"})
                except httpx.ReadTimeout:
                    continue
                assert answer.status_code != 200 and "DECOY" not in answer.text, answer.text
    finally:
        runtime.request_stop("test finished")
        thread.join(timeout=60)
        decoy.close()
    assert decoy.connections == 0
    assert "error" not in done, done


def test_the_ingress_refuses_a_socket_directory_the_runtime_does_not_own_privately(tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    # the check runs in start(), before anything listens (a workload-writable folder would let
    # the socket's name be a link to any host socket)
    identity = endorsed_ingress_identity(tmp_path, "collab1", _make_ca(tmp_path))
    proxy = IngressProxy(
        upstream_socket=shared / "app.sock",
        cert_chain=identity.cert_chain,
        key_file=identity.key_file,
        routes=RouteAllowList(()),
        tokens=TokenPolicy(contract_id="collab1", jwks=dict),
    )
    with pytest.raises(AccessDeniedError, match="not private to the runtime"):
        proxy.start()
    proxy.stop()


IMPOSTOR = """
import socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(8)
print("listening", flush=True)
while True:
    client, _ = server.accept()
    data = client.recv(65536)
    if data:
        print("GOT REQUEST", flush=True)
        client.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-length: 8\\r\\n\\r\\nIMPOSTOR")
    client.close()
"""


def test_the_ingress_uses_only_a_socket_the_runtime_itself_listens_on(tmp_path) -> None:
    """Second line of defence: even in the runtime's private directory, a socket some other
    process listen()ed on (SO_PEERCRED names it) gets no request; the client gets a 502."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    impostor = subprocess.Popen(
        [sys.executable, "-c", IMPOSTOR, str(private / "app.sock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert impostor.stdout is not None and impostor.stdout.readline().strip() == "listening"
        identity = endorsed_ingress_identity(tmp_path, "collab1", _make_ca(tmp_path))
        issuer = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(issuer.public_key()))
        jwks = {"keys": [{**jwk, "kid": "gov-1", "alg": "ES256", "use": "sig"}]}
        proxy = IngressProxy(
            upstream_socket=private / "app.sock",
            cert_chain=identity.cert_chain,
            key_file=identity.key_file,
            routes=RouteAllowList.from_policy(["POST /infer"]),
            tokens=TokenPolicy(contract_id="collab1", jwks=lambda: jwks),
            upstream_pid=os.getpid(),
        ).start()
        try:
            now = int(time.time())
            token = jwt.encode(
                {"sub": "consumer-id", "contract_id": "collab1", "iat": now, "exp": now + 300},
                issuer,
                algorithm="ES256",
                headers={"kid": "gov-1"},
            )
            with httpx.Client(
                base_url=proxy.url, timeout=10, verify=ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
            ) as client:
                answer = client.post("/infer", content=b"{}", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == 502 and "IMPOSTOR" not in answer.text, answer.text
        finally:
            proxy.stop()
    finally:
        impostor.kill()
        output, _ = impostor.communicate()
    assert "GOT REQUEST" not in output


# -- 2. what the sandbox can learn about the host ----------------------------------------------
MOUNTINFO = """
import pathlib
pathlib.Path('/mnt/remote/results/mountinfo.txt').write_text(pathlib.Path('/proc/self/mountinfo').read_text())
"""


def test_mountinfo_does_not_reveal_the_runtime_state_dir(world, tmp_path) -> None:
    world.setup_assets({"weights.txt": "w"})
    _app(world, ["python", "-c", MOUNTINFO])
    world.accept_contract("mountinfo-q7x")
    outcome = world.runtime().run("mountinfo-q7x")
    assert outcome.exit_codes == {"app": 0}
    mountinfo = _results(world, tmp_path, "mountinfo.txt")
    assert "/mnt/remote/model" in mountinfo  # it is the real mountinfo
    for secret in (str(world.runtime_state), str(world.runtime_state / "mounts"), str(world.home), "mountinfo-q7x"):
        assert secret not in mountinfo, (secret, mountinfo)


def test_secret_environment_values_are_not_on_the_hosts_command_lines(tmp_path) -> None:
    """``env_names`` secrets reach the workload, but not ``ps`` of any local user (bwrap gets its
    options from a memfd), nor the sandbox's view of its pid 1."""
    spec = sandbox.SandboxSpec(
        name="a",
        workdir=tmp_path,
        env={"API_KEY": "s3cret-value-9"},
        command=[
            "python",
            "-c",
            (
                "import os; print(os.environ['API_KEY'], flush=True); "
                "print(open('/proc/1/cmdline').read().replace(chr(0), ' '), flush=True); "
                "import time; time.sleep(30)"
            ),
        ],
    )
    process = sandbox.launch(spec)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().decode().strip() == "s3cret-value-9"
        inside = process.stdout.readline().decode()
        host = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert "--args" in host and "s3cret" not in host and "s3cret" not in inside
        assert str(tmp_path) not in host
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -- 3. resource limits --------------------------------------------------------------------------
HOG = """
import time
chunks = []
while len(chunks) < 64:  # 1 GiB at most, so even an unbounded runtime survives this test
    chunks.append(b"x" * (16 << 20))
    time.sleep(0.01)
print("allocated", len(chunks) * 16, "MiB")
"""


def test_a_memory_hog_is_stopped_and_the_run_fails_naming_the_limit(world) -> None:
    world.setup_assets({"weights.txt": "w"})
    _app(world, ["python", "-c", HOG], name="hog", memory_gb=0.25)
    world.accept_contract("hog1")
    with pytest.raises(LimitExceededError, match=r"application 'hog' exceeded its memory limit of 256 MiB"):
        world.runtime().run("hog1")
    failed = [e for e in world.events("hog1") if e["type"] == "failed"]
    assert failed and "application 'hog' exceeded its memory limit of 256 MiB" in failed[-1]["data"]["reason"]
    assert "exited" not in world.event_types("hog1")


FILLER = """
import json, os, pathlib
def fill(folder, cap=512 << 20):
    written = 0
    try:
        with open(os.path.join(folder, "fill"), "wb") as handle:
            block = b"x" * (1 << 20)
            while written < cap:
                handle.write(block)
                handle.flush()
                written += len(block)
    except OSError as exc:
        return {"written": written, "error": type(exc).__name__}
    return {"written": written, "error": None}
report = {"tmp": fill("/tmp"), "shm": fill("/dev/shm")}
for where in ("/", "/dev"):
    try:
        open(os.path.join(where, "planted"), "wb").write(b"x")
        report[where] = "WRITABLE"
    except OSError as exc:
        report[where] = type(exc).__name__
report["cpus"] = len(os.sched_getaffinity(0))
pathlib.Path("/mnt/remote/results/fill.json").write_text(json.dumps(report))
"""


def test_tmpfs_root_and_dev_cannot_fill_the_hosts_ram(world, tmp_path) -> None:
    world.setup_assets({"weights.txt": "w"})
    _app(world, ["python", "-c", FILLER], memory_gb=0.25, cpu=1)
    world.accept_contract("fill1")
    assert world.runtime().run("fill1").exit_codes == {"app": 0}
    report = json.loads(_results(world, tmp_path, "fill.json"))
    limits = ResourceLimits.for_application({"name": "app", "memory_gb": 0.25, "cpu": 1})
    assert report["tmp"]["error"] == "OSError" and report["tmp"]["written"] <= limits.tmp_bytes
    assert report["shm"]["error"] == "OSError" and report["shm"]["written"] <= limits.shm_bytes
    assert report["/"] == "OSError" and report["/dev"] == "OSError"
    assert report["cpus"] == 1


def test_limits_follow_the_contract_and_reach_the_bwrap_command(tmp_path) -> None:
    limits = ResourceLimits.for_application({"name": "trainer", "cpu": 2.0, "memory_gb": 4.0})
    assert limits.memory_bytes == 4096 * MIB and limits.cpus == 2 and limits.tmp_bytes == 1024 * MIB
    assert ResourceLimits.for_application({"name": "old"}).memory_bytes == 2048 * MIB  # a spec without them
    with pytest.raises(InvalidInputError, match="positive"):
        ResourceLimits.for_application({"name": "bad", "memory_gb": -1})
    argv = sandbox.bwrap_command(sandbox.SandboxSpec(name="a", command=["true"], workdir=tmp_path, limits=limits))
    joined = " ".join(argv)
    assert f"--size {1024 * MIB} --tmpfs /tmp" in joined and "--tmpfs /dev/shm --remount-ro /dev" in joined
    assert "--remount-ro /" in joined
