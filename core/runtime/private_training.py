"""The runtime's side of private training: reserve epsilon before keys, report it after, keep loss in.

Shared by the local runtime and the Azure sidecar:

* :func:`reserve` asks governance for each private training application's reservation BEFORE
  any DEK is fetched: governance refuses a run that would overspend any source's budget, and
  also refuses the DEK of a budgeted datasource without an open reservation, so the order is
  enforced twice. A refusal is noted (``privacy_reservation_refused``: governance's message,
  naming the dataset and what is left) and ends the run with no key released.
* :class:`PrivacyRecords` takes the workload's one ``privacy_record`` telemetry record (design:
  noise_multiplier, sample_rate, steps, delta, accountant, epsilon, ...) out of the telemetry
  stream, whatever the telemetry option says, and sends it to governance, which recomputes
  epsilon. A second record is refused (the first one is the run's account). The datasinks of an
  application whose record governance did not accept are not sealed: what leaves the clean room
  is only a model whose privacy spend governance verified.
* :func:`carries_loss`: per-step loss is a function of the data, so a telemetry record with any
  loss field is dropped unless every member voted the ``loss_telemetry`` option (the workload is
  told by ``CLEANROOM_LOSS_TELEMETRY``; this is the defence in depth when it ignores that).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from core.errors import AccessDeniedError, CleanroomError

PRIVACY_RECORD = "privacy_record"
LOSS_TELEMETRY_OPTION = "loss_telemetry"
RECORD_FIELDS = (
    "noise_multiplier",
    "sample_rate",
    "steps",
    "delta",
    "accountant",
    "epsilon",
    "epsilon_rdp",
    "rows",
)

Note = Callable[..., None]  # (event type, **detail): the runtime's audit-event note


class PrivacyPort(Protocol):
    """What this module needs from governance (a subset of the runtime's GovernancePort)."""

    def reserve_privacy(self, contract_id: str, application: str, attestation: str) -> dict[str, Any]: ...

    def record_privacy(
        self, contract_id: str, run_id: str, record: dict[str, Any], attestation: str
    ) -> dict[str, Any]: ...


def private_applications(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The deployment spec's applications that train with differential privacy."""
    return [app for app in spec.get("applications", []) if app.get("private_training") is not None]


def reserve(
    governance: PrivacyPort, contract_id: str, spec: dict[str, Any], attestation: str, note: Note
) -> dict[str, str]:
    """Reserve each private application's epsilon; ``{application: run id}``.

    Raises governance's AccessDeniedError (after noting ``privacy_refused``) when a dataset
    would overspend: the caller has released no key yet and must not."""
    runs: dict[str, str] = {}
    for app in private_applications(spec):
        try:
            answer = governance.reserve_privacy(contract_id, app["name"], attestation)
        except AccessDeniedError as refused:
            note("privacy_reservation_refused", application=app["name"], reason=refused.one_line())
            raise
        runs[app["name"]] = str(answer["runId"])
        note(
            "privacy_reservation",
            application=app["name"],
            run_id=runs[app["name"]],
            reserved=answer.get("reserved"),
            datasets=answer.get("datasets", []),
        )
    return runs


def carries_loss(record: object) -> bool:
    """Whether a telemetry record holds a loss anywhere (``loss``, ``val_loss``, nested ...)."""
    if isinstance(record, dict):
        return any(("loss" in str(key).lower()) or carries_loss(value) for key, value in record.items())
    if isinstance(record, list):
        return any(carries_loss(item) for item in record)
    return False


def telemetry_filter(*, telemetry_on: bool, private_run: bool, loss_voted: bool) -> Callable[[dict[str, Any]], bool]:
    """Which telemetry records are forwarded: none with telemetry off; in a private run, none
    carrying a loss unless members voted ``loss_telemetry``."""
    drop_loss = private_run and not loss_voted
    return lambda record: telemetry_on and not (drop_loss and carries_loss(record))


def is_privacy_record(record: dict[str, Any]) -> bool:
    return PRIVACY_RECORD in (record.get("event"), record.get("type"))


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    """The accounting fields, whether the workload nests them under ``data`` or not."""
    data = record.get("data") if isinstance(record.get("data"), dict) else record
    assert isinstance(data, dict)
    return {name: data[name] for name in RECORD_FIELDS if name in data}


class PrivacyRecords:
    """Routes each private application's one ``privacy_record`` to its governance reservation.

    ``runs`` maps application -> run id. With one private application the record needs no
    name; with several, it names its ``application``. Called from the telemetry reader thread."""

    def __init__(
        self,
        governance: PrivacyPort,
        contract_id: str,
        runs: dict[str, str],
        attestation: Callable[[], str],
        note: Note,
    ) -> None:
        self._governance = governance
        self._contract_id = contract_id
        self._runs = runs
        self._attestation = attestation
        self._note = note
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        self.accepted: set[str] = set()
        self._duplicates_noted = False

    def __bool__(self) -> bool:
        return bool(self._runs)

    def unaccounted(self) -> list[str]:
        """Private applications without an accepted record: their datasinks are not sealed."""
        return sorted(set(self._runs) - self.accepted)

    def take(self, record: dict[str, Any]) -> bool:
        """True when ``record`` was a privacy record (consumed here: never forwarded as telemetry)."""
        if not is_privacy_record(record):
            return False
        named = record.get("application")
        application = named if isinstance(named, str) else next(iter(self._runs)) if len(self._runs) == 1 else None
        with self._lock:
            if application not in self._runs:
                self._note("privacy_record_refused", reason="the record names no private application of this run")
                return True
            if application in self._reported:
                if not self._duplicates_noted:
                    self._duplicates_noted = True
                    self._note(
                        "privacy_record_refused",
                        application=application,
                        reason="a run reports its privacy record once; the first one stands",
                    )
                return True
            self._reported.add(application)
        run_id = self._runs[application]
        try:
            self._governance.record_privacy(self._contract_id, run_id, _fields(record), self._attestation())
        except CleanroomError as refused:
            self._note("privacy_record_refused", application=application, run_id=run_id, reason=refused.one_line())
            return True
        self.accepted.add(application)
        return True


def unaccounted_sinks(spec: dict[str, Any], privacy: PrivacyRecords | None) -> dict[str, str]:
    """Datasinks written by a private application whose privacy record governance did not accept
    (none sent, or refused): ``{datasink: application}``. Its reservation stays charged, and its
    model, whose spend nobody verified, is not sealed."""
    if privacy is None:
        return {}
    unaccounted = set(privacy.unaccounted())
    return {
        mount["name"]: app["name"]
        for app in spec.get("applications", [])
        if app["name"] in unaccounted
        for mount in app.get("mounts", [])
        if mount.get("kind") == "datasink"
    }


def withheld_reason(application: str) -> str:
    return (
        f"application '{application}' has no privacy record accepted by governance,"
        " so its outputs do not leave the clean room"
    )
