"""Create, start, stop and inspect the key service process on loopback (like governance's).

State directory::

    <state_dir>/
      key_service.json            port, governance state dir, runtime state dir
      key_service_cert.pem        self-signed loopback TLS certificate clients pin
      key_service_privk.pem       its key (0600)
      attestation_privk.pem       the key the service signs its governance events with (0600)
      keks/<member>/<contract>/   per-contract KEKs with their release policy (0600 keys)
      service.pid, service.log
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.crypto.secret_file import write_public_file
from core.errors import NotFoundError
from core.keys.attestation import AttestationKey
from core.keys.client import KeyServiceClient
from core.keys.loopback_tls import loopback_tls
from core.service_process import ServiceProcess, free_loopback_port

CONFIG_FILE = "key_service.json"
# The process entry point lives above governance (the key service reads it): see that module.
PROCESS_MODULE = "core.key_service_process"


@dataclass(frozen=True)
class KeyServiceInfo:
    state_dir: Path
    endpoint: str
    cert_path: Path
    pid: int | None

    def client(self) -> KeyServiceClient:
        return KeyServiceClient(self.endpoint, self.cert_path)

    def as_dict(self) -> dict[str, object]:
        return {
            "stateDir": str(self.state_dir),
            "endpoint": self.endpoint,
            "cert": str(self.cert_path),
            "pid": self.pid,
            "running": self.pid is not None,
        }


def create(state_dir: Path, *, governance_state_dir: Path, runtime_state_dir: Path, port: int | None = None) -> None:
    """Write the configuration (idempotent: an existing port is kept so endpoints stay valid)."""
    state_dir = state_dir.expanduser().resolve()
    previous = json.loads((state_dir / CONFIG_FILE).read_text()) if (state_dir / CONFIG_FILE).is_file() else {}
    config = {
        "port": port or previous.get("port") or free_loopback_port(),
        "governance_state_dir": str(governance_state_dir.expanduser().resolve()),
        "runtime_state_dir": str(runtime_state_dir.expanduser().resolve()),
    }
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    loopback_tls(state_dir, "key_service")
    AttestationKey.load_or_create(state_dir)
    write_public_file(state_dir / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())


def read_config(state_dir: Path) -> dict[str, str]:
    path = state_dir / CONFIG_FILE
    if not path.is_file():
        raise NotFoundError(f"no key service in {state_dir}", hint="start the local services with `cleanroom up`")
    config: dict[str, str] = json.loads(path.read_text())
    return config


def _process(state_dir: Path) -> ServiceProcess:
    return ServiceProcess(PROCESS_MODULE, state_dir, "key service")


def running_pid(state_dir: Path) -> int | None:
    return _process(state_dir.expanduser().resolve()).running_pid()


def info(state_dir: Path) -> KeyServiceInfo:
    state_dir = state_dir.expanduser().resolve()
    config = read_config(state_dir)
    return KeyServiceInfo(
        state_dir=state_dir,
        endpoint=f"https://127.0.0.1:{config['port']}",
        cert_path=state_dir / "key_service_cert.pem",
        pid=running_pid(state_dir),
    )


def start(state_dir: Path, *, timeout: float = 30.0) -> KeyServiceInfo:
    """Start the key service in the background (no-op if running); wait until it answers."""
    current = info(state_dir)
    client = current.client()
    try:
        _process(current.state_dir).start(client.healthy, timeout=timeout)
    finally:
        client.close()
    return info(state_dir)


def stop(state_dir: Path, *, timeout: float = 10.0) -> bool:
    return _process(state_dir.expanduser().resolve()).stop(timeout=timeout)
