"""The console's Models view on the seeded personas: each version's status and why, the selected
version's history with its scan findings, its regression table and load-test chart (registry
documents built by the real code, tests/model_results.py, and malformed ones), and publishing
through the confirm modal (only a verified version; the engine's proposal is the one
`cleanroom model publish` opens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from core.engine import CleanroomEvent
from tests.model_results import models_with_results, recorded_loadtest, recorded_regression
from tests.tui_seeded import NOW, SeededPersona
from tui.app import CleanroomConsole, EngineEvent
from tui.screens.confirm import ConfirmScreen
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.line_chart import LineChart
from tui.widgets.loadtest_chart import NO_LOADTEST
from tui.widgets.models import NO_MODELS, ModelsView
from tui.widgets.regression_table import NO_REGRESSION

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


class ResultsPersona(SeededPersona):
    """The seeded registry plus version 3 with the given load test and regression result, and a
    count of registry reads (each reload asks governance again)."""

    def __init__(self, root: Path, index: int, loadtest: object, regression: object) -> None:
        super().__init__(root, index)
        self.results = (loadtest, regression)
        self.reads = 0

    def models(self) -> list[dict]:
        self.reads += 1
        return models_with_results(*self.results)


def _results_app(tmp_path: Path, loadtest: object, regression: object, **kwargs: Any) -> CleanroomConsole:
    personas = [ResultsPersona(tmp_path, i, loadtest, regression) for i in range(3)]
    return CleanroomConsole(personas, background=False, **kwargs)


async def _select(pilot: Any, row: int) -> ModelsView:
    view = await _models_view(pilot)
    view.query_one(DataTable).move_cursor(row=row)
    await pilot.pause()
    return view


def _text(view: ModelsView, selector: str) -> str:
    return str(view.query_one(selector, Static).render())


@pytest.mark.anyio
async def test_the_selected_version_shows_its_regression_table_and_load_test_chart(tmp_path: Path) -> None:
    app = _results_app(tmp_path, recorded_loadtest(), recorded_regression())
    async with app.run_test(size=SIZE) as pilot:
        view = await _select(pilot, 2)
        assert "✔ verified" in _text(view, "#models-detail"), "the status history stays"
        regression = _text(view, "#models-regression").splitlines()
        assert regression[3].split() == ["accuracy", "0.5000", "0.8500", "+0.3500"]
        assert "70 fixed" in regression[7] and regression[8] == "McNemar exact p 1.69e-21"
        assert regression[9] == "gate: minAccuracyDelta ≥ 0.0, maxP ≤ 0.01  ✔ passed"
        chart = view.query_one("#loadtest-chart", LineChart)
        assert chart.display and chart.region.height >= 10, "on screen, not only in the tree"
        lines = chart.text_lines()
        assert lines[0].strip() == "latency (ms) by target rate" and lines[-1].split() == ["10", "target", "rps", "100"]
        assert "◆" in lines[-2] and lines[-2].rstrip().endswith("✘"), "knee and the failing step on the axis"
        assert [len(xs) for xs, _ in chart.lines] == [5, 5, 2], "p50 and p99 per step, the SLO end to end"
        assert "◆ knee 50 rps (49.6 achieved)" in _text(view, "#loadtest-legend")
        steps = _text(view, "#loadtest-steps").splitlines()
        assert steps[5].split()[:6] == ["100", "61.2", "840.0", "2950.0", "595", "17"]
        assert "recorded by consumer" in _text(view, "#loadtest-summary"), "the writer by persona name"
        view.query_one(DataTable).move_cursor(row=1)  # the vulnerable version: findings, no results
        await pilot.pause()
        assert "    model/extra.pkl: raw pickle stream (protocol 4)" in _text(view, "#models-detail").splitlines()
        assert _text(view, "#models-regression") == NO_REGRESSION
        assert _text(view, "#loadtest-summary") == NO_LOADTEST and not chart.display and chart.lines == []


@pytest.mark.anyio
async def test_a_failed_gate_shows_its_reasons_in_the_table(tmp_path: Path) -> None:
    app = _results_app(tmp_path, None, recorded_regression(candidate_right=95))
    async with app.run_test(size=SIZE) as pilot:
        view = await _select(pilot, 2)
        regression = _text(view, "#models-regression").splitlines()
        assert regression[9].endswith("✘ FAILED")
        assert regression[10:] == [
            "    accuracy delta -0.0250 is below the gate's +0.0000",
            "    McNemar p 0.0625 is above the gate's 0.01",
        ]


@pytest.mark.anyio
async def test_a_version_that_failed_its_gate_is_not_proposed_for_publishing(tmp_path: Path) -> None:
    app = _results_app(tmp_path, None, recorded_regression(candidate_right=95))
    async with app.run_test(size=SIZE) as pilot:
        await _select(pilot, 2)
        await pilot.press("p")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("minilm 3 failed its regression gate" in str(n.message) for n in app._notifications)


@pytest.mark.anyio
async def test_malformed_results_from_governance_show_a_placeholder_and_the_console_keeps_running(
    tmp_path: Path,
) -> None:
    app = _results_app(tmp_path, {"mode": "per-rps", "steps": "many"}, ["not", "a", "result"])
    async with app.run_test(size=SIZE) as pilot:
        view = await _select(pilot, 2)
        assert _text(view, "#loadtest-summary") == "load test: — (the recorded load test has no list of steps)"
        assert not view.query_one("#loadtest-chart", LineChart).display
        assert _text(view, "#models-regression") == "regression: — (the recorded result is not a JSON object)"
        assert "✔ verified" in _text(view, "#models-detail")
        await pilot.press("8")  # still answering keys: the view and its rows are there
        assert app.is_running and app.screen.active_view == "models" and len(view.rows) == 3


@pytest.mark.anyio
async def test_a_regression_result_event_reloads_the_registry(tmp_path: Path) -> None:
    app = _results_app(tmp_path, None, None)
    async with app.run_test(size=SIZE) as pilot:
        await _models_view(pilot)
        persona = app.engines[0]
        before = persona.reads
        event = CleanroomEvent("regress-minilm-2", 90, NOW, "model_regression", {"model": "minilm"}, category="audit")
        app.post_message(EngineEvent(0, event))
        for _ in range(100):
            await pilot.pause(0.02)
            if persona.reads > before:
                break
        assert persona.reads > before


def test_models_view_snapshot(snap_compare, tmp_path: Path) -> None:
    """A verified version with a passed regression gate and a per-rps load test whose p99 breaks
    the SLO after the knee and whose last step fails requests."""

    async def run_before(pilot: Any) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.press("8")
        await pilot.app.workers.wait_for_complete()
        pilot.app.screen.query_one(ModelsView).query_one(DataTable).move_cursor(row=2)
        await pilot.pause()

    app = _results_app(tmp_path, recorded_loadtest(), recorded_regression(), theme="cleanroom-dark", now=lambda: NOW)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
