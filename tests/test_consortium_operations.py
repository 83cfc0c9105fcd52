"""The engine's consortium operations against a real governance service (issue #13).

The CLI verbs `governance contract/proposal/ca/member/ledger ...` only present what these
return, so each refusal is checked here at the one place it is decided, with what the service
then holds: a refused ballot is not recorded, a refused withdrawal leaves the proposal open, a
refused deployment records no service in the workspace.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config.canonical import document_hash
from core.engine import PersonaEngine, deploy_governance_client, deployed_service
from core.errors import InvalidInputError, NotFoundError, ServiceUnavailableError
from core.governance.models import ContractState, ProposalState
from core.workspace import Workspace
from tests.test_tui_governance import ballots_at_service, consortium  # noqa: F401 (fixture)

SPEC = {"applications": [], "parties": ["hoster", "provider", "consumer"]}


def test_write_contract_takes_config_view_output_and_updates_the_draft_at_its_version(consortium) -> None:  # noqa: F811
    with PersonaEngine(consortium["hoster"]) as hoster:
        created = hoster.write_contract("c1", {"spec": SPEC, "specHash": document_hash(SPEC)})
        assert hoster.read_contract("c1")["data"] == SPEC, "the spec is stored, not `config view`'s wrapper"
        narrower = SPEC | {"parties": ["hoster", "provider"]}
        updated = hoster.write_contract("c1", narrower, created["version"])
        assert updated["version"] != created["version"]
        assert hoster.read_contract("c1")["data"] == narrower
        assert hoster.read_contract("c1")["state"] == ContractState.DRAFT


def test_a_ballot_for_another_proposal_than_the_contracts_is_refused_and_not_recorded(consortium) -> None:  # noqa: F811
    with PersonaEngine(consortium["hoster"]) as hoster, PersonaEngine(consortium["provider"]) as provider:
        created = hoster.write_contract("c2", SPEC)
        proposal_id = hoster.propose_contract("c2", created["version"])["proposalId"]
        other = hoster.write_contract("c3", SPEC)
        other_id = hoster.propose_contract("c3", other["version"])["proposalId"]
        with pytest.raises(InvalidInputError, match=f"is not the open proposal of contract 'c2'.*{proposal_id}"):
            provider.vote_on_contract("c2", other_id, "accept")
        assert ballots_at_service(consortium["provider"], other_id) == {}, "the refused ballot was not cast"
        voted = provider.vote_on_contract("c2", proposal_id, "accept")
        assert voted["ballots"] == {provider.member_id: "accept"}
        assert provider.cast_ballot(proposal_id, "accept").get("idempotent"), "a repeated ballot is not a second one"


def test_withdrawing_a_contract_without_an_open_proposal_is_refused(consortium) -> None:  # noqa: F811
    with PersonaEngine(consortium["hoster"]) as hoster:
        created = hoster.write_contract("c4", SPEC)
        with pytest.raises(NotFoundError, match="contract 'c4' has no open proposal"):
            hoster.withdraw_contract_proposal("c4")
        proposal_id = hoster.propose_contract("c4", created["version"])["proposalId"]
        withdrawn = hoster.withdraw_contract_proposal("c4")
        assert withdrawn == {
            "contractId": "c4",
            "proposalId": proposal_id,
            "proposalState": ProposalState.WITHDRAWN,
        }
        assert hoster.read_contract("c4")["state"] == ContractState.DRAFT


def test_deploying_a_client_checks_the_service_before_recording_it(consortium, tmp_path: Path) -> None:  # noqa: F811
    settings = deployed_service(consortium["hoster"])
    assert settings is not None
    auditor = Workspace.init(tmp_path / "auditor", "auditor")
    other_cert = Workspace.init(tmp_path / "other", "auditor").identity.cert_pem  # a certificate, not the service's
    with pytest.raises((ServiceUnavailableError, InvalidInputError)):
        deploy_governance_client(auditor, settings["endpoint"], other_cert)
    assert deployed_service(auditor) is None, "nothing recorded for a service whose certificate did not match"
    assert deploy_governance_client(auditor, settings["endpoint"], settings["service_cert_pem"]) is None, "no member"
    assert deployed_service(auditor) == settings
    member = deploy_governance_client(consortium["provider"], settings["endpoint"], settings["service_cert_pem"])
    assert member is not None and member["memberId"] == consortium["provider"].identity.member_id


def test_the_signed_head_and_a_receipt_are_checked_against_the_pinned_certificate(consortium) -> None:  # noqa: F811
    with PersonaEngine(consortium["hoster"]) as hoster:
        hoster.write_contract("c5", SPEC)
        head = hoster.signed_head()
        receipt = hoster.verified_receipt(head.seqno)
        assert head.seqno >= 1 and receipt["checkpoint"]["to_seqno"] == head.seqno
