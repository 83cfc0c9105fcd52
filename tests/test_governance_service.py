"""The governance service over real TLS on loopback: authentication, the constitution, every action."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cbor2
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.config.canonical import document_hash
from core.crypto.identity import MemberIdentity
from core.errors import AccessDeniedError, ConflictError, InvalidInputError, NotFoundError, ServiceUnavailableError
from core.governance.client import GovernanceClient
from core.governance.models import StaleVersionError
from core.governance.service_identity import ServiceIdentity
from core.governance.signing import sign_es384, sign_request
from tests.governance_support import Attester, Consortium, start_consortium


@pytest.fixture(scope="module")
def attester(tmp_path_factory: pytest.TempPathFactory) -> Attester:
    return Attester(tmp_path_factory.mktemp("attestation"))


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory, attester: Attester):
    consortium = start_consortium(
        tmp_path_factory.mktemp("gov") / "service", window_seconds=60, attestation=attester.spec
    )
    yield consortium
    consortium.close()


def _ids(consortium: Consortium) -> list[str]:
    return [m.member_id for m in consortium.members]


# -- authentication: every write is a fresh COSE_Sign1 by an active member --------------------------
def _refused(call, status: int, words: str, error=AccessDeniedError) -> None:
    with pytest.raises(error) as info:
        call()
    assert f"({status})" in str(info.value) and words in str(info.value), str(info.value)


def test_unsigned_request_is_refused(gov: Consortium) -> None:
    client = gov.clients[0]
    _refused(lambda: client.send_raw("PUT", "/contracts/u1", b'{"data": {}}', "application/json"), 401, "unsigned")
    empty_signature = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -35}), {}, b"{}", b""]))
    _refused(lambda: client.send_raw("PUT", "/contracts/u1", empty_signature), 401, "unsigned")
    _refused(lambda: client.send_raw("PUT", "/contracts/u1", b"\xff\x00 not cbor"), 400, "not CBOR", InvalidInputError)
    with pytest.raises(NotFoundError):
        client.contract("u1")


def test_wrongly_signed_request_is_refused(gov: Consortium) -> None:
    member = gov.members[0]
    forged = sign_es384(
        ec.generate_private_key(ec.SECP384R1()), kid=member.member_id, path="/contracts/w1", body={"data": {}}
    )
    _refused(lambda: gov.clients[0].send_raw("PUT", "/contracts/w1", forged), 401, "does not verify")


def test_non_member_is_refused(gov: Consortium) -> None:
    with gov.client(MemberIdentity.generate("outsider")) as outsider:
        _refused(lambda: outsider.create_contract("n1", {"x": 1}), 401, "not a member")


def test_stale_created_at_is_refused(gov: Consortium) -> None:
    member = gov.members[0]
    for skew in (-3600, +3600):
        stale = sign_request(member, "/contracts/s1", {"data": {}}, created_at=int(time.time()) + skew)
        _refused(lambda stale=stale: gov.clients[0].send_raw("PUT", "/contracts/s1", stale), 401, "freshness window")


def test_replayed_message_is_refused(gov: Consortium) -> None:
    message = sign_request(gov.members[0], "/contracts/r1", {"data": {"a": 1}})
    gov.clients[0].send_raw("PUT", "/contracts/r1", message)
    head = gov.clients[0].ledger_head()["seqno"]
    _refused(lambda: gov.clients[0].send_raw("PUT", "/contracts/r1", message), 401, "replayed")
    assert gov.clients[0].ledger_head()["seqno"] == head


def test_message_signed_for_another_path_is_refused(gov: Consortium) -> None:
    message = sign_request(gov.members[0], "/contracts/p1", {"data": {}})
    _refused(lambda: gov.clients[0].send_raw("PUT", "/contracts/p2", message), 401, "signed for")


def test_ballot_route_makes_every_authentication_check(gov: Consortium) -> None:
    """Ballots are served ahead of FastAPI's routing (``SignedBallotRoute``): same checks, same errors."""
    hoster, client = gov.members[0], gov.clients[0]
    created = client.create_contract("ballot-auth", {"a": 1})
    proposal_id = client.propose_contract("ballot-auth", created["version"])["proposalId"]
    path = f"/proposals/{proposal_id}/ballots"
    ballot = {"ballot": "accept"}
    _refused(lambda: client.send_raw("POST", path, b'{"ballot": "accept"}', "application/json"), 401, "unsigned")
    _refused(lambda: client.send_raw("POST", path, b"\xff\x00 not cbor"), 400, "not CBOR", InvalidInputError)
    forged = sign_es384(ec.generate_private_key(ec.SECP384R1()), kid=hoster.member_id, path=path, body=ballot)
    _refused(lambda: client.send_raw("POST", path, forged), 401, "does not verify")
    outsider = sign_request(MemberIdentity.generate("outsider"), path, ballot)
    _refused(lambda: client.send_raw("POST", path, outsider), 401, "not a member")
    stale = sign_request(hoster, path, ballot, created_at=int(time.time()) - 3600)
    _refused(lambda: client.send_raw("POST", path, stale), 401, "freshness window")
    elsewhere = sign_request(hoster, f"/proposals/{'0' * 64}/ballots", ballot)
    _refused(lambda: client.send_raw("POST", path, elsewhere), 401, "signed for")
    _refused(
        lambda: client.send_raw("POST", path, sign_request(hoster, path, {"ballot": "maybe"})),
        400,
        "not a vote",
        InvalidInputError,
    )
    assert client.proposal(proposal_id)["ballots"] == {}
    message = sign_request(hoster, path, ballot)
    assert client.send_raw("POST", path, message).json()["ballots"] == {hoster.member_id: "accept"}
    _refused(lambda: client.send_raw("POST", path, message), 401, "replayed")


# -- contracts and the constitution ------------------------------------------------------------------
def test_contract_lifecycle_accepts_when_every_member_accepts(gov: Consortium) -> None:
    hoster, provider, consumer = gov.clients
    data = {"purpose": "inference", "rev": 1}  # opaque: a spec-shaped document must be a valid spec
    created = hoster.create_contract("lifecycle", data)
    assert created["state"] == "Draft" and created["version"]
    proposal = hoster.propose_contract("lifecycle", created["version"])
    assert hoster.contract("lifecycle")["state"] == "Proposed"
    assert hoster.contract("lifecycle")["proposalId"] == proposal["proposalId"]
    assert hoster.vote(proposal["proposalId"], "accept")["proposalState"] == "Open"
    assert provider.vote(proposal["proposalId"], "accept")["proposalState"] == "Open"
    assert consumer.vote(proposal["proposalId"], "accept")["proposalState"] == "Accepted"
    accepted = consumer.contract("lifecycle")
    assert accepted["state"] == "Accepted" and accepted["hash"] == document_hash(data)
    assert "lifecycle" in [c["id"] for c in consumer.contracts()]


def test_any_reject_vetoes_and_contract_returns_to_draft(gov: Consortium) -> None:
    hoster, provider, _ = gov.clients
    created = hoster.create_contract("vetoed", {"a": 1})
    proposal = hoster.propose_contract("vetoed", created["version"])
    hoster.vote(proposal["proposalId"], "accept")
    assert provider.vote(proposal["proposalId"], "reject")["proposalState"] == "Rejected"
    assert hoster.contract("vetoed")["state"] == "Draft"


def test_vote_on_closed_proposal_is_refused(gov: Consortium) -> None:
    hoster, provider, consumer = gov.clients
    created = hoster.create_contract("closed", {"a": 1})
    proposal = hoster.propose_contract("closed", created["version"])
    provider.vote(proposal["proposalId"], "reject")
    _refused(lambda: consumer.vote(proposal["proposalId"], "accept"), 409, "not Open", ConflictError)


def test_second_different_ballot_is_refused_identical_is_idempotent(gov: Consortium) -> None:
    hoster = gov.clients[0]
    created = hoster.create_contract("ballots", {"a": 1})
    proposal = hoster.propose_contract("ballots", created["version"])
    hoster.vote(proposal["proposalId"], "accept")
    head = hoster.ledger_head()["seqno"]
    again = hoster.vote(proposal["proposalId"], "accept")  # re-signed, so not a replay
    assert again.get("idempotent") is True and hoster.ledger_head()["seqno"] == head
    _refused(lambda: hoster.vote(proposal["proposalId"], "reject"), 409, "already voted", ConflictError)
    assert hoster.proposal(proposal["proposalId"])["ballots"] == {gov.members[0].member_id: "accept"}


def test_accepted_contract_is_immutable(gov: Consortium) -> None:
    contract = gov.accepted_contract("immutable")
    _refused(
        lambda: gov.clients[1].update_contract("immutable", {"changed": True}, contract["version"]),
        409,
        "immutable",
        ConflictError,
    )
    _refused(lambda: gov.clients[1].propose_contract("immutable", contract["version"]), 409, "immutable", ConflictError)


def test_stale_version_is_refused_with_412(gov: Consortium) -> None:
    hoster, provider, _ = gov.clients
    first = hoster.create_contract("versioned", {"rev": 1})
    second = provider.update_contract("versioned", {"rev": 2}, first["version"])
    assert second["version"] != first["version"] and second["data"] == {"rev": 2}
    _refused(
        lambda: hoster.update_contract("versioned", {"rev": 3}, first["version"]),
        412,
        "changed since",
        StaleVersionError,
    )
    _refused(lambda: hoster.propose_contract("versioned", first["version"]), 412, "not the current", StaleVersionError)
    _refused(lambda: hoster.create_contract("versioned", {"rev": 9}), 409, "already exists", ConflictError)


def test_update_of_proposed_contract_drops_its_proposal(gov: Consortium) -> None:
    hoster = gov.clients[0]
    created = hoster.create_contract("dropped", {"rev": 1})
    proposal = hoster.propose_contract("dropped", created["version"])
    hoster.update_contract("dropped", {"rev": 2}, created["version"])
    assert hoster.proposal(proposal["proposalId"])["proposalState"] == "Dropped"
    assert hoster.contract("dropped")["state"] == "Draft"
    _refused(lambda: hoster.vote(proposal["proposalId"], "accept"), 409, "Dropped", ConflictError)


def test_proposer_may_withdraw_others_may_not(gov: Consortium) -> None:
    hoster, provider, _ = gov.clients
    created = hoster.create_contract("withdrawn", {"a": 1})
    proposal = hoster.propose_contract("withdrawn", created["version"])
    _refused(lambda: provider.withdraw(proposal["proposalId"]), 403, "only the proposer")
    assert hoster.withdraw(proposal["proposalId"])["proposalState"] == "Withdrawn"
    assert hoster.contract("withdrawn")["state"] == "Draft"


def test_unknown_action_and_missing_things_are_refused(gov: Consortium) -> None:
    hoster = gov.clients[0]
    _refused(lambda: hoster.propose("make_coffee", {}), 400, "not known", InvalidInputError)
    _refused(lambda: hoster.propose_enable_ca("no-such-contract"), 404, "does not exist", NotFoundError)
    hoster.create_contract("draft-only", {"a": 1})
    _refused(lambda: hoster.propose_enable_ca("draft-only"), 409, "is Draft", ConflictError)
    _refused(lambda: hoster.vote("0" * 64, "accept"), 404, "does not exist", NotFoundError)
    _refused(lambda: hoster.create_contract("bad id!", {}), 400, "not valid", InvalidInputError)


# -- deployment spec, policy, CA, options -----------------------------------------------------------
def test_deployment_spec_and_policy_proposals_are_found_by_contract(gov: Consortium) -> None:
    gov.accepted_contract("deploy")
    hoster = gov.clients[0]
    spec = {"contract_id": "deploy", "applications": [{"name": "server", "command": ["serve"]}]}
    first = hoster.propose_deployment_spec("deploy", spec)
    second = hoster.propose_deployment_spec("deploy", spec | {"revision": 2})
    shown = gov.clients[2].deployment_spec("deploy")
    assert shown["data"] is None and shown["proposalIds"] == [first["proposalId"], second["proposalId"]]
    gov.pass_proposal(second)
    shown = gov.clients[2].deployment_spec("deploy")
    assert shown["data"] == spec | {"revision": 2} and shown["acceptedProposalId"] == second["proposalId"]
    assert shown["proposalIds"] == [] and hoster.proposal(first["proposalId"])["proposalState"] == "Dropped"

    inner = {"version": 1, "contract_id": "deploy", "applications": []}
    lying = {"policy": inner, "policy_hash": "0" * 64}
    _refused(lambda: hoster.propose_clean_room_policy("deploy", lying), 400, "policy_hash", InvalidInputError)
    policy = gov.pass_proposal(
        hoster.propose_clean_room_policy("deploy", {"policy": inner, "policy_hash": document_hash(inner)})
    )
    assert policy["proposalState"] == "Accepted"
    assert gov.clients[1].accepted_policy_hash("deploy") == document_hash(inner)


def test_ca_enable_generate_and_show(gov: Consortium) -> None:
    gov.accepted_contract("ca-contract")
    hoster, _, consumer = gov.clients
    _refused(lambda: hoster.generate_ca_key("ca-contract"), 409, "not enabled", ConflictError)
    proposal = hoster.propose_enable_ca("ca-contract")
    assert consumer.ca("ca-contract")["proposalIds"] == [proposal["proposalId"]]
    gov.pass_proposal(proposal)
    assert consumer.ca("ca-contract")["enabled"] is True and consumer.ca("ca-contract")["caCert"] == ""
    hoster.generate_ca_key("ca-contract")
    cert = x509.load_pem_x509_certificate(consumer.ca("ca-contract")["caCert"].encode())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp384r1"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    _refused(lambda: hoster.generate_ca_key("ca-contract"), 409, "already has", ConflictError)


def test_logging_and_telemetry_options_follow_proposals(gov: Consortium) -> None:
    gov.accepted_contract("options")
    hoster = gov.clients[0]
    assert hoster.runtime_option("options", "telemetry")["status"] == "disabled"
    proposal = hoster.set_runtime_option("options", "telemetry", True)
    assert proposal["action"] == "enable_telemetry"
    assert hoster.runtime_option("options", "telemetry")["proposalIds"] == [proposal["proposalId"]]
    gov.pass_proposal(proposal)
    assert hoster.runtime_option("options", "telemetry")["status"] == "enabled"
    gov.pass_proposal(hoster.set_runtime_option("options", "logging", True))
    gov.pass_proposal(hoster.set_runtime_option("options", "logging", False))
    assert hoster.runtime_option("options", "logging")["status"] == "disabled"


def test_kill_switch_any_member_disables_all_disablers_must_reenable(gov: Consortium) -> None:
    gov.accepted_contract("killswitch")
    hoster, provider, consumer = gov.clients
    assert hoster.execution_enabled("killswitch")
    provider.set_runtime_option("killswitch", "execution", False)
    consumer.set_runtime_option("killswitch", "execution", False)
    state = hoster.runtime_option("killswitch", "execution")
    assert state["status"] == "disabled" and sorted(state["disabledBy"]) == sorted(_ids(gov)[1:])
    hoster.set_runtime_option("killswitch", "execution", True)  # not a disabler: changes nothing
    provider.set_runtime_option("killswitch", "execution", True)
    assert hoster.runtime_option("killswitch", "execution")["disabledBy"] == [gov.members[2].member_id]
    assert not hoster.execution_enabled("killswitch")
    consumer.set_runtime_option("killswitch", "execution", True)
    assert hoster.execution_enabled("killswitch")


def test_draft_contract_cannot_execute(gov: Consortium) -> None:
    gov.clients[0].create_contract("not-yet", {"a": 1})
    assert gov.clients[0].runtime_option("not-yet", "execution")["status"] == "disabled"


# -- members --------------------------------------------------------------------------------------
def test_new_member_joins_by_proposal_then_activation(gov: Consortium, tmp_path: Path) -> None:
    auditor = MemberIdentity.generate("auditor")
    proposal = gov.clients[0].propose_member(auditor.cert_pem, "auditor")
    duplicate = gov.clients[1].propose_member(auditor.cert_pem, "auditor-again")
    gov.pass_proposal(proposal)
    assert gov.clients[0].member(auditor.member_id)["status"] == "Accepted"
    with gov.client(auditor) as client:
        _refused(lambda: client.vote(duplicate["proposalId"], "accept"), 401, "not a member")
        assert client.activate_member()["status"] == "Active"
        # the second set_member proposal for the same cert now fails when applied
        assert gov.pass_proposal(duplicate)["proposalState"] == "Open"
        failed = client.vote(duplicate["proposalId"], "accept")
        assert failed["proposalState"] == "Failed" and "joined while" in failed["failure"]
        # the auditor now counts: three accepts are no longer enough
        created = gov.clients[0].create_contract("five-party", {"a": 1})
        contract_proposal = gov.clients[0].propose_contract("five-party", created["version"])
        assert gov.pass_proposal(contract_proposal)["proposalState"] == "Open"
        assert client.vote(contract_proposal["proposalId"], "accept")["proposalState"] == "Accepted"
    gov.members.append(auditor)
    gov.clients.append(gov.client(auditor))


# -- tokens ---------------------------------------------------------------------------------------
def test_token_is_an_es384_jwt_verifiable_with_the_jwks(gov: Consortium) -> None:
    gov.accepted_contract("tokens")
    issued = gov.clients[1].issue_token("tokens")
    jwks = gov.clients[2].jwks()
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(issued["token"], key, algorithms=["ES384"], audience="cleanroom:tokens")
    assert claims["sub"] == gov.members[1].member_id and claims["contract_id"] == "tokens"
    assert jwt.get_unverified_header(issued["token"])["kid"] == jwks["keys"][0]["kid"]
    gov.clients[0].create_contract("draft-tokens", {"a": 1})
    _refused(lambda: gov.clients[1].issue_token("draft-tokens"), 409, "accepted contracts", ConflictError)


# -- attested clean-room calls ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def running_contract(gov: Consortium) -> tuple[str, str]:
    """An accepted contract with an accepted clean-room policy and an enabled CA key."""
    contract_id = "attested"
    gov.accepted_contract(contract_id)
    inner = {"version": 1, "contract_id": contract_id, "applications": [{"name": "server"}]}
    gov.pass_proposal(
        gov.clients[0].propose_clean_room_policy(contract_id, {"policy": inner, "policy_hash": document_hash(inner)})
    )
    gov.pass_proposal(gov.clients[0].propose_enable_ca(contract_id))
    gov.clients[0].generate_ca_key(contract_id)
    return contract_id, document_hash(inner)


def test_secrets_members_put_only_attested_clean_room_gets(
    gov: Consortium, attester: Attester, running_contract: tuple[str, str]
) -> None:
    contract_id, policy_hash = running_contract
    provider = gov.clients[1]
    provider.put_secret(contract_id, "model-dek", b"\x00wrapped-dek\xff")
    assert [s["name"] for s in gov.clients[0].secrets(contract_id)] == ["model-dek"]
    _refused(lambda: gov.clients[2].put_secret(contract_id, "model-dek", b"mine"), 403, "another member")
    with gov.client() as cleanroom:
        assert (
            cleanroom.get_secret(contract_id, "model-dek", attester.token(contract_id, policy_hash))
            == b"\x00wrapped-dek\xff"
        )
        _refused(
            lambda: cleanroom.get_secret(contract_id, "model-dek", attester.token(contract_id, "f" * 64)),
            403,
            "not the accepted clean-room policy",
        )
        _refused(
            lambda: cleanroom.get_secret(contract_id, "model-dek", attester.token("other", policy_hash)),
            403,
            "not 'attested'",
        )
        _refused(lambda: cleanroom.get_secret(contract_id, "model-dek", "not-a-token"), 403, "rejected")
        _refused(
            lambda: cleanroom.get_secret(contract_id, "nope", attester.token(contract_id, policy_hash)),
            404,
            "does not exist",
            NotFoundError,
        )
        gov.clients[2].set_runtime_option(contract_id, "execution", False)
        try:
            _refused(
                lambda: cleanroom.get_secret(contract_id, "model-dek", attester.token(contract_id, policy_hash)),
                403,
                "disabled",
            )
        finally:
            gov.clients[2].set_runtime_option(contract_id, "execution", True)


def test_ca_endorses_the_attested_clean_rooms_csr(
    gov: Consortium, attester: Attester, running_contract: tuple[str, str]
) -> None:
    contract_id, policy_hash = running_contract
    key = ec.generate_private_key(ec.SECP384R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cleanroom ingress")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA384())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    with gov.client() as cleanroom:
        _refused(
            lambda: cleanroom.endorse_csr(contract_id, attester.token(contract_id, "0" * 64), csr),
            403,
            "not the accepted",
        )
        answer = cleanroom.endorse_csr(contract_id, attester.token(contract_id, policy_hash), csr)
    leaf = x509.load_pem_x509_certificate(answer["certificate"].encode())
    ca_cert = x509.load_pem_x509_certificate(gov.clients[0].ca(contract_id)["caCert"].encode())
    leaf.verify_directly_issued_by(ca_cert)
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["localhost"]


def test_events_append_list_long_poll_and_stream(
    gov: Consortium, attester: Attester, running_contract: tuple[str, str]
) -> None:
    contract_id, policy_hash = running_contract
    token = attester.token(contract_id, policy_hash)
    consumer = gov.clients[2]
    with gov.client() as cleanroom:
        start = consumer.events(contract_id)["nextSeqno"]
        cleanroom.append_event(contract_id, token, "started", {"pid": 1})
        cleanroom.append_event(contract_id, token, "progress", {"step": 1, "loss": 0.5}, category="telemetry")
        listed = consumer.events(contract_id, start)
        assert [e["type"] for e in listed["events"]] == ["started"]  # telemetry not enabled for this contract
        assert listed["nextSeqno"] == start + 2

        got: list[dict] = []
        waiter = threading.Thread(target=lambda: got.append(consumer.events(contract_id, start + 2, wait=10)))
        waiter.start()
        time.sleep(0.3)
        cleanroom.append_event(contract_id, token, "exited", {"code": 0})
        waiter.join(timeout=10)
        assert [e["type"] for e in got[0]["events"]] == ["exited"]

        stream = consumer.stream_events(contract_id, start)
        assert [next(stream)["type"], next(stream)["type"]] == ["started", "exited"]
        stream.close()
        _refused(lambda: cleanroom.append_event(contract_id, token, "", {}), 400, "needs a type", InvalidInputError)


def test_without_a_verifier_attested_calls_are_refused(tmp_path: Path) -> None:
    consortium = start_consortium(tmp_path / "plain", names=("solo",))
    try:
        consortium.accepted_contract("c")
        with consortium.client() as cleanroom:
            _refused(lambda: cleanroom.get_secret("c", "x", "any-token"), 403, "no attestation verifier")
            _refused(lambda: cleanroom.append_event("c", "any-token", "started"), 403, "no attestation verifier")
    finally:
        consortium.close()


def test_pinning_refuses_another_services_certificate(gov: Consortium, tmp_path: Path) -> None:
    impostor = ServiceIdentity.create(tmp_path / "impostor")
    with (
        GovernanceClient(gov.info.endpoint, impostor.cert_pem) as client,
        pytest.raises(ServiceUnavailableError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.health()


def test_events_are_kept_while_execution_is_disabled(
    gov: Consortium, attester: Attester, running_contract: tuple[str, str]
) -> None:
    """The kill switch stops execution and key release, not the audit trail of the stopped run."""
    contract_id, policy_hash = running_contract
    token = attester.token(contract_id, policy_hash)
    gov.clients[1].put_secret(contract_id, "after-kill", b"wrapped")
    gov.clients[1].set_runtime_option(contract_id, "execution", False)
    try:
        with gov.client() as cleanroom:
            start = gov.clients[2].events(contract_id)["nextSeqno"]
            cleanroom.append_event(contract_id, token, "stopping", {"reason": "execution disabled by a member"})
            cleanroom.append_event(contract_id, token, "exited", {"exit_codes": {"app": -15}})
            _refused(lambda: cleanroom.get_secret(contract_id, "after-kill", token), 403, "disabled")
            _refused(lambda: cleanroom.endorse_csr(contract_id, token, "csr"), 403, "disabled")
            _refused(
                lambda: cleanroom.append_event(contract_id, token, "x", [1]),
                400,
                "JSON object",  # type: ignore[arg-type]
                InvalidInputError,
            )
        listed = gov.clients[2].events(contract_id, start)["events"]
        assert [(e["type"], e["data"]) for e in listed] == [
            ("stopping", {"reason": "execution disabled by a member"}),
            ("exited", {"exit_codes": {"app": -15}}),
        ]
    finally:
        gov.clients[1].set_runtime_option(contract_id, "execution", True)


def test_event_of_an_unaccepted_measurement_is_kept_and_marked(
    gov: Consortium, attester: Attester, running_contract: tuple[str, str]
) -> None:
    """A changed spec gets no keys, but its `failed` event reaches the members, marked."""
    contract_id, _ = running_contract
    changed = "e" * 64
    with gov.client() as cleanroom:
        start = gov.clients[0].events(contract_id)["nextSeqno"]
        cleanroom.append_event(contract_id, attester.token(contract_id, changed), "failed", {"reason": "no keys"})
        _refused(
            lambda: cleanroom.append_event(contract_id, attester.token("other", changed), "failed"),
            403,
            "not 'attested'",
        )
    [event] = gov.clients[0].events(contract_id, start)["events"]
    assert event["type"] == "failed"
    assert event["data"] == {"reason": "no keys", "unaccepted_policy_hash": changed}
