"""`cleanroom demo` ended by a signal (issue #12): SIGTERM or a closed terminal (SIGHUP) must run
the same cleanup as Ctrl+C and say, in one line, what is left running.

Each test runs the REAL `cleanroom demo` as a process, waits until its embedded governance and
key service are up (their records in the demo folder, with pids), sends the signal during the
next steps, and checks those very processes: stopped, or (with --keep-running) left running and
named with the command that stops them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import embedded
from core.governance import launcher as governance_launcher
from core.keys import launcher as key_launcher
from core.scenario import STATE_FILE
from core.service_process import process_alive

ROOT = Path(__file__).resolve().parents[1]
STOP_AFTER = "upload-base-onnx"  # a bound: the signal lands well before it


def _as_from_a_terminal() -> None:
    """A pytest-xdist worker ignores SIGINT and a child inherits that (so would Python's
    KeyboardInterrupt): the demo gets the default, as a terminal's foreground job does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_demo(root: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "demo", "-w", str(root), "--quick", "--stop-after", STOP_AFTER, *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=_as_from_a_terminal,
        )


def _services_up(root: Path, demo: subprocess.Popen[bytes], log: Path) -> dict[str, int]:
    """The pid of each embedded service, once the demo recorded both as healthy."""
    deadline = time.monotonic() + 180
    while True:
        assert demo.poll() is None, f"the demo ended early: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"the services never came up: {log.read_text()[-2000:]}"
        records = embedded.status(home_dir=root / "services")
        if len(records) == 2 and all(record.get("healthy") for record in records.values()):
            return {name: int(record["pid"]) for name, record in records.items()}
        time.sleep(0.2)


def _still_running(pids: dict[str, int]) -> list[str]:
    """The services whose process is still alive once a stop had time to finish (a service
    stopped by SIGKILL after its grace takes a moment to go)."""
    deadline = time.monotonic() + 20
    while [name for name, pid in pids.items() if process_alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    return [name for name, pid in pids.items() if process_alive(pid)]


def _last_line(log: Path) -> str:
    return log.read_text().strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("signum", "name"),
    [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP"), (signal.SIGINT, "Ctrl+C")],
    ids=["SIGTERM", "SIGHUP", "Ctrl+C"],
)
def test_a_signal_during_the_demo_stops_its_services_and_says_nothing_is_left(
    tmp_path: Path, signum: int, name: str
) -> None:
    """SIGTERM and SIGHUP take the path Ctrl+C takes (the last case), and say the same."""
    root, log = tmp_path / "demo", tmp_path / "demo.log"
    demo = _start_demo(root, log)
    pids: dict[str, int] = {}
    try:
        pids = _services_up(root, demo, log)
        demo.send_signal(signum)
        assert demo.wait(timeout=120) == 128 + signum, log.read_text()[-2000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        embedded.down(home_dir=root / "services")
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    if signum == signal.SIGINT:
        assert lines.pop() == "aborted"  # click's own abort, after the line
    line = lines[-1]
    assert line.startswith(f"{name} received: the demo in {root.resolve()} stopped; nothing left running."), line
    assert f"`cleanroom demo -w {root.resolve()}` resumes it" in line
    assert pids and _still_running(pids) == [], pids
    assert governance_launcher.running_pid(embedded.governance_state_dir(root / "services")) is None
    assert key_launcher.running_pid(embedded.key_service_state_dir(root / "services")) is None
    state = json.loads((root / STATE_FILE).read_text())
    assert STOP_AFTER not in state["completed"] and state["status"] in ("failed", "running")
    if state["status"] == "failed":  # the signal landed inside a step (not between two): it is named
        assert state["error"].endswith("KeyboardInterrupt()" if signum == signal.SIGINT else f"{name} received")


def test_sigterm_with_keep_running_leaves_the_services_and_names_them(tmp_path: Path) -> None:
    root, log = tmp_path / "demo", tmp_path / "demo.log"
    demo = _start_demo(root, log, "--keep-running")
    pids: dict[str, int] = {}
    try:
        pids = _services_up(root, demo, log)
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()[-2000:]
        line = _last_line(log)
        home = root.resolve() / "services"
        assert line.startswith("SIGTERM received: left running "), line
        assert all(service in line for service in pids), (pids, line)
        assert f"to stop them: CLEANROOM_HOME={home} cleanroom down." in line
        assert all(process_alive(pid) for pid in pids.values()), "--keep-running: the services stay up"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        embedded.down(home_dir=root / "services")
    assert _still_running(pids) == []
