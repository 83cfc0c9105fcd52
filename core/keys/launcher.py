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

import argparse
import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from core import http_guard
from core.crypto.secret_file import write_public_file
from core.errors import NotFoundError
from core.keys.attestation import AttestationKey, AttestationVerifier, KeyServiceAttester
from core.keys.client import KeyServiceClient
from core.keys.loopback_tls import loopback_tls
from core.service_process import ServiceProcess, free_loopback_port

CONFIG_FILE = "key_service.json"


@dataclass(frozen=True)
class KeyServiceInfo:
    state_dir: Path
    endpoint: str
    cert_path: Path
    pid: int | None

    def client(self) -> KeyServiceClient:
        return KeyServiceClient(self.endpoint, self.cert_path)

    def as_dict(self) -> dict[str, object]:
        return {"stateDir": str(self.state_dir), "endpoint": self.endpoint, "cert": str(self.cert_path),
                "pid": self.pid, "running": self.pid is not None}


def create(state_dir: Path, *, governance_state_dir: Path, runtime_state_dir: Path, port: int | None = None) -> None:
    """Write the configuration (idempotent: an existing port is kept so endpoints stay valid)."""
    state_dir = state_dir.expanduser().resolve()
    previous = json.loads((state_dir / CONFIG_FILE).read_text()) if (state_dir / CONFIG_FILE).is_file() else {}
    config = {"port": port or previous.get("port") or free_loopback_port(),
              "governance_state_dir": str(governance_state_dir.expanduser().resolve()),
              "runtime_state_dir": str(runtime_state_dir.expanduser().resolve())}
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    loopback_tls(state_dir, "key_service")
    AttestationKey.load_or_create(state_dir)
    write_public_file(state_dir / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())


def _config(state_dir: Path) -> dict[str, str]:
    path = state_dir / CONFIG_FILE
    if not path.is_file():
        raise NotFoundError(f"no key service in {state_dir}", hint="start the local services with `cleanroom up`")
    return json.loads(path.read_text())


def _process(state_dir: Path) -> ServiceProcess:
    return ServiceProcess("core.keys.launcher", state_dir, "key service")


def running_pid(state_dir: Path) -> int | None:
    return _process(state_dir.expanduser().resolve()).running_pid()


def info(state_dir: Path) -> KeyServiceInfo:
    state_dir = state_dir.expanduser().resolve()
    config = _config(state_dir)
    return KeyServiceInfo(state_dir=state_dir, endpoint=f"https://127.0.0.1:{config['port']}",
                          cert_path=state_dir / "key_service_cert.pem", pid=running_pid(state_dir))


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


def serve(state_dir: Path) -> None:
    """Run the key service in the foreground until SIGTERM."""
    from core.governance import launcher as governance_launcher
    from core.keys.service import KeyServiceServer
    from core.runtime.governance_port import HttpGovernance, KeyServiceAuthority

    config = _config(state_dir)
    governance_info = governance_launcher.info(Path(config["governance_state_dir"]))
    governance = HttpGovernance(governance_info.endpoint, governance_info.service_cert_pem)
    authority = KeyServiceAuthority(governance, KeyServiceAttester(AttestationKey.load_or_create(state_dir)))
    runtime_key = AttestationKey.load_or_create(Path(config["runtime_state_dir"]))
    http_guard.limit_tls_handshakes(http_guard.HEADER_TIMEOUT_SECONDS)  # this process serves only keys
    server = KeyServiceServer(state_dir, verifier=AttestationVerifier(runtime_key.public_pem), authority=authority,
                              port=int(config["port"])).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
    governance.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the cleanroom key service in the foreground.")
    parser.add_argument("--state-dir", type=Path, required=True)
    serve(parser.parse_args(argv).state_dir.resolve())


if __name__ == "__main__":
    main()
