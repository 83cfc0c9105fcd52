"""Live views: the log tail and training monitor fed by events, view switching, quiet reloads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from core.engine import CleanroomEvent, Member, PersonaEngine, Proposal
from core.workspace import Workspace
from tui.app import CleanroomConsole, EngineEvent
from tui.widgets.context_bar import ViewTabs
from tui.widgets.log_tail import FollowingLog, LogTail
from tui.widgets.proposals import ProposalsView
from tui.widgets.training import TrainingMonitor

SIZE = (140, 40)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(tmp_path: Path) -> CleanroomConsole:
    engines = [PersonaEngine(Workspace.init(tmp_path / p, p)) for p in ("hoster", "provider")]
    return CleanroomConsole(engines, background=False)


def log_line(seqno: int) -> CleanroomEvent:
    return CleanroomEvent(
        "inference-1", seqno, 1_700_000_000.0 + seqno, "log", {"line": f"inference_server: request {seqno} ok"}
    )


def step(seqno: int, step_no: int, loss: float) -> CleanroomEvent:
    return CleanroomEvent(
        "finetune-1",
        seqno,
        1_700_000_000.0 + 2 * step_no,
        "telemetry",
        {
            "event": "step",
            "step": step_no,
            "epoch": step_no / 50,
            "loss": loss,
            "learning_rate": 5e-5 * (1 - step_no / 100),
            "examples_per_s": 31.5,
            "total_steps": 100,
        },
    )


async def test_log_tail_follows_pauses_when_scrolled_up_and_resumes(app: CleanroomConsole) -> None:
    async with app.run_test(size=SIZE) as pilot:
        app.screen.show_view("deployments")
        await pilot.pause()
        for seqno in range(80):
            app.post_message(EngineEvent(0, log_line(seqno)))
        await pilot.pause()
        tail = app.screen.query_one(LogTail)
        log = tail.query_one(FollowingLog)
        assert len(tail.lines) == 80 and log.is_vertical_scroll_end and tail.pending == 0

        log.focus()
        log.scroll_home(animate=False)  # the operator scrolls up to read
        await pilot.pause()
        assert tail.paused
        for seqno in range(80, 87):
            app.post_message(EngineEvent(0, log_line(seqno)))
        await pilot.pause()
        assert tail.pending == 7
        assert "+7 lines" in tail.query_one(".log-tail-status").render().plain
        assert not log.is_vertical_scroll_end, "new lines did not yank the view down"

        await pilot.press("end")
        await pilot.pause()
        assert tail.pending == 0 and log.is_vertical_scroll_end
        assert tail.query_one(".log-tail-status").has_class("hidden")
        app.post_message(EngineEvent(0, log_line(87)))
        await pilot.pause()
        assert log.is_vertical_scroll_end and tail.pending == 0, "following again"


async def test_training_chart_grows_with_telemetry_events(app: CleanroomConsole) -> None:
    async with app.run_test(size=SIZE) as pilot:
        app.screen.show_view("training")
        monitor = app.screen.query_one(TrainingMonitor)
        for n in range(1, 11):
            app.post_message(EngineEvent(0, step(n, n, 0.7 - n * 0.02)))
        await pilot.pause()
        assert monitor.loss.points()[0] == list(range(1, 11))
        first = monitor.loss.count
        for n in range(11, 21):
            app.post_message(EngineEvent(0, step(n, n, 0.7 - n * 0.02)))
        app.post_message(
            EngineEvent(
                0,
                CleanroomEvent(
                    "finetune-1", 99, 1_700_000_100.0, "telemetry", {"event": "eval", "epoch": 1, "val_accuracy": 0.83}
                ),
            )
        )
        await pilot.pause()
        assert monitor.loss.count == first + 10 == 20
        assert monitor.epoch_accuracy == {1: 0.83}
        # 19 steps took 38 s of event time: 80 steps left at 2 s each
        assert monitor.eta_seconds() == pytest.approx(160.0)
        monitor.redraw()
        await pilot.pause()
        headline = monitor.query_one("#training-headline").render().plain
        assert "▶ training" in headline and "step 20/100" in headline
        for n in range(21, 101):
            app.post_message(EngineEvent(0, step(n + 100, n, 0.3)))
        await pilot.pause()
        monitor.redraw()
        await pilot.pause()
        assert "✔ trained" in monitor.query_one("#training-headline").render().plain
        assert "83.00%" in monitor.query_one("#training-epochs").render().plain


async def test_paused_feed_holds_events_and_delivers_them_on_resume(app: CleanroomConsole) -> None:
    async with app.run_test(size=SIZE) as pilot:
        monitor = app.screen.query_one(TrainingMonitor)
        await pilot.press("f5")
        app.post_message(EngineEvent(0, step(1, 1, 0.69)))
        await pilot.pause()
        assert monitor.loss.count == 0 and len(app.paused_events) == 1
        await pilot.press("f5")
        await pilot.pause()
        assert monitor.loss.points() == ([1], [0.69]) and app.paused_events == []


async def test_inference_chart_grows_and_shows_baseline_next_to_fine_tuned(tmp_path: Path) -> None:
    from tests.tui_seeded import EvaluatingPersona
    from tui.widgets.inference import InferenceView

    app = CleanroomConsole([EvaluatingPersona(tmp_path, 2)], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        view = app.screen.query_one(InferenceView)
        for contract_id in ("inference-1", "inference-2"):
            box = view.query_one("#inference-contract")
            box.value = contract_id
            box.focus()
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert view.accuracy.points()[0] == [50, 100, 150, 200]
        assert "200/200 rows · 170 correct · accuracy 85.00%" in view.query_one("#inference-counter").render().plain
        compare = view.query_one("#inference-compare").render().plain
        assert "baseline" in compare and "50.00%" in compare and "fine-tuned" in compare and "85.00%" in compare
        assert "+35.0 points" in compare
        assert [n.title for n in app._notifications].count("Accuracy measured") == 2


async def test_a_view_switch_shows_exactly_one_view_and_focus_goes_with_it(app: CleanroomConsole) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        for key, view in (
            ("3", "training"),
            ("4", "inference"),
            ("6", "ledger"),
            ("2", "deployments"),
            ("5", "data"),
            ("1", "proposals"),
        ):
            await pilot.press(key)
            await pilot.pause()
            shown = [v.VIEW_ID for v in screen.query_one("#views").children if v.region.overlaps(screen.region)]
            assert shown == [view] and screen.active_view == view
            assert app.focused_view() == view, "keys go to the view on screen, never a hidden one"
            for _ in range(4):
                await pilot.press("tab")
                assert app.focused_view() == view, "Tab cycles within the view on screen"
            assert screen.query_one(ViewTabs).active == view
            if view == "inference":
                await pilot.press("escape")  # the contract box takes digits as text; Esc leaves it
        await pilot.click(ViewTabs, offset=(32, 0))  # " 1 Proposals   2 Deployments   3 Training "
        await pilot.pause()
        assert screen.active_view == "training" and app.focused_view() == "training"


async def test_an_unchanged_reload_moves_only_the_age_column(tmp_path: Path) -> None:
    clock = [1_700_000_100.0]
    engine = PersonaEngine(Workspace.init(tmp_path / "hoster", "hoster"))
    app = CleanroomConsole([engine], background=False, now=lambda: clock[0])
    members = [Member(engine.member_id, "hoster")]

    def proposal() -> Proposal:
        return Proposal(
            "p-0001", "set_contract", "contract-1", engine.member_id, "Open", 1_700_000_090.0, {}, {"data": "x"}
        )

    async with app.run_test(size=SIZE) as pilot:
        view = app.screen.query_one(ProposalsView)
        view.show(members, [proposal()], [])
        await pilot.pause()
        table = view.query_one("#proposals-table", DataTable)
        row = table.rows[RowKey("p-0001")]
        assert table.get_cell("p-0001", "age") == "10s"
        clock[0] += 120
        view.show(members, [proposal()], [])  # the periodic reload: equal, not the same objects
        await pilot.pause()
        assert table.get_cell("p-0001", "age") == "2m"
        assert table.rows[RowKey("p-0001")] is row, "not refilled"
        view.show(members, [replace(proposal(), state="Accepted")], [])
        await pilot.pause()
        assert table.rows[RowKey("p-0001")] is not row and "Accepted" in str(table.get_row("p-0001")[4])
