"""Create, start, stop and inspect a governance service process on loopback.

A service lives in a state directory::

    <state_dir>/
      service.json     port, replay window, checkpoint interval, attestation verifier,
                       allowed MAA endpoints (Azure clean rooms)
      identity/        service_privk.pem (0600), token_privk.pem (0600), service_cert.pem
      governance.db    SQLite (WAL) state and ledger, 0600
      service.pid      pid of the running process
      service.log      its stderr

The port is chosen once at creation and kept, so endpoints recorded in workspaces stay valid
across restarts (including after a crash).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.crypto.secret_file import write_public_file
from core.errors import ConflictError, NotFoundError, ServiceUnavailableError
from core.governance.service_identity import ServiceIdentity

CONFIG_FILE = "service.json"
IDENTITY_DIR = "identity"
PID_FILE = "service.pid"
LOG_FILE = "service.log"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServiceInfo:
    """Where a governance service listens and what certificate to pin."""

    state_dir: Path
    endpoint: str
    service_cert_pem: str
    pid: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"stateDir": str(self.state_dir), "endpoint": self.endpoint,
                "serviceCert": self.service_cert_pem, "pid": self.pid, "running": self.pid is not None}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(state_dir: Path) -> dict[str, Any]:
    path = state_dir / CONFIG_FILE
    if not path.is_file():
        raise NotFoundError(f"no governance service in {state_dir}",
                            hint="create one with `cleanroom governance service start --initial-member-cert PEM`")
    return json.loads(path.read_text())


def exists(state_dir: Path) -> bool:
    return (state_dir / CONFIG_FILE).is_file()


def create(state_dir: Path, initial_member_certs: list[str], *, port: int | None = None,
           window_seconds: int = 300, checkpoint_every: int = 100,
           attestation: dict[str, Any] | None = None) -> None:
    """Make a new service: identity, configuration, and the genesis entry naming the consortium."""
    state_dir = state_dir.expanduser().resolve()
    if exists(state_dir):
        raise ConflictError(f"a governance service already exists in {state_dir}",
                            hint="start it with `cleanroom governance service start`, or choose another --state-dir")
    state_dir.mkdir(parents=True, exist_ok=True)
    # the state engine (ledger, constitution, CA, SQLite) is imported only here: clients of a
    # running service (the detached runtime reads ``info``) should not pay for loading it
    from core.governance.state import GovernanceState

    identity = ServiceIdentity.create(state_dir / IDENTITY_DIR)
    state = GovernanceState(state_dir, identity)
    try:
        state.genesis(initial_member_certs)
    finally:
        state.close()
    config = {"port": port or _free_port(), "window_seconds": window_seconds,
              "checkpoint_every": checkpoint_every, "attestation": attestation}
    write_public_file(state_dir / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())


def set_attestation(state_dir: Path, attestation: dict[str, Any] | None) -> None:
    """Configure the attestation verifier factory (takes effect at the next start)."""
    config = _config(state_dir)
    config["attestation"] = attestation
    write_public_file(state_dir / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())


def maa_settings(endpoints: list[str], ca_file: str | None = None) -> tuple[list[str], str | None]:
    """Checked MAA issuers and trust store path, so a caller can refuse before writing anything."""
    from core.keys.maa import maa_issuer

    issuers = list(dict.fromkeys(maa_issuer(e) for e in endpoints))
    ca = str(Path(ca_file).expanduser().resolve()) if ca_file else None
    if ca is not None and not Path(ca).is_file():
        raise NotFoundError(f"MAA trust store {ca} does not exist", hint="pass a PEM file of CA certificates")
    return issuers, ca


def set_maa_endpoints(state_dir: Path, endpoints: list[str], ca_file: str | None = None) -> bool:
    """Record the MAA endpoints whose tokens governance accepts from Azure clean rooms (and the
    trust store for reaching them, default the system's); effective at the next start. True if
    the configuration changed."""
    config = _config(state_dir)
    issuers, ca = maa_settings(endpoints, ca_file)
    if config.get("maa_endpoints") == issuers and config.get("maa_ca_file") == ca:
        return False
    config["maa_endpoints"], config["maa_ca_file"] = issuers, ca
    write_public_file(state_dir / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return True


def maa_endpoints(state_dir: Path) -> list[str]:
    return list(_config(state_dir.expanduser().resolve()).get("maa_endpoints") or [])


def _pid_alive(pid: int, state_dir: Path) -> bool:
    """True if ``pid`` is a running governance service for ``state_dir`` (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if str(state_dir).encode() not in cmdline:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid, state_dir) else None


def info(state_dir: Path) -> ServiceInfo:
    state_dir = state_dir.expanduser().resolve()
    config = _config(state_dir)
    cert = (state_dir / IDENTITY_DIR / "service_cert.pem").read_text()
    return ServiceInfo(state_dir=state_dir, endpoint=f"https://127.0.0.1:{config['port']}",
                       service_cert_pem=cert, pid=running_pid(state_dir))


def healthy(endpoint: str, service_cert_pem: str, *, timeout: float = 2.0) -> bool:
    context = ssl.create_default_context(cadata=service_cert_pem)
    try:
        response = httpx.get(f"{endpoint}/health", verify=context, timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def start(state_dir: Path, *, timeout: float = 30.0) -> ServiceInfo:
    """Start the service in the background (no-op if it already runs); wait until it answers."""
    current = info(state_dir)
    if current.pid is not None:
        return current
    state_dir = current.state_dir
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    with (state_dir / LOG_FILE).open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "core.governance.service", "--state-dir", str(state_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env, cwd=_REPO_ROOT)
    write_public_file(state_dir / PID_FILE, f"{process.pid}\n".encode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (state_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()[-3:]
            raise ServiceUnavailableError(f"governance service in {state_dir} exited at start ({' | '.join(tail)})",
                                          hint=f"see {state_dir / LOG_FILE}")
        if healthy(current.endpoint, current.service_cert_pem, timeout=1.0):
            return info(state_dir)
        time.sleep(0.1)
    process.kill()
    raise ServiceUnavailableError(f"governance service in {state_dir} did not answer within {timeout:.0f}s",
                                  hint=f"see {state_dir / LOG_FILE}")


def stop(state_dir: Path, *, timeout: float = 10.0) -> bool:
    """Stop the service gracefully (SIGTERM, then SIGKILL after ``timeout``). False if not running."""
    state_dir = state_dir.expanduser().resolve()
    pid = running_pid(state_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid, state_dir):
        time.sleep(0.05)
    if _pid_alive(pid, state_dir):
        os.kill(pid, signal.SIGKILL)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return True
