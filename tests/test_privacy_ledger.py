"""The governance privacy ledger against the real governance service on loopback TLS.

Budgets per dataset across runs and contracts: registration on acceptance, reservation before any
DEK, epsilon recomputed by governance with opacus, refusals that leave a trace (ledger entry and
audit event) and release nothing, owner-only lowering, raising by every member's vote, and an
offline replay of a ledger export that must agree with what the service shows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import AccessDeniedError, ConflictError, IntegrityError, InvalidInputError, NotFoundError
from core.governance import ledger, privacy
from tests.governance_support import Attester, Consortium, start_consortium
from tests.privacy_support import (
    DELTA,
    HOSTER,
    LABELS,
    RATE,
    SIGMA,
    STEPS,
    TEXTS,
    CleanRoom,
    opacus_epsilon,
    private_contract,
)


@pytest.fixture(scope="module")
def attester(tmp_path_factory: pytest.TempPathFactory) -> Attester:
    return Attester(tmp_path_factory.mktemp("attestation"))


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory, attester: Attester):
    consortium = start_consortium(
        tmp_path_factory.mktemp("gov") / "service",
        names=("hoster", "texts-provider", "labels-provider"),
        window_seconds=60,
        attestation=attester.spec,
    )
    yield consortium
    consortium.close()


def budgets(gov: Consortium) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in gov.clients[HOSTER].privacy_datasets()}


def refused(call, status: int, words: str, error: type[Exception] = AccessDeniedError) -> str:
    with pytest.raises(error) as info:
        call()
    assert f"({status})" in str(info.value) and words in str(info.value), str(info.value)
    return str(info.value)


def event_types(gov: Consortium, contract_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["type"], e["data"]) for e in gov.clients[HOSTER].events(contract_id)["events"]]


def room(gov: Consortium, attester: Attester, tmp_path: Path, contract_id: str, sources: tuple[str, str], **kw: Any):
    contract = private_contract(gov, tmp_path, contract_id, sources, **kw)
    return CleanRoom(gov, attester, contract_id, contract["policy_hash"])


# -- registration ----------------------------------------------------------------------------------
def test_accepting_a_contract_registers_each_budgeted_datasource(gov: Consortium, tmp_path: Path) -> None:
    private_contract(gov, tmp_path, "reg", ("reg-texts", "reg-labels"))
    texts = budgets(gov)["reg-texts"]
    assert texts == {
        "dataset": f"{gov.members[TEXTS].member_id}/reg-texts",
        "owner": gov.members[TEXTS].member_id,
        "name": "reg-texts",
        "privacyUnit": "person_id",
        "epsilonTotal": 10.0,
        "delta": 1e-5,
        "spent": 0.0,
        "reserved": 0.0,
        "left": 10.0,
    }
    register = [h for h in gov.clients[TEXTS].privacy_history(texts["dataset"]) if h["kind"] == "register"]
    assert len(register) == 1 and register[0]["contractId"] == "reg"


def test_a_second_contract_on_the_same_dataset_shares_its_budget_and_must_declare_the_same(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    first = room(gov, attester, tmp_path, "share-1", ("share-texts", "share-labels"))
    first.reserve()
    second = room(gov, attester, tmp_path, "share-2", ("share-texts", "share-labels"))
    second.reserve()
    assert budgets(gov)["share-texts"]["reserved"] == pytest.approx(6.0)
    message = refused(
        lambda: private_contract(gov, tmp_path, "share-3", ("share-texts", "share-labels"), epsilon_total=20.0),
        409,
        "the privacy ledger holds epsilon_total 10.0",
        ConflictError,
    )
    assert "privacy budget lower" in message
    assert gov.clients[HOSTER].contract("share-3")["state"] == "Draft"


# -- reservations and the DEK gate -------------------------------------------------------------------
def test_dek_of_a_budgeted_datasource_is_refused_without_a_reservation(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = room(gov, attester, tmp_path, "gate", ("gate-texts", "gate-labels"))
    gov.clients[TEXTS].put_secret("gate", "dek-gate-texts", b"wrapped-texts-dek")
    refused(lambda: clean_room.dek("gate-texts"), 403, "no privacy reservation for this clean room")
    clean_room.reserve()
    assert clean_room.dek("gate-texts") == b"wrapped-texts-dek"
    other_instance = CleanRoom(gov, attester, "gate", clean_room.policy_hash)  # same policy, another workload key
    refused(lambda: other_instance.dek("gate-texts"), 403, "no privacy reservation for this clean room")


def test_reserve_charges_k_times_epsilon_on_every_source(gov: Consortium, attester: Attester, tmp_path: Path) -> None:
    clean_room = room(
        gov, attester, tmp_path, "group", ("group-texts", "group-labels"), epsilon=2.0, max_rows_per_key=3
    )
    answer = clean_room.reserve()
    assert answer["reserved"] == pytest.approx(6.0) and len(answer["runId"]) == 32
    shown = budgets(gov)
    for name in ("group-texts", "group-labels"):
        assert (shown[name]["reserved"], shown[name]["left"]) == (pytest.approx(6.0), pytest.approx(4.0))
    assert ("privacy_reserved", {"runId": answer["runId"]}) in [
        (kind, {"runId": data.get("runId")}) for kind, data in event_types(gov, "group")
    ]


def test_record_spends_the_epsilon_governance_recomputes_with_opacus(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = room(gov, attester, tmp_path, "rec", ("rec-texts", "rec-labels"))
    run_id = clean_room.reserve()["runId"]
    answer = clean_room.record(run_id)
    expected = opacus_epsilon(SIGMA, RATE, STEPS, DELTA)
    assert answer["status"] == "recorded"
    assert answer["epsilonRecomputed"] == pytest.approx(expected, rel=1e-9)
    texts = budgets(gov)["rec-texts"]
    assert (texts["spent"], texts["reserved"], texts["left"]) == (
        pytest.approx(expected),
        0.0,
        pytest.approx(10.0 - expected),
    )
    assert "privacy_recorded" in [kind for kind, _ in event_types(gov, "rec")]
    refused(lambda: clean_room.record(run_id), 409, "already recorded", ConflictError)
    refused(lambda: clean_room.dek("rec-texts"), 403, "no privacy reservation")  # a finished run gets no more keys


def test_record_with_a_claimed_epsilon_governance_does_not_recompute_is_refused_and_stays_charged(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = room(gov, attester, tmp_path, "lie", ("lie-texts", "lie-labels"))
    run_id = clean_room.reserve()["runId"]
    message = refused(lambda: clean_room.record(run_id, epsilon=0.5), 409, "(mismatch)", ConflictError)
    assert "claimed epsilon 0.5000" in message and "stays charged" in message
    texts = budgets(gov)["lie-texts"]
    assert (texts["spent"], texts["reserved"]) == (0.0, pytest.approx(3.0))
    assert ("privacy_refused", run_id) in [(kind, data.get("runId")) for kind, data in event_types(gov, "lie")]
    refused(lambda: clean_room.record(run_id), 409, "already refused", ConflictError)


def test_record_of_a_run_that_spent_more_than_it_reserved_is_refused(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = room(gov, attester, tmp_path, "over", ("over-texts", "over-labels"), epsilon=1.0)
    run_id = clean_room.reserve()["runId"]
    true_epsilon = opacus_epsilon(0.6, 0.05, 2000, DELTA)
    assert true_epsilon > 1.0
    refused(
        lambda: clean_room.record(run_id, noise_multiplier=0.6, sample_rate=0.05, steps=2000, epsilon=true_epsilon),
        409,
        "(overspent)",
        ConflictError,
    )
    assert budgets(gov)["over-texts"]["reserved"] == pytest.approx(1.0)


def test_record_with_another_delta_or_from_another_instance_is_refused(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = room(gov, attester, tmp_path, "odd", ("odd-texts", "odd-labels"))
    run_id = clean_room.reserve()["runId"]
    intruder = CleanRoom(gov, attester, "odd", clean_room.policy_hash)
    refused(lambda: intruder.record(run_id), 403, "another clean-room instance")
    other = opacus_epsilon(SIGMA, RATE, STEPS, 1e-7)
    refused(
        lambda: clean_room.record(run_id, delta=1e-7, epsilon=other), 409, "not the contract's delta", ConflictError
    )


def test_a_crashed_run_keeps_its_reservation(gov: Consortium, attester: Attester, tmp_path: Path) -> None:
    clean_room = room(gov, attester, tmp_path, "crash", ("crash-texts", "crash-labels"))
    clean_room.reserve()  # the run dies without recording
    restarted = CleanRoom(gov, attester, "crash", clean_room.policy_hash)
    restarted.reserve()
    texts = budgets(gov)["crash-texts"]
    assert (texts["reserved"], texts["left"]) == (pytest.approx(6.0), pytest.approx(4.0))


def test_a_run_that_would_overspend_is_refused_naming_the_dataset_and_what_is_left(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = room(gov, attester, tmp_path, "out", ("out-texts", "out-labels"), epsilon=4.0)
    gov.clients[TEXTS].put_secret("out", "dek-out-texts", b"dek")
    clean_room.reserve()
    clean_room.reserve()
    third = CleanRoom(gov, attester, "out", clean_room.policy_hash)
    refused(third.reserve, 403, "run needs epsilon 4.00 of dataset 'out-texts' but 2.00 of 10.00 is left")
    refused(lambda: third.dek("out-texts"), 403, "no privacy reservation")  # no key for the refused run
    assert budgets(gov)["out-texts"]["reserved"] == pytest.approx(8.0)  # the refusal charged nothing
    refusals = [data for kind, data in event_types(gov, "out") if kind == "privacy_refused"]
    assert refusals == [
        {
            "dataset": "out-texts",
            "datasetId": budgets(gov)["out-texts"]["dataset"],
            "application": "trainer",
            "needed": 4.0,
            "left": pytest.approx(2.0),
        }
    ]
    assert [h["kind"] for h in gov.clients[HOSTER].privacy_history("out-texts")] == [
        "register",
        "reserve",
        "reserve",
        "refuse",
    ]


# -- lowering and raising -----------------------------------------------------------------------------
def test_only_the_owner_lowers_a_budget_and_never_below_what_runs_hold(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = room(gov, attester, tmp_path, "low", ("low-texts", "low-labels"))
    clean_room.reserve()
    dataset = budgets(gov)["low-texts"]["dataset"]
    refused(lambda: gov.clients[LABELS].lower_privacy_budget(dataset, 5.0), 403, "only the owner")
    refused(
        lambda: gov.clients[TEXTS].lower_privacy_budget("low-texts", 2.0),
        409,
        "lower it to at least 3.0000",
        ConflictError,
    )
    refused(lambda: gov.clients[TEXTS].lower_privacy_budget("low-texts", 12.0), 409, "propose-raise", ConflictError)
    assert budgets(gov)["low-texts"]["epsilonTotal"] == 10.0  # refusals changed nothing
    answer = gov.clients[TEXTS].lower_privacy_budget("low-texts", 5.0)  # NAME: the signer's own dataset
    assert (answer["epsilonTotal"], answer["left"]) == (5.0, pytest.approx(2.0))
    assert budgets(gov)["low-texts"]["epsilonTotal"] == 5.0
    assert budgets(gov)["low-labels"]["epsilonTotal"] == 10.0


def test_raising_a_budget_needs_every_members_vote(gov: Consortium, tmp_path: Path) -> None:
    private_contract(gov, tmp_path, "raise", ("raise-texts", "raise-labels"))
    dataset = budgets(gov)["raise-texts"]["dataset"]
    refused(lambda: gov.clients[TEXTS].propose_privacy_budget(dataset, 9.0), 409, "not above", ConflictError)
    proposal = gov.clients[HOSTER].propose_privacy_budget(dataset, 15.0)
    for client in gov.clients[:2]:
        assert client.vote(proposal["proposalId"], "accept")["proposalState"] == "Open"
        assert budgets(gov)["raise-texts"]["epsilonTotal"] == 10.0
    assert gov.clients[LABELS].vote(proposal["proposalId"], "accept")["proposalState"] == "Accepted"
    assert budgets(gov)["raise-texts"]["epsilonTotal"] == 15.0
    vetoed = gov.clients[HOSTER].propose_privacy_budget(dataset, 20.0)
    assert gov.clients[TEXTS].vote(vetoed["proposalId"], "reject")["proposalState"] == "Rejected"
    assert budgets(gov)["raise-texts"]["epsilonTotal"] == 15.0


def test_history_is_in_ledger_order_and_filters_by_dataset(gov: Consortium, attester: Attester, tmp_path: Path) -> None:
    clean_room = room(gov, attester, tmp_path, "hist", ("hist-texts", "hist-labels"))
    run_id = clean_room.reserve()["runId"]
    clean_room.record(run_id)
    gov.clients[LABELS].lower_privacy_budget("hist-labels", 9.0)
    history = gov.clients[HOSTER].privacy_history()
    seqnos = [h["seqno"] for h in history]
    assert seqnos == sorted(seqnos) and len(set(seqnos)) == len(seqnos)
    texts = gov.clients[HOSTER].privacy_history("hist-texts")
    assert [(h["kind"], h["runId"]) for h in texts] == [("register", None), ("reserve", run_id), ("record", run_id)]
    assert texts[2]["status"] == "recorded"
    assert [h["kind"] for h in gov.clients[HOSTER].privacy_history("hist-labels")][-1] == "lower"
    refused(lambda: gov.clients[HOSTER].privacy_history("nobody"), 404, "no datasets are named", NotFoundError)


# -- offline verification -------------------------------------------------------------------------------
def test_a_ledger_export_replays_to_the_budgets_the_service_shows(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = room(gov, attester, tmp_path, "replay", ("replay-texts", "replay-labels"))
    clean_room.record(clean_room.reserve()["runId"])
    export = tmp_path / "ledger.jsonl"
    gov.clients[HOSTER].export_ledger(export)
    report, replayed = privacy.replay_export(
        export.read_text().splitlines(), expected_service_cert_pem=gov.info.service_cert_pem
    )
    assert report.entries > 0
    served = gov.clients[HOSTER].privacy_datasets()
    assert privacy.compare(replayed.datasets(), served) == []
    assert replayed.history == gov.clients[HOSTER].privacy_history()[: len(replayed.history)]
    assert "replay-texts" in {item["name"] for item in replayed.datasets()}


def test_a_tampered_or_trimmed_export_fails_verification(gov: Consortium, attester: Attester, tmp_path: Path) -> None:
    clean_room = room(gov, attester, tmp_path, "tamper", ("tamper-texts", "tamper-labels"))
    clean_room.record(clean_room.reserve()["runId"])
    export = tmp_path / "ledger.jsonl"
    gov.clients[HOSTER].export_ledger(export)
    lines = export.read_text().splitlines()
    index = max(i for i, line in enumerate(lines) if '"kind": "privacy.record"' in line)
    entry = json.loads(lines[index])
    record = json.loads(ledger.unb64(entry["entry"]["request"]))
    record["epsilon_spent"] = 0.001  # the run claims to have spent almost nothing
    entry["entry"]["request"] = ledger.b64(json.dumps(record).encode())
    tampered = [*lines[:index], json.dumps(entry), *lines[index + 1 :]]
    with pytest.raises(IntegrityError, match=f"ledger entry {entry['entry']['seqno']} was altered"):
        privacy.replay_export(tampered)
    trimmed = lines[: index + 1]  # cut after the record, before the checkpoint that vouches for it
    if trimmed[-1].startswith('{"checkpoint"'):
        trimmed = trimmed[:-1]
    with pytest.raises(IntegrityError, match="could not be vouched for"):
        privacy.replay_export(trimmed)


def test_a_replayed_record_governance_accepted_is_judged_again() -> None:
    """A record the rules refuse does not replay: the verifier recomputes epsilon itself."""
    model = privacy.PrivacyLedger()
    owner = "o" * 64
    model.apply(
        1,
        privacy.REGISTER,
        "service",
        {
            "contract_id": "c",
            "datasets": [privacy.DeclaredBudget(f"{owner}/d", owner, "d", 10.0, 1e-5, "person_id").record()],
        },
    )
    reservation = {
        "contract_id": "c",
        "application": "trainer",
        "instance": "i",
        "run_id": "r" * 32,
        "datasets": [f"{owner}/d"],
        "epsilon": 1.0,
        "delta": DELTA,
        "accountant": "prv",
        "max_rows_per_key": 1,
        "epsilon_reserved": 1.0,
    }
    model.apply(2, privacy.RESERVE, "attested:c", reservation)
    forged = {
        "contract_id": "c",
        "run_id": "r" * 32,
        "instance": "i",
        "noise_multiplier": 0.6,
        "sample_rate": 0.05,
        "steps": 2000,
        "delta": DELTA,
        "accountant": "prv",
        "epsilon": 0.5,
        "status": "recorded",
        "epsilon_spent": 0.5,
    }
    with pytest.raises(ValueError, match="recomputing gives refused"):
        privacy.verify_record(model, forged)


def test_without_opacus_epsilon_is_not_recomputed_and_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opacus.accountants", None)
    with pytest.raises(privacy.AccountantUnavailable, match=r"cleanroom-console\[ml\]"):
        privacy.recompute_epsilon("prv", SIGMA, RATE, STEPS, DELTA)


def test_malformed_reservations_and_records_are_refused_with_one_line(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = room(gov, attester, tmp_path, "bad", ("bad-texts", "bad-labels"))
    refused(lambda: clean_room.reserve("nope"), 404, "runs no application 'nope'", NotFoundError)
    run_id = clean_room.reserve()["runId"]
    refused(
        lambda: clean_room.record(run_id, accountant="gauss"), 400, "accountant 'gauss' is not known", InvalidInputError
    )
    refused(lambda: clean_room.record(run_id, steps=-1), 400, "'steps' must be an integer", InvalidInputError)
    refused(
        lambda: clean_room.record(run_id, sample_rate=1.5),
        400,
        "'sample_rate' = 1.5 is out of range",
        InvalidInputError,
    )
    # NaN and Infinity are not JSON, but Python's JSON reader takes them: sent raw, as an attacker
    # would (the client refuses to encode them), the body is refused before any field is read
    path = f"/contracts/{clean_room.contract_id}/privacy/reservations/{run_id}/record"
    for field in ("noise_multiplier", "sample_rate", "epsilon"):
        for value in ("NaN", "Infinity", "-Infinity"):
            body = {"noise_multiplier": SIGMA, "sample_rate": RATE, "steps": STEPS, "delta": DELTA,
                    "accountant": "prv", "epsilon": 1.0, "attestation": clean_room.token()}  # fmt: skip
            raw = json.dumps(body).replace(f'"{field}": {json.dumps(body[field])}', f'"{field}": {value}')
            assert value in raw
            answer = clean_room.client._http.post(path, content=raw, headers={"content-type": "application/json"})
            assert answer.status_code == 400 and f"({value} is not JSON)" in answer.text, (field, answer.text)
    refused(lambda: clean_room.record("not-a-run"), 400, "run id 'not-a-run' is not valid", InvalidInputError)
    refused(lambda: clean_room.record("0" * 32), 404, "does not exist", NotFoundError)
    assert budgets(gov)["bad-texts"]["reserved"] == pytest.approx(3.0)  # still charged, never recorded


def test_a_replayed_reservation_must_charge_k_times_epsilon_and_fit() -> None:
    owner = "o" * 64
    model = privacy.PrivacyLedger()
    budget = privacy.DeclaredBudget(f"{owner}/d", owner, "d", 2.0, 1e-5, "person_id").record()
    model.apply(1, privacy.REGISTER, "service", {"contract_id": "c", "datasets": [budget]})
    reservation = {
        "contract_id": "c",
        "application": "trainer",
        "instance": "i",
        "run_id": "r" * 32,
        "datasets": [f"{owner}/d"],
        "epsilon": 1.0,
        "delta": DELTA,
        "accountant": "prv",
        "max_rows_per_key": 2,
        "epsilon_reserved": 1.0,  # k = 2 rows per person: the charge is 2.0
    }
    with pytest.raises(ConflictError, match="is not k x epsilon"):
        model.apply(2, privacy.RESERVE, "attested:c", reservation)
    model.apply(2, privacy.RESERVE, "attested:c", reservation | {"epsilon_reserved": 2.0})
    with pytest.raises(ConflictError, match="exceeds what was left"):
        model.apply(3, privacy.RESERVE, "attested:c", reservation | {"run_id": "s" * 32, "epsilon_reserved": 2.0})
