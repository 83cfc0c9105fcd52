"""Voting from the console against a real governance service on loopback (TLS, COSE-signed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.engine import PersonaEngine
from core.governance import launcher
from core.governance.client import GovernanceClient, deploy_to_workspace
from core.workspace import Workspace
from tui.app import CleanroomConsole
from tui.screens.confirm import ConfirmScreen, KillSwitchScreen, VoteScreen
from tui.widgets.deployments import DeploymentsView
from tui.widgets.ledger import LedgerView
from tui.widgets.proposals import ProposalsView

SIZE = (140, 40)
PERSONAS = ("hoster", "provider", "consumer")
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[dict[str, Workspace]]:
    """Three persona workspaces deployed against one real governance service."""
    workspaces = {p: Workspace.init(tmp_path / p, p) for p in PERSONAS}
    state = tmp_path / "governance"
    launcher.create(state, [w.identity.cert_pem for w in workspaces.values()])
    info = launcher.start(state)
    try:
        for workspace in workspaces.values():
            deploy_to_workspace(workspace, info.endpoint, info.service_cert_pem)
        yield workspaces
    finally:
        launcher.stop(state)


def propose_contract(hoster: Workspace, contract_id: str, data: dict) -> str:
    with GovernanceClient.from_workspace(hoster) as gov:
        contract = gov.create_contract(contract_id, data)
        return gov.propose_contract(contract_id, contract["version"])["proposalId"]


def ballots_at_service(workspace: Workspace, proposal_id: str) -> dict[str, str]:
    with GovernanceClient.from_workspace(workspace) as gov:
        return gov.proposal(proposal_id)["ballots"]


async def open_console(pilot, persona_key: str, proposal_id: str) -> ProposalsView:
    app = pilot.app
    await pilot.press(persona_key)
    await app.workers.wait_for_complete()
    await pilot.pause()
    view = app.screen.query_one(ProposalsView)
    table = view.query_one("#proposals-table")
    table.move_cursor(row=table.get_row_index(proposal_id))
    table.focus()
    await pilot.pause()
    return view


async def test_accept_through_the_modal_records_exactly_one_signed_ballot(consortium) -> None:
    proposal_id = propose_contract(consortium["hoster"], "inference-1", {"applications": []})
    engines = [PersonaEngine(consortium[p]) for p in PERSONAS]
    consumer = engines[2]
    app = CleanroomConsole(engines, background=False)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_console(pilot, "f4", proposal_id)
        assert view.selected.proposal_id == proposal_id and view.selected.is_open
        await pilot.press("a")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, VoteScreen)
        summary = modal.query_one("#vote-summary").render().plain
        assert proposal_id in summary and "ACCEPT" in summary and "consumer" in summary
        assert ballots_at_service(consortium["hoster"], proposal_id) == {}, "nothing before y"
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()

        assert ballots_at_service(consortium["hoster"], proposal_id) == {consumer.member_id: "accept"}
        row = view.query_one("#proposals-table").get_row(proposal_id)
        marks = row[5].plain.split()
        column = [m.member_id for m in view.members].index(consumer.member_id)
        assert marks[column] == "✔" and marks.count("✔") == 1 and marks.count("·") == 2
        assert any(n.title == "Ballot signed" for n in app._notifications)
        assert view.idle_reason("vote") == (f"you already voted accept on {proposal_id[:10]}: a signed ballot is final")
        await pilot.press("r")  # a second ballot: the key says why nothing happens
        await pilot.pause()
        assert not isinstance(app.screen, VoteScreen)
        assert [n.message for n in app._notifications if n.title == "Nothing to do"] == [view.idle_reason("vote")]

        # the ledger holds that ballot, signed by the consumer, and verifies
        app.screen.show_view("ledger")
        ledger = app.screen.query_one(LedgerView)
        ledger.load()
        await app.workers.wait_for_complete()
        assert [e.action for e in ledger.entries if e.signer_id == consumer.member_id] == ["ballot"]
        ledger.action_verify()
        await app.workers.wait_for_complete()
        assert ledger.verification is not None and ledger.verification.ok


async def test_no_in_the_modal_records_nothing(consortium) -> None:
    proposal_id = propose_contract(consortium["hoster"], "inference-1", {"applications": []})
    app = CleanroomConsole([PersonaEngine(consortium[p]) for p in PERSONAS], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await open_console(pilot, "f3", proposal_id)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, VoteScreen) and not app.screen.accept
        await pilot.press("n")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, VoteScreen)
    assert ballots_at_service(consortium["hoster"], proposal_id) == {}


async def test_closed_proposals_offer_no_vote_and_only_the_proposer_may_withdraw(consortium) -> None:
    withdrawn = propose_contract(consortium["hoster"], "old-1", {"applications": []})
    with GovernanceClient.from_workspace(consortium["hoster"]) as gov:
        gov.withdraw(withdrawn)
    open_one = propose_contract(consortium["hoster"], "inference-1", {"applications": []})
    app = CleanroomConsole([PersonaEngine(consortium[p]) for p in PERSONAS], background=False)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_console(pilot, "f4", withdrawn)
        assert view.selected.state == "Withdrawn"
        assert view.idle_reason("vote") == f"proposal {withdrawn[:10]} is Withdrawn: voting is over"
        await pilot.press("a")
        await pilot.pause()
        assert not isinstance(app.screen, VoteScreen), "a closed proposal opens no vote"
        assert f"proposal {withdrawn[:10]} is Withdrawn: voting is over" in [n.message for n in app._notifications]

        view = await open_console(pilot, "f4", open_one)
        assert view.idle_reason("vote") is None
        assert view.idle_reason("withdraw") == f"only its proposer (hoster) can withdraw {open_one[:10]}"
        await pilot.press("w")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen), "not the consumer's to withdraw"
        view = await open_console(pilot, "f2", open_one)
        assert view.idle_reason("withdraw") is None, "the hoster proposed it"
    assert ballots_at_service(consortium["hoster"], withdrawn) == {}


async def test_detail_pane_diffs_against_the_previous_version(consortium) -> None:
    with GovernanceClient.from_workspace(consortium["hoster"]) as gov:
        contract = gov.create_contract("finetune-1", {"drafts": [{"name": "trainer-v1"}]})
        first = gov.propose_contract("finetune-1", contract["version"])["proposalId"]
        contract = gov.update_contract(
            "finetune-1", {"drafts": [{"name": "trainer-v2"}]}, gov.contract("finetune-1")["version"]
        )
        second = gov.propose_contract("finetune-1", contract["version"])["proposalId"]
    app = CleanroomConsole([PersonaEngine(consortium[p]) for p in PERSONAS], background=False)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_console(pilot, "f3", second)
        detail = view.query_one("#proposal-detail-body").render().plain
        assert re.search(r'^- +"name": "trainer-v1"$', detail, re.M), detail
        assert re.search(r'^\+ +"name": "trainer-v2"$', detail, re.M), detail
        assert view.selected.created_at > 0
        states = {p.proposal_id: p.state for p in view.proposals}
        assert states[first] == "Dropped" and states[second] == "Open"


async def test_kill_switch_needs_the_typed_contract_id_then_disables_execution(consortium) -> None:
    proposal_id = propose_contract(consortium["hoster"], "inference-1", {"applications": []})
    for persona in PERSONAS:
        with GovernanceClient.from_workspace(consortium[persona]) as gov:
            gov.vote(proposal_id, "accept")
    app = CleanroomConsole([PersonaEngine(consortium[p]) for p in PERSONAS], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4", "2")
        view = app.screen.query_one(DeploymentsView)
        view.confirm_kill("inference-1")
        await pilot.pause()
        assert isinstance(app.screen, KillSwitchScreen)
        await pilot.press(*"inference-2", "enter")
        await pilot.pause()
        assert isinstance(app.screen, KillSwitchScreen), "a wrong id does not confirm"
        assert "not the contract id" in app.screen.query_one("#kill-confirm-error").render().plain
        with GovernanceClient.from_workspace(consortium["hoster"]) as gov:
            assert gov.execution_enabled("inference-1")
        app.screen.query_one("#kill-confirm-input").value = ""
        await pilot.press(*"inference-1", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, KillSwitchScreen)
        assert any(n.title == "Kill switch" for n in app._notifications)
    with GovernanceClient.from_workspace(consortium["hoster"]) as gov:
        option = gov.runtime_option("inference-1", "execution")
    assert option["status"] == "disabled"


async def test_evaluating_a_contract_that_is_not_running_says_so(consortium) -> None:
    propose_contract(consortium["hoster"], "inference-1", {"applications": []})
    app = CleanroomConsole([PersonaEngine(consortium["consumer"])], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        app.screen.query_one("#inference-contract").focus()
        await pilot.press(*"inference-1", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1 and "inference-1" in errors[0]
        assert "no running clean room" in errors[0] and "cleanroom deployment start" in errors[0]
        assert app.is_running
