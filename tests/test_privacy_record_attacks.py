"""A clean room's privacy record sent as an attacker would, against the real governance service on
loopback: governance recomputes every record with opacus, so a record built to make that
recomputation run for hours, or fail inside numpy, must be refused at once in one line (a 400,
never a 500), write nothing, and leave the run's reservation charged and still able to record."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from core.errors import InvalidInputError
from core.governance import privacy
from tests.governance_support import Attester, Consortium, start_consortium
from tests.privacy_support import HOSTER, CleanRoom, private_contract

pytest.importorskip("opacus")


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


def _room(gov: Consortium, attester: Attester, tmp_path: Path, contract_id: str) -> CleanRoom:
    contract = private_contract(gov, tmp_path, contract_id, (f"{contract_id}-texts", f"{contract_id}-labels"))
    return CleanRoom(gov, attester, contract_id, contract["policy_hash"])


def _nothing_written(gov: Consortium, contract_id: str, run_id: str) -> None:
    """The run has no record entry and its reservation is still whole."""
    history = gov.clients[HOSTER].privacy_history(f"{contract_id}-texts")
    assert [item["kind"] for item in history if item["runId"] == run_id] == ["reserve"]
    texts = {d["name"]: d for d in gov.clients[HOSTER].privacy_datasets()}[f"{contract_id}-texts"]
    assert (texts["spent"], texts["reserved"]) == (0.0, pytest.approx(3.0))


def test_a_record_claiming_more_steps_than_governance_recomputes_is_refused_at_once(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = _room(gov, attester, tmp_path, "steps")
    run_id = clean_room.reserve()["runId"]
    started = time.monotonic()
    with pytest.raises(InvalidInputError) as refused:
        clean_room.record(run_id, steps=10**12, epsilon=2.0)
    assert time.monotonic() - started < 10  # the accountant never ran: it would take hours
    message = str(refused.value)
    assert "(400)" in message and f"'steps' = {10**12} is above the {privacy.MAX_STEPS} steps" in message
    assert "\n" not in message
    _nothing_written(gov, "steps", run_id)
    assert clean_room.record(run_id)["status"] == "recorded"  # the run's own record still counts


def test_a_record_the_accountant_cannot_compute_is_a_one_line_400_not_a_500(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    clean_room = _room(gov, attester, tmp_path, "domain")
    run_id = clean_room.reserve()["runId"]
    # almost no noise, full batches: PRV would discretise on a grid of 10^8 points (minutes of CPU),
    # or, for more steps, ask numpy for tens of GB; both are refused before the grid is built
    for sigma, steps in ((0.01, 10), (0.7, privacy.MAX_STEPS)):
        started = time.monotonic()
        with pytest.raises(InvalidInputError) as refused:
            clean_room.record(run_id, noise_multiplier=sigma, sample_rate=1.0, steps=steps, epsilon=2.0)
        assert time.monotonic() - started < 60  # refused before the grid: building it takes minutes
        message = str(refused.value)
        assert "(400)" in message and f"the prv accountant cannot account for noise_multiplier {sigma}," in message
        assert re.search(r"its grid would need [\d,]{11,} points \(at most 10,000,000\)", message), message
        assert "\n" not in message
    _nothing_written(gov, "domain", run_id)
    assert clean_room.record(run_id)["status"] == "recorded"


def test_the_offline_replay_refuses_such_a_record_too() -> None:
    """``privacy verify`` recomputes with the same code: the same bounds, the same one line."""
    with pytest.raises(InvalidInputError, match="'steps' = 1000000000 is above"):
        privacy.check_record(
            {"noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 10**9, "delta": 1e-6, "accountant": "rdp"}
            | {"epsilon": 1.0}
        )
    with pytest.raises(InvalidInputError, match="its grid would need 368,423,392 points"):
        privacy.recompute_epsilon("prv", 1.0, 1.0, 10_000, 1e-5)
    # a delta so small that opacus itself refuses (ValueError inside the accountant): one line too
    with pytest.raises(InvalidInputError, match=r"the prv accountant cannot account for .*\(ValueError: Floating"):
        privacy.recompute_epsilon("prv", 1.1, 0.01, 1000, 1e-20)
