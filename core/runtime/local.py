"""The local clean-room runtime: run an accepted contract on this machine, and nothing else.

One call of :meth:`LocalRuntime.run` is one deployment:

1. refuse unless the contract, its deployment spec and clean-room policy are accepted and
   execution is enabled;
2. attest the spec it is about to run (virtual attestation, ephemeral workload key), get the
   contract's secrets (wrapped DEKs) and each owner's KEK released by the key service, and
   decrypt every datasource into a private mount (0700, under the runtime state dir);
3. run each application in the bubblewrap sandbox (no network, read-only sources, writable
   sinks only) behind the TLS ingress when it serves;
4. while running, follow the kill switch, forward telemetry only if enabled and application
   output to the logging sink only if enabled;
5. on exit (normal, failure, kill switch or SIGTERM) seal each datasink with its owner's DEK
   into the owner's blob store (all-or-nothing per datasink: the sealed manifest is written
   last), then remove every plaintext mount.

A SIGKILLed runtime cannot clean up; :func:`sweep_stale_mounts` removes the plaintext of
every run whose runtime is gone, and runs at every start (and ``cleanroom up``).

The runtime trusts nobody's word about the spec: it attests what it runs, and the key service
(not the runtime) decides whether keys are released. A hoster who edits the spec gets a
refusal recorded in governance, and the workload never starts because it has no keys.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization

from core.config.fragment import DataAsset
from core.crypto.kek import Kek
from core.crypto.secret_file import write_public_file
from core.errors import AccessDeniedError, CleanroomError, ConflictError, InvalidInputError, NotFoundError
from core.keys.attestation import DEFAULT_TTL_SECONDS, AttestationKey, VirtualAttester
from core.keys.client import KeyServiceClient
from core.keys.measurement import policy_hash
from core.keys.release import WorkloadKey
from core.keys.wrap_deks import dek_secret_name
from core.runtime import sandbox
from core.runtime.deployment import RUN_DIR, TELEMETRY_FILE, accepted_policy_hash
from core.runtime.ingress import IngressProxy, RouteAllowList, TokenPolicy
from core.runtime.ingress_cert import endorsed_ingress_identity
from core.storage.locator import open_store
from core.storage.transfer import Manifest, dataset_files, download_folder, upload_folder

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MOUNTS_DIR = "mounts"
DEPLOYMENTS_DIR = "deployments"
OWNER_FILE = "runtime.pid"
KILL_SWITCH_POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 10.0
MAX_TELEMETRY_LINE = 16 * 1024
REATTEST_AFTER_SECONDS = DEFAULT_TTL_SECONDS / 2


def env_secret_name(variable: str) -> str:
    return f"env-{variable}"


class GovernancePort(Protocol):
    """What the runtime needs from governance (an adapter over the governance client)."""

    def contract(self, contract_id: str) -> dict[str, Any]: ...

    def document(self, contract_id: str, kind: str) -> dict[str, Any] | None:
        """The ACCEPTED ``deployment_spec`` or ``clean_room_policy`` document, or None."""
        ...

    def option_enabled(self, contract_id: str, option: str) -> bool: ...

    def secret(self, contract_id: str, name: str, attestation: str) -> bytes: ...

    def endorse(self, contract_id: str, csr_pem: bytes, attestation: str) -> bytes: ...

    def jwks(self) -> dict[str, Any]: ...

    def record_event(self, contract_id: str, event: dict[str, Any], *, category: str = "audit",
                     attestation: str | None = None) -> None: ...


Listener = Callable[[str, dict[str, Any]], None]


def seal_datasink(asset: DataAsset, folder: Path, dek: bytes) -> Manifest | None:
    """Encrypt what the workload wrote to a datasink and upload it to its owner's store.

    None when it wrote nothing: the owner's previous outputs then stay as they are, rather
    than being replaced by an empty upload."""
    try:
        dataset_files(folder)
    except InvalidInputError:
        return None
    return upload_folder(open_store(asset.store), asset.container, dek, folder, label=f"datasink '{asset.name}'")


def check_ready(governance: GovernancePort, contract_id: str) -> dict[str, Any]:
    """The accepted deployment spec, or a refusal: contract, spec and policy accepted, execution on."""
    contract = governance.contract(contract_id)
    if contract.get("state") != "Accepted":
        raise ConflictError(f"contract '{contract_id}' is {contract.get('state')}, not Accepted",
                            hint="all parties must accept it first (`cleanroom governance contract vote`)")
    spec = governance.document(contract_id, "deployment_spec")
    if spec is None:
        raise ConflictError(f"contract '{contract_id}' has no accepted deployment spec",
                            hint="propose it with `cleanroom governance deployment template propose`")
    accepted = accepted_policy_hash(governance.document(contract_id, "clean_room_policy"))
    if accepted is None:
        raise ConflictError(f"contract '{contract_id}' has no accepted clean-room policy",
                            hint="propose it with `cleanroom governance deployment policy propose`")
    if not governance.option_enabled(contract_id, "execution"):
        raise AccessDeniedError(f"execution of contract '{contract_id}' is disabled",
                                hint="a member must enable execution again")
    return spec


# -- plaintext mounts ---------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie left by a killed runtime counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def sweep_stale_mounts(state_dir: Path) -> list[str]:
    """Remove the private mounts of every run whose runtime process is gone (e.g. SIGKILLed)."""
    root = state_dir / MOUNTS_DIR
    removed = []
    if not root.is_dir():
        return removed
    for run_dir in root.iterdir():
        try:
            pid = int((run_dir / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and pid_alive(pid):
            continue
        if pid == os.getpid():
            continue
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir.name)
    return removed


@dataclass
class RunDirectory:
    """One deployment's private plaintext area: ``<state>/mounts/<contract>-<id>/`` (0700)."""

    path: Path

    @classmethod
    def create(cls, state_dir: Path, contract_id: str) -> "RunDirectory":
        root = state_dir / MOUNTS_DIR
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        path = root / f"{contract_id}-{uuid.uuid4().hex[:8]}"
        path.mkdir(mode=0o700)
        (path / OWNER_FILE).write_text(str(os.getpid()))
        for sub in ("assets", "run", "logs"):
            (path / sub).mkdir(mode=0o700)
        return cls(path)

    def asset(self, name: str) -> Path:
        directory = self.path / "assets" / name
        directory.mkdir(mode=0o700, exist_ok=True)
        return directory

    @property
    def run(self) -> Path:
        return self.path / "run"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# -- one deployment -----------------------------------------------------------------------------
@dataclass
class DeploymentOutcome:
    contract_id: str
    exit_codes: dict[str, int] = field(default_factory=dict)
    sealed: list[str] = field(default_factory=list)
    stopped_by: str | None = None


class LocalRuntime:
    """Runs deployments of accepted contracts; one instance per runtime state directory."""

    def __init__(self, state_dir: Path, governance: GovernancePort, keys: KeyServiceClient, *,
                 insecure_no_sandbox: bool = False, listener: Listener | None = None) -> None:
        self.state_dir = state_dir
        self.governance = governance
        self.keys = keys
        self.insecure_no_sandbox = insecure_no_sandbox
        self.listener = listener
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self.ingress_url: str | None = None
        self._reattest: Callable[[], str] | None = None
        self._token: str | None = None
        self._attested_at = 0.0

    # -- control ----------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Ask a running deployment to stop (SIGTERM handler, `deployment stop`, kill switch)."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def _note(self, contract_id: str, kind: str, attestation: str | None = None, **detail: Any) -> None:
        event = {"type": kind, **detail}
        if self.listener is not None:
            self.listener(kind, event)
        try:
            self.governance.record_event(contract_id, event, category="audit", attestation=self._fresh(attestation))
        except CleanroomError as exc:
            if self.listener is not None:
                self.listener("event_not_recorded", {"type": kind, "reason": exc.one_line()})

    def _fresh(self, attestation: str | None) -> str | None:
        """A run can outlive its token (a training epoch takes longer than the TTL): events are
        sent with a token re-attested from the same spec and workload key once it is half-way
        to expiry, so governance keeps taking telemetry, ``exited`` and ``sealed``."""
        if attestation is None or self._reattest is None:
            return attestation
        if time.monotonic() - self._attested_at > REATTEST_AFTER_SECONDS:
            self._token, self._attested_at = self._reattest(), time.monotonic()
        return self._token

    # -- the run ----------------------------------------------------------------------------
    def run(self, contract_id: str, *, spec_override: dict[str, Any] | None = None,
            ingress_port: int = 0) -> DeploymentOutcome:
        """Run one deployment to its end. ``spec_override`` is what a hoster would actually run
        if it edited the spec: it is attested as is, so the key service refuses a changed one."""
        sweep_stale_mounts(self.state_dir)
        accepted_spec = check_ready(self.governance, contract_id)
        spec = spec_override if spec_override is not None else accepted_spec
        if spec.get("contract_id") != contract_id:
            raise InvalidInputError(f"deployment spec names contract '{spec.get('contract_id')}', "
                                    f"not '{contract_id}'", hint="pass the spec generated for this contract")
        outcome = DeploymentOutcome(contract_id)
        processes: dict[str, subprocess.Popen[bytes]] = {}
        ingress: IngressProxy | None = None
        deks: dict[str, bytes] = {}
        # governance takes events only from an attested clean room, so the measurement comes first
        workload_key = WorkloadKey()
        attester = VirtualAttester(AttestationKey.load_or_create(self.state_dir))
        attestation = attester.attest(deployment_spec=spec, workload_public_key_der=workload_key.public_der)
        self._reattest = lambda: attester.attest(deployment_spec=spec, workload_public_key_der=workload_key.public_der)
        self._token, self._attested_at = attestation, time.monotonic()
        self._note(contract_id, "deploying", attestation, policy_hash=policy_hash(spec))
        run_dir = RunDirectory.create(self.state_dir, contract_id)
        try:
            if sandbox.bwrap_path() is None and not self.insecure_no_sandbox:
                raise sandbox.missing_bwrap_error()  # before any key is released
            self._note(contract_id, "attested", attestation, policy_hash=policy_hash(spec))
            deks = self._release_deks(contract_id, spec, attestation, workload_key)
            self._note(contract_id, "keys_released", attestation, assets=sorted(deks))
            self._decrypt_datasources(spec, run_dir, deks)
            if self._stop.is_set():
                raise AccessDeniedError(f"deployment of '{contract_id}' stopped before it ran ({self._stop_reason})")
            ingress = self._start_ingress(contract_id, spec, run_dir, attestation, ingress_port)
            processes = self._launch(contract_id, spec, run_dir, attestation)
            self._note(contract_id, "running", attestation, applications=sorted(processes),
                       ingress=self.ingress_url, sandbox="none (INSECURE)" if self.insecure_no_sandbox
                       else "bubblewrap")
            outcome.exit_codes = self._supervise(contract_id, spec, run_dir, processes, attestation)
            outcome.stopped_by = self._stop_reason
            self._note(contract_id, "exited", attestation, exit_codes=outcome.exit_codes,
                       stopped_by=outcome.stopped_by)
        except BaseException as exc:
            self._terminate(processes)
            reason = exc.one_line() if isinstance(exc, CleanroomError) else f"{type(exc).__name__}: {exc}"
            self._note(contract_id, "failed", attestation, reason=reason)
            raise
        finally:
            if ingress is not None:
                ingress.stop()
            try:
                if processes:  # only a workload that ran can have produced outputs
                    outcome.sealed = self._seal(contract_id, spec, run_dir, deks, attestation)
            finally:
                run_dir.remove()
        return outcome

    def _release_deks(self, contract_id: str, spec: dict[str, Any], attestation: str,
                      workload_key: WorkloadKey) -> dict[str, bytes]:
        keks: dict[str, Kek] = {}
        deks: dict[str, bytes] = {}
        for asset in spec.get("datasources", []) + spec.get("datasinks", []):
            owner = asset["owner"]
            if owner not in keks:
                pem = self.keys.release(owner, contract_id, attestation=attestation, workload_key=workload_key)
                # the PEM arrived AES-GCM-authenticated from the key service, which validated the key
                # when it made it; re-validating an RSA-3072 key costs ~0.3 s per owner at every start
                keks[owner] = Kek(serialization.load_pem_private_key(pem, password=None,
                                                                     unsafe_skip_rsa_key_validation=True))
            wrapped = self.governance.secret(contract_id, dek_secret_name(asset["name"]), attestation)
            deks[asset["name"]] = keks[owner].unwrap(wrapped, label=f"DEK of '{asset['name']}'")
        return deks

    def _decrypt_datasources(self, spec: dict[str, Any], run_dir: RunDirectory, deks: dict[str, bytes]) -> None:
        for document in spec.get("datasources", []):
            asset = DataAsset.model_validate(document)
            download_folder(open_store(asset.store), asset.container, deks[asset.name], run_dir.asset(asset.name),
                            label=f"datasource '{asset.name}'")
        for document in spec.get("datasinks", []):
            run_dir.asset(document["name"])

    def _start_ingress(self, contract_id: str, spec: dict[str, Any], run_dir: RunDirectory, attestation: str,
                       port: int) -> IngressProxy | None:
        serving = [app for app in spec["applications"] if app.get("socket")]
        if not serving:
            return None
        if len(serving) > 1:
            raise InvalidInputError(f"contract '{contract_id}' has {len(serving)} serving applications",
                                    hint="the local runtime fronts one; give ports to one application only")
        app = serving[0]
        identity = endorsed_ingress_identity(run_dir.path, contract_id,
                                             lambda csr: self.governance.endorse(contract_id, csr, attestation))
        socket_file = run_dir.run / Path(app["socket"]).relative_to(RUN_DIR)

        def refused(route: str, status: str, reason: str) -> None:
            if self.listener is not None:
                self.listener("ingress_refused", {"route": route, "status": status, "reason": reason})

        proxy = IngressProxy(upstream_socket=socket_file, cert_chain=identity.cert_chain, key_file=identity.key_file,
                             routes=RouteAllowList.from_policy(spec.get("network_policy", {}).get("inbound_allow", [])),
                             tokens=TokenPolicy(contract_id=contract_id, jwks=self.governance.jwks,
                                                audience=f"cleanroom:{contract_id}"), port=port,
                             on_refusal=refused).start()
        self.ingress_url = proxy.url
        return proxy

    def _env(self, contract_id: str, app: dict[str, Any], attestation: str) -> dict[str, str]:
        env = dict(app.get("env", {}))
        for name in app.get("env_names", []):
            env[name] = self.governance.secret(contract_id, env_secret_name(name), attestation).decode()
        return env

    def _launch(self, contract_id: str, spec: dict[str, Any], run_dir: RunDirectory,
                attestation: str) -> dict[str, subprocess.Popen[bytes]]:
        processes: dict[str, subprocess.Popen[bytes]] = {}
        outbound = bool(spec.get("network_policy", {}).get("allow_all_outbound"))
        for app in spec["applications"]:
            mounts = [sandbox.Mount(run_dir.asset(m["name"]), m["path"], writable=not m["read_only"])
                      for m in app.get("mounts", [])]
            mounts.append(sandbox.Mount(run_dir.run, RUN_DIR, writable=True))
            entrypoint = app.get("entrypoint")
            code = [PROJECT_ROOT / "containers"]
            if entrypoint and not (PROJECT_ROOT / entrypoint).resolve().is_relative_to(PROJECT_ROOT / "containers"):
                raise InvalidInputError(f"entrypoint {entrypoint!r} of '{app['name']}' is not under containers/",
                                        hint="the local runtime runs workloads from the project's containers/")
            sandbox_spec = sandbox.SandboxSpec(name=app["name"], command=list(app["command"]), workdir=PROJECT_ROOT,
                                               code=code, mounts=mounts, env=self._env(contract_id, app, attestation),
                                               allow_outbound=outbound)
            processes[app["name"]] = sandbox.launch(sandbox_spec, insecure_no_sandbox=self.insecure_no_sandbox)
        return processes

    def _supervise(self, contract_id: str, spec: dict[str, Any], run_dir: RunDirectory,
                   processes: dict[str, subprocess.Popen[bytes]], attestation: str) -> dict[str, int]:
        logging_on = self.governance.option_enabled(contract_id, "logging")
        telemetry_on = self.governance.option_enabled(contract_id, "telemetry")
        log_sink = spec.get("logging", {}).get("datasink") if logging_on else None
        pumps = [threading.Thread(target=self._pump_output, daemon=True,
                                  args=(name, process, run_dir.asset(log_sink) if log_sink else None))
                 for name, process in processes.items()]
        for pump in pumps:
            pump.start()
        telemetry = _TelemetryTail(run_dir.run / Path(TELEMETRY_FILE).relative_to(RUN_DIR))
        kill_switch = KillSwitch(self.governance, contract_id)
        while any(process.poll() is None for process in processes.values()):
            if telemetry_on:
                for record in telemetry.read_new():
                    self._forward_telemetry(contract_id, record, attestation)
            if kill_switch.tripped():
                self.request_stop("execution disabled by a member")
            if self._stop.wait(0.1):
                self._note(contract_id, "stopping", attestation, reason=self._stop_reason)
                self._terminate(processes)
                break
        if telemetry_on:
            for record in telemetry.read_new():
                self._forward_telemetry(contract_id, record, attestation)
        for pump in pumps:
            pump.join(timeout=5)
        return {name: process.wait() for name, process in processes.items()}

    def _forward_telemetry(self, contract_id: str, record: dict[str, Any], attestation: str) -> None:
        if self.listener is not None:
            self.listener("telemetry", record)
        try:
            self.governance.record_event(contract_id, {"type": "telemetry", **record}, category="telemetry",
                                         attestation=self._fresh(attestation))
        except CleanroomError:
            pass

    def _pump_output(self, name: str, process: subprocess.Popen[bytes], sink: Path | None) -> None:
        """Application output goes to the logging sink if enabled, else it is read and dropped."""
        assert process.stdout is not None
        handle = open(sink / f"{name}.log", "ab") if sink is not None else None
        try:
            first = True
            for line in process.stdout:
                if first and self.listener is not None:
                    self.listener("first_output", {"application": name, "at": time.time()})
                    first = False
                if handle is not None:
                    handle.write(line)
                    handle.flush()
        finally:
            if handle is not None:
                handle.close()

    @staticmethod
    def _terminate(processes: dict[str, subprocess.Popen[bytes]]) -> None:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _seal(self, contract_id: str, spec: dict[str, Any], run_dir: RunDirectory, deks: dict[str, bytes],
              attestation: str | None) -> list[str]:
        sealed = []
        for document in spec.get("datasinks", []):
            asset = DataAsset.model_validate(document)
            manifest = seal_datasink(asset, run_dir.asset(asset.name), deks[asset.name])
            if manifest is None:
                continue
            sealed.append(asset.name)
            self._note(contract_id, "sealed", attestation, datasink=asset.name, owner=asset.owner,
                       files=len(manifest.files), bytes=manifest.total_bytes)
        return sealed


class KillSwitch:
    """Polls a contract's execution option (at most once a second) while its workloads run.

    Any member can disable execution on its own; both runtimes (local and the Azure sidecar)
    stop their workloads when this trips. A governance hiccup does not trip it.
    """

    def __init__(self, governance: GovernancePort, contract_id: str) -> None:
        self._governance = governance
        self._contract_id = contract_id
        self._next_poll = time.monotonic()

    def tripped(self) -> bool:
        if time.monotonic() < self._next_poll:
            return False
        self._next_poll = time.monotonic() + KILL_SWITCH_POLL_SECONDS
        try:
            return not self._governance.option_enabled(self._contract_id, "execution")
        except CleanroomError:
            return False  # governance briefly unreachable: keep running, poll again


class _TelemetryTail:
    """Reads complete new JSON lines from the workload's telemetry file (bounded per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(1 << 20)
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-MAX_TELEMETRY_LINE:]
        records = []
        for line in lines:
            if not line.strip() or len(line) > MAX_TELEMETRY_LINE:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


# -- where a deployment's status lives -------------------------------------------------------
def deployment_dir(state_dir: Path, contract_id: str) -> Path:
    return state_dir / DEPLOYMENTS_DIR / contract_id


def write_status(state_dir: Path, contract_id: str, status: dict[str, Any]) -> None:
    write_public_file(deployment_dir(state_dir, contract_id) / "status.json",
                      (json.dumps(status, sort_keys=True) + "\n").encode())


def read_status(state_dir: Path, contract_id: str) -> dict[str, Any]:
    path = deployment_dir(state_dir, contract_id) / "status.json"
    if not path.is_file():
        raise NotFoundError(f"contract '{contract_id}' has never been deployed on this machine",
                            hint=f"start it with `cleanroom deployment start --contract-id {contract_id}`")
    status = json.loads(path.read_text())
    pid = status.get("pid")
    if status.get("state") in ("starting", "running") and pid and not pid_alive(int(pid)):
        status["state"] = "lost"
    return status
