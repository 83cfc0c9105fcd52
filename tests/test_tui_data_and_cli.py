"""The data view from a real config fragment, and `cleanroom console` refusing bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine import PersonaEngine
from core.workspace import Workspace
from tests.cli_runner import cleanroom
from tui.app import CleanroomConsole
from tui.widgets.data import DataView

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ok(*args: str | Path) -> None:
    outcome = cleanroom(*args)
    assert outcome.code == 0, outcome.stderr


async def test_data_view_lists_the_personas_datasources_and_datasinks(tmp_path: Path) -> None:
    provider = tmp_path / "provider"
    ok("-w", provider, "config", "init", "--persona", "provider")
    ok("-w", provider, "config", "add-datasource", "--name", "model")
    ok("-w", provider, "config", "add-datasink", "--name", "trained-model")
    app = CleanroomConsole([PersonaEngine(Workspace.open(provider))], background=False)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("5")
        await app.workers.wait_for_complete()
        await pilot.pause()
        view = app.screen.query_one(DataView)
        assert [(a.kind, a.name) for a in view.assets] == [("datasource", "model"), ("datasink", "trained-model")]
        assert all(str(provider) in a.store for a in view.assets), "stored under the provider's workspace"
        table = view.query_one("#data-table")
        assert table.row_count == 2
        assert "read-only mount" in str(table.get_row_at(0)[2]) and "write-only" in str(table.get_row_at(1)[2])


def test_console_refuses_an_unknown_theme(tmp_path: Path) -> None:
    outcome = cleanroom("console", "--theme", "neon")
    assert outcome.code == 2
    assert outcome.stderr.startswith("error: theme 'neon' does not exist") and "high-contrast" in outcome.stderr


def test_console_refuses_a_missing_workspace(tmp_path: Path) -> None:
    outcome = cleanroom("console", "--workspace", tmp_path / "nowhere")
    assert outcome.code == 3
    assert outcome.stderr.strip().splitlines() == [
        f"error: no workspace at {(tmp_path / 'nowhere').resolve()}; create one with "
        "`cleanroom --workspace DIR config init --persona NAME`"]


def test_console_help_has_an_example() -> None:
    outcome = cleanroom("console", "--help")
    assert outcome.code == 0 and "Example" in outcome.stdout and "--read-only" in outcome.stdout
