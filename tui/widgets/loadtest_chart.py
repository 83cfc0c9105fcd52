"""A model version's recorded load test: latency against load, the knee, and every step's figures.

What a provider reads from a load test is where the model stops keeping its promise: the chart
draws p50 and p99 against the step's target rate (per-rps) or number of clients
(per-concurrency) with the SLO as a flat line, so the step where p99 crosses it is seen at a
glance; the knee (the highest step that held the SLO) is marked ◆ on the x axis and steps with
failed requests ✘. A saturated server in an open-loop test shows it twice, and both are here:
p99 climbs and the achieved rate falls behind the target, which the step table prints side by
side (an achieved rate more than 3 % short of its target is flagged: the generator holds its
own rate within that). The document is `cleanroom model loadtest`'s report as governance
holds it (``core/onboarding/loadtest.py``'s ``as_dict``, in either key spelling, see
``report_fields``); a document that cannot be drawn shows why instead of a chart.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from tui.widgets.line_chart import AxisMark, LineChart
from tui.widgets.report_fields import MISSING, count, field, flag, number, section, shown, text

PER_RPS, PER_CONCURRENCY = "per-rps", "per-concurrency"
UNITS = {PER_RPS: "rps", PER_CONCURRENCY: "clients"}
ROUND_STEPS = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)  # the latency axis tops at one of these x 10^k
RATE_TOLERANCE = 0.03  # the generator holds its target within 3 %: more short means the server fell behind
NO_LOADTEST = "No load test recorded for this version: run `cleanroom model loadtest` and record it."


class UnreadableLoadTest(ValueError):
    """The recorded document cannot be drawn; the message says which part is missing."""


@dataclass(frozen=True)
class LoadStep:
    target: float  # requests per second, or concurrent clients
    actual_rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    ok: int | None
    failed: int | None
    cpu_percent: float | None
    peak_rss_mb: float | None
    within_slo: bool | None

    def fell_behind(self, mode: str) -> bool:
        """Per-rps only: the achieved rate is short of the target by more than the generator's own error."""
        return mode == PER_RPS and self.actual_rps is not None and self.actual_rps < self.target * (1 - RATE_TOLERANCE)


@dataclass(frozen=True)
class LoadTestFigures:
    mode: str
    steps: list[LoadStep]
    skipped: int  # steps without a usable target, left out
    slo_ms: float | None
    knee: float | None  # the knee step's target; None when no step held the SLO
    knee_rps: float | None
    payload_chars: int | None
    writer: str | None  # the member who recorded it: a load test is a member's measurement, not the clean room's
    contract: str | None  # the contract whose ingress it measured
    recorded_at: str | None

    @property
    def unit(self) -> str:
        return UNITS[self.mode]


def loadtest_figures(document: object) -> LoadTestFigures:
    """The figures of a recorded load test; raises ``UnreadableLoadTest`` when there is nothing to draw."""
    if not isinstance(document, dict):
        raise UnreadableLoadTest("the recorded load test is not a JSON object")
    mode = field(document, "mode")
    if mode not in UNITS:
        raise UnreadableLoadTest(f"the recorded load test's mode {mode!r} is neither {PER_RPS} nor {PER_CONCURRENCY}")
    raw_steps = field(document, "steps")
    if not isinstance(raw_steps, list):
        raise UnreadableLoadTest("the recorded load test has no list of steps")
    steps = [step for step in (_step(raw) for raw in raw_steps) if step is not None]
    if not steps:
        raise UnreadableLoadTest(f"none of the recorded load test's {len(raw_steps)} steps has a target")
    knee = section(document, "knee")
    return LoadTestFigures(
        mode=mode,
        steps=sorted(steps, key=lambda step: step.target),
        skipped=len(raw_steps) - len(steps),
        slo_ms=number(document, "slo_ms"),
        knee=number(knee, "target"),
        knee_rps=number(knee, "actual_rps"),
        payload_chars=count(document, "payload_chars"),
        writer=text(document, "writer"),
        contract=text(document, "contract_id"),
        recorded_at=_when(field(document, "recorded_at") or field(document, "at")),  # the registry writes "at"
    )


def _step(raw: object) -> LoadStep | None:
    target = number(raw, "target")
    if target is None:
        return None
    latency = section(raw, "latency_ms")
    return LoadStep(
        target=target,
        actual_rps=number(raw, "actual_rps"),
        p50_ms=number(latency, "p50"),
        p99_ms=number(latency, "p99"),
        ok=count(raw, "ok"),
        failed=count(raw, "failed"),
        cpu_percent=number(raw, "cpu_percent"),
        peak_rss_mb=number(raw, "peak_rss_mb"),
        within_slo=flag(raw, "within_slo"),
    )


def _when(value: object) -> str | None:
    """A recording time as UTC minutes: seconds since the epoch, or text (ISO 8601) kept as given."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return None


def chart_lines(figures: LoadTestFigures) -> list[tuple[list[float], list[float]]]:
    """p50, p99 and the SLO (flat across the steps), each through the steps that have the figure."""
    lines = []
    for latency in ("p50_ms", "p99_ms"):
        points = [(step.target, getattr(step, latency)) for step in figures.steps if getattr(step, latency) is not None]
        lines.append(([x for x, _ in points], [y for _, y in points]))
    if figures.slo_ms is not None:
        ends = [figures.steps[0].target, figures.steps[-1].target]
        lines.append((ends, [figures.slo_ms, figures.slo_ms]))
    return lines


def latency_range(lines: list[tuple[list[float], list[float]]]) -> tuple[float, float]:
    """From 0 (a latency axis that starts below zero, or at the fastest step, misleads) to a round
    figure above the highest latency or the SLO, so the middle tick is a round figure too."""
    top = max((y for _, ys in lines for y in ys), default=1.0)
    scale = 10 ** math.floor(math.log10(top)) if top > 0 else 1.0
    return 0.0, next(step * scale for step in ROUND_STEPS if step * scale >= top)


def axis_marks(figures: LoadTestFigures) -> list[AxisMark]:
    """A tick under every step, ✘ under a step with failed requests, ◆ under the knee."""
    marks = []
    for step in figures.steps:
        if step.target == figures.knee:
            marks.append(AxisMark(step.target, "◆", "line-chart--good"))
        elif step.failed:
            marks.append(AxisMark(step.target, "✘", "line-chart--bad"))
        else:
            marks.append(AxisMark(step.target, "┴"))
    return marks


def summary_line(figures: LoadTestFigures, member_names: Mapping[str, str]) -> Content:
    """What was measured (mode, contract) and whose measurement it is (a member's, by persona
    name where the member is known, with when)."""
    through = f" through {figures.contract}" if figures.contract else ""
    recorded = " · ".join(
        part
        for part in (
            f"{figures.payload_chars}-char payload" if figures.payload_chars is not None else None,
            f"recorded by {member_names.get(figures.writer) or figures.writer[:8] + '…'}" if figures.writer else None,
            figures.recorded_at,
        )
        if part
    )
    return Content.assemble(
        Content.styled(f"load test {figures.mode}{through}", "bold"), Content.styled(f"\n{recorded}", "$text-muted")
    )


def legend_line(figures: LoadTestFigures) -> Content:
    unit = figures.unit
    slo = f"SLO {MISSING if figures.slo_ms is None else format(figures.slo_ms, 'g')} ms"
    if figures.knee is None:
        knee = Content.styled("no step held the SLO", "$error")
    else:
        achieved = f" ({figures.knee_rps:.1f} achieved)" if figures.knee_rps is not None else ""
        knee = Content.styled(f"◆ knee {figures.knee:g} {unit}{achieved}", "$success")
    parts = [
        Content.styled("━ p50", "$accent"),
        Content.styled("━ p99", "$primary"),
        Content.styled(f"━ {slo}", "$text-muted"),
        knee,
    ]
    if any(step.failed for step in figures.steps):
        parts.append(Content.styled("✘ failed", "$error"))
    if figures.skipped:
        parts.append(Content.styled(f"{figures.skipped} unreadable step(s) left out", "$warning"))
    return Content("  ").join(parts)


STEP_COLUMNS = ("achieved", "p50 ms", "p99 ms", "ok", "failed", "cpu%", "RSS MB")  # after the step's target
STEP_WIDTHS = (5, 8, 7, 7, 5, 6, 4, 6)  # with the SLO word, fits half of a 140-column console


def step_lines(figures: LoadTestFigures) -> Content:
    """One row per step: target and achieved rate side by side, latencies, requests, the workload."""
    header = " ".join(
        f"{name:>{width}}" for name, width in zip((figures.unit, *STEP_COLUMNS), STEP_WIDTHS, strict=True)
    )
    lines = [Content.styled(f"{header}  SLO", "$text-muted")]
    for step in figures.steps:
        cells = (
            (format(step.target, "g"), ""),
            (shown(step.actual_rps), "$warning" if step.fell_behind(figures.mode) else ""),
            (shown(step.p50_ms), ""),
            (shown(step.p99_ms), ""),
            (_whole(step.ok), ""),
            (_whole(step.failed), "$error" if step.failed else ""),
            (shown(step.cpu_percent, ".0f"), ""),
            (shown(step.peak_rss_mb, ".0f"), ""),
        )
        if step.within_slo is None:
            slo = Content(MISSING)
        else:
            slo = Content.styled("✔ held", "$success") if step.within_slo else Content.styled("✘ missed", "$error")
        row = [
            Content.styled(f"{cell:>{width}}", style) for (cell, style), width in zip(cells, STEP_WIDTHS, strict=True)
        ]
        lines.append(Content.assemble(Content(" ").join(row), "  ", slo))
    return Content("\n").join(lines)


def _whole(value: int | None) -> str:
    return MISSING if value is None else str(value)


class LoadTestPanel(VerticalScroll):
    """The selected version's load test: summary, chart with its legend, and the step table (it
    scrolls on a short terminal, where the chart keeps its minimum height above the table)."""

    DEFAULT_CSS = """
    LoadTestPanel { height: 1fr; }
    LoadTestPanel #loadtest-summary, LoadTestPanel #loadtest-legend { height: auto; }
    LoadTestPanel #loadtest-chart { height: 1fr; min-height: 8; }
    LoadTestPanel #loadtest-steps { height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="loadtest-summary")
        yield LineChart("latency (ms)", "", id="loadtest-chart")
        yield Static("", id="loadtest-legend")
        yield Static("", id="loadtest-steps")

    def show(self, document: object, member_names: Mapping[str, str] | None = None) -> None:
        """Draw ``document`` (the version view's ``loadtest``), or say why there is nothing to draw."""
        chart = self.query_one(LineChart)
        try:
            figures = None if document is None else loadtest_figures(document)
        except UnreadableLoadTest as exc:
            self._placeholder(Content.styled(f"load test: {MISSING} ({exc})", "$warning"))
            return
        if figures is None:
            self._placeholder(Content.styled(NO_LOADTEST, "$text-muted"))
            return
        chart.display = True
        chart.title = f"latency (ms) by {'target rate' if figures.mode == PER_RPS else 'concurrent clients'}"
        chart.x_label = "target rps" if figures.mode == PER_RPS else "clients"
        lines = chart_lines(figures)
        chart.y_range = latency_range(lines)
        chart.plot_lines(lines, axis_marks(figures))
        self.query_one("#loadtest-summary", Static).update(summary_line(figures, member_names or {}))
        self.query_one("#loadtest-legend", Static).update(legend_line(figures))
        self.query_one("#loadtest-steps", Static).update(step_lines(figures))

    def _placeholder(self, message: Content) -> None:
        chart = self.query_one(LineChart)
        chart.plot_lines([])
        chart.display = False
        self.query_one("#loadtest-summary", Static).update(message)
        self.query_one("#loadtest-legend", Static).update("")
        self.query_one("#loadtest-steps", Static).update("")
