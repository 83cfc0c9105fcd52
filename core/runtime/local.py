"""The local clean-room runtime: run an accepted contract on this machine, and nothing else.

One call of :meth:`LocalRuntime.run` is one deployment:

1. refuse unless the contract, its deployment spec and clean-room policy are accepted and
   execution is enabled;
2. attest the spec it is about to run (virtual attestation, ephemeral workload key); check
   every pinned datasource's ciphertext against the contract's hash and reserve each private
   training application's epsilon (``core.runtime.private_training``), both before any key;
   get the contract's secrets (wrapped DEKs) and each owner's KEK released by the key service,
   and decrypt every datasource into a private mount (0700, a neutral temp dir: see RunDirectory);
3. run each application in the bubblewrap sandbox (no network, read-only sources, writable
   sinks only) behind the TLS ingress when it serves;
4. while running, follow the kill switch, forward telemetry only if enabled and application
   output to the logging sink only if enabled;
5. on exit (normal, failure, kill switch or SIGTERM) seal each datasink with its owner's DEK
   into the owner's blob store (all-or-nothing per datasink: the sealed manifest is written
   last), then remove every plaintext mount.

The runtime never follows a path a workload could have written (DESIGN.md section 7):

* a datasink is sealed only if it holds nothing but directories and regular files with one
  link, walked beneath the sink through directory descriptors with O_NOFOLLOW and read through
  the descriptor that was checked (``core.storage.transfer.upload_untrusted_folder``); anything
  else refuses that sink (``seal_refused`` event) and nothing of it is sealed;
* application output goes to ``<run>/logs/<app>.log`` (private: no sandbox sees it), created
  O_EXCL|O_NOFOLLOW, and is copied into the logging sink's sealed output; lines are cut at
  :data:`MAX_LOG_LINE` and read in bounded chunks;
* the telemetry file is opened O_NONBLOCK|O_NOFOLLOW and read only if it is a regular file, on
  its own thread, queued (bounded) and forwarded at a bounded rate, so neither a FIFO nor a
  flood can hold the control loop that polls the kill switch;
* the kill switch wins within 2 s: it is polled every :data:`KILL_SWITCH_POLL_SECONDS` and a
  workload still there :data:`KILL_SWITCH_GRACE_SECONDS` after SIGTERM is SIGKILLed (process
  group). A normal stop (``deployment stop``, the runtime's SIGTERM) gives the longer
  :data:`STOP_GRACE_SECONDS`, so a cooperative workload can write its last checkpoint. The
  SIGTERM goes to the workload's own processes inside the sandbox (found by host pid:
  ``sandbox.signal_workload``), once; the final SIGKILL goes to the sandbox's init and bwrap
  (``sandbox.kill_sandbox``). The kill switch is still polled during a stop's grace and cuts it
  short.

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
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from core.config.fragment import DataAsset
from core.crypto.kek import Kek
from core.crypto.secret_file import write_public_file
from core.errors import AccessDeniedError, CleanroomError, ConflictError, InvalidInputError, NotFoundError
from core.governance.models import ContractState
from core.keys.attestation import DEFAULT_TTL_SECONDS, AttestationKey, VirtualAttester
from core.keys.client import KeyServiceClient
from core.keys.measurement import policy_hash
from core.keys.release import WorkloadKey
from core.keys.wrap_deks import dek_secret_name
from core.runtime import sandbox
from core.runtime.deployment import LOSS_TELEMETRY_ENV, RUN_DIR, TELEMETRY_FILE, accepted_policy_hash
from core.runtime.ingress import IngressProxy, RouteAllowList, TokenPolicy
from core.runtime.ingress_cert import endorsed_ingress_identity
from core.runtime.lifecycle import LIVE_STATES, DeploymentState, LifecycleEvent
from core.runtime.model_regression import ModelRegressionRecords
from core.runtime.model_status import ModelStatusRecords, claim_first
from core.runtime.private_training import (
    LOSS_TELEMETRY_OPTION,
    PrivacyRecords,
    reserve,
    telemetry_filter,
    unaccounted_sinks,
    withheld_reason,
)
from core.runtime.revocations import RevocationFeed
from core.runtime.served_versions import check_mounted_packages, check_served_versions
from core.runtime.traffic_split import TrafficPoller, TrafficRouter, TrafficSplit
from core.runtime.usage import USAGE_EVENT, UsageMeter
from core.service_process import process_alive
from core.storage.blobstore import BlobStore
from core.storage.locator import open_store
from core.storage.transfer import Manifest, UntrustedEntryError, download_folder, pinned_copy, upload_untrusted_folder

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Shown read-only to every workload besides containers/: the model-package check and loader the
# inference server runs (its image copies the same files), so the clean room accepts a package by
# the very code `cleanroom model package check` runs.
WORKLOAD_CORE = tuple(PROJECT_ROOT / "core" / name for name in ("__init__.py", "errors.py", "onboarding"))
MOUNTS_DIR = "mounts"
DEPLOYMENTS_DIR = "deployments"
OWNER_FILE = "runtime.pid"
LOCATION_FILE = "plaintext.path"  # in a run's record: where its plaintext directory is
PLAINTEXT_PREFIX = "cleanroom-run-"
# The kill switch must stop a workload within 2 s whatever it does: poll + SIGTERM grace + the
# SIGKILL of the process group must fit, with room for a governance round trip (~10 ms).
KILL_SWITCH_POLL_SECONDS = 0.5
KILL_SWITCH_GRACE_SECONDS = 0.5
# A normal stop (`deployment stop`, SIGTERM of the runtime) lets a workload write its last checkpoint.
STOP_GRACE_SECONDS = 10.0
MAX_TELEMETRY_LINE = 16 * 1024
MAX_TELEMETRY_READ = 1 << 20  # bytes read from the telemetry file per poll
TELEMETRY_POLL_SECONDS = 0.2
TELEMETRY_QUEUE = 100  # records waiting to be forwarded; the oldest are dropped
TELEMETRY_EVENTS_PER_SECOND = 50.0  # what one run may send governance as telemetry
TELEMETRY_DRAIN_SECONDS = 2.0  # how long the end of a run waits for queued records
# ... and for the last claimed record: governance recomputes a privacy record's epsilon (opacus,
# whose first import in the service takes seconds) before it answers
CLAIM_DRAIN_SECONDS = 120.0
MAX_LOG_LINE = 64 * 1024  # a longer application output line is cut here
OUTPUT_CHUNK = 64 * 1024  # bytes read from a workload's stdout at a time
LOGS_DIR = "logs"
CIPHERTEXT_DIR = "ciphertext"  # in a run's private area: pinned datasources' checked ciphertext
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

    def secret_with_writer(self, contract_id: str, name: str, attestation: str) -> tuple[bytes, str]:
        """The secret and the member who wrote it (a DEK is used only if its asset's owner wrote it)."""
        ...

    def endorse(self, contract_id: str, csr_pem: bytes, attestation: str) -> bytes: ...

    def jwks(self) -> dict[str, Any]: ...

    def app_revocations(self) -> dict[str, Any]:
        """Revoked client applications: ``{version, revoked: [{app, revokedAt}]}`` (the ingress polls it)."""
        ...

    def token_url(self) -> str:
        """Governance's OAuth2 token endpoint, advertised in the ingress's OpenAPI document."""
        ...

    def traffic(self, contract_id: str) -> dict[str, Any]:
        """The voted split between serving applications: ``{version, split, rolledBackTo}``."""
        ...

    def record_event(
        self, contract_id: str, event: dict[str, Any], *, category: str = "audit", attestation: str | None = None
    ) -> None: ...

    def reserve_privacy(self, contract_id: str, application: str, attestation: str) -> dict[str, Any]:
        """Reserve the run's epsilon before any DEK of a budgeted datasource is released:
        ``{runId, reserved, datasets}``; AccessDeniedError naming the dataset when it would overspend."""
        ...

    def record_privacy(self, contract_id: str, run_id: str, record: dict[str, Any], attestation: str) -> dict[str, Any]:
        """Report the run's ``privacy_record`` (noise_multiplier, sample_rate, steps, delta,
        accountant, epsilon); governance recomputes epsilon and refuses a mismatch."""
        ...

    def record_model_status(
        self, contract_id: str, name: str, version: str, status: str, details: dict[str, Any], attestation: str
    ) -> dict[str, Any]:
        """Report a model version's new status (``core.runtime.model_status``); refused unless the
        contract onboards that version and the registry's state machine allows the step."""
        ...

    def record_model_regression(
        self, contract_id: str, name: str, version: str, report: dict[str, Any], attestation: str
    ) -> dict[str, Any]:
        """Report a regression run's aggregate (``core.runtime.model_regression``); refused unless the
        contract pins exactly the candidate and baseline versions the record names."""
        ...

    def model(self, name: str) -> dict[str, Any]:
        """The registry's model with its versions (what ``core.runtime.served_versions`` checks at start)."""
        ...


Listener = Callable[[str, dict[str, Any]], None]


def seal_datasink(
    asset: DataAsset, folder: Path, dek: bytes, *, extra_files: dict[str, Path] | None = None
) -> Manifest | None:
    """Encrypt what the workload wrote to a datasink (plus the runtime's own ``extra_files``,
    the application logs of the logging sink) and upload it to its owner's store.

    None when there is nothing: the owner's previous outputs then stay as they are, rather than
    being replaced by an empty upload. Raises :class:`UntrustedEntryError` (and seals nothing)
    when the sink holds anything but directories and regular files: see
    :func:`core.storage.transfer.upload_untrusted_folder`."""
    return upload_untrusted_folder(
        open_store(asset.store), asset.container, dek, folder, label=f"datasink '{asset.name}'", extra_files=extra_files
    )


def owned_dek(governance: GovernancePort, contract_id: str, asset: str, owner: str, attestation: str) -> bytes:
    """The wrapped DEK of ``asset``, refused unless ``owner`` (the accepted spec's) wrote it.

    Governance already lets only the owner put ``dek-<asset>``; checking the recorded writer
    here too means a datasink is never sealed with a DEK another party chose (and knows)."""
    wrapped, writer = governance.secret_with_writer(contract_id, dek_secret_name(asset), attestation)
    if writer != owner:
        raise AccessDeniedError(
            f"the DEK of '{asset}' was written by member {writer[:16]}…, not by its owner {owner[:16]}…",
            hint=f"the owner runs `cleanroom config wrap-deks --contract-id {contract_id}`",
        )
    return wrapped


def check_ready(governance: GovernancePort, contract_id: str) -> dict[str, Any]:
    """The accepted deployment spec, or a refusal: contract, spec and policy accepted, execution on."""
    contract = governance.contract(contract_id)
    if contract.get("state") != ContractState.ACCEPTED:
        raise ConflictError(
            f"contract '{contract_id}' is {contract.get('state')}, not Accepted",
            hint="all parties must accept it first (`cleanroom governance contract vote`)",
        )
    spec = governance.document(contract_id, "deployment_spec")
    if spec is None:
        raise ConflictError(
            f"contract '{contract_id}' has no accepted deployment spec",
            hint="propose it with `cleanroom governance deployment template propose`",
        )
    accepted = accepted_policy_hash(governance.document(contract_id, "clean_room_policy"))
    if accepted is None:
        raise ConflictError(
            f"contract '{contract_id}' has no accepted clean-room policy",
            hint="propose it with `cleanroom governance deployment policy propose`",
        )
    if not governance.option_enabled(contract_id, "execution"):
        raise AccessDeniedError(
            f"execution of contract '{contract_id}' is disabled", hint="a member must enable execution again"
        )
    return spec


# -- plaintext mounts ---------------------------------------------------------------------------
def sweep_stale_mounts(state_dir: Path) -> list[str]:
    """Remove the private mounts of every run whose runtime process is gone (e.g. SIGKILLed)."""
    root = state_dir / MOUNTS_DIR
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for run_dir in root.iterdir():
        try:
            pid = int((run_dir / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and process_alive(pid):
            continue
        if pid == os.getpid():
            continue
        RunDirectory.remove_plaintext_of(run_dir)  # sandbox: the plaintext is outside the state dir
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir.name)
    return removed


@dataclass
class RunDirectory:
    """One deployment's private plaintext area: a randomly named 0700 directory under the system
    temp dir, recorded in ``<state>/mounts/<contract>-<id>/`` (owner pid + location).

    The plaintext is not kept under the state dir because a bind mount shows its source path in
    the sandbox's /proc/self/mountinfo (the path within its filesystem, whatever path it was
    bound through): a source under the state dir would tell the workload where the runtime keeps
    its state, in whose home, and the contract id. ``/tmp/cleanroom-run-x1y2z3/assets/model``
    tells it nothing. The record lets :func:`sweep_stale_mounts` remove a killed run's plaintext."""

    path: Path
    record: Path | None = None

    @classmethod
    def create(cls, state_dir: Path, contract_id: str) -> RunDirectory:
        root = state_dir / MOUNTS_DIR
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        record = root / f"{contract_id}-{uuid.uuid4().hex[:8]}"
        record.mkdir(mode=0o700)
        (record / OWNER_FILE).write_text(str(os.getpid()))
        path = Path(tempfile.mkdtemp(prefix=PLAINTEXT_PREFIX))  # 0700, random, created exclusively
        (record / LOCATION_FILE).write_text(str(path))
        for sub in ("assets", "run", LOGS_DIR):
            (path / sub).mkdir(mode=0o700)
        return cls(path, record)

    @staticmethod
    def remove_plaintext_of(record: Path) -> None:
        """Remove the plaintext directory a record names, if it is really one of ours: an absolute
        ``cleanroom-run-*`` directory (not a link) owned by this user. Its parent is not compared
        with today's temp dir: a sweep from a shell with another TMPDIR must still remove it."""
        try:
            location = Path((record / LOCATION_FILE).read_text().strip())
            info = os.lstat(location)
        except (OSError, ValueError):
            return
        if (
            location.is_absolute()
            and location.name.startswith(PLAINTEXT_PREFIX)
            and stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.geteuid()
        ):
            shutil.rmtree(location, ignore_errors=True)

    def asset(self, name: str) -> Path:
        directory = self.path / "assets" / name
        directory.mkdir(mode=0o700, exist_ok=True)
        return directory

    @property
    def run(self) -> Path:
        return self.path / "run"

    def log(self, application: str) -> Path:
        """Where the runtime writes an application's output: in ``logs/``, which no sandbox sees
        (a log in a writable sink could be a link the workload planted to any host file)."""
        return self.path / LOGS_DIR / f"{application}.log"

    def logs(self) -> dict[str, Path]:
        """The application logs to seal into the logging sink, by their name there."""
        return {path.name: path for path in sorted((self.path / LOGS_DIR).glob("*.log"))}

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.record is not None:
            shutil.rmtree(self.record, ignore_errors=True)


# -- one deployment -----------------------------------------------------------------------------
@dataclass
class DeploymentOutcome:
    contract_id: str
    exit_codes: dict[str, int] = field(default_factory=dict)
    sealed: list[str] = field(default_factory=list)
    stopped_by: str | None = None


class LocalRuntime:
    """Runs deployments of accepted contracts; one instance per runtime state directory."""

    def __init__(
        self,
        state_dir: Path,
        governance: GovernancePort,
        keys: KeyServiceClient,
        *,
        insecure_no_sandbox: bool = False,
        listener: Listener | None = None,
    ) -> None:
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
        self._listening: dict[str, sandbox.ListeningSocket] = {}  # serving application -> its socket
        self._traffic: TrafficPoller | None = None  # several serving applications: the voted split
        self._token_lock = threading.Lock()  # the telemetry thread sends events too
        self._kill_switch_tripped = False
        self._privacy: PrivacyRecords | None = None  # private training runs: their privacy records
        self._loss_telemetry = False  # members voted loss_telemetry (only read for private runs)

    # -- control ----------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Ask a running deployment to stop (SIGTERM handler, `deployment stop`, kill switch)."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def _note(self, contract_id: str, event_type: str, attestation: str | None = None, /, **detail: Any) -> None:
        event = {"type": event_type, **detail}
        if self.listener is not None:
            self.listener(event_type, event)
        try:
            self.governance.record_event(contract_id, event, category="audit", attestation=self._fresh(attestation))
        except CleanroomError as exc:
            if self.listener is not None:
                self.listener("event_not_recorded", {"type": event_type, "reason": exc.one_line()})

    def _fresh(self, attestation: str | None) -> str | None:
        """A run can outlive its token (a training epoch takes longer than the TTL): events are
        sent with a token re-attested from the same spec and workload key once it is half-way
        to expiry, so governance keeps taking telemetry, ``exited`` and ``sealed``."""
        if attestation is None or self._reattest is None:
            return attestation
        with self._token_lock:
            if time.monotonic() - self._attested_at > REATTEST_AFTER_SECONDS:
                self._token, self._attested_at = self._reattest(), time.monotonic()
            return self._token

    # -- the run ----------------------------------------------------------------------------
    def run(
        self, contract_id: str, *, spec_override: dict[str, Any] | None = None, ingress_port: int = 0
    ) -> DeploymentOutcome:
        """Run one deployment to its end. ``spec_override`` is what a hoster would actually run
        if it edited the spec: it is attested as is, so the key service refuses a changed one."""
        sweep_stale_mounts(self.state_dir)
        accepted_spec = check_ready(self.governance, contract_id)
        spec = spec_override if spec_override is not None else accepted_spec
        if spec.get("contract_id") != contract_id:
            raise InvalidInputError(
                f"deployment spec names contract '{spec.get('contract_id')}', not '{contract_id}'",
                hint="pass the spec generated for this contract",
            )
        outcome = DeploymentOutcome(contract_id)
        self._privacy, self._loss_telemetry = None, False
        processes: dict[str, subprocess.Popen[bytes]] = {}
        ingress: IngressProxy | None = None
        deks: dict[str, bytes] = {}
        # governance takes events only from an attested clean room, so the measurement comes first
        workload_key = WorkloadKey()
        attester = VirtualAttester(AttestationKey.load_or_create(self.state_dir))
        attestation = attester.attest(deployment_spec=spec, workload_public_key_der=workload_key.public_der)
        self._reattest = lambda: attester.attest(deployment_spec=spec, workload_public_key_der=workload_key.public_der)
        self._token, self._attested_at = attestation, time.monotonic()
        self._note(contract_id, LifecycleEvent.DEPLOYING, attestation, policy_hash=policy_hash(spec))
        run_dir = RunDirectory.create(self.state_dir, contract_id)
        try:
            if sandbox.bwrap_path() is None and not self.insecure_no_sandbox:
                raise sandbox.missing_bwrap_error()  # before any key is released
            self._note(contract_id, LifecycleEvent.ATTESTED, attestation, policy_hash=policy_hash(spec))
            check_served_versions(self.governance, spec)  # a registry version it serves: still servable?
            stores = self._pin_datasources(spec, run_dir)  # a swapped upload: nothing reserved or released
            self._reserve_privacy(contract_id, spec, attestation)  # before any key: a refusal ends the run here
            deks = self._release_deks(contract_id, spec, attestation, workload_key)
            self._note(contract_id, LifecycleEvent.KEYS_RELEASED, attestation, assets=sorted(deks))
            self._decrypt_datasources(spec, run_dir, stores, deks)
            check_mounted_packages(spec, run_dir.asset)  # the registry's bytes, before any workload
            if self._stop.is_set():
                raise AccessDeniedError(f"deployment of '{contract_id}' stopped before it ran ({self._stop_reason})")
            ingress = self._start_ingress(contract_id, spec, run_dir, attestation, ingress_port)
            processes = self._launch(contract_id, spec, run_dir, attestation)
            if ingress is not None:
                for process in processes.values():
                    ingress.allow_workload(process.pid)
            self._note(
                contract_id,
                LifecycleEvent.RUNNING,
                attestation,
                applications=sorted(processes),
                ingress=self.ingress_url,
                sandbox="none (INSECURE)" if self.insecure_no_sandbox else "bubblewrap",
            )
            outcome.exit_codes = self._supervise(contract_id, spec, run_dir, processes, attestation)
            sandbox.raise_if_over_limits(processes)  # a workload killed for its memory is a failed run
            outcome.stopped_by = self._stop_reason
            self._note(
                contract_id,
                LifecycleEvent.EXITED,
                attestation,
                exit_codes=outcome.exit_codes,
                stopped_by=outcome.stopped_by,
            )
        except BaseException as exc:
            self._terminate(processes)
            reason = exc.one_line() if isinstance(exc, CleanroomError) else f"{type(exc).__name__}: {exc}"
            self._note(contract_id, LifecycleEvent.FAILED, attestation, reason=reason)
            raise
        finally:
            if self._traffic is not None:
                self._traffic.stop()
                self._traffic = None
            if ingress is not None:
                ingress.stop()
            for listening in self._listening.values():
                listening.close()
            self._listening.clear()
            try:
                if processes:  # only a workload that ran can have produced outputs
                    outcome.sealed = self._seal(contract_id, spec, run_dir, deks, attestation)
            finally:
                run_dir.remove()
        return outcome

    def _reserve_privacy(self, contract_id: str, spec: dict[str, Any], attestation: str) -> None:
        """Reserve every private training application's epsilon (``core.runtime.private_training``)."""

        def note(event_type: str, /, **detail: Any) -> None:
            self._note(contract_id, event_type, attestation, **detail)

        runs = reserve(self.governance, contract_id, spec, attestation, note)
        if not runs:
            return
        self._privacy = PrivacyRecords(
            self.governance, contract_id, runs, lambda: self._fresh(attestation) or attestation, note
        )
        self._loss_telemetry = self.governance.option_enabled(contract_id, LOSS_TELEMETRY_OPTION)

    def _release_deks(
        self, contract_id: str, spec: dict[str, Any], attestation: str, workload_key: WorkloadKey
    ) -> dict[str, bytes]:
        keks: dict[str, Kek] = {}
        deks: dict[str, bytes] = {}
        for asset in spec.get("datasources", []) + spec.get("datasinks", []):
            owner = asset["owner"]
            if owner not in keks:
                pem = self.keys.release(owner, contract_id, attestation=attestation, workload_key=workload_key)
                keks[owner] = Kek.from_released_pem(pem, owner=owner)
            wrapped = owned_dek(self.governance, contract_id, asset["name"], owner, attestation)
            deks[asset["name"]] = keks[owner].unwrap(wrapped, label=f"DEK of '{asset['name']}'")
        return deks

    def _pin_datasources(self, spec: dict[str, Any], run_dir: RunDirectory) -> dict[str, BlobStore]:
        """Where each datasource is decrypted from. A pinned one (``content_hash``) is first copied
        (ciphertext) into the run's private area and its hash checked against the contract's, all
        before any epsilon is reserved or key released: a swapped upload ends the run with nothing
        charged, released or decrypted, and what is decrypted is exactly the copy that was checked."""
        stores: dict[str, BlobStore] = {}
        for document in spec.get("datasources", []):
            asset = DataAsset.model_validate(document)
            store = open_store(asset.store)
            if asset.content_hash is not None:
                store = pinned_copy(
                    store,
                    asset.container,
                    run_dir.path / CIPHERTEXT_DIR / asset.name,
                    expected=asset.content_hash,
                    label=f"datasource '{asset.name}'",
                )
            stores[asset.name] = store
        return stores

    def _decrypt_datasources(
        self, spec: dict[str, Any], run_dir: RunDirectory, stores: dict[str, BlobStore], deks: dict[str, bytes]
    ) -> None:
        try:
            for document in spec.get("datasources", []):
                asset = DataAsset.model_validate(document)
                download_folder(
                    stores[asset.name],
                    asset.container,
                    deks[asset.name],
                    run_dir.asset(asset.name),
                    label=f"datasource '{asset.name}'",
                )
        finally:
            shutil.rmtree(run_dir.path / CIPHERTEXT_DIR, ignore_errors=True)
        for document in spec.get("datasinks", []):
            run_dir.asset(document["name"])

    def _start_ingress(
        self, contract_id: str, spec: dict[str, Any], run_dir: RunDirectory, attestation: str, port: int
    ) -> IngressProxy | None:
        serving = [app for app in spec["applications"] if app.get("socket")]
        if not serving:
            return None
        identity = endorsed_ingress_identity(
            run_dir.path, contract_id, lambda csr: self.governance.endorse(contract_id, csr, attestation)
        )
        # the runtime binds each workload's socket where no sandbox sees it and hands in the fd
        # (core.runtime.sandbox.ListeningSocket): no workload-written path is ever connected to
        for app in serving:
            self._listening[app["name"]] = sandbox.ListeningSocket(run_dir.path / "ingress", f"{app['name']}.sock")
        socket_file = self._listening[serving[0]["name"]].path
        router = None
        if len(serving) > 1:  # blue/green: one endpoint, the members' voted split between them
            router = TrafficRouter({app["name"]: self._listening[app["name"]].path for app in serving})

            def applied(split: TrafficSplit) -> None:
                self._note(contract_id, "traffic_split", attestation, version=split.version, split=split.weights)

            def unreadable(reason: str) -> None:
                if self.listener is not None:
                    self.listener("traffic_split_unread", {"reason": reason})

            self._traffic = TrafficPoller(
                router, lambda: self.governance.traffic(contract_id), on_change=applied, on_error=unreadable
            ).start()

        def refused(route: str, status: str, reason: str) -> None:
            if self.listener is not None:
                self.listener("ingress_refused", {"route": route, "status": status, "reason": reason})

        proxy = IngressProxy(
            upstream_socket=socket_file,
            cert_chain=identity.cert_chain,
            key_file=identity.key_file,
            routes=RouteAllowList.from_policy(spec.get("network_policy", {}).get("inbound_allow", [])),
            tokens=TokenPolicy(contract_id=contract_id, jwks=self.governance.jwks, audience=f"cleanroom:{contract_id}"),
            port=port,
            on_refusal=refused,
            upstream_pid=os.getpid(),
            traffic=router,
            revocations=RevocationFeed(self.governance.app_revocations),
            usage=UsageMeter(lambda minute: self._note(contract_id, USAGE_EVENT, attestation, **minute)),
            token_url=self.governance.token_url(),
        ).start()
        self.ingress_url = proxy.url
        return proxy

    def _env(self, contract_id: str, app: dict[str, Any], attestation: str) -> dict[str, str]:
        env = dict(app.get("env", {}))
        if app.get("private_training") is not None and self._loss_telemetry:
            env[LOSS_TELEMETRY_ENV] = "1"
        for name in app.get("env_names", []):
            env[name] = self.governance.secret(contract_id, env_secret_name(name), attestation).decode()
        return env

    def _launch(
        self, contract_id: str, spec: dict[str, Any], run_dir: RunDirectory, attestation: str
    ) -> dict[str, subprocess.Popen[bytes]]:
        processes: dict[str, subprocess.Popen[bytes]] = {}
        outbound = bool(spec.get("network_policy", {}).get("allow_all_outbound"))
        for app in spec["applications"]:
            mounts = [
                sandbox.Mount(run_dir.asset(m["name"]), m["path"], writable=not m["read_only"])
                for m in app.get("mounts", [])
            ]
            mounts.append(sandbox.Mount(run_dir.run, RUN_DIR, writable=True))
            entrypoint = app.get("entrypoint")
            code = [PROJECT_ROOT / "containers", *WORKLOAD_CORE]
            if entrypoint and not (PROJECT_ROOT / entrypoint).resolve().is_relative_to(PROJECT_ROOT / "containers"):
                raise InvalidInputError(
                    f"entrypoint {entrypoint!r} of '{app['name']}' is not under containers/",
                    hint="the local runtime runs workloads from the project's containers/",
                )
            sandbox_spec = sandbox.SandboxSpec(
                name=app["name"],
                command=list(app["command"]),
                workdir=PROJECT_ROOT,
                code=code,
                mounts=mounts,
                env=self._env(contract_id, app, attestation),
                allow_outbound=outbound,
                limits=sandbox.ResourceLimits.for_application(app),
                listen_fd=self._listening[app["name"]].fileno() if app["name"] in self._listening else None,
            )
            processes[app["name"]] = sandbox.launch(sandbox_spec, insecure_no_sandbox=self.insecure_no_sandbox)
        return processes

    def _supervise(
        self,
        contract_id: str,
        spec: dict[str, Any],
        run_dir: RunDirectory,
        processes: dict[str, subprocess.Popen[bytes]],
        attestation: str,
    ) -> dict[str, int]:
        """The control loop: only the kill switch and stop requests run here. Output and telemetry,
        which the workload controls, are read on their own threads and cannot hold it."""
        logging_on = self.governance.option_enabled(contract_id, "logging")
        telemetry_on = self.governance.option_enabled(contract_id, "telemetry")
        pumps = [
            threading.Thread(
                target=self._pump_output,
                daemon=True,
                name=f"output-{name}",
                args=(name, process, run_dir.log(name) if logging_on else None),
            )
            for name, process in processes.items()
        ]
        for pump in pumps:
            pump.start()
        telemetry: TelemetryForwarder | None = None
        privacy = self._privacy
        statuses = ModelStatusRecords.for_spec(  # an onboarding run's model statuses go to the registry
            self.governance,
            contract_id,
            spec,
            lambda: self._fresh(attestation) or attestation,
            lambda event_type, /, **detail: self._note(contract_id, event_type, attestation, **detail),
        )
        regression = ModelRegressionRecords.for_spec(  # a regression run's aggregate goes to the registry
            self.governance,
            contract_id,
            spec,
            lambda: self._fresh(attestation) or attestation,
            lambda event_type, /, **detail: self._note(contract_id, event_type, attestation, **detail),
        )
        if telemetry_on or privacy or statuses or regression:  # these are read with telemetry off
            telemetry = TelemetryForwarder(
                _TelemetryTail(run_dir.run / Path(TELEMETRY_FILE).relative_to(RUN_DIR)),
                forward=lambda record: self._forward_telemetry(contract_id, record, attestation),
                refused=lambda kind: self._note(contract_id, "telemetry_refused", attestation, kind=kind),
                dropped=lambda count: self._note(contract_id, "telemetry_dropped", attestation, records=count),
                claim=claim_first(
                    privacy.take if privacy else None,
                    statuses.take if statuses else None,
                    regression.take if regression else None,
                ),
                keep=telemetry_filter(
                    telemetry_on=telemetry_on, private_run=bool(privacy), loss_voted=self._loss_telemetry
                ),
            )
            telemetry.start()
        kill_switch = KillSwitch(self.governance, contract_id)
        try:
            while any(process.poll() is None for process in processes.values()):
                if kill_switch.tripped():
                    self._kill_switch_tripped = True
                    self.request_stop("execution disabled by a member")
                if self._stop.wait(0.05):
                    grace = KILL_SWITCH_GRACE_SECONDS if self._kill_switch_tripped else STOP_GRACE_SECONDS
                    self._signal(processes, signal.SIGTERM)  # before the note: that is a governance round trip
                    started = time.monotonic()
                    self._note(contract_id, LifecycleEvent.STOPPING, attestation, reason=self._stop_reason)
                    # the grace counts from the SIGTERM, which is not sent twice
                    self._terminate(
                        processes,
                        grace=grace - (time.monotonic() - started),
                        signalled=True,
                        kill_switch=None if self._kill_switch_tripped else kill_switch,
                    )
                    break
        finally:
            if telemetry is not None:
                telemetry.stop()
        for pump in pumps:
            pump.join(timeout=5)
        return {name: process.wait() for name, process in processes.items()}

    def _forward_telemetry(self, contract_id: str, record: dict[str, Any], attestation: str) -> None:
        if self.listener is not None:
            self.listener("telemetry", record)
        try:
            self.governance.record_event(
                contract_id, {**record, "type": "telemetry"}, category="telemetry", attestation=self._fresh(attestation)
            )
        except CleanroomError:
            pass

    def _pump_output(self, name: str, process: subprocess.Popen[bytes], log: Path | None) -> None:
        """Application output goes to its private log if logging is enabled, else it is read and
        dropped. Read in bounded chunks and cut at :data:`MAX_LOG_LINE` per line, so a workload
        printing a gigabyte without a newline costs the runtime neither memory nor a huge line."""
        assert process.stdout is not None
        source = process.stdout.fileno()
        handle = _create_private(log) if log is not None else None
        lines = LineCutter(MAX_LOG_LINE)
        try:
            first = True
            while chunk := os.read(source, OUTPUT_CHUNK):
                if first and self.listener is not None:
                    self.listener("first_output", {"application": name, "at": time.time()})
                    first = False
                if handle is not None:
                    handle.write(lines.feed(chunk))
                    handle.flush()
            if handle is not None:
                handle.write(lines.end())
        finally:
            if handle is not None:
                handle.close()

    @staticmethod
    def _signal(processes: dict[str, subprocess.Popen[bytes]], signum: int) -> None:
        """Signal each running workload's own processes: in bubblewrap they are in a pid namespace
        and session of their own, out of reach of bwrap's process group (``sandbox.signal_workload``)."""
        for process in processes.values():
            sandbox.signal_workload(process, signum)

    @staticmethod
    def _terminate(
        processes: dict[str, subprocess.Popen[bytes]],
        *,
        grace: float = STOP_GRACE_SECONDS,
        signalled: bool = False,
        kill_switch: KillSwitch | None = None,
    ) -> None:
        """SIGTERM each workload's processes, then SIGKILL each workload still there after ``grace``.

        ``signalled``: the caller has sent the SIGTERM already; it is not sent twice, since a
        workload that takes a second SIGTERM as "quit now" would lose the checkpoint it is
        writing. ``kill_switch``: still polled during a normal stop's grace; once it trips, what
        is left of the grace is cut to :data:`KILL_SWITCH_GRACE_SECONDS` (the kill switch wins
        within 2 s, also over a stop under way). The SIGKILL goes to the sandbox's init and bwrap's
        process group (``sandbox.kill_sandbox``)."""
        if not signalled:
            LocalRuntime._signal(processes, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in processes.values():
            while (left := deadline - time.monotonic()) > 0:
                try:  # in slices while the kill switch is still to be watched
                    process.wait(timeout=min(left, 0.05) if kill_switch is not None else left)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if kill_switch is not None and kill_switch.tripped():
                    deadline = min(deadline, time.monotonic() + KILL_SWITCH_GRACE_SECONDS)
                    kill_switch = None
            if process.poll() is None:
                sandbox.kill_sandbox(process)
                process.wait()

    def _seal(
        self,
        contract_id: str,
        spec: dict[str, Any],
        run_dir: RunDirectory,
        deks: dict[str, bytes],
        attestation: str | None,
    ) -> list[str]:
        sealed = []
        log_sink = spec.get("logging", {}).get("datasink")
        logs = run_dir.logs() if log_sink else {}
        withheld = unaccounted_sinks(spec, self._privacy)
        for document in spec.get("datasinks", []):
            asset = DataAsset.model_validate(document)
            if asset.name in withheld:
                self._note(
                    contract_id,
                    "seal_refused",
                    attestation,
                    datasink=asset.name,
                    owner=asset.owner,
                    reason=withheld_reason(withheld[asset.name]),
                )
                continue
            try:
                manifest = seal_datasink(
                    asset,
                    run_dir.asset(asset.name),
                    deks[asset.name],
                    extra_files=logs if asset.name == log_sink else None,
                )
            except UntrustedEntryError as refused:
                self._note(
                    contract_id,
                    "seal_refused",
                    attestation,
                    datasink=asset.name,
                    owner=asset.owner,
                    entry=refused.entry,
                    kind=refused.kind,
                    reason=refused.one_line(),
                )
                continue
            if manifest is None:
                continue
            sealed.append(asset.name)
            self._note(
                contract_id,
                LifecycleEvent.SEALED,
                attestation,
                datasink=asset.name,
                owner=asset.owner,
                files=len(manifest.files),
                bytes=manifest.total_bytes,
            )
        return sealed


def _create_private(path: Path) -> BinaryIO:
    """A new file for the runtime's own writing: O_CREAT|O_EXCL|O_NOFOLLOW never opens what is there."""
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "wb")


class LineCutter:
    """Passes output through, cutting every line at ``limit`` bytes (with a marker), so no line
    is ever held or written longer than that; it keeps no more than the current line's length."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._length = 0  # bytes of the current line written so far
        self._cut = False  # the current line was cut: drop up to its newline

    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end
            out += self._take(chunk[start:stop])
            if end < 0:
                break
            out += b"\n"
            self._length, self._cut = 0, False
            start = end + 1
        return bytes(out)

    def _take(self, piece: bytes) -> bytes:
        if self._cut:
            return b""
        room = self.limit - self._length
        if len(piece) <= room:
            self._length += len(piece)
            return piece
        self._cut = True
        self._length = self.limit
        return piece[:room] + f" [line cut at {self.limit} bytes]".encode()

    def end(self) -> bytes:
        """A last line without newline gets one, so the log ends with a complete line."""
        return b"\n" if self._length else b""


class KillSwitch:
    """Polls a contract's execution option (every :data:`KILL_SWITCH_POLL_SECONDS`) while its
    workloads run.

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
    """Reads complete new JSON lines from the workload's telemetry file (bounded per line and per read).

    The workload owns the folder the file is in, so what is at the path may be a FIFO (an open
    for reading would block), a link (to a host file, whose lines would leave as events) or a
    device. It is opened O_NONBLOCK|O_NOFOLLOW and read only if fstat says regular file; the
    descriptor is then kept, so a later swap of the path changes nothing. ``refused`` is the
    kind of what was found instead (then nothing is read any more)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = b""
        self.refused: str | None = None
        self._fd: int | None = None

    def _open(self) -> int | None:
        if self._fd is None and self.refused is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            except OSError as exc:  # ELOOP: a link at the path
                self.refused = "symbolic link" if os.path.islink(self.path) else f"unreadable ({exc.strerror})"
                return None
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
                self.refused = (
                    "FIFO"
                    if stat.S_ISFIFO(mode)
                    else "socket"
                    if stat.S_ISSOCK(mode)
                    else "folder"
                    if stat.S_ISDIR(mode)
                    else "device or special file"
                )
                return None
            self._fd = fd
        return self._fd

    def read_new(self) -> list[dict[str, Any]]:
        fd = self._open()
        if fd is None:
            return []
        data = os.read(fd, MAX_TELEMETRY_READ)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-MAX_TELEMETRY_LINE:]
        records = []
        for line in lines:
            if not line.strip() or len(line) > MAX_TELEMETRY_LINE:
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class TelemetryForwarder:
    """Telemetry off the control loop: a reader thread tails the file into a bounded queue (the
    oldest records are dropped when it is full: the latest progress matters most), a sender
    thread forwards at most :data:`TELEMETRY_EVENTS_PER_SECOND`. A workload flooding its
    telemetry file therefore costs one thread a bounded read per poll and governance a bounded
    event rate, and never delays the kill switch. Used by the local runtime and the sidecar.

    ``claim`` takes records out on the reader thread before they are queued (a private run's
    ``privacy_record``, which a flood must never push out of the queue); ``keep`` filters what
    is forwarded (telemetry off; loss fields without the ``loss_telemetry`` vote)."""

    def __init__(
        self,
        tail: _TelemetryTail,
        *,
        forward: Callable[[dict[str, Any]], None],
        refused: Callable[[str], None] | None = None,
        dropped: Callable[[int], None] | None = None,
        claim: Callable[[dict[str, Any]], bool] | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self._tail = tail
        self._forward = forward
        self._claim = claim
        self._keep = keep
        self._refused = refused
        self._dropped_report = dropped
        self._queue: deque[dict[str, Any]] = deque()
        self._ready = threading.Condition()
        self._reading = threading.Event()
        self._sending = threading.Event()
        self.dropped = 0
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="telemetry-read")
        self._sender = threading.Thread(target=self._send_loop, daemon=True, name="telemetry-send")

    def start(self) -> TelemetryForwarder:
        self._reader.start()
        self._sender.start()
        return self

    def stop(self) -> None:
        """Read what the workload wrote last, forward what is queued (for at most
        :data:`TELEMETRY_DRAIN_SECONDS`), and report how many records were dropped."""
        self._reading.set()
        # a claimed record (a privacy record) is the run's account: wait for governance's answer
        self._reader.join(timeout=TELEMETRY_DRAIN_SECONDS if self._claim is None else CLAIM_DRAIN_SECONDS)
        with self._ready:
            self._sending.set()
            self._ready.notify_all()
        self._sender.join(timeout=TELEMETRY_DRAIN_SECONDS + 1)
        self._tail.close()
        if self.dropped and self._dropped_report is not None:
            self._dropped_report(self.dropped)

    def _read_once(self) -> None:
        records = self._tail.read_new()
        if self._claim is not None:  # taken before the queue, so a flood can never drop them
            records = [record for record in records if not self._claim(record)]
        if self._keep is not None:
            records = [record for record in records if self._keep(record)]
        if records:
            with self._ready:
                for record in records:
                    if len(self._queue) >= TELEMETRY_QUEUE:
                        self._queue.popleft()
                        self.dropped += 1
                    self._queue.append(record)
                self._ready.notify()

    def _read_loop(self) -> None:
        reported = False
        while True:
            stopping = self._reading.wait(TELEMETRY_POLL_SECONDS)
            try:
                self._read_once()
            except OSError:
                pass
            if self._tail.refused and not reported and self._refused is not None:
                reported = True
                self._refused(self._tail.refused)
            if stopping:
                return

    def _send_loop(self) -> None:
        interval = 1.0 / TELEMETRY_EVENTS_PER_SECOND
        next_send = time.monotonic()
        drain_until: float | None = None
        while True:
            with self._ready:
                while not self._queue and not self._sending.is_set():
                    self._ready.wait()
                if not self._queue:
                    return
                if self._sending.is_set() and drain_until is None:
                    drain_until = time.monotonic() + TELEMETRY_DRAIN_SECONDS
                if drain_until is not None and time.monotonic() > drain_until:
                    self.dropped += len(self._queue)
                    self._queue.clear()
                    return
                record = self._queue.popleft()
            time.sleep(max(0.0, next_send - time.monotonic()))
            next_send = max(next_send + interval, time.monotonic())
            try:
                self._forward(record)
            except Exception:  # a failing forward drops the record, not the run
                pass


# -- where a deployment's status lives -------------------------------------------------------
def deployment_dir(state_dir: Path, contract_id: str) -> Path:
    return state_dir / DEPLOYMENTS_DIR / contract_id


def write_status(state_dir: Path, contract_id: str, status: dict[str, Any]) -> None:
    write_public_file(
        deployment_dir(state_dir, contract_id) / "status.json", (json.dumps(status, sort_keys=True) + "\n").encode()
    )


def read_status(state_dir: Path, contract_id: str) -> dict[str, Any]:
    path = deployment_dir(state_dir, contract_id) / "status.json"
    if not path.is_file():
        raise NotFoundError(
            f"contract '{contract_id}' has never been deployed on this machine",
            hint=f"start it with `cleanroom deployment start --contract-id {contract_id}`",
        )
    status: dict[str, Any] = json.loads(path.read_text())
    pid = status.get("pid")
    if status.get("state") in LIVE_STATES and pid and not process_alive(int(pid)):
        status["state"] = DeploymentState.LOST
    return status
