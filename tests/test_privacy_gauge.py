"""The console's privacy view and its nine persona tabs.

The gauge's arithmetic is checked on its own (a small reservation must stay visible, an
overspent budget must not draw past its end); the view is checked in the real console on the
seeded personas (the engine's ``privacy_datasets`` answers fixed budgets); the tabs on nine real
workspaces, each reached by its own key and listed in help.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from core.engine import PersonaEngine
from core.workspace import Workspace
from tests.tui_seeded import PRIVACY_DATASETS, SeededPersona
from tui.actions import MAX_PERSONAS
from tui.app import CleanroomConsole
from tui.screens.help import HelpScreen
from tui.widgets.context_bar import PersonaTabs
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.privacy_gauge import BAR_WIDTH, LEFT, RESERVED, SPENT, PrivacyGauges, budget_cells, gauge_line

SIZE = (140, 40)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("spent", "reserved", "total", "cells"),
    [
        (0.0, 0.0, 8.0, (0, 0, 40)),
        (2.0, 2.0, 8.0, (10, 10, 20)),
        (8.0, 0.0, 8.0, (40, 0, 0)),
        (0.01, 0.01, 8.0, (1, 1, 38)),  # a sliver of spending or a small reservation stays visible
        (9.0, 3.0, 8.0, (40, 0, 0)),  # overspent (a crashed run's reservation after a lowering): clamped
        (7.99, 0.01, 8.0, (39, 1, 0)),
        (1.0, 1.0, 0.0, (0, 0, 40)),
    ],
)
def test_budget_cells_split_the_bar_into_spent_reserved_and_left(spent, reserved, total, cells) -> None:
    assert budget_cells(spent, reserved, total, BAR_WIDTH) == cells
    assert sum(cells) == BAR_WIDTH


def test_a_gauge_line_names_the_dataset_its_owner_and_the_figures() -> None:
    line = gauge_line(PRIVACY_DATASETS[1], "consumer").plain
    assert line.startswith("training-data")
    assert "consumer" in line
    assert SPENT * 29 + LEFT * 11 in line  # 5.8 of 8 spent, nothing reserved, 2.2 left
    assert "left 2.20 of 8.00 · spent 5.80 · reserved 0.00" in line


@pytest.mark.anyio
async def test_the_privacy_view_shows_a_gauge_per_dataset_on_key_7(tmp_path: Path) -> None:
    app = CleanroomConsole([SeededPersona(tmp_path, i) for i in range(3)], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.press("7")
        await pilot.pause()
        assert app.screen.active_view == "privacy"
        view = app.screen.query_one(PrivacyGauges)
        assert view.datasets == PRIVACY_DATASETS
        text = str(view.query_one("#privacy-gauges", Static).render())
        lines = text.splitlines()
        assert len(lines) == 2
        model = next(line for line in lines if line.startswith("model"))
        assert "provider" in model  # the owner by member name, not id
        assert SPENT * 12 + RESERVED * 12 + LEFT * 16 in model
        assert "left 4.10 of 10.00" in model
        assert not view.query_one(EmptyHint).display


@pytest.mark.anyio
async def test_a_privacy_event_reloads_the_gauges_of_the_persona_that_saw_it(tmp_path: Path) -> None:
    from core.engine import CleanroomEvent
    from tui.app import EngineEvent

    app = CleanroomConsole([SeededPersona(tmp_path, i) for i in range(3)], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.app.workers.wait_for_complete()
        view = app.screen.query_one(PrivacyGauges)
        view.show([])  # as if loaded before any budget existed
        refused = {"dataset": "training-data", "needed": 3.0, "left": 2.2}
        app.post_message(EngineEvent(0, CleanroomEvent("dp", 9, 0.0, "privacy_refused", refused, "audit")))
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert view.datasets == PRIVACY_DATASETS


@pytest.mark.anyio
async def test_with_no_budget_the_privacy_view_says_how_one_is_declared(tmp_path: Path) -> None:
    app = CleanroomConsole([SeededPersona(tmp_path, 0)], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.app.workers.wait_for_complete()
        view = app.screen.query_one(PrivacyGauges)
        view.show([])
        await pilot.pause()
        hint = view.query_one(EmptyHint)
        assert hint.display
        assert "--epsilon-total" in str(hint.render())


def nine(tmp_path: Path, count: int = MAX_PERSONAS) -> list[PersonaEngine]:
    return [PersonaEngine(Workspace.init(tmp_path / f"p{i}", f"party-{i + 1}")) for i in range(count)]


@pytest.mark.anyio
async def test_nine_persona_tabs_each_have_a_key_shown_on_the_tab_line_and_in_help(tmp_path: Path) -> None:
    engines = nine(tmp_path)
    app = CleanroomConsole(engines, background=False)
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.pause()
        tabs = str(app.screen.query_one(PersonaTabs).render())
        for index in range(MAX_PERSONAS):
            assert f"party-{index + 1}" in tabs
        assert "F2 party-1" in tabs and "Alt+9 party-9" in tabs
        for index in reversed(range(MAX_PERSONAS)):
            await pilot.press(f"alt+{index + 1}")
            assert app.current_mode == f"persona-{index}"
            assert app.screen.engine is engines[index]
        await pilot.press("f4")  # the three-persona keys still work
        assert app.screen.engine is engines[2]
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        help_text = str(app.screen.query_one("#help-body", Static).render())
        assert "F2/Alt+1" in help_text and "Alt+9" in help_text and "ninth persona tab" in help_text


@pytest.mark.anyio
async def test_a_key_for_a_persona_that_is_not_there_does_nothing(tmp_path: Path) -> None:
    engines = nine(tmp_path, 5)
    app = CleanroomConsole(engines, background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("alt+5")
        assert app.screen.engine is engines[4]
        await pilot.press("alt+6")
        assert app.screen.engine is engines[4]


def test_more_than_nine_personas_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most 9 persona workspaces, not 10"):
        CleanroomConsole(nine(tmp_path, 10), background=False)


@pytest.mark.anyio
async def test_the_gauges_follow_a_real_privacy_ledger_as_runs_reserve_record_and_are_refused(tmp_path: Path) -> None:
    """A real governance service on loopback, three real workspaces: the labels owner watches its
    budget while an attested clean room reserves, records, and is then refused."""
    from core.errors import AccessDeniedError
    from core.governance import launcher
    from core.governance.client import deploy_to_workspace
    from tests.governance_support import Attester, Consortium
    from tests.privacy_support import CleanRoom, private_contract

    attester = Attester(tmp_path)
    workspaces = [Workspace.init(tmp_path / name, name) for name in ("hoster", "texts", "labels")]
    state = tmp_path / "governance"
    launcher.create(state, [w.identity.cert_pem for w in workspaces], window_seconds=60, attestation=attester.spec)
    gov = Consortium(state, [w.identity for w in workspaces], launcher.start(state))
    try:
        for workspace in workspaces:
            deploy_to_workspace(workspace, gov.info.endpoint, gov.info.service_cert_pem)
        contract = private_contract(gov, tmp_path, "dp", ("texts", "labels"), epsilon_total=6.0, epsilon=3.0)
        room = CleanRoom(gov, attester, "dp", contract["policy_hash"])
        first = room.reserve()
        app = CleanroomConsole([PersonaEngine(w) for w in workspaces], background=False)
        async with app.run_test(size=SIZE) as pilot:

            async def labels_gauge() -> str:
                await pilot.app.workers.wait_for_complete()
                await pilot.pause()
                view = app.screen.query_one(PrivacyGauges)
                text = str(view.query_one("#privacy-gauges", Static).render())
                return next(line for line in text.splitlines() if line.startswith("labels"))

            await pilot.press("alt+3", "7")
            line = await labels_gauge()
            assert "left 3.00 of 6.00 · spent 0.00 · reserved 3.00" in line
            assert "labels" in line.split()[1]  # the owner, by member name
            assert SPENT not in line and RESERVED * 20 + LEFT * 20 in line

            room.record(first["runId"])
            app.refresh_proposals()  # the app's timer: reloads the budgets while they are shown
            line = await labels_gauge()
            spent = next(i for i in gov.clients[0].privacy_datasets() if i["name"] == "labels")["spent"]
            assert 0 < spent <= 3.0
            assert f"spent {spent:.2f} · reserved 0.00" in line

            room.reserve()
            with pytest.raises(AccessDeniedError, match=r"run needs epsilon 3.00 of dataset '(texts|labels)' but"):
                room.reserve()  # what the first run spent, 3 reserved, and 3 more would overspend 6
            app.refresh_proposals()
            line = await labels_gauge()
            assert f"left {6.0 - spent - 3.0:.2f} of 6.00" in line and "reserved 3.00" in line
    finally:
        gov.close()


def test_privacy_view_snapshot(snap_compare, tmp_path: Path) -> None:
    """The gauges as an operator sees them (seeded budgets: one run reserved, one nearly spent)."""
    from tests.tui_seeded import NOW

    async def run_before(pilot) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.press("7")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    app = CleanroomConsole(
        [SeededPersona(tmp_path, i) for i in range(3)], theme="cleanroom-dark", now=lambda: NOW, background=False
    )
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
