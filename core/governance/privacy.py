"""The privacy ledger: per-dataset differential-privacy budgets, charged across runs and contracts.

Pure rules, no SQL and no HTTP, so the governance service and an offline verifier run the very
same code: the service keeps every privacy write as a governance-ledger entry and a row of the
``privacy_entries`` table, and rebuilds a ``PrivacyLedger`` from those rows in order; ``privacy
verify`` rebuilds one from a ledger export (``replay_export``) and, unlike the service, recomputes
every recorded epsilon with opacus's accountant, so a party who trusts nothing the service stored
can check what each run spent.

Accounting choices (why, not what):

* A **dataset** is ``<owner member id>/<datasource name>``: the same owner and name in two
  contracts are the same rows, so they draw on one budget; a contract declaring another
  ``epsilon_total`` for a known dataset is refused rather than silently opening a second budget.
* **Group privacy**: the join lets one person contribute up to ``max_rows_per_key`` = k rows, and
  DP-SGD's guarantee is per row, so a run at (epsilon, delta) costs each person k * epsilon
  (the linear bound; delta's group factor is covered by requiring delta < 1/min_rows at contract
  time). Every source dataset of the join is charged the full k * epsilon: a person present in
  several sources is still one person.
* A run **reserves** k * target epsilon before any key is released and **records** what it
  actually spent at exit; governance recomputes epsilon from (noise multiplier, sample rate,
  steps, delta) itself. A run that never records (crash, kill switch) keeps its whole reservation:
  it may have trained and released something, so the budget cannot assume it did not. A record
  refused as a mismatch or an overspend also keeps the reservation charged.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.errors import (
    AccessDeniedError,
    CleanroomError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)
from core.governance import ledger
from core.governance.signing import SignatureRejected, parse_message

ACCOUNTANTS = ("prv", "rdp")
EPSILON_TOLERANCE = 1e-3  # relative: |claimed - recomputed| > tolerance * max(1, recomputed) is a mismatch
ROUNDING = 1e-9  # float slack when comparing sums of charges with budgets
# The accountants' cost grows with the steps they compose (PRV: about half a minute for 100,000 on
# this project's CPUs), and governance recomputes every record a clean room sends: a record
# claiming a billion steps would hold a service thread for hours. No run of this product comes
# near the cap (the full dp-join run takes a few hundred steps).
MAX_STEPS = 100_000
# PRV discretises the privacy loss on a grid whose size grows with the steps and with how large
# epsilon is (small noise, large sample rate): a record of a few steps with almost no noise asks
# for tens of millions of points (minutes, or gigabytes). Ten million points is about a minute
# here; 100,000 steps at noise 1.1 and sample rate 0.01 (epsilon 21) need six million.
MAX_PRV_GRID = 10_000_000

# ledger entry kinds (the ``kind`` column) of privacy writes
REGISTER = "privacy.register"  # service-signed: datasets of an accepted contract seen for the first time
LOWER = "privacy.lower"  # member-signed: the owner lowers its dataset's budget
RAISE = "privacy.raise"  # service-signed: an accepted set_privacy_budget proposal
RESERVE = "privacy.reserve"  # attested: a run reserved k * epsilon on every source dataset
REFUSE = "privacy.refuse"  # attested: a reservation refused (no key was released)
RECORD = "privacy.record"  # attested: a run's accounting, recorded or refused
KINDS = (REGISTER, LOWER, RAISE, RESERVE, REFUSE, RECORD)

RESERVED, RECORDED, REFUSED = "reserved", "recorded", "refused"
_ML_HINT = "install the ml extra (`pip install 'cleanroom-console[ml]'`) where governance runs; the run stays charged"


class AccountantUnavailable(ConflictError):
    """opacus is not installed where epsilon must be recomputed."""


def dataset_id(owner: str, name: str) -> str:
    return f"{owner}/{name}"


def owned_dataset(dataset: str, signer: str) -> str:
    """A dataset named by its owner: ``NAME`` is short for ``<signer>/NAME``."""
    return dataset if "/" in dataset else dataset_id(signer, dataset)


def instance_of(claims: dict[str, Any]) -> str:
    """The clean-room instance an attestation speaks for: SHA-256 of its workload-key claim.

    Binding a reservation to it is what stops another instance of the same measured policy (a
    second deployment of the contract) from getting DEKs on the first one's reservation."""
    report_data = claims.get("report_data")
    if not isinstance(report_data, str) or not report_data:
        raise AccessDeniedError(
            "the attestation names no workload key (report_data), so no privacy reservation can be bound to it",
            hint="attest the clean room with its workload key, as the runtime does",
        )
    return hashlib.sha256(report_data.encode()).hexdigest()


@dataclass(frozen=True)
class DeclaredBudget:
    """A datasource's ``privacy`` declaration, as the accepted contract states it."""

    dataset: str
    owner: str
    name: str
    epsilon_total: float
    delta: float
    privacy_unit: str

    def record(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "owner": self.owner,
            "name": self.name,
            "epsilon_total": self.epsilon_total,
            "delta": self.delta,
            "privacy_unit": self.privacy_unit,
        }


def declared_budgets(contract_data: dict[str, Any]) -> list[DeclaredBudget]:
    """The privacy budgets a contract's datasources declare (``DataAsset.privacy``)."""
    budgets = []
    for asset in contract_data.get("datasources") or []:
        privacy = asset.get("privacy") if isinstance(asset, dict) else None
        if not isinstance(privacy, dict):
            continue
        owner, name = str(asset["owner"]), str(asset["name"])
        budgets.append(
            DeclaredBudget(
                dataset_id(owner, name),
                owner,
                name,
                float(privacy["epsilon_total"]),
                float(privacy["delta"]),
                str(privacy["privacy_unit"]),
            )
        )
    return budgets


@dataclass(frozen=True)
class RunPlan:
    """What one run of a private-training application may spend, read from the accepted contract."""

    application: str
    epsilon: float
    delta: float
    accountant: str
    max_rows_per_key: int
    datasets: tuple[str, ...]

    @property
    def charge(self) -> float:
        """k * epsilon: a person with k rows in the joined data loses k * epsilon (group privacy)."""
        return self.max_rows_per_key * self.epsilon


def run_plan(contract_id: str, spec: dict[str, Any], application: str) -> RunPlan:
    """The plan of ``application``'s private training in an accepted deployment spec (which keeps
    each application's ``private_training`` and the datasources' ``privacy``); refused if it has
    none or a join source has no budget."""
    apps = [a for a in spec.get("applications") or [] if isinstance(a, dict) and a.get("name") == application]
    if not apps:
        raise NotFoundError(
            f"the accepted deployment spec of contract '{contract_id}' runs no application '{application}'",
            hint="reserve for an application of the accepted deployment spec",
        )
    training = apps[0].get("private_training")
    if not isinstance(training, dict):
        raise ConflictError(
            f"application '{application}' of contract '{contract_id}' declares no private_training",
            hint="only private-training applications reserve privacy budget",
        )
    budgeted = {b.name: b.dataset for b in declared_budgets(spec)}
    datasets: list[str] = []
    for source in training["join"]["sources"]:
        name = source["datasource"]
        if name not in budgeted:
            raise ConflictError(
                f"join source '{name}' of application '{application}' is not a budgeted datasource of "
                f"contract '{contract_id}'",
                hint="every join source declares privacy (epsilon_total, delta, privacy_unit)",
            )
        if budgeted[name] not in datasets:
            datasets.append(budgeted[name])
    return RunPlan(
        application,
        float(training["epsilon"]),
        float(training["delta"]),
        str(training.get("accountant", "prv")),
        int(training["join"]["max_rows_per_key"]),
        tuple(datasets),
    )


def recompute_epsilon(accountant: str, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` Poisson-sampled DP-SGD steps, by opacus's accountant of that name.

    Imported here, not at module load: opacus pulls in torch, which the governance service
    otherwise never needs (a service without the ml extra refuses records, see ``_ML_HINT``)."""
    try:
        accountants = importlib.import_module("opacus.accountants")
    except ImportError as exc:
        raise AccountantUnavailable(
            "epsilon cannot be recomputed here: opacus is not installed", hint=_ML_HINT
        ) from exc
    if steps == 0:
        return 0.0
    meter = accountants.PRVAccountant() if accountant == "prv" else accountants.RDPAccountant()
    meter.history = [(noise_multiplier, sample_rate, steps)]
    try:
        if accountant == "prv":
            _check_prv_grid(meter, accountants, noise_multiplier, sample_rate, steps, delta)
        epsilon = float(meter.get_epsilon(delta))
    except (ArithmeticError, MemoryError, RuntimeError, ValueError) as exc:  # numpy/scipy refusing the domain
        epsilon, why = math.nan, f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    else:
        why = f"epsilon {epsilon}"
    if not math.isfinite(epsilon):
        raise InvalidInputError(
            f"the {accountant} accountant cannot account for noise_multiplier {noise_multiplier}, sample_rate "
            f"{sample_rate}, {steps} steps at delta {delta} ({why})",
            hint="send the record of a run whose privacy loss can be accounted for; the run stays charged",
        )
    return epsilon


def _check_prv_grid(
    meter: Any, accountants: Any, noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> None:
    """Refuse, before PRV allocates it, a grid above :data:`MAX_PRV_GRID` points. The domain is
    opacus's own (``_get_domain`` with ``get_epsilon``'s defaults), found with a few RDP
    evaluations: cheap whatever the parameters."""
    prv = accountants.analysis.prv.PoissonSubsampledGaussianPRV(sample_rate, noise_multiplier)
    domain = meter._get_domain(prvs=[prv], num_self_compositions=[steps], eps_error=0.01, delta_error=delta / 1000)
    if domain.size > MAX_PRV_GRID:
        raise InvalidInputError(
            f"the prv accountant cannot account for noise_multiplier {noise_multiplier}, sample_rate {sample_rate}, "
            f"{steps} steps at delta {delta}: its grid would need {domain.size:,} points (at most {MAX_PRV_GRID:,}), "
            "so little noise that no budget covers it",
            hint="send the record of the run as trained; the run stays charged",
        )


def check_record(record: dict[str, Any]) -> dict[str, Any]:
    """The accounting fields of a ``privacy_record``, type-checked; one line naming a bad field."""

    def number(key: str, low: float, high: float, *, low_open: bool = True) -> float:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInputError(f"privacy record field {key!r} must be a number", hint="send the workload's record")
        if value > high or value < low or (low_open and value == low):
            raise InvalidInputError(
                f"privacy record field {key!r} = {value} is out of range", hint="send the workload's record"
            )
        return float(value)

    steps = record.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise InvalidInputError(
            "privacy record field 'steps' must be an integer >= 0", hint="send the workload's record"
        )
    if steps > MAX_STEPS:
        raise InvalidInputError(
            f"privacy record field 'steps' = {steps} is above the {MAX_STEPS} steps governance recomputes",
            hint=f"train at most {MAX_STEPS} steps per run (set private_training.max_steps)",
        )
    accountant = record.get("accountant")
    if accountant not in ACCOUNTANTS:
        raise InvalidInputError(
            f"privacy record accountant {accountant!r} is not known", hint=f"use one of: {', '.join(ACCOUNTANTS)}"
        )
    return {
        "noise_multiplier": number("noise_multiplier", 0.0, 1e6),
        "sample_rate": number("sample_rate", 0.0, 1.0),
        "steps": steps,
        "delta": number("delta", 0.0, 1.0),
        "accountant": accountant,
        "epsilon": number("epsilon", 0.0, math.inf, low_open=False),
    }


@dataclass
class Budget:
    """One dataset's lifetime budget and what runs spent and still hold of it."""

    owner: str
    name: str
    epsilon_total: float
    delta: float
    privacy_unit: str
    spent: float = 0.0
    reserved: float = 0.0

    @property
    def left(self) -> float:
        return self.epsilon_total - self.spent - self.reserved

    def view(self, dataset: str) -> dict[str, Any]:
        return {
            "dataset": dataset,
            "owner": self.owner,
            "name": self.name,
            "privacyUnit": self.privacy_unit,
            "epsilonTotal": self.epsilon_total,
            "delta": self.delta,
            "spent": self.spent,
            "reserved": self.reserved,
            "left": max(self.left, 0.0),
        }


@dataclass
class Reservation:
    run_id: str
    contract_id: str
    application: str
    instance: str
    datasets: tuple[str, ...]
    epsilon: float
    delta: float
    accountant: str
    max_rows_per_key: int
    epsilon_reserved: float
    status: str = RESERVED


@dataclass(frozen=True)
class Verdict:
    """What governance makes of a run's record: recorded (spent = k * recomputed) or refused."""

    status: str
    epsilon_recomputed: float
    epsilon_spent: float
    reason: str


def judge_record(reservation: Reservation, fields: dict[str, Any], recomputed: float) -> Verdict:
    """Accept a record only if its epsilon is the recomputed one and k times it fits the reservation."""
    claimed = fields["epsilon"]
    if fields["delta"] != reservation.delta:
        reason = f"the record's delta {fields['delta']} is not the contract's delta {reservation.delta}"
    elif fields["accountant"] != reservation.accountant:
        reason = f"the record's accountant {fields['accountant']} is not the contract's {reservation.accountant}"
    elif abs(claimed - recomputed) > EPSILON_TOLERANCE * max(1.0, recomputed):
        reason = f"claimed epsilon {claimed:.4f} but governance recomputes {recomputed:.4f} (mismatch)"
    elif reservation.max_rows_per_key * recomputed > reservation.epsilon_reserved + ROUNDING:
        reason = (
            f"run spent epsilon {reservation.max_rows_per_key * recomputed:.4f} (k={reservation.max_rows_per_key}) "
            f"but reserved only {reservation.epsilon_reserved:.4f} (overspent)"
        )
    else:
        return Verdict(RECORDED, recomputed, reservation.max_rows_per_key * recomputed, "")
    return Verdict(REFUSED, recomputed, 0.0, reason)


@dataclass
class PrivacyLedger:
    """The privacy state as the ordered privacy entries define it.

    Each ``apply_*`` both checks (raising the error a member or clean room would see) and applies,
    so the service checks a write against exactly the rules its replay will enforce."""

    budgets: dict[str, Budget] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    # -- checks shared by the service's validation and the replay ----------------------------------
    def budget(self, dataset: str) -> Budget:
        found = self.budgets.get(dataset)
        if found is None:
            raise NotFoundError(
                f"dataset {dataset!r} has no privacy budget",
                hint="list budgets with `cleanroom governance privacy show`",
            )
        return found

    def check_declarations(self, contract_id: str, declared: Iterable[DeclaredBudget]) -> list[DeclaredBudget]:
        """The declarations not registered yet; a known dataset declared differently is refused."""
        new = []
        for item in declared:
            known = self.budgets.get(item.dataset)
            if known is None:
                new.append(item)
                continue
            if (known.epsilon_total, known.delta, known.privacy_unit) != (
                item.epsilon_total,
                item.delta,
                item.privacy_unit,
            ):
                raise ConflictError(
                    f"contract '{contract_id}' declares datasource '{item.name}' with epsilon_total "
                    f"{item.epsilon_total}, delta {item.delta}, privacy_unit {item.privacy_unit!r}, but the privacy "
                    f"ledger holds epsilon_total {known.epsilon_total}, delta {known.delta}, privacy_unit "
                    f"{known.privacy_unit!r} for it",
                    hint="declare the ledger's values (`cleanroom governance privacy show`), or change the budget "
                    "first with `cleanroom governance privacy budget lower` / `propose-raise`",
                )
        return new

    def check_lower(self, dataset: str, epsilon_total: float, signer: str) -> Budget:
        budget = self.budget(dataset)
        if budget.owner != signer:
            raise AccessDeniedError(
                f"only the owner of dataset '{budget.name}' may lower its privacy budget",
                hint="ask its owner; any member may propose a raise with `privacy budget propose-raise`",
            )
        if epsilon_total >= budget.epsilon_total:
            raise ConflictError(
                f"epsilon_total {epsilon_total} is not below the current {budget.epsilon_total} of '{budget.name}'",
                hint="raising a budget needs every member's vote: `cleanroom governance privacy budget propose-raise`",
            )
        if epsilon_total < budget.spent + budget.reserved - ROUNDING:
            raise ConflictError(
                f"epsilon_total {epsilon_total} is below what runs already spent and reserved "
                f"({budget.spent + budget.reserved:.4f}) of '{budget.name}'",
                hint=f"lower it to at least {budget.spent + budget.reserved:.4f}",
            )
        return budget

    def check_raise(self, dataset: str, epsilon_total: float) -> Budget:
        budget = self.budget(dataset)
        if epsilon_total <= budget.epsilon_total:
            raise ConflictError(
                f"epsilon_total {epsilon_total} is not above the current {budget.epsilon_total} of '{budget.name}'",
                hint="its owner lowers a budget alone: `cleanroom governance privacy budget lower`",
            )
        return budget

    def shortfall(self, plan: RunPlan) -> tuple[str, float, float, float] | None:
        """(dataset id, needed, left, total) of the first source the plan's charge would overspend."""
        for dataset in plan.datasets:
            budget = self.budget(dataset)
            if plan.charge > budget.left + ROUNDING:
                return dataset, plan.charge, max(budget.left, 0.0), budget.epsilon_total
        return None

    def open_reservation(self, contract_id: str, instance: str) -> bool:
        return any(
            r.contract_id == contract_id and r.instance == instance and r.status == RESERVED
            for r in self.reservations.values()
        )

    def reservation_for(self, contract_id: str, run_id: str, instance: str) -> Reservation:
        """The open reservation a record is for, made by the same clean-room instance."""
        found = self.reservations.get(run_id)
        if found is None or found.contract_id != contract_id:
            raise NotFoundError(
                f"privacy reservation {run_id!r} of contract '{contract_id}' does not exist",
                hint="record against the runId the reservation returned",
            )
        if found.instance != instance:
            raise AccessDeniedError(
                f"privacy reservation {run_id[:12]}… was made by another clean-room instance",
                hint="the run that reserved records its own accounting",
            )
        if found.status != RESERVED:
            raise ConflictError(
                f"privacy reservation {run_id[:12]}… is already {found.status}",
                hint="a run records its accounting once",
            )
        return found

    # -- applying entries --------------------------------------------------------------------------
    def apply(self, seqno: int, kind: str, signer: str, record: dict[str, Any]) -> None:
        """Apply one privacy entry (after its checks) and add it to the history."""
        if kind == REGISTER:
            declared = [DeclaredBudget(**item) for item in record["datasets"]]
            for item in declared:
                if item.dataset in self.budgets:
                    raise ConflictError(f"dataset '{item.name}' is registered twice")
                self.budgets[item.dataset] = Budget(
                    item.owner, item.name, item.epsilon_total, item.delta, item.privacy_unit
                )
            datasets = [item.dataset for item in declared]
            self._note(seqno, kind, datasets, record, epsilon=None)
        elif kind == LOWER:
            dataset = owned_dataset(str(record["dataset"]), signer)
            self.check_lower(dataset, float(record["epsilon_total"]), signer).epsilon_total = float(
                record["epsilon_total"]
            )
            self._note(seqno, kind, [dataset], record, epsilon=float(record["epsilon_total"]))
        elif kind == RAISE:
            dataset = str(record["dataset"])
            self.check_raise(dataset, float(record["epsilon_total"])).epsilon_total = float(record["epsilon_total"])
            self._note(seqno, kind, [dataset], record, epsilon=float(record["epsilon_total"]))
        elif kind == RESERVE:
            reservation = Reservation(
                run_id=record["run_id"],
                contract_id=record["contract_id"],
                application=record["application"],
                instance=record["instance"],
                datasets=tuple(record["datasets"]),
                epsilon=float(record["epsilon"]),
                delta=float(record["delta"]),
                accountant=str(record["accountant"]),
                max_rows_per_key=int(record["max_rows_per_key"]),
                epsilon_reserved=float(record["epsilon_reserved"]),
            )
            plan = RunPlan(
                reservation.application,
                reservation.epsilon,
                reservation.delta,
                reservation.accountant,
                reservation.max_rows_per_key,
                reservation.datasets,
            )
            if reservation.run_id in self.reservations:
                raise ConflictError(f"run id {reservation.run_id} is reserved twice")
            if not math.isclose(plan.charge, reservation.epsilon_reserved, rel_tol=1e-12):
                raise ConflictError(f"reservation of {reservation.epsilon_reserved} is not k x epsilon = {plan.charge}")
            if self.shortfall(plan) is not None:
                raise ConflictError(f"reservation {reservation.run_id} exceeds what was left")
            for dataset in reservation.datasets:
                self.budgets[dataset].reserved += reservation.epsilon_reserved
            self.reservations[reservation.run_id] = reservation
            self._note(seqno, kind, list(reservation.datasets), record, epsilon=reservation.epsilon_reserved)
        elif kind == REFUSE:
            self._note(seqno, kind, [str(record["dataset"])], record, epsilon=float(record["needed"]))
        elif kind == RECORD:
            reservation = self.reservation_for(record["contract_id"], record["run_id"], record["instance"])
            reservation.status = str(record["status"])
            if reservation.status == RECORDED:
                for dataset in reservation.datasets:
                    self.budgets[dataset].reserved -= reservation.epsilon_reserved
                    self.budgets[dataset].spent += float(record["epsilon_spent"])
            self._note(seqno, kind, list(reservation.datasets), record, epsilon=float(record["epsilon_spent"]))
        else:
            raise InvalidInputError(f"privacy entry kind {kind!r} is not known")

    def _note(
        self, seqno: int, kind: str, datasets: list[str], record: dict[str, Any], *, epsilon: float | None
    ) -> None:
        self.history.append(
            {
                "seqno": seqno,
                "kind": kind.removeprefix("privacy."),
                "datasets": datasets,
                "contractId": record.get("contract_id"),
                "runId": record.get("run_id"),
                "application": record.get("application"),
                "epsilon": epsilon,
                "status": record.get("status"),
                "reason": record.get("reason") or None,
            }
        )

    def datasets(self) -> list[dict[str, Any]]:
        return [budget.view(dataset) for dataset, budget in sorted(self.budgets.items())]

    def history_of(self, dataset: str | None) -> list[dict[str, Any]]:
        if dataset is None:
            return list(self.history)
        return [item for item in self.history if dataset in item["datasets"]]

    def resolve(self, dataset: str) -> str:
        """A dataset id from ``OWNER/NAME`` or a ``NAME`` that exactly one dataset has."""
        if "/" in dataset:
            self.budget(dataset)
            return dataset
        matches = [d for d, b in self.budgets.items() if b.name == dataset]
        if len(matches) != 1:
            raise NotFoundError(
                f"{'no' if not matches else len(matches)} datasets are named {dataset!r}",
                hint="name it as OWNER/NAME (see `cleanroom governance privacy show`)",
            )
        return matches[0]


def entry_record(signer: str, request: bytes) -> dict[str, Any]:
    """The JSON record a privacy entry's request carries: a signed message's payload (member or
    service) or, for a clean-room write, the canonical JSON itself."""
    payload = request if signer.startswith(ledger.ATTESTED_PREFIX) else parse_message(request).payload
    record = json.loads(payload)
    if not isinstance(record, dict):
        raise ValueError("a privacy entry's record is a JSON object")
    return record


def replay_export(
    lines: Iterable[str], *, expected_service_cert_pem: str | None = None, against: ledger.SignedHead | None = None
) -> tuple[ledger.VerifyReport, PrivacyLedger]:
    """Verify a ledger export (hash chain, checkpoints) and rebuild the privacy ledger from it.

    The privacy entries are governance-ledger entries, so an export cut at a checkpoint boundary
    verifies on its own and would replay to a budget with the last runs' spend missing: only a
    signed head the verifier holds (``against``: saved earlier or fetched from the service) proves
    how far the ledger reached, and the export must reach it. Every recorded run's epsilon is then
    recomputed with opacus and judged again; a record whose verdict differs from the one the
    service wrote is an IntegrityError naming the entry."""
    kept = list(lines)
    report = ledger.verify_export(kept, expected_service_cert_pem=expected_service_cert_pem, against=against)
    state = PrivacyLedger()
    for line in kept[1:]:
        entry = json.loads(line).get("entry") if line.strip() else None
        if entry is None or entry["kind"] not in KINDS:
            continue
        seqno, signer = entry["seqno"], entry["signer"]
        try:
            record = entry_record(signer, ledger.unb64(entry["request"]))
            if entry["kind"] == RECORD:
                verify_record(state, record)
            state.apply(seqno, entry["kind"], signer, record)
        except AccountantUnavailable:
            raise
        except (KeyError, TypeError, ValueError, SignatureRejected, CleanroomError) as exc:
            why = exc.message if isinstance(exc, SignatureRejected) else str(exc)
            raise IntegrityError(
                f"privacy ledger entry {seqno} ({entry['kind']}) does not replay: {why}",
                hint="the governance service wrote a privacy entry its own rules refuse; do not trust its budgets",
            ) from exc
    return report, state


def verify_record(state: PrivacyLedger, record: dict[str, Any]) -> None:
    reservation = state.reservation_for(record["contract_id"], record["run_id"], record["instance"])
    fields = check_record(record)
    recomputed = recompute_epsilon(
        fields["accountant"], fields["noise_multiplier"], fields["sample_rate"], fields["steps"], fields["delta"]
    )
    verdict = judge_record(reservation, fields, recomputed)
    if verdict.status != record["status"] or not math.isclose(
        verdict.epsilon_spent, float(record["epsilon_spent"]), rel_tol=EPSILON_TOLERANCE, abs_tol=ROUNDING
    ):
        raise ValueError(
            f"run {record['run_id'][:12]}… is {record['status']} with epsilon {record['epsilon_spent']} in the ledger, "
            f"but recomputing gives {verdict.status} with epsilon {verdict.epsilon_spent:.4f}"
        )


def compare(replayed: list[dict[str, Any]], served: list[dict[str, Any]]) -> list[str]:
    """Differences between a replayed ``datasets()`` view and the service's (empty when they agree)."""
    by_id = {item["dataset"]: item for item in served}
    problems = []
    for item in replayed:
        other = by_id.pop(item["dataset"], None)
        if other is None:
            problems.append(f"{item['name']}: in the ledger but not in the service's budgets")
            continue
        for key in ("epsilonTotal", "delta", "spent", "reserved", "left"):
            if not math.isclose(float(item[key]), float(other[key]), rel_tol=1e-9, abs_tol=1e-9):
                problems.append(f"{item['name']}: {key} replays to {item[key]} but the service shows {other[key]}")
    problems.extend(f"{item['name']}: shown by the service but not in the ledger" for item in by_id.values())
    return problems
