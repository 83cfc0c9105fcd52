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
from textual_plotext import PlotextPlot

from core.engine import CleanroomEvent

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
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.learning_rates: list[float] = []
        self.epoch_accuracy: dict[int, float] = {}
        self.total_steps: int | None = None
        self.contract_id: str | None = None
        self._first: tuple[float, int] | None = None  # (time, step) of the first step event
        self._latest: dict[str, float] = {}
        self._dirty = False

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("Waiting for telemetry (enable it on the contract by vote).",
                                    "$text-muted"), id="training-headline")
        with Horizontal(id="training-progress-row"):
            yield ProgressBar(total=None, show_eta=False, id="training-progress")
            yield Static(eta_text(None), id="training-eta")
        with Horizontal():
            yield PlotextPlot(id="loss-chart")
            with Vertical(id="training-side"):
                yield Static("", id="training-stats")
                yield Static("", id="training-epochs")

    def on_mount(self) -> None:
        self.set_interval(REDRAW_SECONDS, self._redraw)
        self._draw_chart()

    def accepts(self, event: CleanroomEvent) -> bool:
        return event.category == "telemetry" or event.kind in TELEMETRY_KINDS

    def add_event(self, event: CleanroomEvent) -> None:
        data = event.data
        self.contract_id = event.contract_id
        if "total_steps" in data or "max_steps" in data:
            self.total_steps = int(data.get("total_steps") or data.get("max_steps"))
        if "eval_accuracy" in data or "val_accuracy" in data:
            epoch = int(float(data.get("epoch", len(self.epoch_accuracy) + 1)))
            self.epoch_accuracy[epoch] = float(data.get("eval_accuracy", data.get("val_accuracy")))
        if "step" in data and "loss" in data:
            step = int(data["step"])
            self.steps.append(step)
            self.losses.append(float(data["loss"]))
            if "learning_rate" in data:
                self.learning_rates.append(float(data["learning_rate"]))
            if self._first is None:
                self._first = (event.time, step)
            self._latest = {"time": event.time, "step": step,
                            "epoch": float(data.get("epoch", 0.0)),
                            "examples_per_s": float(data.get("examples_per_s", 0.0))}
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

    def on_show(self) -> None:
        self.catch_up()

    def catch_up(self) -> None:
        """Redraw now if events arrived while off screen. Called just before the tab is shown,
        the label resizes join the tab switch's own layout pass instead of costing a second."""
        if self._dirty:
            self._dirty = False
            self.redraw()

    def _redraw(self) -> None:
        if self.is_on_screen:
            self.catch_up()

    def redraw(self) -> None:
        latest = self._latest
        progress = self.query_one(ProgressBar)
        if self.total_steps:
            progress.update(total=self.total_steps, progress=latest.get("step", 0))
        self.query_one("#training-eta", Static).update(eta_text(self.eta_seconds()))
        if latest:
            total = f"/{self.total_steps}" if self.total_steps else ""
            self.query_one("#training-headline", Static).update(Content.assemble(
                Content.styled("▶ training", "bold $success"), f"  contract {self.contract_id}  ",
                f"epoch {latest['epoch']:.2f}  step {int(latest['step'])}{total}"))
            lr = f"{self.learning_rates[-1]:.2e}" if self.learning_rates else "–"
            self.query_one("#training-stats", Static).update(
                f"loss        {self.losses[-1]:.4f}\n"
                f"lr          {lr}\n"
                f"examples/s  {latest['examples_per_s']:.1f}")
        if self.epoch_accuracy:
            lines = ["validation accuracy"] + [f"  epoch {epoch}: {acc:.2%}"
                                              for epoch, acc in sorted(self.epoch_accuracy.items())]
            self.query_one("#training-epochs", Static).update("\n".join(lines))
        self._draw_chart()

    def _draw_chart(self) -> None:
        chart = self.query_one("#loss-chart", PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.title("training loss")
        plt.xlabel("step")
        if self.steps:
            plt.plot(self.steps, self.losses, marker="braille")
        chart.refresh()
