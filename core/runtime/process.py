"""A deployment as a background process: what `cleanroom deployment start|status|logs|stop` drive.

The runtime runs detached from the CLI (``python -m core.runtime.process``) so a deployment
outlives the command that started it. It writes, under ``<runtime state>/deployments/<C>/``:

* ``status.json``: pid, state (starting, running, exited, failed), ingress URL, exit codes;
* ``runtime.log``: one JSON line per lifecycle step, refusal or telemetry record. Application
  output is NOT in it: it goes to the logging sink only when the contract enables logging.

SIGTERM (``deployment stop``) stops the applications, seals the datasinks and removes the
plaintext mounts before the process exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import CleanroomError, ConflictError, NotFoundError, ServiceUnavailableError
from core.runtime import sandbox
from core.runtime.deployment import load_document
from core.runtime.lifecycle import FINAL_STATES, LIVE_STATES, DeploymentState, LifecycleEvent
from core.runtime.local import (
    LocalRuntime,
    check_ready,
    deployment_dir,
    read_status,
    sweep_stale_mounts,
    write_status,
)
from core.service_process import process_alive

LOG_FILE = "runtime.log"
ERR_FILE = "runtime.err"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RuntimeEnvironment:
    """Where the runtime keeps its state and where the services it talks to keep theirs."""

    runtime_state_dir: Path
    governance_state_dir: Path
    key_service_state_dir: Path

    def args(self) -> list[str]:
        return [
            "--runtime-state-dir",
            str(self.runtime_state_dir),
            "--governance-state-dir",
            str(self.governance_state_dir),
            "--key-service-state-dir",
            str(self.key_service_state_dir),
        ]


def _open_runtime(env: RuntimeEnvironment, insecure_no_sandbox: bool, log_path: Path) -> LocalRuntime:
    from core.governance import launcher as governance_launcher
    from core.keys import launcher as key_launcher
    from core.runtime.governance_port import HttpGovernance

    governance_info = governance_launcher.info(env.governance_state_dir)
    keys = key_launcher.info(env.key_service_state_dir).client()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - the runtime's event log, open for its whole life

    def listener(kind: str, detail: dict[str, Any]) -> None:
        log.write(json.dumps({"at": time.time(), "type": kind, **detail}, default=str) + "\n")

    return LocalRuntime(
        env.runtime_state_dir,
        HttpGovernance(governance_info.endpoint, governance_info.service_cert_pem),
        keys,
        insecure_no_sandbox=insecure_no_sandbox,
        listener=listener,
    )


def run_foreground(
    env: RuntimeEnvironment,
    contract_id: str,
    *,
    insecure_no_sandbox: bool = False,
    spec_file: Path | None = None,
    ingress_port: int = 0,
) -> int:
    """Run one deployment in this process until it ends; returns a process exit code."""
    directory = deployment_dir(env.runtime_state_dir, contract_id)
    directory.mkdir(parents=True, exist_ok=True)
    runtime = _open_runtime(env, insecure_no_sandbox, directory / LOG_FILE)
    status: dict[str, Any] = {
        "contract_id": contract_id,
        "pid": os.getpid(),
        "state": DeploymentState.STARTING,
        "started_at": time.time(),
        "sandbox": "none (INSECURE)" if insecure_no_sandbox else "bubblewrap",
    }
    write_status(env.runtime_state_dir, contract_id, status)
    signal.signal(signal.SIGTERM, lambda *_: runtime.request_stop("SIGTERM (deployment stop)"))
    signal.signal(signal.SIGINT, lambda *_: runtime.request_stop("SIGINT"))
    original = runtime.listener

    def on_event(kind: str, detail: dict[str, Any]) -> None:
        if original is not None:
            original(kind, detail)
        if kind == LifecycleEvent.RUNNING:
            write_status(
                env.runtime_state_dir,
                contract_id,
                {**status, "state": DeploymentState.RUNNING, "ingress": detail.get("ingress")},
            )
        elif kind == "first_output":
            status["first_output_at"] = detail["at"]
            write_status(
                env.runtime_state_dir,
                contract_id,
                {**status, "state": DeploymentState.RUNNING, "ingress": runtime.ingress_url},
            )

    runtime.listener = on_event
    spec = load_document(spec_file, "deployment spec") if spec_file else None
    try:
        outcome = runtime.run(contract_id, spec_override=spec, ingress_port=ingress_port)
    except CleanroomError as exc:
        write_status(
            env.runtime_state_dir,
            contract_id,
            {**status, "state": DeploymentState.FAILED, "error": exc.one_line(), "ended_at": time.time()},
        )
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    write_status(
        env.runtime_state_dir,
        contract_id,
        {
            **status,
            "state": DeploymentState.EXITED,
            "exit_codes": outcome.exit_codes,
            "sealed": outcome.sealed,
            "stopped_by": outcome.stopped_by,
            "ended_at": time.time(),
        },
    )
    return 0 if all(code == 0 for code in outcome.exit_codes.values()) else 1


def _preflight(env: RuntimeEnvironment, contract_id: str, insecure_no_sandbox: bool) -> None:
    from core.governance import launcher as governance_launcher
    from core.runtime.governance_port import HttpGovernance

    info = governance_launcher.info(env.governance_state_dir)
    governance = HttpGovernance(info.endpoint, info.service_cert_pem)
    try:
        check_ready(governance, contract_id)
    finally:
        governance.close()
    if sandbox.bwrap_path() is None and not insecure_no_sandbox:
        raise sandbox.missing_bwrap_error()


def start_background(
    env: RuntimeEnvironment,
    contract_id: str,
    *,
    insecure_no_sandbox: bool = False,
    spec_file: Path | None = None,
    ingress_port: int = 0,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Start a detached runtime; return its status once it runs, ends, or fails to start.

    The contract's readiness is checked here first, so a refusal is the caller's own one-line
    error (with its exit code) rather than a failed background process."""
    sweep_stale_mounts(env.runtime_state_dir)
    _preflight(env, contract_id, insecure_no_sandbox)
    try:
        current = read_status(env.runtime_state_dir, contract_id)
    except NotFoundError:
        current = {}
    if current.get("state") in LIVE_STATES:
        raise ConflictError(
            f"contract '{contract_id}' is already deployed here (pid {current.get('pid')})",
            hint=f"stop it first with `cleanroom deployment stop --contract-id {contract_id}`",
        )
    directory = deployment_dir(env.runtime_state_dir, contract_id)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "status.json").unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "core.runtime.process",
        "--contract-id",
        contract_id,
        *env.args(),
        "--ingress-port",
        str(ingress_port),
    ]
    if insecure_no_sandbox:
        argv.append("--insecure-no-sandbox")
    if spec_file is not None:
        argv += ["--spec", str(spec_file.resolve())]
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), environ.get("PYTHONPATH")]))
    with open(directory / ERR_FILE, "ab") as err:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=_REPO_ROOT, env=environ, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = read_status(env.runtime_state_dir, contract_id)
        except (NotFoundError, ValueError):
            status = {}
        if status.get("state") == DeploymentState.RUNNING or status.get("state") in FINAL_STATES:
            return status
        if process.poll() is not None and status.get("state") != DeploymentState.RUNNING:
            tail = (directory / ERR_FILE).read_text(errors="replace").strip().splitlines()[-1:]
            raise ServiceUnavailableError(
                f"the runtime for '{contract_id}' exited at start ({' '.join(tail)})",
                hint=f"see {directory / LOG_FILE}",
            )
        time.sleep(0.05)
    raise ServiceUnavailableError(
        f"the runtime for '{contract_id}' did not start within {timeout:.0f}s", hint=f"see {directory / LOG_FILE}"
    )


def stop(env: RuntimeEnvironment, contract_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """SIGTERM the runtime and wait until it has sealed and cleaned up."""
    status = read_status(env.runtime_state_dir, contract_id)
    pid = status.get("pid")
    if status.get("state") not in LIVE_STATES or not pid:
        return status
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(int(pid)):
        try:
            os.waitpid(int(pid), os.WNOHANG)  # reap if it is our child (tests, same-process callers)
        except ChildProcessError:
            pass
        if read_status(env.runtime_state_dir, contract_id).get("state") in FINAL_STATES:
            break
        time.sleep(0.05)
    return read_status(env.runtime_state_dir, contract_id)


def log_lines(env: RuntimeEnvironment, contract_id: str) -> list[dict[str, Any]]:
    path = deployment_dir(env.runtime_state_dir, contract_id) / LOG_FILE
    if not path.is_file():
        raise NotFoundError(
            f"contract '{contract_id}' has no runtime log on this machine",
            hint=f"start it with `cleanroom deployment start --contract-id {contract_id}`",
        )
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one clean-room deployment in the foreground.")
    parser.add_argument("--contract-id", required=True)
    parser.add_argument("--runtime-state-dir", type=Path, required=True)
    parser.add_argument("--governance-state-dir", type=Path, required=True)
    parser.add_argument("--key-service-state-dir", type=Path, required=True)
    parser.add_argument("--insecure-no-sandbox", action="store_true")
    parser.add_argument("--spec", type=Path)
    parser.add_argument("--ingress-port", type=int, default=0)
    args = parser.parse_args(argv)
    env = RuntimeEnvironment(args.runtime_state_dir, args.governance_state_dir, args.key_service_state_dir)
    sys.exit(
        run_foreground(
            env,
            args.contract_id,
            insecure_no_sandbox=args.insecure_no_sandbox,
            spec_file=args.spec,
            ingress_port=args.ingress_port,
        )
    )


if __name__ == "__main__":
    main()
