"""Inference: run the consumer's evaluation and watch accuracy climb, row by row.

Every completed run is kept for the session so the first (baseline) and the latest
(fine-tuned) accuracy stand side by side once both exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Input, ProgressBar, Static

from core.engine import PersonaEngine
from tui.actions import bindings_for
from tui.widgets.chart_series import ChartSeries
from tui.widgets.line_chart import LineChart
from tui.widgets.worker_errors import ToastsWorkerErrors


@dataclass
class EvaluationRun:
    contract_id: str
    done: int = 0
    correct: int = 0
    total: int = 0
    finished: bool = False

    @property
    def accuracy(self) -> float:
        return self.correct / self.done if self.done else 0.0


class InferenceView(ToastsWorkerErrors, Vertical):
    VIEW_ID = "inference"
    BINDINGS = bindings_for("inference")
    # the view starts with the contract id to type; Esc hands the keys back to the view
    FOCUS_FIRST = "#inference-contract"

    def __init__(self, engine: PersonaEngine, *, read_only: bool) -> None:
        super().__init__(id="inference-view")
        self.engine = engine
        self.read_only = read_only
        self.runs: list[EvaluationRun] = []
        self.accuracy = ChartSeries()  # running accuracy of the current run, by rows done

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="contract id of an inference deployment, then Enter (Esc: back to the view keys)",
            id="inference-contract",
        )
        with Horizontal(id="inference-progress-row"):
            yield ProgressBar(total=None, show_eta=False, id="inference-progress")
            yield Static("no evaluation yet", id="inference-counter")
        with Horizontal():
            yield LineChart("running accuracy", "rows", y_range=(0.0, 1.0), id="accuracy-chart")
            yield Static("", id="inference-compare")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "run_evaluation":
            return not self.read_only
        return True

    def key_escape(self) -> None:
        """Esc in the contract box: focus the chart, so digits switch views again."""
        if self.query_one("#inference-contract", Input).has_focus:
            self.query_one("#accuracy-chart", LineChart).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_run_evaluation()

    def action_run_evaluation(self) -> None:
        contract_id = self.query_one("#inference-contract", Input).value.strip()
        if not contract_id:
            self.notify("type the contract id of an inference deployment first", severity="warning")
            return
        self.evaluate(self._new_run(contract_id))

    def _new_run(self, contract_id: str) -> EvaluationRun:
        run = EvaluationRun(contract_id)
        self.runs.append(run)
        self.accuracy = ChartSeries()
        return run

    @work(thread=True, exclusive=True, group="evaluation", exit_on_error=False)
    def evaluate(self, run: EvaluationRun) -> None:
        def progress(done: int, correct: int, total: int) -> None:
            self.app.call_from_thread(self.add_progress, run, done, correct, total)

        self.engine.run_evaluation(run.contract_id, progress)
        run.finished = True
        self.app.call_from_thread(self._finished, run)

    def add_progress(self, run: EvaluationRun, done: int, correct: int, total: int) -> None:
        run.done, run.correct, run.total = done, correct, total
        self.accuracy.append(done, run.accuracy)
        self.query_one(ProgressBar).update(total=total, progress=done)
        self.query_one("#inference-counter", Static).update(
            f"{done}/{total} rows · {correct} correct · accuracy {run.accuracy:.2%}"
        )
        self._draw_chart()

    def follow(self, contract_id: str, done: int, correct: int, total: int) -> None:
        """Show an evaluation that runs elsewhere (the scenario's step) as if it ran here."""
        run = self.runs[-1] if self.runs else None
        if run is None or run.finished or run.contract_id != contract_id:
            run = self._new_run(contract_id)
        self.add_progress(run, done, correct, total)
        if done >= total:
            run.finished = True
            self._finished(run)

    def _finished(self, run: EvaluationRun) -> None:
        self.notify(
            f"accuracy {run.accuracy:.2%} on {run.done} rows (contract {run.contract_id})", title="Accuracy measured"
        )
        self._compare()

    def _compare(self) -> None:
        finished = [r for r in self.runs if r.finished]
        if not finished:
            return
        baseline, latest = finished[0], finished[-1]
        lines = [Content.styled("baseline", "bold"), Content(f"  {baseline.contract_id}\n  {baseline.accuracy:.2%}")]
        if latest is not baseline:
            gain = latest.accuracy - baseline.accuracy
            lines += [
                Content.styled("fine-tuned", "bold"),
                Content(f"  {latest.contract_id}\n  {latest.accuracy:.2%}"),
                Content.styled(
                    f"{'▲' if gain >= 0 else '▼'} {gain * 100:+.1f} points",
                    "bold $success" if gain >= 0 else "bold $error",
                ),
            ]
        self.query_one("#inference-compare", Static).update(Content("\n").join(lines))

    def _draw_chart(self) -> None:
        self.query_one("#accuracy-chart", LineChart).plot_series(self.accuracy)
