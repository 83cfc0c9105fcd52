"""A version's regression result, its recorded load test, and which versions an inference contract may mount,
against the real governance service on loopback TLS.

The regression result is the clean room's word: only the attested clean room of a contract pinning
exactly the candidate and the baseline (each by the registry's package hash) and a gate may write
it, governance recomputes the verdict from the aggregate, and a failed gate blocks publishing. The
load test is a member's signed record. A contract mounting a registry version is refused at
proposal, at acceptance and by the runtime at start unless the version is verified, public and
past its gate; the decrypted package must hash to the registry's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from containers.regression.__main__ import telemetry_record
from containers.regression.comparison import compare, evaluate_gate
from containers.regression.pinned_versions import PinnedVersions
from core.config.fragment import Application, Fragment
from core.config.merge import merge_fragments
from core.errors import AccessDeniedError, ConflictError, IntegrityError, InvalidInputError
from core.governance import ledger, model_registry
from core.governance.regression_contract import regression_env
from core.governance.serving_contract import serving_env
from core.runtime.deployment import deployment_spec, policy_document
from core.runtime.model_regression import ModelRegressionRecords
from core.runtime.served_versions import check_mounted_packages, check_served_versions
from tests.governance_support import Attester, Consortium, start_consortium
from tests.model_registry_support import CONSUMER, HOSTER, PROVIDER, OnboardingRoom
from tests.test_model_registry import refused

WRAPPER = hashlib.sha256(b"wrapper").hexdigest()
GATE = {"min_accuracy_delta": 0.0, "max_p": 0.05}
TO_VERIFIED = ("downloaded", "scanning", "environmentCreated", "deployed", "verified")


def package_hash(name: str, version: str) -> str:
    return hashlib.sha256(f"{name}/{version}".encode()).hexdigest()


@pytest.fixture(scope="module")
def attester(tmp_path_factory: pytest.TempPathFactory) -> Attester:
    return Attester(tmp_path_factory.mktemp("attestation"))


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory, attester: Attester) -> Iterator[Consortium]:
    consortium = start_consortium(
        tmp_path_factory.mktemp("gov") / "service", window_seconds=60, attestation=attester.spec
    )
    yield consortium
    consortium.close()


def accepted_room(gov: Consortium, attester: Attester, contract_id: str, env: dict[str, str]) -> OnboardingRoom:
    """Accept a contract whose one application carries ``env`` (with its spec and policy): its attested room."""
    hoster = gov.members[HOSTER]
    application = Application(
        name="app", owner=hoster.member_id, entrypoint="containers/regression", command=["python"], env=env
    )
    data = merge_fragments([Fragment.new("hoster", hoster).with_application(application)]).document()
    gov.accepted_contract(contract_id, data)
    spec = deployment_spec(contract_id, data)
    gov.pass_proposal(gov.clients[HOSTER].propose_deployment_spec(contract_id, spec))
    policy = policy_document(spec)
    gov.pass_proposal(gov.clients[HOSTER].propose_clean_room_policy(contract_id, policy))
    return OnboardingRoom(gov, attester, contract_id, str(policy["policy_hash"]))


def two_versions(gov: Consortium, name: str) -> None:
    for version in ("1", "2"):
        gov.clients[PROVIDER].onboard_model(
            name, version, package_hash=package_hash(name, version), wrapper_hash=WRAPPER
        )


def regression_room(
    gov: Consortium, attester: Attester, name: str, gate: dict[str, Any] | None = None, **pins: str
) -> OnboardingRoom:
    """The attested room of a contract comparing ``name`` 2 (candidate) with 1 (baseline)."""
    candidate = (pins.get("candidate", "2"), pins.get("candidate_hash", package_hash(name, "2")))
    baseline = (pins.get("baseline", "1"), pins.get("baseline_hash", package_hash(name, "1")))
    env = regression_env(name, candidate, baseline, gate or GATE)
    return accepted_room(gov, attester, f"regression-{name}-{len(pins)}", env)


def aggregate(name: str, gate: dict[str, Any] = GATE, *, better: bool = True) -> dict[str, Any]:
    """A telemetry record as the regression workload writes it, from a real comparison of made-up predictions."""
    truth = [i % 2 for i in range(200)]
    weak = [i % 2 if i % 4 else 1 - i % 2 for i in range(200)]  # wrong on every fourth case
    baseline, candidate = (weak, truth) if better else (truth, weak)
    comparison = compare(truth, baseline, candidate)
    document = {
        **comparison.as_dict(),
        "models": {role: {"model_file": "model.onnx", "model_sha256": "0" * 64} for role in ("baseline", "candidate")},
        "gate": gate,
        "verdict": evaluate_gate(gate, comparison).as_dict(),
    }
    pinned = PinnedVersions(name, "2", package_hash(name, "2"), "1", package_hash(name, "1"), gate)
    return telemetry_record(document, pinned)


def send(room: OnboardingRoom, name: str, report: dict[str, Any], version: str = "2") -> dict[str, Any]:
    body = {k: v for k, v in report.items() if k != "event"}
    return room.client.record_model_regression(room.contract_id, name, version, body, room.token())


# -- the regression result ------------------------------------------------------------------------------
def test_the_honest_run_writes_the_candidates_regression_and_the_publish_gate_honours_it(
    gov: Consortium, attester: Attester
) -> None:
    two_versions(gov, "honest")
    room = regression_room(gov, attester, "honest")
    send(room, "honest", aggregate("honest"))
    written = gov.clients[CONSUMER].model("honest")["versions"]["2"]["regression"]
    assert written["passed"] is True and written["verdict"] == {"passed": True, "reasons": []}
    assert written["contractId"] == room.contract_id and written["baselineVersion"] == "1"
    assert written["candidatePackageHash"] == package_hash("honest", "2")
    assert written["baselinePackageHash"] == package_hash("honest", "1")
    assert written["gate"] == {"minAccuracyDelta": 0.0, "maxP": 0.05}
    assert written["cases"] == 200 and written["candidate"]["accuracy"] == 1.0
    assert written["baseline"]["accuracy"] == written["baseline"]["microF1"] == 0.75
    assert set(written["baseline"]) == {"accuracy", "macroF1", "microF1", "weightedF1"}
    assert written["flips"]["baselineWrongCandidateRight"] == 50 and written["mcnemarP"] < 1e-6
    assert gov.clients[CONSUMER].model("honest")["versions"]["1"]["regression"] is None

    one, two = package_hash("honest", "1"), package_hash("honest", "2")
    degraded = regression_room(
        gov, attester, "honest", baseline="2", candidate="1", baseline_hash=two, candidate_hash=one
    )
    worse = aggregate("honest", better=False) | {
        "candidate_version": "1",
        "baseline_version": "2",
        "candidate_package_sha256": package_hash("honest", "1"),
        "baseline_package_sha256": package_hash("honest", "2"),
    }
    send(degraded, "honest", worse, version="1")
    failed = gov.clients[CONSUMER].model("honest")["versions"]["1"]["regression"]
    assert failed["passed"] is False and failed["verdict"]["reasons"][0].startswith("accuracy delta -0.2500")
    onboarding = _onboarding(gov, attester, "honest", "1")
    for status in TO_VERIFIED:
        onboarding.status("honest", "1", status)
    refused(
        lambda: gov.clients[PROVIDER].propose_publish_model("honest", "1"),
        ConflictError,
        409,
        "model 'honest' version '1' failed its regression gate, so it cannot be published",
    )


def publish(gov: Consortium, attester: Attester, name: str, version: str) -> None:
    """Verified by its onboarding clean room, then published by every member's vote."""
    onboarding = _onboarding(gov, attester, name, version)
    for status in TO_VERIFIED:
        onboarding.status(name, version, status)
    gov.pass_proposal(gov.clients[PROVIDER].propose_publish_model(name, version))


def _onboarding(gov: Consortium, attester: Attester, name: str, version: str) -> OnboardingRoom:
    from tests.model_registry_support import onboarding_contract

    contract_id = f"onboard-{name}-{version}"
    policy = onboarding_contract(gov, contract_id, name, version, package_hash(name, version), WRAPPER)
    return OnboardingRoom(gov, attester, contract_id, policy)


def test_a_workload_claiming_passed_is_stored_as_governance_recomputes_it(gov: Consortium, attester: Attester) -> None:
    two_versions(gov, "liar")
    room = regression_room(gov, attester, "liar")
    lie = aggregate("liar", better=False)
    lie["verdict"], lie["passed"] = {"passed": True, "reasons": []}, True
    send(room, "liar", lie)
    written = gov.clients[CONSUMER].model("liar")["versions"]["2"]["regression"]
    assert written["passed"] is False and "accuracy delta -0.2500" in written["verdict"]["reasons"][0]


def _unchanged(gov: Consortium, name: str, head: int) -> None:
    assert gov.clients[CONSUMER].model(name)["versions"]["2"]["regression"] is None
    assert gov.clients[HOSTER].ledger_head()["seqno"] == head


def test_a_record_naming_another_model_or_version_is_refused_and_writes_nothing(
    gov: Consortium, attester: Attester
) -> None:
    two_versions(gov, "pinned")
    two_versions(gov, "other")
    room = regression_room(gov, attester, "pinned")
    head = gov.clients[HOSTER].ledger_head()["seqno"]
    refused(
        lambda: send(room, "other", aggregate("other")),
        AccessDeniedError,
        403,
        f"contract '{room.contract_id}' does not regression-test model 'other' version '2'",
    )
    wrong_baseline = aggregate("pinned") | {
        "baseline_version": "2",
        "baseline_package_sha256": package_hash("pinned", "2"),
    }
    refused(
        lambda: send(room, "pinned", wrong_baseline),
        AccessDeniedError,
        403,
        "compares other versions than contract",
    )
    other_gate = aggregate("pinned", {"min_accuracy_delta": -1.0})
    refused(lambda: send(room, "pinned", other_gate), InvalidInputError, 400, "is not the contract's voted gate")
    broken = aggregate("pinned") | {"mcnemar_p": 7.0}
    refused(lambda: send(room, "pinned", broken), InvalidInputError, 400, "'mcnemar_p' is 7.0, outside [0.0, 1.0]")
    _unchanged(gov, "pinned", head)
    _unchanged(gov, "other", head)


def test_a_contract_pinning_other_bytes_than_the_registry_is_refused(gov: Consortium, attester: Attester) -> None:
    two_versions(gov, "rebytes")
    forged = hashlib.sha256(b"other bytes").hexdigest()
    room = regression_room(gov, attester, "rebytes", candidate_hash=forged)
    head = gov.clients[HOSTER].ledger_head()["seqno"]
    report = aggregate("rebytes") | {"candidate_package_sha256": forged}
    refused(lambda: send(room, "rebytes", report), AccessDeniedError, 403, "its candidate packageHash differs")
    _unchanged(gov, "rebytes", head)


def test_an_unattested_caller_and_a_members_signed_request_cannot_write_it(gov: Consortium, attester: Attester) -> None:
    two_versions(gov, "unattested")
    room = regression_room(gov, attester, "unattested")
    head = gov.clients[HOSTER].ledger_head()["seqno"]
    body = {k: v for k, v in aggregate("unattested").items() if k != "event"}
    path = f"/contracts/{room.contract_id}/models/unattested/versions/2/regression"
    provider = gov.clients[PROVIDER]
    # a member's signature is no attestation: the COSE-signed request is not even the endpoint's JSON
    refused(lambda: provider._signed("POST", path, {"report": body}), InvalidInputError, 400, "is not UTF-8")
    refused(
        lambda: provider._object(provider._send("POST", path, json={"report": body})),
        AccessDeniedError,
        403,
        "attestation token missing",
    )
    stranger = attester.token(room.contract_id, "0" * 64)  # a clean room running another policy
    refused(
        lambda: room.client.record_model_regression(room.contract_id, "unattested", "2", body, stranger),
        AccessDeniedError,
        403,
        "is not the accepted clean-room policy",
    )
    _unchanged(gov, "unattested", head)


def test_the_runtime_router_claims_the_record_and_notes_a_refusal(gov: Consortium, attester: Attester) -> None:
    two_versions(gov, "routed")
    room = regression_room(gov, attester, "routed")
    spec = gov.clients[CONSUMER].deployment_spec(room.contract_id)["data"]
    notes: list[tuple[str, dict[str, Any]]] = []
    router = ModelRegressionRecords.for_spec(
        room.client, room.contract_id, spec, room.token, lambda kind, /, **detail: notes.append((kind, detail))
    )
    assert router is not None
    assert router.take({"event": "step", "loss": 0.1}) is False  # other telemetry passes through
    assert router.take(aggregate("routed") | {"model": "pinned"}) is True  # claimed, never telemetry
    assert notes[0][0] == "model_regression_refused" and "does not regression-test" in notes[0][1]["reason"]
    assert router.take(aggregate("routed")) is True and router.recorded == [("routed", "2")]
    assert gov.clients[CONSUMER].model("routed")["versions"]["2"]["regression"]["passed"] is True
    assert ModelRegressionRecords.for_spec(room.client, "c", {"applications": []}, room.token, print) is None


def test_regression_writes_are_ledgered_as_the_clean_rooms(gov: Consortium, attester: Attester, tmp_path: Path) -> None:
    two_versions(gov, "ledgered-regression")
    room = regression_room(gov, attester, "ledgered-regression")
    send(room, "ledgered-regression", aggregate("ledgered-regression"))
    export = tmp_path / "ledger.jsonl"
    gov.clients[HOSTER].export_ledger(export)
    entries = [json.loads(line)["entry"] for line in export.read_text().splitlines() if '"entry"' in line[:10]]
    ledger.verify_export(export.read_text().splitlines(), expected_service_cert_pem=gov.info.service_cert_pem)
    signers = [e["signer"] for e in entries if e["kind"] == model_registry.REGRESSION]
    assert f"{ledger.ATTESTED_PREFIX}{room.contract_id}" in signers
    assert all(signer.startswith(ledger.ATTESTED_PREFIX) for signer in signers)


# -- the recorded load test ---------------------------------------------------------------------------
def loadtest_report() -> dict[str, Any]:
    step = {
        "mode": "per-rps", "target": 4, "durationS": 1.0, "sent": 4, "ok": 4, "failed": 0, "actualRps": 4.0,
        "sendRps": 4.0, "latencyMs": {"mean": 5.0, "p50": 4.0, "p90": 6.0, "p99": 7.0, "max": 8.0}, "sendLagP99Ms": 0.1,
        "errors": {}, "cpuPercent": 20.0, "peakRssMb": 100.0, "withinSlo": True,
    }  # fmt: skip
    return {
        "mode": "per-rps", "endpoint": "https://127.0.0.1:1", "route": "/infer", "payloadChars": 1000,
        "sloMs": 200.0, "steps": [step], "knee": {"target": 4, "actualRps": 4.0}, "workloadMeasured": "none",
    }  # fmt: skip


def test_a_members_load_test_is_recorded_with_its_writer_and_checked(gov: Consortium, attester: Attester) -> None:
    two_versions(gov, "loaded")
    publish(gov, attester, "loaded", "1")
    gov.accepted_contract("load-1", serving_data(gov, "loaded", "1", package_hash("loaded", "1")))
    consumer = gov.clients[CONSUMER]
    shown = consumer.record_model_loadtest("loaded", "1", "load-1", loadtest_report() | {"extra": "dropped"})
    recorded = shown["versions"]["1"]["loadtest"]
    assert recorded["writer"] == gov.members[CONSUMER].member_id and recorded["contractId"] == "load-1"
    assert {k: v for k, v in recorded.items() if k not in ("writer", "at", "contractId")} == loadtest_report()
    unanswered = {**loadtest_report()["steps"][0], "ok": 0, "failed": 4, "withinSlo": False}
    unanswered["latencyMs"] = dict.fromkeys(("mean", "p50", "p90", "p99", "max"))  # nobody answered: no latency
    shown = consumer.record_model_loadtest("loaded", "1", "load-1", loadtest_report() | {"steps": [unanswered]})
    assert shown["versions"]["1"]["loadtest"]["steps"][0]["latencyMs"]["p99"] is None
    head = gov.clients[HOSTER].ledger_head()["seqno"]
    bad_step = loadtest_report() | {"steps": [{**loadtest_report()["steps"][0], "ok": -1}]}
    refused(
        lambda: consumer.record_model_loadtest("loaded", "1", "load-1", bad_step),
        InvalidInputError,
        400,
        "load-test report field 'steps[0].ok' must be a whole number >= 0",
    )
    huge = loadtest_report() | {"workloadMeasured": "x" * 40_000}
    refused(lambda: consumer.record_model_loadtest("loaded", "1", "load-1", huge), InvalidInputError, 400, "exceeds")
    assert gov.clients[HOSTER].ledger_head()["seqno"] == head


def test_a_load_test_through_a_contract_serving_another_version_or_none_is_refused_and_not_written(
    gov: Consortium, attester: Attester
) -> None:
    """Only an accepted contract serving exactly the version may carry its load test: one serving
    another model, another version of the same model, or no registry version at all (a plain
    model asset) measured something else."""
    two_versions(gov, "measured")
    publish(gov, attester, "measured", "1")
    two_versions(gov, "other-model")
    publish(gov, attester, "other-model", "1")
    gov.accepted_contract("serves-other", serving_data(gov, "other-model", "1", package_hash("other-model", "1")))
    gov.accepted_contract("serves-version-1", serving_data(gov, "measured", "1", package_hash("measured", "1")))
    gov.accepted_contract("serves-none")
    consumer = gov.clients[CONSUMER]
    head = gov.clients[HOSTER].ledger_head()["seqno"]
    for contract_id, version in (("serves-other", "1"), ("serves-none", "1"), ("serves-version-1", "2")):
        refused(
            partial(consumer.record_model_loadtest, "measured", version, contract_id, loadtest_report()),
            AccessDeniedError,
            403,
            f"contract '{contract_id}' does not serve model 'measured' version '{version}'",
        )
    assert gov.clients[HOSTER].ledger_head()["seqno"] == head
    assert [v["loadtest"] for v in consumer.model("measured")["versions"].values()] == [None, None]


# -- only verified, regression-tested, public versions are mounted ---------------------------------------
def serving_data(gov: Consortium, name: str, version: str, digest: str) -> dict[str, Any]:
    hoster = gov.members[HOSTER]
    application = Application(
        name="inference",
        owner=hoster.member_id,
        entrypoint="containers/inference_server",
        command=["python", "-m", "containers.inference_server", "--model-dir", "/mnt/model"],
        env=serving_env(name, version, digest, "/mnt/model"),
    )
    return merge_fragments([Fragment.new("hoster", hoster).with_application(application)]).document()


def test_an_inference_contract_mounts_only_a_verified_published_version(gov: Consortium, attester: Attester) -> None:
    name = "served"
    two_versions(gov, name)
    hoster = gov.clients[HOSTER]
    hoster.create_contract("serve-unverified", serving_data(gov, name, "1", package_hash(name, "1")))
    head = hoster.ledger_head()["seqno"]
    refused(
        lambda: hoster.propose_contract("serve-unverified", hoster.contract("serve-unverified")["version"]),
        ConflictError,
        409,
        f"model '{name}' version '1' is created, not verified and is not published, "
        "so no inference contract may mount it",
    )
    assert hoster.ledger_head()["seqno"] == head
    publish(gov, attester, name, "1")
    hoster.create_contract("serve-forged", serving_data(gov, name, "1", "f" * 64))
    refused(
        lambda: hoster.propose_contract("serve-forged", hoster.contract("serve-forged")["version"]),
        ConflictError,
        409,
        "has packageHash",
    )
    # proposed while published, unpublished while the vote ran: acceptance fails, naming why
    hoster.create_contract("serve-late", serving_data(gov, name, "1", package_hash(name, "1")))
    proposal = hoster.propose_contract("serve-late", hoster.contract("serve-late")["version"])
    gov.clients[CONSUMER].unpublish_model(name, "1")
    result = gov.pass_proposal(proposal)
    assert result["proposalState"] == "Failed"
    assert "is not published, so no inference contract may mount it" in (result["failure"] or "")
    assert hoster.contract("serve-late")["state"] != "Accepted"

    gov.pass_proposal(gov.clients[PROVIDER].propose_publish_model(name, "1"))
    data = serving_data(gov, name, "1", package_hash(name, "1"))
    gov.accepted_contract("serve-ok", data)
    assert hoster.contract("serve-ok")["state"] == "Accepted"
    spec = deployment_spec("serve-ok", data)
    check_served_versions(hoster, spec)  # the runtime at start: still servable
    gov.clients[CONSUMER].unpublish_model(name, "1")
    with pytest.raises(ConflictError, match=f"model '{name}' version '1' is not published"):
        check_served_versions(hoster, spec)
    plain = {"applications": [{"name": "plain", "env": {}}]}
    check_served_versions(hoster, plain)  # a contract naming no registry version is not the registry's to refuse


def test_the_runtime_refuses_a_decrypted_package_of_other_bytes(tmp_path: Path) -> None:
    from core.onboarding.package_digest import package_sha256

    package = tmp_path / "assets" / "model-package"
    (package / "model").mkdir(parents=True)
    (package / "model" / "weights.safetensors").write_bytes(b"registered")
    digest = package_sha256(package)
    spec = {
        "applications": [
            {
                "name": "inference",
                "env": serving_env("m", "1", digest, "/mnt/model"),
                "mounts": [{"name": "model-package", "path": "/mnt/model", "read_only": True}],
            }
        ]
    }
    check_mounted_packages(spec, lambda source: tmp_path / "assets" / source)
    (package / "model" / "weights.safetensors").write_bytes(b"swapped after onboarding")
    with pytest.raises(IntegrityError, match="datasource 'model-package' holds other bytes than model 'm' version '1'"):
        check_mounted_packages(spec, lambda source: tmp_path / "assets" / source)
    unmounted = {"applications": [{**spec["applications"][0], "mounts": []}]}
    with pytest.raises(AccessDeniedError, match="mounts nothing at '/mnt/model'"):
        check_mounted_packages(unmounted, lambda source: tmp_path / "assets" / source)
