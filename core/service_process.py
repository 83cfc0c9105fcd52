"""Detached loopback service processes: the one way governance and the key service are run.

A service runs as ``python -m <module> --state-dir DIR`` in its own session, logs to a file in
its state dir and records its pid there. A recorded pid counts as running only if that process
is alive (not a zombie) and its command line names the same module and state dir, so a recycled
pid is never mistaken for the service, and ``stop`` never signals an unrelated process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.crypto.secret_file import write_public_file
from core.errors import ServiceUnavailableError

_REPO_ROOT = Path(__file__).resolve().parents[1]
PID_FILE = "service.pid"
LOG_FILE = "service.log"


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie left by a killed process counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@dataclass(frozen=True)
class ServiceProcess:
    """One service module bound to one state dir."""

    module: str
    state_dir: Path
    label: str

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    def _is_ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return self.module.encode() in cmdline and str(self.state_dir).encode() in cmdline and process_alive(pid)

    def running_pid(self) -> int | None:
        try:
            pid = int((self.state_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def start(self, healthy: Callable[[], bool], *, timeout: float = 30.0) -> None:
        """Spawn the service and wait until ``healthy()``; a no-op if it already runs."""
        if self.running_pid() is not None:
            return
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", self.module, "--state-dir", str(self.state_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=env,
                cwd=_REPO_ROOT,
            )
        write_public_file(self.state_dir / PID_FILE, f"{process.pid}\n".encode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise ServiceUnavailableError(
                    f"{self.label} in {self.state_dir} exited at start ({' | '.join(tail)})",
                    hint=f"see {self.log_path}",
                )
            if healthy():
                return
            time.sleep(0.1)
        process.kill()
        raise ServiceUnavailableError(
            f"{self.label} in {self.state_dir} did not answer within {timeout:.0f}s", hint=f"see {self.log_path}"
        )

    def stop(self, *, timeout: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``. False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._is_ours(pid):
            time.sleep(0.05)
        if self._is_ours(pid):
            os.kill(pid, signal.SIGKILL)
        (self.state_dir / PID_FILE).unlink(missing_ok=True)
        return True
