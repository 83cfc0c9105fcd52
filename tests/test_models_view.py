"""The console's Models view on the seeded personas: each version's status and why, the selected
version's history with its scan findings, and publishing through the confirm modal (only a
verified version; the engine's proposal is the one `cleanroom model publish` opens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from tests.tui_seeded import SeededPersona
from tui.app import CleanroomConsole
from tui.screens.confirm import ConfirmScreen
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.models import NO_MODELS, ModelsView

SIZE = (140, 40)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class PublishingPersona(SeededPersona):
    def __init__(self, root: Path, index: int) -> None:
        super().__init__(root, index)
        self.proposed: list[tuple[str, str]] = []

    def propose_publish_model(self, name: str, version: str) -> dict[str, Any]:
        self.proposed.append((name, version))
        return {"proposalId": "f00dfeed" * 8, "action": "publish_model_version"}


async def _models_view(pilot: Any) -> ModelsView:
    """Key 0 shows the view; its rows once its own load has answered (other views' workers may
    still run or fail: this waits on the Models view's answer only)."""
    await pilot.press("8")
    view = pilot.app.screen.query_one(ModelsView)
    for _ in range(100):
        await pilot.pause(0.02)
        if view.rows:
            break
    assert pilot.app.screen.active_view == "models" and view.rows
    return view


@pytest.mark.anyio
async def test_the_models_view_shows_each_version_its_status_and_why(tmp_path: Path) -> None:
    app = CleanroomConsole([SeededPersona(tmp_path, i) for i in range(3)], background=False)
    async with app.run_test(size=SIZE) as pilot:
        view = await _models_view(pilot)
        table = view.query_one(DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows[0][:4] == ["minilm", "1", "✔ verified", "·"]
        assert not view.query_one("#models-empty", EmptyHint).display
        assert rows[1][:3] == ["minilm", "2", "✘ vulnerable"]
        assert rows[1][4] == "model/extra.pkl: raw pickle stream (protocol 4)"
        table.move_cursor(row=1)
        await pilot.pause()
        detail = str(view.query_one("#models-detail", Static).render())
        assert "✘ vulnerable" in detail and "clean room" in detail
        assert "    model/extra.pkl: raw pickle stream (protocol 4)" in detail.splitlines()


@pytest.mark.anyio
async def test_publishing_goes_through_the_confirm_modal_and_only_for_a_verified_version(tmp_path: Path) -> None:
    personas = [PublishingPersona(tmp_path, i) for i in range(3)]
    app = CleanroomConsole(personas, background=False)
    async with app.run_test(size=SIZE) as pilot:
        view = await _models_view(pilot)
        view.query_one(DataTable).move_cursor(row=1)
        await pilot.pause()
        await pilot.press("p")  # vulnerable: says why, opens nothing
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("only a verified version can be published" in str(n.message) for n in app._notifications)
        view.query_one(DataTable).move_cursor(row=0)
        await pilot.pause()
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert personas[0].proposed == []
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("y")
        for _ in range(100):
            await pilot.pause(0.02)
            if personas[0].proposed:
                break
        assert personas[0].proposed == [("minilm", "1")]


class EmptyRegistryPersona(SeededPersona):
    def models(self) -> list[dict]:
        return []


@pytest.mark.anyio
async def test_an_empty_registry_says_what_would_fill_it(tmp_path: Path) -> None:
    app = CleanroomConsole([EmptyRegistryPersona(tmp_path, i) for i in range(3)], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("8")
        view = app.screen.query_one(ModelsView)
        hint = view.query_one("#models-empty", EmptyHint)
        for _ in range(100):
            await pilot.pause(0.02)
            if hint.display:
                break
        assert app.screen.active_view == "models" and view.query_one(DataTable).row_count == 0
        assert hint.display and hint.region.height > 0  # on screen, not only in the tree
        assert str(hint.render()) == NO_MODELS
        assert "cleanroom model onboard --package DIR" in NO_MODELS
