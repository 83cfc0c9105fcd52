"""Create, start, stop and inspect a governance service process on loopback.

A service lives in a state directory::

    <state_dir>/
      service.json     port, replay window, checkpoint interval, attestation verifier,
                       allowed MAA endpoints (Azure clean rooms), and optionally the
                       connection limits (header_timeout_seconds, max_connections; defaults
                       in ``core.http_guard``)
      identity/        service_privk.pem (0600), token_privk.pem (0600), service_cert.pem
      governance.db    SQLite (WAL) state and ledger, 0600
      service.pid      pid of the running process
      service.log      its stderr

The port is chosen once at creation and kept, so endpoints recorded in workspaces stay valid
across restarts (including after a crash).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.crypto.secret_file import write_public_file
from core.errors import ConflictError, InvalidInputError, NotFoundError
from core.governance.service_identity import ServiceIdentity
from core.service_process import ServiceProcess, free_loopback_port

CONFIG_FILE = "service.json"
IDENTITY_DIR = "identity"


@dataclass(frozen=True)
class ServiceInfo:
    """Where a governance service listens and what certificate to pin."""

    state_dir: Path
    endpoint: str
    service_cert_pem: str
    pid: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stateDir": str(self.state_dir),
            "endpoint": self.endpoint,
            "serviceCert": self.service_cert_pem,
            "pid": self.pid,
            "running": self.pid is not None,
        }


def _config(state_dir: Path) -> dict[str, Any]:
    path = state_dir / CONFIG_FILE
    if not path.is_file():
        raise NotFoundError(
            f"no governance service in {state_dir}",
            hint="create one with `cleanroom governance service start --initial-member-cert PEM`",
        )
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def exists(state_dir: Path) -> bool:
    return (state_dir / CONFIG_FILE).is_file()


def create(
    state_dir: Path,
    initial_member_certs: list[str],
    *,
    port: int | None = None,
    window_seconds: int = 300,
    checkpoint_every: int = 100,
    attestation: dict[str, Any] | None = None,
    header_timeout_seconds: float | None = None,
    max_connections: int | None = None,
) -> None:
    """Make a new service: identity, configuration, and the genesis entry naming the consortium.

    ``header_timeout_seconds`` (how long a client may take to send a request head, and stay
    idle before its first one) and ``max_connections`` override ``core.http_guard``'s defaults.
    """
    if header_timeout_seconds is not None and not 0 < header_timeout_seconds <= 300:
        raise InvalidInputError(
            f"header timeout {header_timeout_seconds} s is not in (0, 300]", hint="give a few seconds"
        )
    if max_connections is not None and not 1 <= max_connections <= 100_000:
        raise InvalidInputError(f"connection cap {max_connections} is not in 1..100000", hint="give a few hundred")
    state_dir = state_dir.expanduser().resolve()
    if exists(state_dir):
        raise ConflictError(
            f"a governance service already exists in {state_dir}",
            hint="start it with `cleanroom governance service start`, or choose another --state-dir",
        )
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
    config: dict[str, Any] = {
        "port": port or free_loopback_port(),
        "window_seconds": window_seconds,
        "checkpoint_every": checkpoint_every,
        "attestation": attestation,
    }
    if header_timeout_seconds is not None:
        config["header_timeout_seconds"] = header_timeout_seconds
    if max_connections is not None:
        config["max_connections"] = max_connections
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


def _process(state_dir: Path) -> ServiceProcess:
    return ServiceProcess("core.governance.service", state_dir, "governance service")


def running_pid(state_dir: Path) -> int | None:
    return _process(state_dir.expanduser().resolve()).running_pid()


def info(state_dir: Path) -> ServiceInfo:
    state_dir = state_dir.expanduser().resolve()
    config = _config(state_dir)
    cert = (state_dir / IDENTITY_DIR / "service_cert.pem").read_text()
    return ServiceInfo(
        state_dir=state_dir,
        endpoint=f"https://127.0.0.1:{config['port']}",
        service_cert_pem=cert,
        pid=running_pid(state_dir),
    )


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
    _process(current.state_dir).start(
        lambda: healthy(current.endpoint, current.service_cert_pem, timeout=1.0), timeout=timeout
    )
    return info(state_dir)


def stop(state_dir: Path, *, timeout: float = 10.0) -> bool:
    """Stop the service gracefully (SIGTERM, then SIGKILL after ``timeout``). False if not running."""
    return _process(state_dir.expanduser().resolve()).stop(timeout=timeout)
