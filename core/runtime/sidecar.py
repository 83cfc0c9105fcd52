"""The runtime sidecar of a confidential container group: ``python -m core.runtime.sidecar``.

It does inside ACI what ``LocalRuntime`` does on one machine, with the same pieces:

1. read the accepted deployment spec from governance (contract, spec, policy accepted and
   execution on) and refuse unless its measurement is the ``CLEANROOM_POLICY_HASH`` this group
   was built for;
2. attest (``KeyRelease``: MAA via the SKR sidecar on Azure); check every pinned datasource's
   ciphertext against the contract's hash and reserve each private training application's
   epsilon (``core.runtime.private_training``), both before any key; fetch each mount's wrapped
   DEK from governance with that attestation, get each owner's KEK released and unwrap the DEKs;
3. download and decrypt every datasource from its owner's blob store into the shared in-memory
   volume, then write ``ready`` into the run volume: the workload containers were waiting for it
   (see the command wrapper in ``core.runtime.aci``);
4. wait until every workload has written its exit code, forwarding telemetry when the contract
   enables it; the kill switch (execution disabled in governance) or SIGTERM (ACI stop) writes
   ``stop``, which the workloads' command wrapper turns into SIGTERM for the workload and, after
   the grace, SIGKILL; the kill switch also writes ``kill``, which cuts the grace to 0.5 s;
5. seal every datasink back to its owner's store, then wipe the plaintext volumes.

Every step is a lifecycle event in governance, as for the local runtime. Configuration comes
from the container's environment, which the ARM template fixes (and the ccePolicy measures).

The run volume and the datasinks are writable by the workloads (and the run volume is shared by
all of them from the start), so the sidecar follows nothing there (DESIGN.md section 7): it
seals datasinks with the same no-follow walk as the local runtime (``seal_refused`` when a sink
holds a link, FIFO, socket, device or hard-linked file), reads telemetry on its own thread from
a regular file only, writes ``ready``/``failed``/``stop`` by creating a fresh file and renaming
it over whatever is at the name, and reads exit codes without blocking or following links.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config.fragment import DataAsset
from core.crypto.kek import Kek
from core.errors import AccessDeniedError, CleanroomError, ConflictError, InvalidInputError
from core.keys.attestation import DEFAULT_TTL_SECONDS
from core.keys.measurement import policy_hash
from core.runtime.aci import (
    EXIT_FILE_PREFIX,
    FAILED_FILE,
    KILL_FILE,
    LOSS_TELEMETRY_OFF_FILE,
    LOSS_TELEMETRY_ON_FILE,
    READY_FILE,
    RUN_VOLUME,
    SIDECAR_MOUNT_ROOT,
    STOP_FILE,
)
from core.runtime.deployment import TELEMETRY_FILE
from core.runtime.governance_port import HttpGovernance
from core.runtime.key_release import DEFAULT_ATTESTATION_URL, AzureKeyRelease, KeyRelease, VirtualKeyRelease
from core.runtime.lifecycle import LifecycleEvent
from core.runtime.local import (
    GovernancePort,
    KillSwitch,
    TelemetryForwarder,
    _TelemetryTail,
    check_ready,
    owned_dek,
    seal_datasink,
)
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
from core.runtime.served_versions import check_mounted_packages, check_served_versions
from core.storage.blobstore import BlobStore
from core.storage.locator import open_store
from core.storage.transfer import UntrustedEntryError, download_folder, pinned_copy

POLL_SECONDS = 0.1
STOP_GRACE_SECONDS = 20.0
REATTEST_AFTER_SECONDS = DEFAULT_TTL_SECONDS / 2
MAX_EXIT_FILE = 64


def write_control_file(folder: Path, name: str, text: str) -> None:
    """Write ``folder/name`` where workloads can write too: a fresh file (O_EXCL|O_NOFOLLOW) renamed
    over whatever is at the name, so a planted link is replaced, never written through, and a
    planted FIFO cannot block the sidecar."""
    temporary = f".{name}.{secrets.token_hex(6)}"
    fd = os.open(folder / temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    try:
        os.replace(folder / temporary, folder / name)
    except OSError:
        os.unlink(folder / temporary)
        raise


def read_exit_code(path: Path) -> int | None:
    """A workload's exit code from its exit file, or None: regular files only, opened without
    following a link or blocking on a FIFO, and no more than a few bytes read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return int(os.read(fd, MAX_EXIT_FILE).decode().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def sidecar_environment(
    *,
    governance_url: str,
    governance_cert_pem: str,
    maa_endpoint: str | None,
    kek_vaults: dict[str, str],
    attestation_url: str = DEFAULT_ATTESTATION_URL,
) -> dict[str, str]:
    """The sidecar variables the ARM template carries besides the contract, hash and mount plan."""
    env = {
        "CLEANROOM_GOVERNANCE_URL": governance_url,
        "CLEANROOM_GOVERNANCE_CERT": governance_cert_pem,
        "CLEANROOM_KEY_RELEASE": "azure",
        "CLEANROOM_ATTESTATION_URL": attestation_url,
        "CLEANROOM_KEK_VAULTS": json.dumps(kek_vaults, sort_keys=True, separators=(",", ":")),
    }
    if maa_endpoint:
        env["CLEANROOM_MAA_ENDPOINT"] = maa_endpoint
    return env


def _required(env: dict[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise InvalidInputError(
            f"the runtime sidecar has no {name}",
            hint="generate the template with `cleanroom governance deployment generate --backend aci`",
        )
    return value


def _json(env: dict[str, str], name: str) -> Any:
    try:
        return json.loads(_required(env, name))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{name} is not JSON ({exc.msg})", hint="re-generate the ARM template") from exc


@dataclass
class SidecarConfig:
    contract_id: str
    policy_hash: str
    mount_plan: list[dict[str, Any]]
    applications: list[str]
    mount_root: Path

    @classmethod
    def from_env(cls, env: dict[str, str]) -> SidecarConfig:
        plan, apps = _json(env, "CLEANROOM_MOUNT_PLAN"), _json(env, "CLEANROOM_APPLICATIONS")
        if not isinstance(plan, list) or not isinstance(apps, list) or not apps:
            raise InvalidInputError(
                "CLEANROOM_MOUNT_PLAN/CLEANROOM_APPLICATIONS are not lists", hint="re-generate the ARM template"
            )
        return cls(
            contract_id=_required(env, "CLEANROOM_CONTRACT_ID"),
            policy_hash=_required(env, "CLEANROOM_POLICY_HASH"),
            mount_plan=plan,
            applications=[str(a) for a in apps],
            mount_root=Path(env.get("CLEANROOM_MOUNT_ROOT") or SIDECAR_MOUNT_ROOT),
        )

    @property
    def run_dir(self) -> Path:
        return self.mount_root / RUN_VOLUME

    def volume(self, entry: dict[str, Any]) -> Path:
        return self.mount_root / str(entry["volume"])


def key_release_from_env(env: dict[str, str]) -> tuple[KeyRelease, list[Any]]:
    """The platform's KeyRelease (and what to close after): ``azure`` in ACI, ``virtual`` for the
    embedded default's attestation key and key service (the sidecar's tests run this way)."""
    kind = env.get("CLEANROOM_KEY_RELEASE", "azure")
    if kind == "azure":
        return AzureKeyRelease(
            attestation_url=env.get("CLEANROOM_ATTESTATION_URL") or DEFAULT_ATTESTATION_URL,
            maa_endpoint=_required(env, "CLEANROOM_MAA_ENDPOINT"),
            kek_vaults=_json(env, "CLEANROOM_KEK_VAULTS"),
        ), []
    if kind == "virtual":
        from core.keys import launcher

        keys = launcher.info(Path(_required(env, "CLEANROOM_KEY_SERVICE_STATE_DIR"))).client()
        return VirtualKeyRelease(Path(_required(env, "CLEANROOM_RUNTIME_STATE_DIR")), keys), [keys]
    raise InvalidInputError(
        f"CLEANROOM_KEY_RELEASE {kind!r} is not 'azure' or 'virtual'", hint="re-generate the ARM template"
    )


class RuntimeSidecar:
    """One deployment of a contract inside a container group."""

    def __init__(self, config: SidecarConfig, governance: GovernancePort, keys: KeyRelease) -> None:
        self.config = config
        self.governance = governance
        self.keys = keys
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self._spec: dict[str, Any] = {}
        self._token: str | None = None
        self._attested_at = 0.0
        self._token_lock = threading.Lock()  # the telemetry thread sends events too
        self._privacy: PrivacyRecords | None = None  # private training runs: their privacy records
        self._loss_telemetry = False

    def request_stop(self, reason: str) -> None:
        """Kill switch or SIGTERM (ACI stop): stop the workloads, seal what they wrote, wipe plaintext."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def _attestation(self) -> str:
        with self._token_lock:
            if self._token is None or time.monotonic() - self._attested_at > REATTEST_AFTER_SECONDS:
                self._token, self._attested_at = self.keys.attest(self._spec), time.monotonic()
            return self._token

    def _note(self, event_type: str, /, **detail: Any) -> None:
        try:
            self.governance.record_event(
                self.config.contract_id,
                {"type": event_type, **detail},
                category="audit",
                attestation=self._attestation(),
            )
        except CleanroomError as exc:
            print(f"cleanroom-runtime: event {event_type} not recorded: {exc.one_line()}", file=sys.stderr)

    def _asset(self, entry: dict[str, Any]) -> DataAsset:
        documents = self._spec.get(f"{entry['kind']}s", [])
        document = next((d for d in documents if d.get("name") == entry["name"]), None)
        if document is None:
            raise ConflictError(
                f"{entry['kind']} '{entry['name']}' of the mount plan is not in the accepted spec",
                hint="re-generate the ARM template from the accepted deployment spec",
            )
        return DataAsset.model_validate(document)

    def run(self) -> dict[str, int]:
        """The whole deployment; returns each workload's exit code."""
        contract_id = self.config.contract_id
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._spec = check_ready(self.governance, contract_id)
            measured = policy_hash(self._spec)
            if measured != self.config.policy_hash:
                raise ConflictError(
                    f"the accepted deployment spec of '{contract_id}' measures {measured[:12]}…, not "
                    f"the {self.config.policy_hash[:12]}… this container group was built for",
                    hint="re-generate and deploy the template of the accepted spec",
                )
        except BaseException:
            write_control_file(self.config.run_dir, FAILED_FILE, "1")  # the waiting workloads give up
            raise
        self._note(LifecycleEvent.DEPLOYING, policy_hash=measured)
        deks: dict[str, bytes] = {}
        ready = False
        try:
            self._note(LifecycleEvent.ATTESTED, policy_hash=measured)
            check_served_versions(self.governance, self._spec)  # a registry version it serves: still servable?
            with tempfile.TemporaryDirectory(prefix="cleanroom-ciphertext-") as copies:
                stores = self._pin_datasources(Path(copies))  # a swapped upload: nothing reserved or released
                self._reserve_privacy()  # before any key: a refusal ends the run here
                deks = self._release_deks()
                self._note(LifecycleEvent.KEYS_RELEASED, assets=sorted(deks))
                self._decrypt_datasources(stores, deks)
            check_mounted_packages(self._spec, self._datasource_volume)  # the registry's bytes, before any workload
            if self._stop.is_set():
                raise AccessDeniedError(f"deployment of '{contract_id}' stopped before it ran ({self._stop_reason})")
            self._open_volumes_to_workloads()
            self._tell_loss_telemetry()
            write_control_file(self.config.run_dir, READY_FILE, measured)
            ready = True
            self._note(
                LifecycleEvent.RUNNING, applications=self.config.applications, sandbox="confidential container group"
            )
            codes = self._wait_for_workloads()
            self._note(LifecycleEvent.EXITED, exit_codes=codes, stopped_by=self._stop_reason)
            return codes
        except BaseException as exc:
            write_control_file(self.config.run_dir, FAILED_FILE, "1")
            reason = exc.one_line() if isinstance(exc, CleanroomError) else f"{type(exc).__name__}: {exc}"
            self._note(LifecycleEvent.FAILED, reason=reason)
            raise
        finally:
            try:
                if ready:  # only workloads that ran can have produced outputs
                    self._seal(deks)
            finally:
                self._wipe()

    def _reserve_privacy(self) -> None:
        """Reserve every private training application's epsilon (``core.runtime.private_training``)."""
        contract_id = self.config.contract_id
        runs = reserve(self.governance, contract_id, self._spec, self._attestation(), self._note)
        if runs:
            self._privacy = PrivacyRecords(self.governance, contract_id, runs, self._attestation, self._note)
            self._loss_telemetry = self.governance.option_enabled(contract_id, LOSS_TELEMETRY_OPTION)

    def _tell_loss_telemetry(self) -> None:
        """The voted ``loss_telemetry`` option as governance gave it (never the template's word):
        the workloads' wrapper exports ``CLEANROOM_LOSS_TELEMETRY=1`` to a private training
        workload only on "on", as the local runtime sets it at launch. One of the two names is
        always written, so a name a workload plants later cannot turn loss on; loss telemetry
        from a workload that ignores the answer is dropped by ``telemetry_filter`` all the same."""
        voted = self._privacy is not None and self._loss_telemetry
        write_control_file(self.config.run_dir, LOSS_TELEMETRY_ON_FILE if voted else LOSS_TELEMETRY_OFF_FILE, "1")

    def _forward_telemetry(self, record: dict[str, Any]) -> None:
        """One telemetry record to governance, built as the local runtime builds it: the record's
        keys are the event's data, never keyword arguments (a ``category`` key would break them)."""
        try:
            self.governance.record_event(
                self.config.contract_id,
                {**record, "type": "telemetry"},
                category="telemetry",
                attestation=self._attestation(),
            )
        except CleanroomError as exc:
            print(f"cleanroom-runtime: telemetry not recorded: {exc.one_line()}", file=sys.stderr)

    def _pin_datasources(self, copies: Path) -> dict[str, BlobStore]:
        """Where each datasource is decrypted from. A pinned one (``content_hash``) is first copied
        (ciphertext) and its hash checked against the contract's, all before any epsilon is
        reserved or key released; what is decrypted is exactly the copy that was checked."""
        stores: dict[str, BlobStore] = {}
        for entry in self.config.mount_plan:
            if entry["kind"] != "datasource":
                continue
            asset = self._asset(entry)
            store: BlobStore = open_store(asset.store)
            if asset.content_hash is not None:
                store = pinned_copy(
                    store,
                    asset.container,
                    copies / asset.name,
                    expected=asset.content_hash,
                    label=f"datasource '{asset.name}'",
                )
            stores[asset.name] = store
        return stores

    def _datasource_volume(self, name: str) -> Path:
        for entry in self.config.mount_plan:
            if entry["kind"] == "datasource" and entry["name"] == name:
                return self.config.volume(entry)
        raise ConflictError(
            f"datasource '{name}' is not in the mount plan",
            hint="re-generate the ARM template from the accepted deployment spec",
        )

    def _decrypt_datasources(self, stores: dict[str, BlobStore], deks: dict[str, bytes]) -> None:
        for entry in self.config.mount_plan:
            if entry["kind"] == "datasource":
                asset = self._asset(entry)
                download_folder(
                    stores[asset.name],
                    asset.container,
                    deks[asset.name],
                    self.config.volume(entry),
                    label=f"datasource '{asset.name}'",
                )

    def _open_volumes_to_workloads(self) -> None:
        """Workload images run as their own users, and the group's volumes are memory inside the
        TEE shared only by its containers: datasources readable, datasinks and run volume writable."""
        for entry in self.config.mount_plan:
            folder = self.config.volume(entry)
            folder.mkdir(parents=True, exist_ok=True)
            if entry["kind"] == "datasink":
                folder.chmod(0o1777)
                continue
            for path in [folder, *folder.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
        self.config.run_dir.chmod(0o1777)

    def _release_deks(self) -> dict[str, bytes]:
        keks: dict[str, Kek] = {}
        deks: dict[str, bytes] = {}
        for entry in self.config.mount_plan:
            name = str(entry["name"])
            owner = str(self._asset(entry).owner)  # the accepted spec's owner, not the template's word
            if owner not in keks:
                keks[owner] = self.keys.release_kek(owner, self.config.contract_id, self._attestation())
            wrapped = owned_dek(self.governance, self.config.contract_id, name, owner, self._attestation())
            deks[name] = keks[owner].unwrap(wrapped, label=f"DEK of '{name}'")
        return deks

    def _wait_for_workloads(self) -> dict[str, int]:
        """The control loop: the kill switch, stop requests and exit files only; telemetry, which
        the workloads control, is read and forwarded on its own threads."""
        contract_id = self.config.contract_id
        telemetry: TelemetryForwarder | None = None
        telemetry_on = self.governance.option_enabled(contract_id, "telemetry")
        privacy = self._privacy
        # an onboarding run's statuses and a regression run's aggregate go to the model registry,
        # as on the local runtime (the same routers)
        statuses = ModelStatusRecords.for_spec(self.governance, contract_id, self._spec, self._attestation, self._note)
        regression = ModelRegressionRecords.for_spec(
            self.governance, contract_id, self._spec, self._attestation, self._note
        )
        if telemetry_on or privacy or statuses or regression:  # these are read even with telemetry off
            telemetry = TelemetryForwarder(
                _TelemetryTail(self.config.run_dir / Path(TELEMETRY_FILE).name),
                forward=self._forward_telemetry,
                refused=lambda kind: self._note("telemetry_refused", kind=kind),
                dropped=lambda count: self._note("telemetry_dropped", records=count),
                claim=claim_first(
                    privacy.take if privacy else None,
                    statuses.take if statuses else None,
                    regression.take if regression else None,
                ),
                keep=telemetry_filter(
                    telemetry_on=telemetry_on, private_run=bool(privacy), loss_voted=self._loss_telemetry
                ),
            ).start()
        exits = {app: self.config.run_dir / f"{EXIT_FILE_PREFIX}{app}" for app in self.config.applications}
        kill_switch = KillSwitch(self.governance, contract_id)
        deadline: float | None = None
        killing = False
        try:
            while not all(os.path.lexists(path) for path in exits.values()):
                if not killing and kill_switch.tripped():
                    self.request_stop("execution disabled by a member")
                    # first: the wrappers then use the kill switch's short grace, also in a stop under way
                    write_control_file(self.config.run_dir, KILL_FILE, "execution disabled by a member")
                    killing = True
                if self._stop.is_set() and deadline is None:
                    write_control_file(self.config.run_dir, STOP_FILE, self._stop_reason or "stop")
                    self._note(LifecycleEvent.STOPPING, reason=self._stop_reason)
                    deadline = time.monotonic() + STOP_GRACE_SECONDS
                if deadline is not None and time.monotonic() > deadline:
                    break  # a workload ignoring SIGTERM: seal what is there, ACI kills the rest
                time.sleep(POLL_SECONDS)
        finally:
            if telemetry is not None:
                telemetry.stop()
        codes = {}
        for app, path in exits.items():
            code = read_exit_code(path)
            codes[app] = -int(signal.SIGTERM) if code is None else code  # None: not finished within the grace
        return codes

    def _seal(self, deks: dict[str, bytes]) -> None:
        withheld = unaccounted_sinks(self._spec, self._privacy)
        for entry in self.config.mount_plan:
            if entry["kind"] != "datasink":
                continue
            asset = self._asset(entry)
            if asset.name in withheld:
                self._note(
                    "seal_refused", datasink=asset.name, owner=asset.owner, reason=withheld_reason(withheld[asset.name])
                )
                continue
            try:
                manifest = seal_datasink(asset, self.config.volume(entry), deks[asset.name])
            except UntrustedEntryError as refused:
                self._note(
                    "seal_refused",
                    datasink=asset.name,
                    owner=asset.owner,
                    entry=refused.entry,
                    kind=refused.kind,
                    reason=refused.one_line(),
                )
                continue
            if manifest is None:
                continue
            self._note(
                LifecycleEvent.SEALED,
                datasink=asset.name,
                owner=asset.owner,
                files=len(manifest.files),
                bytes=manifest.total_bytes,
            )

    def _wipe(self) -> None:
        """No plaintext outlives the run in the group's memory-backed volumes."""
        for entry in self.config.mount_plan:
            folder = self.config.volume(entry)
            if folder.is_dir():
                for child in folder.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    governance: HttpGovernance | None = None
    opened: list[Any] = []
    try:
        config = SidecarConfig.from_env(env)
        keys, opened = key_release_from_env(env)
        governance = HttpGovernance(
            _required(env, "CLEANROOM_GOVERNANCE_URL"), _required(env, "CLEANROOM_GOVERNANCE_CERT")
        )
        sidecar = RuntimeSidecar(config, governance, keys)
        signal.signal(signal.SIGTERM, lambda *_: sidecar.request_stop("SIGTERM (container group stopped)"))
        codes = sidecar.run()
    except CleanroomError as exc:
        print(f"cleanroom-runtime: error: {exc.one_line()}", file=sys.stderr)
        return 1
    finally:
        for closable in [*opened, *([governance] if governance else [])]:
            closable.close()
    print(f"cleanroom-runtime: workloads exited {json.dumps(codes, sort_keys=True)}", file=sys.stderr)
    return 0 if all(code == 0 for code in codes.values()) else 2


if __name__ == "__main__":
    sys.exit(main())
