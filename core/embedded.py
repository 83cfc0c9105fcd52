"""The embedded default: every service on loopback under one home directory, no cloud account.

Home is ``$CLEANROOM_HOME`` or ``~/.cleanroom``::

    <home>/
      services.json     name -> {endpoint, pid, stateDir, ...} of what ``up`` started
      governance/       the governance service's state directory (see core.governance.launcher)
      keys/             the key service's state directory (see core.keys.launcher)
      runtime/          the clean-room runtime: attestation key, deployments, private mounts

Services are entries of ``SERVICES`` started in order by ``up`` and stopped in reverse by
``down``. An entry is three functions, so adding one (the key service) is one more
``EmbeddedService(...)`` line: ``start(home, workspaces, started)`` returns the record to keep
(it must hold ``endpoint`` and ``pid``; ``started`` holds the records of the entries before
it), ``stop(home, record)`` stops it, and ``healthy(record)`` answers whether it responds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.crypto.secret_file import write_public_file
from core.errors import ConflictError
from core.governance import launcher as governance_launcher
from core.governance.client import GovernanceClient, deploy_to_workspace
from core.workspace import Workspace

HOME_ENV = "CLEANROOM_HOME"
SERVICES_FILE = "services.json"

Record = dict[str, Any]


def home() -> Path:
    configured = os.environ.get(HOME_ENV)
    return (Path(configured) if configured else Path.home() / ".cleanroom").expanduser().resolve()


@dataclass(frozen=True)
class EmbeddedService:
    name: str
    start: Callable[[Path, list[Workspace], dict[str, Record]], Record]
    stop: Callable[[Path, Record], bool]
    healthy: Callable[[Record], bool]


# -- governance -------------------------------------------------------------------------------------
def governance_state_dir(home_dir: Path) -> Path:
    return home_dir / "governance"


def runtime_state_dir(home_dir: Path) -> Path:
    return home_dir / "runtime"


def key_service_state_dir(home_dir: Path) -> Path:
    return home_dir / "keys"


def _attestation(home_dir: Path) -> dict[str, Any]:
    """Governance trusts the local runtime's virtual attestation and the key service's event tokens."""
    return {
        "factory": "core.keys.attestation:GovernanceAttestationVerifier",
        "args": [str(runtime_state_dir(home_dir)), str(key_service_state_dir(home_dir))],
    }


def _start_governance(home_dir: Path, workspaces: list[Workspace], _: dict[str, Record]) -> Record:
    """Create the consortium from the workspaces' members (first time), start, deploy clients."""
    state_dir = governance_state_dir(home_dir)
    certs = [w.identity.cert_pem for w in workspaces]
    if not governance_launcher.exists(state_dir):
        if not certs:
            raise ConflictError(
                "the first `cleanroom up` needs the parties' workspaces to form the consortium",
                hint="run `cleanroom up --workspace-dirs W1 W2 W3`",
            )
        governance_launcher.create(state_dir, certs, attestation=_attestation(home_dir))
    elif governance_launcher.running_pid(state_dir) is None:
        governance_launcher.set_attestation(state_dir, _attestation(home_dir))
    info = governance_launcher.start(state_dir)
    if workspaces:
        with GovernanceClient(info.endpoint, info.service_cert_pem) as client:
            members = {m["memberId"] for m in client.members()}
        strangers = [w for w in workspaces if w.identity.member_id not in members]
        if strangers:
            raise ConflictError(
                f"workspace {strangers[0].root} is not a member of the running consortium",
                hint="have a member run `cleanroom governance member add --cert` for it, or use a fresh CLEANROOM_HOME",
            )
        for workspace in workspaces:
            deploy_to_workspace(workspace, info.endpoint, info.service_cert_pem)
    return {
        "endpoint": info.endpoint,
        "pid": info.pid,
        "stateDir": str(state_dir),
        "serviceCert": info.service_cert_pem,
    }


def _stop_governance(home_dir: Path, record: Record) -> bool:
    return governance_launcher.stop(Path(record.get("stateDir") or governance_state_dir(home_dir)))


def _governance_healthy(record: Record) -> bool:
    return governance_launcher.healthy(record["endpoint"], record["serviceCert"])


# -- key service (and the runtime's sweep of plaintext left by a killed deployment) ------------------
def _start_key_service(home_dir: Path, _: list[Workspace], __: dict[str, Record]) -> Record:
    from core.keys import launcher as key_launcher
    from core.runtime.local import sweep_stale_mounts

    swept = sweep_stale_mounts(runtime_state_dir(home_dir))
    state_dir = key_service_state_dir(home_dir)
    key_launcher.create(
        state_dir, governance_state_dir=governance_state_dir(home_dir), runtime_state_dir=runtime_state_dir(home_dir)
    )
    info = key_launcher.start(state_dir)
    return {
        "endpoint": info.endpoint,
        "pid": info.pid,
        "stateDir": str(state_dir),
        "cert": str(info.cert_path),
        "sweptMounts": swept,
    }


def _stop_key_service(home_dir: Path, record: Record) -> bool:
    from core.keys import launcher as key_launcher

    return key_launcher.stop(Path(record.get("stateDir") or key_service_state_dir(home_dir)))


def _key_service_healthy(record: Record) -> bool:
    from core.keys.client import KeyServiceClient

    client = KeyServiceClient(record["endpoint"], Path(record["cert"]))
    try:
        return client.healthy()
    finally:
        client.close()


SERVICES: list[EmbeddedService] = [
    EmbeddedService("governance", _start_governance, _stop_governance, _governance_healthy),
    EmbeddedService("key_service", _start_key_service, _stop_key_service, _key_service_healthy),
]


# -- lifecycle ----------------------------------------------------------------------------------------
def _services_path(home_dir: Path) -> Path:
    return home_dir / SERVICES_FILE


def load_records(home_dir: Path | None = None) -> dict[str, Record]:
    path = _services_path(home_dir or home())
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_records(home_dir: Path, records: dict[str, Record]) -> None:
    write_public_file(_services_path(home_dir), (json.dumps(records, indent=2, sort_keys=True) + "\n").encode())


def up(
    workspaces: list[Workspace], *, home_dir: Path | None = None, progress: Callable[[str], None] = lambda name: None
) -> dict[str, Record]:
    """Start every embedded service (idempotent); returns and records name -> record."""
    home_dir = home_dir or home()
    home_dir.mkdir(parents=True, exist_ok=True)
    records = load_records(home_dir)
    for service in SERVICES:
        progress(service.name)
        records[service.name] = service.start(home_dir, workspaces, records)
        _save_records(home_dir, records)
    return records


def down(*, home_dir: Path | None = None, progress: Callable[[str], None] = lambda name: None) -> list[str]:
    """Stop every embedded service, last started first; returns the names that were running.

    A service whose start was interrupted (a signal while it came up) has a pid file but no
    record yet: it is stopped through its state dir, so nothing is left running unrecorded."""
    home_dir = home_dir or home()
    records = load_records(home_dir)
    stopped = []
    for service in reversed(SERVICES):
        record = records.pop(service.name, None)
        if record is not None:
            progress(service.name)
        if service.stop(home_dir, record or {}):
            stopped.append(service.name)
    if _services_path(home_dir).exists():
        _save_records(home_dir, records)
    return stopped


def status(*, home_dir: Path | None = None) -> dict[str, Record]:
    """Each recorded service with ``healthy`` filled in by a live check."""
    records = load_records(home_dir)
    by_name = {s.name: s for s in SERVICES}
    return {
        name: record | {"healthy": name in by_name and by_name[name].healthy(record)}
        for name, record in records.items()
    }
