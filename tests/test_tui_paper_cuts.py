"""The operator's paper cuts (issue #13), each driven through the keys against a real service.

What a party votes on is readable in the vote modal and compared with the spec the voter
regenerated; keys with nothing to act on say so; a failed ledger verify does not stay
"verifying"; empty tables say what fills them; `q` and `?`; the Inference view's input takes
focus; an 80x24 context bar keeps LIVE / READ-ONLY / scenario progress; theme and last persona
are remembered in an XDG config file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from core.engine import PersonaEngine
from core.governance import launcher
from core.governance.client import GovernanceClient, deploy_to_workspace
from core.workspace import Workspace
from tests.spec_support import build_parties, ok
from tests.tui_seeded import NOW, SeededPersona
from tui.app import CleanroomConsole
from tui.preferences import ConsolePreferences, default_path
from tui.screens.confirm import KillSwitchScreen, QuitScreen, VoteScreen
from tui.screens.help import HelpScreen
from tui.widgets.context_bar import ContextBar
from tui.widgets.deployments import DeploymentsView
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.ledger import LedgerView
from tui.widgets.line_chart import LineChart
from tui.widgets.proposals import ProposalsView

SIZE = (140, 40)
PERSONAS = ("hoster", "provider", "consumer")
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Three CLI-built workspaces with fragments, deployed against one real governance service."""
    workspaces = build_parties(tmp_path)
    state = tmp_path / "governance"
    launcher.create(state, [Workspace.open(path).identity.cert_pem for path in workspaces.values()])
    info = launcher.start(state)
    try:
        for path in workspaces.values():
            deploy_to_workspace(Workspace.open(path), info.endpoint, info.service_cert_pem)
        yield {**workspaces, "governance": state}
    finally:
        launcher.stop(state)


def engines_of(consortium: dict[str, Path]) -> list[PersonaEngine]:
    return [PersonaEngine(Workspace.open(consortium[p])) for p in PERSONAS]


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def messages(app: CleanroomConsole, title: str) -> list[str]:
    return [n.message for n in app._notifications if n.title == title]


async def test_vote_modal_summarises_the_contract_and_diffs_the_spec_the_voter_regenerated(
    consortium: dict[str, Path], tmp_path: Path
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(ok("config", "view", "--configs", *(consortium[p] for p in PERSONAS), "-o", "json").stdout)
    hoster = Workspace.open(consortium["hoster"])
    with GovernanceClient.from_workspace(hoster) as gov:
        contract = gov.create_contract("finetune-1", json.loads(spec_file.read_text())["spec"])
        proposal_id = gov.propose_contract("finetune-1", contract["version"])["proposalId"]
    app = CleanroomConsole(engines_of(consortium), background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, VoteScreen)
        review = modal.query_one("#vote-review-body", Static).render().plain
        provider = Workspace.open(consortium["provider"]).identity.member_id
        assert f"datasource model  owner provider ({provider[:12]})" in review
        assert "trainer  owner hoster (" in review and "cpu 2.0  memory 4.0 GiB" in review
        assert "mount trained-model -> /mnt/output  write-only" in review and "outbound denied" in review
        assert "BEGIN CERTIFICATE" not in review

        box = modal.query_one("#vote-diff-input", Input)
        box.focus()
        box.value = str(spec_file)
        await pilot.press("enter")
        await pilot.pause()
        assert modal.query_one("#vote-diff", Static).render().plain.startswith("✔ identical: both documents hash to")

        mine = json.loads(spec_file.read_text())
        mine["spec"]["network_policy"]["allow_all_outbound"] = True
        (tmp_path / "mine.json").write_text(json.dumps(mine))
        box.value = str(tmp_path / "mine.json")
        await pilot.press("enter")
        await pilot.pause()
        diff = modal.query_one("#vote-diff", Static).render().plain
        assert diff.startswith("✖ DIFFERENT") and "~ network_policy.allow_all_outbound: voted false, yours true" in diff
        assert isinstance(app.screen, VoteScreen), "Enter in the path box compares; it never signs"
        await pilot.press("escape")
        await settle(pilot)
    with GovernanceClient.from_workspace(hoster) as gov:
        assert gov.proposal(proposal_id)["ballots"] == {}, "reviewing records no ballot"


async def test_stop_and_kill_with_no_deployment_say_so_and_empty_tables_say_what_fills_them(
    consortium: dict[str, Path],
) -> None:
    app = CleanroomConsole(engines_of(consortium), background=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        view = app.screen.query_one(ProposalsView)
        for hint in ("#proposals-empty", "#contracts-empty"):
            assert view.query_one(hint, EmptyHint).display, hint
        assert "cleanroom governance contract propose" in view.query_one("#proposals-empty", Static).render().plain
        await pilot.press("a")
        await pilot.pause()
        assert not isinstance(app.screen, VoteScreen)
        assert messages(app, "Nothing to do") == [
            "no proposal selected: none yet; they appear when a party proposes a contract"
        ]

        await pilot.press("2")
        await settle(pilot)
        deployments = app.screen.query_one(DeploymentsView)
        assert deployments.query_one("#deployments-empty", EmptyHint).display
        assert "cleanroom deployment start" in deployments.query_one("#deployments-empty", Static).render().plain
        await pilot.press("s")
        await pilot.press("k")
        await pilot.pause()
        assert not isinstance(app.screen, KillSwitchScreen)
        said = messages(app, "Nothing to do")[1:]
        assert [line.split(":")[0] for line in said] == ["no deployment to stop", "no deployment to kill"]

        await pilot.press("5")
        await settle(pilot)
        hint = app.screen.query_one("#data-empty", EmptyHint)
        assert hint.display and "cleanroom config add-datasource" in hint.render().plain, "the hoster brings code only"
        await pilot.press("u")
        await pilot.pause()
        assert messages(app, "Nothing to do")[-1] == "nothing to upload: this persona has no datasources or datasinks"
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert not app.screen.query_one("#data-empty", EmptyHint).display, "the provider brings a model"


async def test_a_failed_ledger_verify_clears_verifying(consortium: dict[str, Path]) -> None:
    app = CleanroomConsole(engines_of(consortium), background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await settle(pilot)
        launcher.stop(consortium["governance"])  # the service goes away between load and verify
        await pilot.press("v")
        await settle(pilot)
        result = app.screen.query_one(LedgerView).query_one("#ledger-result", Static).render().plain
        assert "verifying" not in result and result.startswith("✖ could not verify the ledger:")
        assert app.screen.query_one(LedgerView).verification is None
        assert any(n.severity == "error" for n in app._notifications), "the error is also a toast"


async def test_question_mark_opens_help_and_q_quits_or_asks_like_ctrl_q(tmp_path: Path) -> None:
    app = CleanroomConsole([SeededPersona(tmp_path, i) for i in range(3)], now=lambda: NOW, background=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.query_one("#help-body", Static).render().plain
        assert "?" in body and "Quit" in body
        await pilot.press("q")  # in help, q closes help: it does not quit
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen) and app.is_running

        app.work_in_progress = lambda: ["clean room 'finetune-1' (running)"]  # what a running scenario reports
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, QuitScreen), "q asks exactly as Ctrl+Q does while work runs"
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and app.exit_choice is None

        app.work_in_progress = lambda: []
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and app.exit_choice is None, "nothing running: q quits at once"


async def test_the_inference_view_focuses_its_contract_box_and_esc_gives_the_keys_back(tmp_path: Path) -> None:
    app = CleanroomConsole([SeededPersona(tmp_path, 2)], now=lambda: NOW, background=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await pilot.pause()
        assert isinstance(app.focused, Input) and app.focused.id == "inference-contract"
        await pilot.press(*"inference-1")
        assert app.focused.value == "inference-1", "typed straight into the box, digits included"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.focused, LineChart)
        await pilot.press("1")
        await pilot.pause()
        assert app.screen.active_view == "proposals"


async def test_at_80x24_the_context_bar_keeps_live_read_only_and_the_scenario_step(tmp_path: Path) -> None:
    app = CleanroomConsole(
        [SeededPersona(tmp_path, i) for i in range(3)], read_only=True, now=lambda: NOW, background=False
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.set_scenario_status(
            "scenario 12/14 ▶ provider: Encrypt and upload the base model · upload 45% 40 MiB/91 MiB"
        )
        await pilot.pause()
        bar = app.screen.query_one(ContextBar)
        text = bar.render().plain
        assert bar.size.width == 80 and len(text) <= 80, text
        for needed in ("hoster", "● healthy", "● LIVE", "READ-ONLY", "scenario 12/14 ▶"):
            assert needed in text, (needed, text)
        assert text.endswith("…"), "the scenario detail is cut, not the status"
        await pilot.press("f5")
        await pilot.pause()
        assert "⏸ PAUSED" in bar.render().plain


async def test_theme_and_last_persona_are_remembered_in_the_xdg_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = default_path()
    assert path == tmp_path / "xdg" / "cleanroom" / "console.json"
    engines = [SeededPersona(tmp_path, i) for i in range(3)]

    app = CleanroomConsole(engines, background=False, preferences=ConsolePreferences.load())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f3")
        app.theme = "cleanroom-light"
        await settle(pilot)
    assert json.loads(path.read_text()) == {"persona": "provider", "theme": "cleanroom-light"}
    assert [p.name for p in path.parent.iterdir()] == ["console.json"], "written atomically: no temporary left"

    again = CleanroomConsole(engines, background=False, preferences=ConsolePreferences.load())
    async with again.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert again.theme == "cleanroom-light" and again.screen.engine.persona == "provider"
    explicit = CleanroomConsole(engines, background=False, theme="high-contrast", preferences=ConsolePreferences.load())
    async with explicit.run_test(size=SIZE) as pilot:
        assert explicit.theme == "cleanroom-high-contrast", "an explicit --theme wins"


async def test_a_corrupt_preferences_file_is_ignored_with_one_warning_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "cleanroom" / "console.json"
    path.parent.mkdir()
    path.write_text('{"theme": "cleanroom-light", ')
    app = CleanroomConsole(
        [SeededPersona(tmp_path, i) for i in range(3)], background=False, preferences=ConsolePreferences.load(path)
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        warning = messages(app, "Preferences")
        assert len(warning) == 1 and "\n" not in warning[0] and warning[0].startswith(f"ignored {path}: not valid JSON")
        assert app.theme == "cleanroom-dark" and app.screen.engine.persona == "hoster"
        await pilot.press("f4")
        await settle(pilot)
    assert json.loads(path.read_text()) == {"persona": "consumer", "theme": "cleanroom-dark"}
