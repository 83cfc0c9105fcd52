"""The model registry: models, their versions, and the statuses only an attested clean room writes.

A provider onboards a model version (member-signed: name, description, the package's
``packageHash`` and its wrapper's ``wrapperHash``) and it starts ``created``. Every later status
is the clean room's word, never a member's: the onboarding workload reports it, the runtime sends
it with the clean room's attestation, and governance takes it only if the attested contract's
onboarding application names this model version with the same two hashes, so a clean room of
another contract (or one onboarding other bytes) cannot forge a status.

Like the privacy ledger, the registry is pure rules over entries: each write is a governance
ledger entry plus a row of ``model_entries``, and the registry is rebuilt by replaying the rows
in ledger order, so what the service enforces is what a verifier replaying the ledger computes.

Statuses (``TRANSITIONS``): created -> downloaded -> scanning -> vulnerable | environmentCreated
-> deployed -> verified | verifyFailed | toBeRetried, and toBeRetried -> downloaded; a version
may also fail (verifyFailed) from scanning or environmentCreated, with the reason. Publishing
a verified version is a ``publish_model_version`` proposal every member votes on; any member may
unpublish alone; only the owner deletes, never while a version is published.

Two results hang on a version besides its status. ``regression``: the aggregate of a regression
clean room comparing it with a baseline version (``core.governance.model_regression``), taken
like a status, only with the clean room's attestation and only from a contract pinning exactly
both versions' package hashes and the gate; a failed gate blocks publishing. ``loadtest``: a
member's signed load-test report (``core.governance.model_loadtest``), recorded with its writer
and the contract it measured. And a version an inference contract mounts must be servable
(``check_servable``): verified, published, and past its gate when one was voted.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core.config.canonical import canonical_json
from core.errors import AccessDeniedError, ConflictError, InvalidInputError, NotFoundError
from core.governance import ledger
from core.governance.model_loadtest import loadtest_result
from core.governance.model_regression import regression_result
from core.governance.models import ContractState
from core.governance.onboarding_contract import onboarding_targets
from core.governance.regression_contract import regression_targets
from core.governance.serving_contract import serving_targets
from core.governance.signing import VerifiedRequest, sign_es384

if TYPE_CHECKING:
    from core.governance.state import GovernanceState

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_entries (seqno INTEGER PRIMARY KEY, kind TEXT NOT NULL, signer TEXT NOT NULL,
    record TEXT NOT NULL);
"""

# ledger entry kinds (the ``kind`` column) of registry writes
ONBOARD = "model.onboard"  # member-signed: a new model version, status created
STATUS = "model.status"  # attested: the clean room moved a version to a new status
PUBLISH = "model.publish"  # service-signed: an accepted publish_model_version proposal
UNPUBLISH = "model.unpublish"  # member-signed: any member takes a version off publication
DELETE = "model.delete"  # member-signed: the owner deletes a model or one version
REGRESSION = "model.regression"  # attested: a regression clean room's aggregate for the candidate version
LOADTEST = "model.loadtest"  # member-signed: a load-test report of a contract serving the version
KINDS = (ONBOARD, STATUS, PUBLISH, UNPUBLISH, DELETE, REGRESSION, LOADTEST)

MAX_DESCRIPTION = 2000
MAX_DETAILS_BYTES = 64 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelStatus(StrEnum):
    """A model version's status; the values are the wire format and the ledger's."""

    CREATED = "created"
    DOWNLOADED = "downloaded"
    SCANNING = "scanning"
    VULNERABLE = "vulnerable"
    ENVIRONMENT_CREATED = "environmentCreated"
    DEPLOYED = "deployed"
    VERIFIED = "verified"
    VERIFY_FAILED = "verifyFailed"
    TO_BE_RETRIED = "toBeRetried"


S = ModelStatus
TRANSITIONS: dict[str, frozenset[str]] = {
    S.CREATED: frozenset({S.DOWNLOADED}),
    S.DOWNLOADED: frozenset({S.SCANNING}),
    # verifyFailed from scanning and environmentCreated: added to the machine so that a
    # package failing its check outside the scan, needing an environment the clean room lacks,
    # or whose wrapper does not load ends in a final status with its reason, not half-way
    S.SCANNING: frozenset({S.VULNERABLE, S.ENVIRONMENT_CREATED, S.VERIFY_FAILED}),
    S.ENVIRONMENT_CREATED: frozenset({S.DEPLOYED, S.VERIFY_FAILED}),
    S.DEPLOYED: frozenset({S.VERIFIED, S.VERIFY_FAILED, S.TO_BE_RETRIED}),
    S.TO_BE_RETRIED: frozenset({S.DOWNLOADED}),
    S.VULNERABLE: frozenset(),
    S.VERIFIED: frozenset(),
    S.VERIFY_FAILED: frozenset(),
}
STATUSES = frozenset(ModelStatus)


def check_transition(current: str, new: str) -> None:
    """Refuse a status change the state machine does not allow: one line naming from and to."""
    if new not in STATUSES:
        raise InvalidInputError(f"model status {new!r} is not known", hint=f"use one of: {', '.join(ModelStatus)}")
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (it is final)"
        raise ConflictError(
            f"model version status cannot go from {current} to {new}", hint=f"from {current} it may go to {allowed}"
        )


def check_name(what: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInputError(
            f"{what} {value!r} is not valid", hint="use 1-64 letters, digits, '.', '_' or '-', starting with one"
        )
    return value


def check_onboard(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of an onboarding request, type-checked; one line naming a bad field."""
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidInputError(
            f"model description must be text of at most {MAX_DESCRIPTION} characters", hint="shorten --description"
        )
    record = {
        "name": check_name("model name", body.get("name")),
        "version": check_name("model version", body.get("version")),
        "description": description,
    }
    for key in ("packageHash", "wrapperHash"):
        value = body.get(key)
        if not isinstance(value, str) or not _SHA256.match(value):
            raise InvalidInputError(
                f"onboarding field {key!r} must be a SHA-256 in hex",
                hint="onboard with `cleanroom model onboard --package DIR`, which computes it",
            )
        record[key] = value
    return record


def check_details(status: str, details: object) -> dict[str, Any]:
    """Every status carries a details record; the ones a reader acts on carry what it needs."""
    if not isinstance(details, dict):
        raise InvalidInputError(f"status {status} needs a details object", hint="send {status, details: {...}}")
    if len(canonical_json(details)) > MAX_DETAILS_BYTES:
        raise InvalidInputError(
            f"status {status} details exceed {MAX_DETAILS_BYTES} bytes", hint="report fewer findings per status"
        )
    if status == S.TO_BE_RETRIED:
        attempt, backoff = details.get("attempt"), details.get("backoffSeconds")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise InvalidInputError("toBeRetried details need an attempt number >= 1", hint="send details.attempt")
        if (
            isinstance(backoff, bool)
            or not isinstance(backoff, int | float)
            or not math.isfinite(backoff)
            or backoff < 0
        ):
            raise InvalidInputError("toBeRetried details need backoffSeconds >= 0", hint="send details.backoffSeconds")
    if status == S.VULNERABLE and not details.get("findings"):
        raise InvalidInputError("a vulnerable status names its findings", hint="send details.findings")
    return details


def check_servable(name: str, version: str, entry: dict[str, Any] | None, package_hash: str) -> None:
    """Only a verified, public version past its voted regression gate, pinned by the registry's
    own package hash, may be mounted by an inference contract. ``entry`` is the version's view
    (``ModelVersion.view``), so governance and the runtime at start apply the one rule."""
    if entry is None:
        raise ConflictError(
            f"model '{name}' version '{version}' is not in the registry, so no inference contract may mount it",
            hint=f"name a published version (see `cleanroom model versions {name}`)",
        )
    problems = []
    if entry.get("status") != S.VERIFIED:
        problems.append(f"is {entry.get('status')}, not verified")
    if entry.get("published") is not True:
        problems.append("is not published")
    regression = entry.get("regression")
    if regression is not None and regression.get("passed") is not True:
        problems.append("failed its regression gate")
    if entry.get("packageHash") != package_hash:
        problems.append(
            f"has packageHash {str(entry.get('packageHash'))[:16]}…, not the contract's {package_hash[:16]}…"
        )
    if problems:
        raise ConflictError(
            f"model '{name}' version '{version}' {' and '.join(problems)}, so no inference contract may mount it",
            hint="mount a verified version published by vote (`cleanroom model publish`), pinned by its packageHash",
        )


@dataclass
class ModelVersion:
    package_hash: str
    wrapper_hash: str
    status: str = S.CREATED
    details: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    published: bool = False
    loadtest: dict[str, Any] | None = None
    regression: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "details": self.details,
            "history": self.history,
            "packageHash": self.package_hash,
            "wrapperHash": self.wrapper_hash,
            "published": self.published,
            "loadtest": self.loadtest,
            "regression": self.regression,
        }


@dataclass
class Model:
    owner: str
    description: str
    versions: dict[str, ModelVersion] = field(default_factory=dict)

    def view(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "owner": self.owner,
            "description": self.description,
            "versions": {v: version.view() for v, version in self.versions.items()},
        }


class ModelRegistry:
    """The registry rebuilt from its entries; ``check_*`` refuse, ``apply`` takes a checked entry."""

    def __init__(self) -> None:
        self.models: dict[str, Model] = {}

    def model(self, name: str) -> Model:
        found = self.models.get(name)
        if found is None:
            raise NotFoundError(
                f"model '{name}' is not in the registry", hint="list models with `cleanroom model list`"
            )
        return found

    def version(self, name: str, version: str) -> ModelVersion:
        found = self.model(name).versions.get(version)
        if found is None:
            raise NotFoundError(
                f"model '{name}' has no version '{version}'", hint=f"see `cleanroom model versions {name}`"
            )
        return found

    def check_onboard(self, record: dict[str, Any], signer: str) -> None:
        model = self.models.get(record["name"])
        if model is None:
            return
        if model.owner != signer:
            raise ConflictError(
                f"model name '{record['name']}' is taken by another member ({model.owner[:16]}…)",
                hint="choose another --name",
            )
        if record["version"] in model.versions:
            raise ConflictError(
                f"model '{record['name']}' already has version '{record['version']}'", hint="onboard a new --version"
            )

    def check_publish(self, name: str, version: str) -> None:
        found = self.version(name, version)
        if found.published:
            raise ConflictError(f"model '{name}' version '{version}' is already published", hint="nothing to do")
        if found.status != S.VERIFIED:
            raise ConflictError(
                f"model '{name}' version '{version}' is {found.status}, not verified, so it cannot be published",
                hint="onboard it in a clean room until it is verified",
            )
        if found.regression is not None and found.regression.get("passed") is not True:
            raise ConflictError(
                f"model '{name}' version '{version}' failed its regression gate, so it cannot be published",
                hint="onboard a version that passes the voted gate",
            )

    def check_servable(self, name: str, version: str, package_hash: str) -> None:
        found = self.models.get(name)
        entry = found.versions.get(version) if found is not None else None
        check_servable(name, version, None if entry is None else entry.view(), package_hash)

    def check_unpublish(self, name: str, version: str) -> None:
        if not self.version(name, version).published:
            raise ConflictError(f"model '{name}' version '{version}' is not published", hint="nothing to do")

    def check_delete(self, name: str, version: str | None, signer: str) -> None:
        model = self.model(name)
        if model.owner != signer:
            raise AccessDeniedError(
                f"only the owner of model '{name}' ({model.owner[:16]}…) may delete it", hint="ask its owner"
            )
        versions = [version] if version is not None else list(model.versions)
        for v in versions:
            if self.version(name, v).published:
                raise ConflictError(
                    f"model '{name}' version '{v}' is published, so it cannot be deleted",
                    hint=f"unpublish it first (`cleanroom model unpublish {name} --version {v}`)",
                )

    def apply(self, seqno: int, kind: str, signer: str, record: dict[str, Any]) -> None:
        if kind == ONBOARD:
            model = self.models.setdefault(record["name"], Model(signer, record["description"]))
            if record["description"]:
                model.description = record["description"]
            model.versions[record["version"]] = ModelVersion(
                record["packageHash"],
                record["wrapperHash"],
                history=[_history(S.CREATED, {}, record["at"], signer, seqno)],
            )
            return
        if kind == DELETE:
            if record.get("version") is None:
                del self.models[record["name"]]
            else:
                del self.models[record["name"]].versions[record["version"]]
            return
        version = self.models[record["name"]].versions[record["version"]]
        if kind == STATUS:
            version.status, version.details = record["status"], record["details"]
            version.history.append(_history(record["status"], record["details"], record["at"], signer, seqno))
        elif kind in (PUBLISH, UNPUBLISH):
            version.published = kind == PUBLISH
        elif kind == REGRESSION:
            version.regression = record["regression"]
        elif kind == LOADTEST:
            version.loadtest = record["loadtest"]

    def views(self) -> list[dict[str, Any]]:
        return [model.view(name) for name, model in sorted(self.models.items())]


def _history(status: str, details: dict[str, Any], at: float, writer: str, seqno: int) -> dict[str, Any]:
    return {"status": status, "details": details, "at": at, "writer": writer, "seqno": seqno}


class ModelRecords:
    """The registry's writes and reads inside the governance state's transactions and ledger.

    A part of ``GovernanceState`` kept in its own module (as the privacy ledger's rules are): it
    uses the state's own transaction (``_write``), ledger append, attestation check and event
    table, so a registry write commits with its ledger entry or not at all."""

    def __init__(self, state: GovernanceState) -> None:
        self._state = state
        state._db.executescript(SCHEMA)

    def registry(self) -> ModelRegistry:
        """Rebuilt from its rows in ledger order (a handful per version, cheap beside any run)."""
        with self._state._lock:
            registry = ModelRegistry()
            for row in self._state._db.execute("SELECT seqno, kind, signer, record FROM model_entries ORDER BY seqno"):
                registry.apply(row["seqno"], row["kind"], row["signer"], json.loads(row["record"]))
            return registry

    def _row(self, seqno: int, kind: str, signer: str, record: dict[str, Any]) -> None:
        self._state._db.execute(
            "INSERT INTO model_entries VALUES (?,?,?,?)", (seqno, kind, signer, canonical_json(record).decode())
        )

    def _member_write(self, request: VerifiedRequest, kind: str, record: dict[str, Any]) -> int:
        seqno = self._state._member_write(request, kind)
        self._row(seqno, kind, request.signer, record)
        return seqno

    # -- member writes ------------------------------------------------------------------------------
    def onboard(self, request: VerifiedRequest) -> dict[str, Any]:
        record = check_onboard(request.body) | {"at": time.time()}
        with self._state._write(request):
            self.registry().check_onboard(record, request.signer)
            self._member_write(request, ONBOARD, record)
        return self.show(record["name"])

    def unpublish(self, request: VerifiedRequest, name: str) -> dict[str, Any]:
        version = check_name("model version", request.body.get("version"))
        with self._state._write(request):
            self.registry().check_unpublish(name, version)
            self._member_write(request, UNPUBLISH, {"name": name, "version": version})
        return self.show(name)

    def delete(self, request: VerifiedRequest, name: str) -> dict[str, Any]:
        version = request.body.get("version")
        if version is not None:
            check_name("model version", version)
        with self._state._write(request):
            self.registry().check_delete(name, version, request.signer)
            self._member_write(request, DELETE, {"name": name, "version": version})
        return {"name": name, "version": version, "deleted": True}

    def record_loadtest(self, request: VerifiedRequest, name: str) -> dict[str, Any]:
        """A member's load-test report on a version, only through an accepted contract that serves
        exactly this version: a figure measured on any other model (or a plain model asset) must
        never stand as this version's load test."""
        version = check_name("model version", request.body.get("version"))
        contract_id = request.body.get("contractId")
        if not isinstance(contract_id, str) or not contract_id:
            raise InvalidInputError("a load-test record names the contract it measured", hint="send contractId")
        loadtest = loadtest_result(request.body.get("report"))
        state = self._state
        with state._write(request):
            self.registry().version(name, version)
            contract = state.get_contract(contract_id)
            served = serving_targets(contract["data"])
            if contract["state"] != ContractState.ACCEPTED or (name, version) not in served:
                raise AccessDeniedError(
                    f"contract '{contract_id}' does not serve model '{name}' version '{version}'",
                    hint="record a load test of a contract that mounts this version",
                )
            written = {"contractId": contract_id, "writer": request.signer, "at": time.time()}
            record: dict[str, Any] = {"name": name, "version": version, "loadtest": loadtest | written}
            self._member_write(request, LOADTEST, record)
        return self.show(name)

    # -- the accepted publish proposal (inside the ballot's transaction) -----------------------------
    def check_publish(self, name: str, version: str) -> None:
        self.registry().check_publish(name, version)

    def publish(self, name: str, version: str, proposal_id: str) -> None:
        self.registry().check_publish(name, version)
        record = {"name": name, "version": version, "proposal_id": proposal_id}
        state = self._state
        request = sign_es384(
            state.identity.private_key, kid=state.identity.service_id, path="/model/publish", body=record
        )
        self._row(state._append(PUBLISH, ledger.SERVICE_SIGNER, request), PUBLISH, ledger.SERVICE_SIGNER, record)

    # -- the clean room's status writes --------------------------------------------------------------
    def record_status(self, contract_id: str, name: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
        """Take a status only from an attested clean room whose contract onboards this version."""
        state = self._state
        state._attested(contract_id, body.get("attestation"), purpose="model status")
        status = body.get("status")
        if not isinstance(status, str) or status not in STATUSES:
            raise InvalidInputError(f"model status {status!r} is not known", hint=f"use one of: {', '.join(S)}")
        details = check_details(status, body.get("details", {}))
        with state._write():
            contract = state.get_contract(contract_id)
            target = onboarding_targets(contract["data"]).get((name, version))
            if contract["state"] != ContractState.ACCEPTED or target is None:
                raise AccessDeniedError(
                    f"contract '{contract_id}' does not onboard model '{name}' version '{version}'",
                    hint="only the clean room of a contract naming this version may write its status",
                )
            current = self.registry().version(name, version)
            if target != (current.package_hash, current.wrapper_hash):
                raise AccessDeniedError(
                    f"contract '{contract_id}' onboards other bytes than model '{name}' version '{version}' "
                    "(packageHash or wrapperHash differs)",
                    hint="vote a contract pinning the hashes the registry holds",
                )
            check_transition(current.status, status)
            record = {
                "name": name,
                "version": version,
                "status": status,
                "details": details,
                "at": time.time(),
                "contract_id": contract_id,
                "attestation_sha256": ledger.payload_digest(str(body["attestation"]).encode()),
            }
            signer = f"{ledger.ATTESTED_PREFIX}{contract_id}"
            seqno = state._append(STATUS, signer, canonical_json(record))
            self._row(seqno, STATUS, signer, record)
            event = {"model": name, "version": version, "status": status, "details": details}
            state._insert_event(contract_id, seqno, "model_status", "audit", event)
        state.on_event(contract_id)
        return self.show(name)

    def record_regression(self, contract_id: str, name: str, version: str, body: dict[str, Any]) -> dict[str, Any]:
        """Take a regression aggregate for candidate ``version`` only from an attested clean room
        whose contract compares exactly this candidate and the record's baseline, each pinned by the
        package hash the registry holds, under the gate it voted."""
        state = self._state
        state._attested(contract_id, body.get("attestation"), purpose="model regression")
        report = body.get("report")
        if not isinstance(report, dict) or len(canonical_json(report)) > MAX_DETAILS_BYTES:
            raise InvalidInputError(
                f"a model_regression record is an object of at most {MAX_DETAILS_BYTES} bytes",
                hint="send the aggregate",
            )
        with state._write():
            contract = state.get_contract(contract_id)
            target = regression_targets(contract["data"]).get((name, version))
            if contract["state"] != ContractState.ACCEPTED or target is None or target.gate is None:
                raise AccessDeniedError(
                    f"contract '{contract_id}' does not regression-test model '{name}' version '{version}'",
                    hint="only the clean room of a contract pinning both versions and a gate may write the result",
                )
            sent = [
                report.get(key) for key in ("baseline_version", "candidate_package_sha256", "baseline_package_sha256")
            ]
            if sent != [target.baseline_version, target.candidate_hash, target.baseline_hash]:
                raise AccessDeniedError(
                    f"the model_regression record compares other versions than contract '{contract_id}' pins",
                    hint="run the regression application the contract pins, unchanged",
                )
            registry = self.registry()
            for role, pinned_version, pinned_hash in (
                ("candidate", version, target.candidate_hash),
                ("baseline", target.baseline_version, target.baseline_hash),
            ):
                if registry.version(name, pinned_version).package_hash != pinned_hash:
                    raise AccessDeniedError(
                        f"contract '{contract_id}' pins other bytes than model '{name}' version '{pinned_version}' "
                        f"(its {role} packageHash differs)",
                        hint="vote a contract pinning the hashes the registry holds",
                    )
            regression = regression_result(report, target.gate)
            regression |= {
                "contractId": contract_id,
                "baselineVersion": target.baseline_version,
                "baselinePackageHash": target.baseline_hash,
                "candidatePackageHash": target.candidate_hash,
                "at": time.time(),
            }
            record = {
                "name": name,
                "version": version,
                "regression": regression,
                "contract_id": contract_id,
                "attestation_sha256": ledger.payload_digest(str(body["attestation"]).encode()),
            }
            signer = f"{ledger.ATTESTED_PREFIX}{contract_id}"
            seqno = state._append(REGRESSION, signer, canonical_json(record))
            self._row(seqno, REGRESSION, signer, record)
            event = {"model": name, "version": version, "baseline": target.baseline_version}
            state._insert_event(
                contract_id, seqno, "model_regression", "audit", event | {"passed": regression["passed"]}
            )
        state.on_event(contract_id)
        return self.show(name)

    # -- reads ---------------------------------------------------------------------------------------
    def check_servable(self, contract_data: dict[str, Any]) -> None:
        """Refuse a contract or spec mounting a registry version that may not be served (see
        ``ModelRegistry.check_servable``); a contract naming no registry version passes."""
        targets = serving_targets(contract_data)
        if targets:
            registry = self.registry()
            for (name, version), (package_hash, _mount) in sorted(targets.items()):
                registry.check_servable(name, version, package_hash)

    def all_models(self) -> list[dict[str, Any]]:
        return self.registry().views()

    def show(self, name: str) -> dict[str, Any]:
        return self.registry().model(name).view(name)
