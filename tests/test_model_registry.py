"""The model registry against the real governance service on loopback TLS.

Onboarding by a member (status created), every later status only from the attested clean room of a
contract naming that version with the registry's hashes, the state machine's allowed and refused
transitions, publishing by every member's vote (only a verified version), unpublishing by any one
member, deleting by the owner only and never while published; every write in the ledger.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from core.errors import AccessDeniedError, CleanroomError, ConflictError, InvalidInputError, NotFoundError
from core.governance import ledger, model_registry
from core.governance.model_registry import TRANSITIONS, ModelStatus, check_transition
from tests.governance_support import ISSUER, Attester, Consortium, start_consortium
from tests.model_registry_support import CONSUMER, HOSTER, PROVIDER, OnboardingRoom, onboarding_contract

PACKAGE, WRAPPER = hashlib.sha256(b"package").hexdigest(), hashlib.sha256(b"wrapper").hexdigest()
TO_VERIFIED = ("downloaded", "scanning", "environmentCreated", "deployed", "verified")


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


def onboarded(gov: Consortium, attester: Attester, name: str, version: str = "1") -> OnboardingRoom:
    """A version onboarded by the provider and the attested clean room of a contract onboarding it."""
    gov.clients[PROVIDER].onboard_model(
        name, version, package_hash=PACKAGE, wrapper_hash=WRAPPER, description=f"{name} for the tests"
    )
    contract_id = f"onboard-{name}-{version}"
    return OnboardingRoom(
        gov, attester, contract_id, onboarding_contract(gov, contract_id, name, version, PACKAGE, WRAPPER)
    )


def version_of(gov: Consortium, name: str, version: str = "1") -> dict[str, Any]:
    return dict(gov.clients[CONSUMER].model(name)["versions"][version])


def refused(call: Callable[[], Any], error: type[CleanroomError], status: int, words: str) -> str:
    with pytest.raises(error) as info:
        call()
    assert f"({status})" in str(info.value) and words in str(info.value), str(info.value)
    return str(info.value)


def verify(room: OnboardingRoom, name: str, version: str = "1") -> None:
    for status in TO_VERIFIED:
        room.status(name, version, status, {"step": status})


# -- the state machine, as pure rules -------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "new"),
    [(current, new) for current in ModelStatus for new in ModelStatus if new not in TRANSITIONS[current]],
)
def test_every_transition_the_machine_does_not_list_is_refused_naming_from_and_to(current: str, new: str) -> None:
    with pytest.raises(ConflictError, match=f"cannot go from {current} to {new}"):
        check_transition(current, new)


def test_the_machine_is_the_issues() -> None:
    assert {current: sorted(new) for current, new in TRANSITIONS.items() if new} == {
        "created": ["downloaded"],
        "downloaded": ["scanning"],
        "scanning": ["environmentCreated", "verifyFailed", "vulnerable"],
        "environmentCreated": ["deployed", "verifyFailed"],
        "deployed": ["toBeRetried", "verified", "verifyFailed"],
        "toBeRetried": ["downloaded"],
    }


# -- onboarding -----------------------------------------------------------------------------------
def test_onboarding_registers_a_created_version_owned_by_the_signer(gov: Consortium) -> None:
    provider = gov.clients[PROVIDER]
    shown = provider.onboard_model("minilm", "1", package_hash=PACKAGE, wrapper_hash=WRAPPER, description="MiniLM")
    assert shown["owner"] == gov.members[PROVIDER].member_id and shown["description"] == "MiniLM"
    first = shown["versions"]["1"]
    assert (first["status"], first["packageHash"], first["wrapperHash"], first["published"]) == (
        "created",
        PACKAGE,
        WRAPPER,
        False,
    )
    assert (
        first["history"][0]["status"] == "created" and first["history"][0]["writer"] == gov.members[PROVIDER].member_id
    )
    provider.onboard_model("minilm", "2", package_hash=PACKAGE, wrapper_hash=WRAPPER)
    assert sorted(gov.clients[CONSUMER].model("minilm")["versions"]) == ["1", "2"]
    assert "minilm" in [m["name"] for m in gov.clients[HOSTER].models()]


def test_onboarding_refusals_write_nothing(gov: Consortium) -> None:
    provider, hoster = gov.clients[PROVIDER], gov.clients[HOSTER]
    provider.onboard_model("taken", "1", package_hash=PACKAGE, wrapper_hash=WRAPPER)
    head = hoster.ledger_head()["seqno"]
    refused(
        lambda: hoster.onboard_model("taken", "9", package_hash=PACKAGE, wrapper_hash=WRAPPER),
        ConflictError,
        409,
        "model name 'taken' is taken by another member",
    )
    refused(
        lambda: provider.onboard_model("taken", "1", package_hash=PACKAGE, wrapper_hash=WRAPPER),
        ConflictError,
        409,
        "model 'taken' already has version '1'",
    )
    refused(
        lambda: provider.onboard_model("bad/name", "1", package_hash=PACKAGE, wrapper_hash=WRAPPER),
        InvalidInputError,
        400,
        "model name 'bad/name' is not valid",
    )
    refused(
        lambda: provider.onboard_model("other", "1", package_hash="abc", wrapper_hash=WRAPPER),
        InvalidInputError,
        400,
        "onboarding field 'packageHash' must be a SHA-256 in hex",
    )
    assert hoster.ledger_head()["seqno"] == head
    assert list(gov.clients[CONSUMER].model("taken")["versions"]) == ["1"]
    refused(lambda: hoster.model("other"), NotFoundError, 404, "model 'other' is not in the registry")


# -- statuses from the attested clean room ---------------------------------------------------------
def test_the_clean_room_moves_a_version_through_every_allowed_status(gov: Consortium, attester: Attester) -> None:
    room = onboarded(gov, attester, "retried")
    for status, details in (
        ("downloaded", {"packageHash": PACKAGE}),
        ("scanning", {"files": 4}),
        ("environmentCreated", {"requirements": []}),
        ("deployed", {"wrapperClass": "TextClassifier"}),
        ("toBeRetried", {"attempt": 1, "backoffSeconds": 0.5, "reason": "inference timed out"}),
        ("downloaded", {"attempt": 2}),
        ("scanning", {}),
        ("environmentCreated", {}),
        ("deployed", {}),
        ("verified", {"outputs": 1}),
    ):
        shown = room.status("retried", "1", status, details)
        assert shown["versions"]["1"]["status"] == status and shown["versions"]["1"]["details"] == details
    history = version_of(gov, "retried")["history"]
    assert [h["status"] for h in history] == ["created", "downloaded", "scanning", "environmentCreated", "deployed",
                                             "toBeRetried", "downloaded", "scanning", "environmentCreated",
                                             "deployed", "verified"]  # fmt: skip
    assert {h["writer"] for h in history[1:]} == {f"{ledger.ATTESTED_PREFIX}{room.contract_id}"}
    assert history[5]["details"] == {"attempt": 1, "backoffSeconds": 0.5, "reason": "inference timed out"}
    events = [e for e in gov.clients[HOSTER].events(room.contract_id)["events"] if e["type"] == "model_status"]
    assert [e["data"]["status"] for e in events] == [h["status"] for h in history[1:]]


@pytest.mark.parametrize(
    ("reached", "new"),
    [
        ((), "verified"),
        ((), "scanning"),
        (("downloaded", "scanning"), "deployed"),
        (("downloaded", "scanning", "vulnerable"), "downloaded"),
        (TO_VERIFIED, "deployed"),
        (("downloaded", "scanning", "environmentCreated", "deployed", "verifyFailed"), "verified"),
    ],
)
def test_a_refused_transition_names_from_and_to_and_writes_nothing(
    gov: Consortium, attester: Attester, reached: tuple[str, ...], new: str
) -> None:
    name = f"refused-{len(reached)}-{new}"
    room = onboarded(gov, attester, name)
    for status in reached:
        room.status(name, "1", status, {"findings": ["model/x.pkl: pickle"]} if status == "vulnerable" else {})
    current = reached[-1] if reached else "created"
    head = gov.clients[HOSTER].ledger_head()["seqno"]
    refused(lambda: room.status(name, "1", new, {}), ConflictError, 409, f"cannot go from {current} to {new}")
    assert version_of(gov, name)["status"] == current
    assert gov.clients[HOSTER].ledger_head()["seqno"] == head


def test_status_details_are_checked(gov: Consortium, attester: Attester) -> None:
    room = onboarded(gov, attester, "details")
    for status in ("downloaded", "scanning", "environmentCreated", "deployed"):
        room.status("details", "1", status)
    refused(
        lambda: room.status("details", "1", "toBeRetried", {"reason": "timeout"}),
        InvalidInputError,
        400,
        "toBeRetried details need an attempt number >= 1",
    )
    refused(
        lambda: room.status("details", "1", "toBeRetried", {"attempt": 1}),
        InvalidInputError,
        400,
        "toBeRetried details need backoffSeconds >= 0",
    )
    refused(lambda: room.status("details", "1", "trusted", {}), InvalidInputError, 400, "'trusted' is not known")
    assert version_of(gov, "details")["status"] == "deployed"


def test_a_member_cannot_write_verified(gov: Consortium, attester: Attester) -> None:
    """Neither the owner nor any member: no attestation, or one signed with a member's own key."""
    room = onboarded(gov, attester, "forged")
    for status in TO_VERIFIED[:-1]:
        room.status("forged", "1", status)
    provider = gov.clients[PROVIDER]
    head = provider.ledger_head()["seqno"]
    refused(
        lambda: provider.record_model_status(room.contract_id, "forged", "1", "verified", {}, ""),
        AccessDeniedError,
        403,
        "attestation token missing",
    )
    now = int(time.time())
    claims = {"iss": ISSUER, "iat": now, "exp": now + 60, "contract_id": room.contract_id,
              "policy_hash": room.policy_hash, "report_data": "member"}  # fmt: skip
    forged = jwt.encode(claims, gov.members[PROVIDER].private_key, algorithm="ES384")
    refused(
        lambda: provider.record_model_status(room.contract_id, "forged", "1", "verified", {}, forged),
        AccessDeniedError,
        403,
        "attestation token rejected",
    )
    assert version_of(gov, "forged")["status"] == "deployed"
    assert provider.ledger_head()["seqno"] == head


def test_a_clean_room_of_another_contract_is_refused(gov: Consortium, attester: Attester) -> None:
    target = onboarded(gov, attester, "target")
    other = onboarded(gov, attester, "bystander")
    head = gov.clients[HOSTER].ledger_head()["seqno"]
    refused(
        lambda: other.client.record_model_status(other.contract_id, "target", "1", "downloaded", {}, other.token()),
        AccessDeniedError,
        403,
        f"contract '{other.contract_id}' does not onboard model 'target' version '1'",
    )
    refused(  # its token on the target contract's route
        lambda: other.client.record_model_status(target.contract_id, "target", "1", "downloaded", {}, other.token()),
        AccessDeniedError,
        403,
        f"attestation is for contract '{other.contract_id}'",
    )
    # a contract naming the version but pinning other bytes
    gov.clients[PROVIDER].onboard_model("pinned", "1", package_hash=PACKAGE, wrapper_hash=WRAPPER)
    policy = onboarding_contract(gov, "onboard-pinned-other", "pinned", "1", "0" * 64, WRAPPER)
    swapped = OnboardingRoom(gov, attester, "onboard-pinned-other", policy)
    refused(
        lambda: swapped.status("pinned", "1", "downloaded"),
        AccessDeniedError,
        403,
        "onboards other bytes than model 'pinned' version '1'",
    )
    assert version_of(gov, "target")["status"] == version_of(gov, "pinned")["status"] == "created"
    assert gov.clients[HOSTER].ledger_head()["seqno"] > head  # only the pinned contract's own setup


# -- publish, unpublish, delete ---------------------------------------------------------------------
def test_publishing_needs_verified_and_every_members_vote(gov: Consortium, attester: Attester) -> None:
    room = onboarded(gov, attester, "pub")
    provider = gov.clients[PROVIDER]
    head = provider.ledger_head()["seqno"]
    refused(
        lambda: provider.propose_publish_model("pub", "1"),
        ConflictError,
        409,
        "model 'pub' version '1' is created, not verified, so it cannot be published",
    )
    assert provider.ledger_head()["seqno"] == head
    verify(room, "pub")
    proposal = provider.propose_publish_model("pub", "1")
    provider.vote(proposal["proposalId"], "accept")
    gov.clients[HOSTER].vote(proposal["proposalId"], "accept")
    assert version_of(gov, "pub")["published"] is False  # the consumer has not voted yet
    assert gov.clients[CONSUMER].vote(proposal["proposalId"], "accept")["proposalState"] == "Accepted"
    assert version_of(gov, "pub")["published"] is True
    refused(lambda: provider.propose_publish_model("pub", "1"), ConflictError, 409, "version '1' is already published")


def test_one_member_unpublishes_alone_and_the_owner_deletes_only_unpublished(
    gov: Consortium, attester: Attester
) -> None:
    room = onboarded(gov, attester, "gone")
    verify(room, "gone")
    gov.pass_proposal(gov.clients[PROVIDER].propose_publish_model("gone", "1"))
    assert version_of(gov, "gone")["published"] is True
    provider, consumer = gov.clients[PROVIDER], gov.clients[CONSUMER]
    head = provider.ledger_head()["seqno"]
    refused(
        lambda: provider.delete_model("gone"),
        ConflictError,
        409,
        "model 'gone' version '1' is published, so it cannot be deleted",
    )
    refused(lambda: consumer.delete_model("gone"), AccessDeniedError, 403, "only the owner of model 'gone'")
    assert provider.ledger_head()["seqno"] == head
    consumer.unpublish_model("gone", "1")  # any member, alone
    assert version_of(gov, "gone")["published"] is False
    refused(lambda: consumer.unpublish_model("gone", "1"), ConflictError, 409, "is not published")
    refused(lambda: consumer.delete_model("gone"), AccessDeniedError, 403, "only the owner of model 'gone'")
    assert provider.delete_model("gone")["deleted"] is True
    refused(lambda: consumer.model("gone"), NotFoundError, 404, "model 'gone' is not in the registry")


def test_deleting_one_version_keeps_the_others(gov: Consortium) -> None:
    provider = gov.clients[PROVIDER]
    for version in ("1", "2"):
        provider.onboard_model("twice", version, package_hash=PACKAGE, wrapper_hash=WRAPPER)
    provider.delete_model("twice", "1")
    assert list(provider.model("twice")["versions"]) == ["2"]


def test_every_registry_write_is_in_the_ledger_and_replays_to_what_the_service_shows(
    gov: Consortium, attester: Attester, tmp_path: Path
) -> None:
    room = onboarded(gov, attester, "ledgered")
    verify(room, "ledgered")
    gov.pass_proposal(gov.clients[PROVIDER].propose_publish_model("ledgered", "1"))
    gov.clients[CONSUMER].unpublish_model("ledgered", "1")
    export = tmp_path / "ledger.jsonl"
    gov.clients[HOSTER].export_ledger(export)
    lines = export.read_text().splitlines()
    ledger.verify_export(lines, expected_service_cert_pem=gov.info.service_cert_pem, full=True)
    entries = [json.loads(line)["entry"] for line in lines if '"entry"' in line[:10]]
    kinds = [e["kind"] for e in entries]
    for kind in (model_registry.ONBOARD, model_registry.STATUS, model_registry.PUBLISH, model_registry.UNPUBLISH):
        assert kind in kinds, kind
    statuses = [e for e in entries if e["kind"] == model_registry.STATUS]
    assert all(e["signer"].startswith(ledger.ATTESTED_PREFIX) for e in statuses)
    assert {e["signer"] for e in entries if e["kind"] == model_registry.PUBLISH} == {ledger.SERVICE_SIGNER}
