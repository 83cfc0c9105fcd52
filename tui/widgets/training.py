"""Training monitor: progress with ETA, loss and learning rate, throughput, accuracy per epoch.

It is fed only by telemetry events (the clean room reports them when the contract's telemetry
option was voted on), so what the operator sees is exactly what governance recorded. The chart
is redrawn at most a few times a second however fast events arrive, and not at all while the
monitor is off screen (its auto-sized labels would re-lay out the whole screen each time): it
catches up the moment it is shown, so keys stay responsive while a run streams.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import ProgressBar, Static

from core.engine import CleanroomEvent
from tui.widgets.chart_series import ChartSeries
from tui.widgets.line_chart import LineChart

REDRAW_SECONDS = 0.25
TELEMETRY_KINDS = frozenset({"telemetry", "progress", "training.step", "training.epoch"})


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --:--"
    seconds = int(seconds)
    return f"ETA {seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class TrainingMonitor(Vertical):
    VIEW_ID = "training"

    def __init__(self) -> None:
        super().__init__(id="training-view")
        self.loss = ChartSeries()
        self.learning_rate: float | None = None
        self.epoch_accuracy: dict[int, float] = {}
        self.total_steps: int | None = None
        self.contract_id: str | None = None
        self._first: tuple[float, int] | None = None  # (time, step) of the first step event
        self._latest: dict[str, float] = {}
        self._dirty = False
        self._epochs_drawn: list[tuple[int, float]] = []

    def compose(self) -> ComposeResult:
        yield Static(
            Content.styled("Waiting for telemetry (enable it on the contract by vote).", "$text-muted"),
            id="training-headline",
        )
        with Horizontal(id="training-progress-row"):
            yield ProgressBar(total=None, show_eta=False, id="training-progress")
            yield Static(eta_text(None), id="training-eta")
        with Horizontal():
            yield LineChart("training loss", "step", id="loss-chart")
            with Vertical(id="training-side"):
                yield Static("", id="training-stats")
                yield Static("", id="training-epochs")

    def on_mount(self) -> None:
        self.set_interval(REDRAW_SECONDS, self._redraw)

    def accepts(self, event: CleanroomEvent) -> bool:
        return event.category == "telemetry" or event.kind in TELEMETRY_KINDS

    def add_event(self, event: CleanroomEvent) -> None:
        data = event.data
        self.contract_id = event.contract_id
        total = data.get("total_steps") or data.get("max_steps")
        if total is not None:
            self.total_steps = int(total)
        accuracy = data.get("eval_accuracy", data.get("val_accuracy"))
        if accuracy is not None:
            epoch = int(float(data.get("epoch", len(self.epoch_accuracy) + 1)))
            self.epoch_accuracy[epoch] = float(accuracy)
        if "step" in data and "loss" in data:
            step, loss = int(data["step"]), float(data["loss"])
            self.loss.append(step, loss)
            if "learning_rate" in data:
                self.learning_rate = float(data["learning_rate"])
            if self._first is None:
                self._first = (event.time, step)
            self._latest = {
                "time": event.time,
                "step": step,
                "epoch": float(data.get("epoch", 0.0)),
                "loss": loss,
                "examples_per_s": float(data.get("examples_per_s", 0.0)),
            }
        self._dirty = True

    def eta_seconds(self) -> float | None:
        """Remaining steps at the observed pace (event timestamps, not the local clock)."""
        if not (self._first and self._latest and self.total_steps):
            return None
        elapsed = self._latest["time"] - self._first[0]
        done = self._latest["step"] - self._first[1]
        if done <= 0 or elapsed <= 0:
            return None
        return (self.total_steps - self._latest["step"]) * elapsed / done

    def catch_up(self) -> None:
        """Redraw now if events arrived while off screen. Called just before the view is
        shown, so the redraw joins the switch's own repaint instead of costing a second."""
        if self._dirty:
            self._dirty = False
            self.redraw()

    def _redraw(self) -> None:
        screen = self.screen
        if screen.is_current and getattr(screen, "active_view", None) == self.VIEW_ID:
            self.catch_up()

    def redraw(self) -> None:
        """Repaint the figures. The labels have fixed sizes (see the theme's stylesheet), so
        they update without a layout pass; only a new epoch line re-lays out the screen."""
        latest = self._latest
        progress = self.query_one(ProgressBar)
        if self.total_steps:
            progress.update(total=self.total_steps, progress=latest.get("step", 0))
        self.query_one("#training-eta", Static).update(eta_text(self.eta_seconds()), layout=False)
        if latest:
            total = f"/{self.total_steps}" if self.total_steps else ""
            finished = bool(self.total_steps) and latest["step"] >= (self.total_steps or 0)
            self.query_one("#training-headline", Static).update(
                Content.assemble(
                    Content.styled("✔ trained" if finished else "▶ training", "bold $success"),
                    f"  contract {self.contract_id}  ",
                    f"epoch {latest['epoch']:.2f}  step {int(latest['step'])}{total}",
                ),
                layout=False,
            )
            lr = "–" if self.learning_rate is None else f"{self.learning_rate:.2e}"
            self.query_one("#training-stats", Static).update(
                f"loss        {latest['loss']:.4f}\nlr          {lr}\nexamples/s  {latest['examples_per_s']:.1f}",
                layout=False,
            )
        epochs = sorted(self.epoch_accuracy.items())
        if epochs != self._epochs_drawn:
            self._epochs_drawn = epochs
            lines = ["validation accuracy"] + [f"  epoch {epoch}: {acc:.2%}" for epoch, acc in epochs]
            self.query_one("#training-epochs", Static).update("\n".join(lines))
        self._draw_chart()

    def _draw_chart(self) -> None:
        self.query_one("#loss-chart", LineChart).plot_series(self.loss)
