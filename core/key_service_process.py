"""The key service as a process: ``python -m core.key_service_process --state-dir DIR``.

The key service (``core.keys``) releases a KEK only while governance says the contract's
policy is accepted, so the running service is a governance client. Its server takes that
authority as a parameter; this module is where the process wires the real one (governance
over HTTP, events signed as the key service). It sits above ``core.governance`` and
``core.runtime.governance_port`` so that ``core.keys`` can stay below governance, which
verifies attestation tokens with it. Start and stop it with ``core.keys.launcher``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from core import http_guard
from core.governance import launcher as governance_launcher
from core.keys import launcher as key_launcher
from core.keys.attestation import AttestationKey, AttestationVerifier, KeyServiceAttester
from core.keys.service import KeyServiceServer
from core.runtime.governance_port import HttpGovernance, KeyServiceAuthority


def serve(state_dir: Path) -> None:
    """Run the key service of ``state_dir`` in the foreground until SIGTERM/SIGINT."""
    config = key_launcher.read_config(state_dir)
    governance_info = governance_launcher.info(Path(config["governance_state_dir"]))
    governance = HttpGovernance(governance_info.endpoint, governance_info.service_cert_pem)
    authority = KeyServiceAuthority(governance, KeyServiceAttester(AttestationKey.load_or_create(state_dir)))
    runtime_key = AttestationKey.load_or_create(Path(config["runtime_state_dir"]))
    http_guard.limit_tls_handshakes(http_guard.HEADER_TIMEOUT_SECONDS)  # this process serves only keys
    server = KeyServiceServer(
        state_dir, verifier=AttestationVerifier(runtime_key.public_pem), authority=authority, port=int(config["port"])
    ).start()
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
