"""Azurite, the Azure Storage emulator, as a real process on loopback for the Azure-path tests.

scripts/bootstrap.sh installs it with npm into tools/azurite. Only the blob service is started
(``azurite-blob``): the queue and table services would cost memory and ports for nothing.
Data lives in memory, so every start is clean and nothing is left on disk after a stop.
When node or the npm package is missing, :func:`start_azurite` raises :class:`AzuriteUnavailable`
with the reason, and tests skip with that reason instead of passing silently.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"

# Azurite's well-known development account (published in Azure's docs; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
READY_TIMEOUT_S = 30.0


class AzuriteUnavailable(RuntimeError):
    """Azurite cannot run here; the message says why and how to fix it."""


@dataclass
class Azurite:
    """A running azurite-blob process and how to reach it."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "azurite.log"

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def unavailable_reason() -> str | None:
    """Why azurite cannot start here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed; install Node.js >= 18 and run scripts/bootstrap.sh"
    if not AZURITE_BIN.exists():
        return f"azurite is not installed at {AZURITE_BIN}; run scripts/bootstrap.sh (needs npm)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_http(port: int) -> bool:
    """Any HTTP answer (azurite replies 400/403 to an unsigned GET) means it is serving."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        conn.request("GET", f"/{ACCOUNT}?comp=list")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def start_azurite(attempts: int = 3) -> Azurite:
    """Start azurite-blob on a free loopback port and wait until it answers HTTP.

    A free port can be taken between probing and binding, so a start that dies early is
    retried on a new port.
    """
    reason = unavailable_reason()
    if reason:
        raise AzuriteUnavailable(reason)
    last_log = ""
    for _ in range(attempts):
        port = _free_port()
        workdir = Path(tempfile.mkdtemp(prefix="cleanroom-azurite-"))  # holds only the log
        log = (workdir / "azurite.log").open("wb")
        process = subprocess.Popen(
            [
                str(AZURITE_BIN),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                "--inMemoryPersistence",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        log.close()
        server = Azurite(port=port, process=process, workdir=workdir)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _answers_http(port):
                return server
            time.sleep(0.1)
        last_log = server.log_path.read_text(errors="replace")[-2000:]
        server.stop()
    raise AzuriteUnavailable(f"azurite did not become ready on loopback: {last_log.strip()!r}")
