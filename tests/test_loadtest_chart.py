"""The Models view's load-test chart and regression table, on documents the registry stores.

The documents come from the real report classes through governance's own checks
(tests/model_results.py); the malformed ones are what a document from governance could hold
whatever the checks do today (an older registry, another writer): each must cost a "—", never
the console.
"""

from __future__ import annotations

import math

import pytest
from textual.app import App, ComposeResult

from core.onboarding.loadtest import PER_CONCURRENCY
from tests.model_results import loadtest_report, recorded_loadtest, recorded_regression
from tui.widgets.line_chart import BRAILLE_BLANK, AxisMark, LineChart
from tui.widgets.loadtest_chart import (
    NO_LOADTEST,
    LoadTestPanel,
    UnreadableLoadTest,
    axis_marks,
    chart_lines,
    latency_range,
    legend_line,
    loadtest_figures,
    step_lines,
)
from tui.widgets.regression_table import NO_REGRESSION, regression_lines
from tui.widgets.report_fields import MISSING, count, field, number

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class PanelApp(App[None]):
    def __init__(self, panel: LoadTestPanel | LineChart) -> None:
        super().__init__()
        self.panel = panel

    def compose(self) -> ComposeResult:
        yield self.panel


def test_the_recorded_load_test_gives_the_knee_the_slo_and_every_step() -> None:
    figures = loadtest_figures(recorded_loadtest())
    assert figures.mode == "per-rps" and figures.unit == "rps" and figures.slo_ms == 200.0
    assert [step.target for step in figures.steps] == [10, 25, 50, 75, 100]
    assert (figures.knee, figures.knee_rps) == (50, 49.6), "the highest step with p99 within the SLO, no failures"
    assert figures.contract == "serve-minilm-2" and figures.recorded_at == "2026-09-21 14:11 UTC"
    p50, p99, slo = chart_lines(figures)
    assert p50 == ([10, 25, 50, 75, 100], [21.0, 21.4, 23.9, 61.0, 840.0])
    assert p99[1] == [30.5, 34.0, 88.2, 412.0, 2950.0] and slo == ([10, 100], [200.0, 200.0])
    assert latency_range([p50, p99, slo]) == (0.0, 3000.0)
    assert [(mark.x, mark.symbol) for mark in axis_marks(figures)] == [
        (10, "┴"),
        (25, "┴"),
        (50, "◆"),
        (75, "┴"),
        (100, "✘"),
    ]


def test_the_step_table_puts_achieved_beside_target_and_flags_failures() -> None:
    figures = loadtest_figures(recorded_loadtest())
    header, *rows = str(step_lines(figures)).splitlines()
    assert header.split() == ["rps", "achieved", "p50", "ms", "p99", "ms", "ok", "failed", "cpu%", "RSS", "MB", "SLO"]
    assert rows[2].split() == ["50", "49.6", "23.9", "88.2", "496", "0", "100", "310", "✔", "held"]
    assert rows[3].split()[-2:] == ["✘", "missed"], "p99 412 ms over the 200 ms SLO"
    assert rows[4].split()[:6] == ["100", "61.2", "840.0", "2950.0", "595", "17"]
    assert [step.fell_behind(figures.mode) for step in figures.steps] == [False, False, False, True, True]
    legend = str(legend_line(figures))
    assert "SLO 200 ms" in legend and "◆ knee 50 rps (49.6 achieved)" in legend and "✘ failed" in legend


def test_per_concurrency_counts_clients_and_never_flags_the_rate() -> None:
    steps = {1: (40.0, 24.0, 30.0, 0), 4: (90.0, 40.0, 70.0, 0), 16: (95.0, 160.0, 450.0, 0)}
    figures = loadtest_figures(recorded_loadtest(loadtest_report(PER_CONCURRENCY, steps)))
    assert figures.unit == "clients" and figures.knee == 4
    assert not any(step.fell_behind(figures.mode) for step in figures.steps), "a client count has no target rate"
    assert str(step_lines(figures)).splitlines()[0].split()[0] == "clients"


def test_no_step_within_the_slo_says_so() -> None:
    figures = loadtest_figures(recorded_loadtest(loadtest_report(steps={10: (10.0, 300.0, 900.0, 0)})))
    assert figures.knee is None and "no step held the SLO" in str(legend_line(figures))
    assert [mark.symbol for mark in axis_marks(figures)] == ["┴"]


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ("a string", "not a JSON object"),
        ({"steps": []}, "mode None is neither per-rps nor per-concurrency"),
        ({"mode": "per-rps", "steps": {"10": {}}}, "has no list of steps"),
        (
            {"mode": "per-rps", "steps": [{"target": "ten"}, None]},
            "none of the recorded load test's 2 steps has a target",
        ),
    ],
)
def test_a_load_test_that_cannot_be_drawn_is_refused_with_why(document: object, why: str) -> None:
    with pytest.raises(UnreadableLoadTest, match=why):
        loadtest_figures(document)


def test_missing_and_odd_figures_cost_a_dash_each() -> None:
    document = {
        "mode": "per-rps",
        "sloMs": "fast",
        "knee": [50],
        "steps": [
            {"target": 10, "actual_rps": 9.9, "latency_ms": {"p50": 20.0, "p99": math.nan}, "ok": True},
            {"target": 20, "actualRps": None, "latencyMs": "n/a", "failed": 2, "withinSlo": "yes"},
            {"rps": 30},
        ],
    }
    figures = loadtest_figures(document)
    assert figures.skipped == 1 and figures.slo_ms is None and figures.knee is None
    rows = str(step_lines(figures)).splitlines()[1:]
    assert rows[0].split() == ["10", "9.9", "20.0", MISSING, MISSING, MISSING, MISSING, MISSING, MISSING]
    assert rows[1].split() == ["20", MISSING, MISSING, MISSING, MISSING, "2", MISSING, MISSING, MISSING]
    assert chart_lines(figures) == [([10], [20.0]), ([], [])], "no SLO line without an SLO"
    assert "1 unreadable step(s) left out" in str(legend_line(figures))


def test_report_fields_read_either_spelling_and_refuse_what_is_not_a_figure() -> None:
    assert field({"actualRps": 3}, "actual_rps") == 3 and field({"actual_rps": 4, "actualRps": 3}, "actual_rps") == 4
    assert field(["actual_rps"], "actual_rps") is None
    assert [number({"x": v}, "x") for v in (1, 2.5, True, "3", math.inf, None)] == [1.0, 2.5, None, None, None, None]
    assert [count({"x": v}, "x") for v in (3, 3.0, 3.5, -1)] == [3, 3, None, None]


async def test_the_panel_draws_the_chart_with_its_marks_and_legend() -> None:
    panel = LoadTestPanel()
    async with PanelApp(panel).run_test(size=(70, 30)) as pilot:
        panel.show(recorded_loadtest())
        await pilot.pause()
        chart = panel.query_one(LineChart)
        lines = chart.text_lines()
        assert chart.display and lines[0].strip() == "latency (ms) by target rate"
        assert lines[1].startswith("3000┤") and lines[-3].startswith("   0┤")
        axis = lines[-2]
        assert axis.index("◆") < axis.index("✘") == len(axis.rstrip()) - 1, "the knee before the failing last step"
        assert lines[-1].split() == ["10", "target", "rps", "100"]
        assert "◆ knee 50 rps" in str(panel.query_one("#loadtest-legend").render())
        summary = str(panel.query_one("#loadtest-summary").render()).splitlines()
        assert summary == [
            "load test per-rps through serve-minilm-2",
            "1000-char payload · recorded by c3c3c3c3… · 2026-09-21 14:11 UTC",
        ], "a writer the view has no persona name for: the short member id"


@pytest.mark.parametrize(
    ("document", "shown"),
    [(None, NO_LOADTEST), ({"mode": "per-second", "steps": []}, "load test: — (the recorded load test's mode")],
)
async def test_the_panel_shows_a_placeholder_instead_of_a_chart(document: object, shown: str) -> None:
    panel = LoadTestPanel()
    async with PanelApp(panel).run_test(size=(70, 30)) as pilot:
        panel.show(recorded_loadtest())
        await pilot.pause()
        panel.show(document)
        await pilot.pause()
        chart = panel.query_one(LineChart)
        assert not chart.display and chart.lines == [] and chart.marks == []
        assert str(panel.query_one("#loadtest-summary").render()).startswith(shown)
        assert str(panel.query_one("#loadtest-steps").render()) == ""


async def test_the_chart_colours_each_line_and_mark_from_its_component_class() -> None:
    chart = LineChart("latency", "rps")
    async with PanelApp(chart).run_test(size=(40, 12)) as pilot:
        chart.plot_lines([([0, 10], [0, 10]), ([0, 10], [10, 0])], [AxisMark(10, "✘", "line-chart--bad")])
        await pilot.pause()
        strips = chart._render_strips()
        colours = {
            segment.style and segment.style.color
            for strip in strips[1:-2]
            for segment in strip
            if any(BRAILLE_BLANK < ord(char) <= BRAILLE_BLANK + 0xFF for char in segment.text)
        }
        first, second = (chart.get_component_rich_style(c).color for c in ("line-chart--line", "line-chart--line-2"))
        assert first != second and colours == {first, second}
        axis = strips[-2]
        (bad,) = [segment for segment in axis if segment.text == "✘"]
        assert bad.style is not None and bad.style.color == chart.get_component_rich_style("line-chart--bad").color
        assert axis.text.endswith("─✘")


async def test_a_mark_beyond_the_lines_widens_the_axis_to_stay_on_it() -> None:
    chart = LineChart("latency", "rps")
    async with PanelApp(chart).run_test(size=(40, 12)) as pilot:
        chart.plot_lines([([10, 20], [1.0, 2.0])], [AxisMark(40, "✘", "line-chart--bad")])
        await pilot.pause()
        lines = chart.text_lines()
        assert lines[-2].endswith("─✘") and lines[-1].split() == ["10", "rps", "40"]


def test_a_chart_refuses_more_lines_than_it_has_colours() -> None:
    with pytest.raises(ValueError, match="at most 3 lines, not 4"):
        LineChart("latency", "rps").plot_lines([([0], [0])] * 4)


def test_the_regression_table_has_metric_rows_flips_p_and_the_gate() -> None:
    lines = str(regression_lines(recorded_regression())).splitlines()
    assert lines[0] == "regression over 200 cases · contract regress-minilm-2"
    assert lines[1] == "candidate efefefefefef… vs baseline 1 abababababab…"
    assert lines[2].split() == ["metric", "baseline", "candidate", "delta"]
    assert lines[3].split() == ["accuracy", "0.5000", "0.8500", "+0.3500"]
    assert [line.split()[-1] for line in lines[4:7]] == ["+0.3500"] * 3
    assert lines[7] == "flips: 0 regressed (baseline right, candidate wrong), 70 fixed; labels 0->1: 35, 1->0: 35"
    assert lines[8] == "McNemar exact p 1.69e-21"
    assert lines[9] == "gate: minAccuracyDelta ≥ 0.0, maxP ≤ 0.01  ✔ passed"
    assert len(lines) == 10


def test_a_failed_gate_lists_each_missed_rule() -> None:
    lines = str(regression_lines(recorded_regression(candidate_right=95))).splitlines()
    assert lines[3].split() == ["accuracy", "0.5000", "0.4750", "-0.0250"]
    assert lines[9].endswith("✘ FAILED")
    assert lines[10:] == [
        "    accuracy delta -0.0250 is below the gate's +0.0000",
        "    McNemar p 0.0625 is above the gate's 0.01",
    ]


@pytest.mark.parametrize(
    ("document", "first_line"),
    [
        (None, NO_REGRESSION),
        ([0.5, 0.85], "regression: — (the recorded result is not a JSON object)"),
        ({"passed": True}, "regression: — (the recorded result has no baseline or candidate scores)"),
    ],
)
def test_no_or_an_unreadable_regression_result_says_so(document: object, first_line: str) -> None:
    assert str(regression_lines(document)).splitlines() == [first_line]


def test_a_partial_regression_result_prints_what_it_has() -> None:
    document = {"baseline": {"accuracy": 0.5}, "candidate": {"accuracy": "high", "macroF1": 0.7}, "gate": "strict"}
    lines = str(regression_lines(document)).splitlines()
    assert lines[0] == f"regression over {MISSING} cases" and lines[1] == f"versions compared: {MISSING}"
    assert lines[3].split() == ["accuracy", "0.5000", MISSING, MISSING]
    assert lines[4].split() == ["macro", "F1", MISSING, "0.7000", MISSING]
    assert (
        lines[7] == f"flips: {MISSING} regressed (baseline right, candidate wrong), {MISSING} fixed; labels {MISSING}"
    )
    assert lines[8:] == [f"McNemar exact p {MISSING}", f"gate: none voted  {MISSING}"]
