"""The console shell: persona tabs with their own screen stacks, context bar, help, themes, read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine import PersonaEngine
from core.workspace import Workspace
from tui.app import CleanroomConsole
from tui.screens.help import HelpScreen
from tui.screens.persona import PersonaScreen
from tui.widgets.context_bar import ContextBar
from tui.widgets.proposals import ProposalsView

SIZE = (140, 40)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engines(tmp_path: Path) -> list[PersonaEngine]:
    return [PersonaEngine(Workspace.init(tmp_path / p, p)) for p in ("hoster", "provider", "consumer")]


def footer_keys(app: CleanroomConsole) -> set[str]:
    return {
        binding.id
        for _, binding, enabled, _ in app.screen.active_bindings.values()
        if binding.id and binding.show and enabled
    }


async def test_function_keys_switch_persona_and_each_keeps_its_own_screen_stack(engines) -> None:
    app = CleanroomConsole(engines, background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, PersonaScreen) and app.screen.engine is engines[0]
        await pilot.press("f1")  # a help screen on the hoster's stack
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f4")
        assert app.current_mode == "persona-2"
        assert isinstance(app.screen, PersonaScreen) and app.screen.engine.persona == "consumer"
        await pilot.press("f3")
        assert app.screen.engine.persona == "provider"
        await pilot.press("f2")
        assert isinstance(app.screen, HelpScreen), "the hoster's stack kept its help screen"
        await pilot.press("escape")
        assert app.screen.engine.persona == "hoster"


async def test_context_bar_shows_persona_member_endpoint_health_and_live(engines) -> None:
    app = CleanroomConsole(engines, background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        bar = app.screen.query_one(ContextBar)
        text = bar.render().plain
        assert "provider" in text and engines[1].short_member_id in text
        assert "not configured" in text and "LIVE" in text
        await pilot.press("f5")
        assert "PAUSED" in bar.render().plain
        await pilot.press("f2")  # the pause is app-wide: every persona shows it
        assert "PAUSED" in app.screen.query_one(ContextBar).render().plain


async def test_command_palette_switches_persona_and_theme(engines) -> None:
    app = CleanroomConsole(engines, background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"Persona: consumer")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.engine.persona == "consumer"
        await pilot.press("ctrl+p")
        await pilot.press(*"Theme: cleanroom-high")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == "cleanroom-high-contrast"


async def test_help_describes_the_focused_view(engines) -> None:
    app = CleanroomConsole(engines, background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f1")
        body = app.screen.query_one("#help-body").render().plain
        assert "Proposals and contracts" in body and "Accept" in body and "Withdraw" in body
        await pilot.press("escape")
        app.screen.show_view("ledger")
        app.screen.query_one("#ledger-table").focus()
        await pilot.press("f1")
        body = app.screen.query_one("#help-body").render().plain
        assert "Ledger" in body and "Verify" in body and "Accept" not in body


async def test_read_only_hides_every_mutating_action(engines) -> None:
    app = CleanroomConsole(engines, read_only=True, background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "READ-ONLY" in app.screen.query_one(ContextBar).render().plain
        view = app.screen.query_one(ProposalsView)
        assert view.check_action("vote", (True,)) is False
        assert view.check_action("withdraw", ()) is False
        assert not {"proposals.accept", "proposals.reject", "proposals.withdraw"} & footer_keys(app)
        await pilot.press("f1")
        body = app.screen.query_one("#help-body").render().plain
        assert "Accept" not in body and "read-only" in body


async def test_a_failing_worker_shows_a_toast_and_the_app_keeps_running(tmp_path: Path) -> None:
    workspace = Workspace.init(tmp_path / "consumer", "consumer")
    service_cert = (workspace.identity_dir / "member_cert.pem").read_text()  # any PEM certificate
    workspace.settings["governance"] = {
        "endpoint": "https://127.0.0.1:9",  # nothing listens there
        "service_cert_pem": service_cert,
    }
    workspace.save()
    app = CleanroomConsole([PersonaEngine(workspace)], background=False)
    async with app.run_test(size=SIZE) as pilot:
        # not workers.wait_for_complete(): it re-raises a failed worker's error if that worker
        # has not been reaped yet, which is the very failure this test wants to see handled
        for _ in range(200):
            errors = [n.message for n in app._notifications if n.severity == "error"]
            if errors:
                break
            await pilot.pause(0.05)
        assert any("not reachable" in e for e in errors), errors
        assert app.is_running
        await pilot.press("f1")  # still answering keys
        assert isinstance(app.screen, HelpScreen)
