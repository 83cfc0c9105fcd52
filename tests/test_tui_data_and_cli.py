"""The data view from a real config fragment, and `cleanroom console` refusing bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine import PersonaEngine
from core.workspace import Workspace
from tests.cli_runner import cleanroom
from tui.app import CleanroomConsole
from tui.screens.confirm import FolderPromptScreen
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
        assert not view.assets[0].uploaded
        assert view.idle_reason("download") == "nothing uploaded to datasource 'model' yet"
        await pilot.press("d")  # a key with nothing to act on says so instead of doing nothing
        await pilot.pause()
        assert not isinstance(app.screen, FolderPromptScreen)
        assert ("Nothing to do", "nothing uploaded to datasource 'model' yet") in [
            (n.title, n.message) for n in app._notifications
        ]


async def test_upload_then_download_from_the_data_view_round_trips_the_bytes(tmp_path: Path) -> None:
    provider = tmp_path / "provider"
    ok("-w", provider, "config", "init", "--persona", "provider")
    ok("-w", provider, "config", "add-datasource", "--name", "model")
    source = tmp_path / "plain-model"
    (source / "onnx").mkdir(parents=True)
    (source / "onnx" / "model.onnx").write_bytes(bytes(range(256)) * 4096)
    (source / "config.json").write_text('{"labels": 2}')
    target = tmp_path / "downloaded"
    app = CleanroomConsole([PersonaEngine(Workspace.open(provider))], background=False)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("5")
        await app.workers.wait_for_complete()
        await pilot.pause()
        view = app.screen.query_one(DataView)
        await pilot.press("u")
        await pilot.pause()
        app.screen.query_one("#folder-input").value = str(source)
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert view.assets[0].uploaded and view.assets[0].files == 2
        assert view.assets[0].plaintext_bytes == 256 * 4096 + len('{"labels": 2}')
        assert view.query_one("#transfer-progress").percentage == 1.0
        stored = [p for p in (provider / "store").rglob("*") if p.is_file()]
        assert stored and not any(bytes(range(32)) in p.read_bytes() for p in stored), "ciphertext only"
        await pilot.press("d")
        await pilot.pause()
        app.screen.query_one("#folder-input").value = str(target)
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [n.title for n in app._notifications].count("Transfer done") == 2
    assert (target / "onnx" / "model.onnx").read_bytes() == (source / "onnx" / "model.onnx").read_bytes()
    assert (target / "config.json").read_text() == '{"labels": 2}'


def test_console_refuses_an_unknown_theme(tmp_path: Path) -> None:
    outcome = cleanroom("console", "--theme", "neon")
    assert outcome.code == 2
    assert outcome.stderr.startswith("error: theme 'neon' does not exist") and "high-contrast" in outcome.stderr


def test_console_refuses_a_missing_workspace(tmp_path: Path) -> None:
    outcome = cleanroom("console", "--workspace", tmp_path / "nowhere")
    assert outcome.code == 3
    assert outcome.stderr.strip().splitlines() == [
        f"error: no workspace at {(tmp_path / 'nowhere').resolve()}; create one with "
        "`cleanroom --workspace DIR config init --persona NAME`"
    ]


def test_console_help_has_an_example() -> None:
    outcome = cleanroom("console", "--help")
    assert outcome.code == 0 and "Example" in outcome.stdout and "--read-only" in outcome.stdout


async def test_palette_offers_the_next_scenario_step(tmp_path: Path) -> None:
    provider = tmp_path / "provider"
    ok("-w", provider, "config", "init", "--persona", "provider")
    ok("-w", provider, "config", "add-datasource", "--name", "model")
    app = CleanroomConsole([PersonaEngine(Workspace.open(provider))], background=False)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Next: upload datasource model" in titles
        await pilot.press("ctrl+p", *"Next: upload")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.active_view == "data"


def test_docs_list_every_console_action() -> None:
    from tui.actions import ACTIONS
    from tui.screens.help import key_label

    doc = (Path(__file__).resolve().parent.parent / "docs" / "console.md").read_text()
    for action in ACTIONS:
        assert f"| `{key_label(action.key)}` | {action.view} | {action.title} |" in doc, action.action_id
