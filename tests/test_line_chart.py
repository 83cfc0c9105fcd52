"""The braille line chart behind the loss and accuracy views: what it draws, and where."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from tui.widgets.line_chart import BRAILLE_BLANK, LineChart, axis_number, padded_range

pytestmark = pytest.mark.anyio
SIZE = (40, 12)  # the chart fills it: a 2-column axis, 37 cells of plot, 9 rows of plot


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ChartApp(App[None]):
    def __init__(self, chart: LineChart) -> None:
        super().__init__()
        self.chart = chart

    def compose(self) -> ComposeResult:
        yield self.chart


def dotted(lines: list[str]) -> list[tuple[int, int]]:
    """(row, column) of every cell with a braille dot in it."""
    return [
        (row, column)
        for row, line in enumerate(lines)
        for column, char in enumerate(line)
        if BRAILLE_BLANK < ord(char) <= BRAILLE_BLANK + 0xFF
    ]


async def test_a_rising_line_runs_from_bottom_left_to_top_right() -> None:
    chart = LineChart("accuracy", "rows", y_range=(0.0, 1.0))
    async with ChartApp(chart).run_test(size=SIZE) as pilot:
        chart.plot([0, 50, 100], [0.0, 0.5, 1.0])
        await pilot.pause()
        lines = chart.text_lines()
    assert len(lines) == 12 and lines[0].strip() == "accuracy"
    assert lines[1].startswith("  1┤") and lines[5].startswith("0.5┤") and lines[9].startswith("  0┤")
    assert lines[10].startswith("   └─") and lines[11].split() == ["0", "rows", "100"]
    dots = dotted(lines)
    first, last = min(dots, key=lambda d: d[1]), max(dots, key=lambda d: d[1])
    assert first == (9, 4) and last == (1, 39), "bottom-left to top-right"
    columns = sorted({column for _, column in dots})
    assert columns == list(range(4, 40)), "joined: no gap between the points"


async def test_values_outside_the_fixed_range_are_clipped_to_its_edge() -> None:
    chart = LineChart("accuracy", "rows", y_range=(0.0, 1.0))
    async with ChartApp(chart).run_test(size=SIZE) as pilot:
        chart.plot([0, 1], [5.0, 5.0])
        await pilot.pause()
        assert {row for row, _ in dotted(chart.text_lines())} == {1}


async def test_an_empty_chart_draws_its_axes_and_a_tiny_one_only_its_title() -> None:
    chart = LineChart("training loss", "step")
    async with ChartApp(chart).run_test(size=SIZE) as pilot:
        await pilot.pause()
        lines = chart.text_lines()
        assert dotted(lines) == [] and lines[0].strip() == "training loss" and "step" in lines[-1]
    tiny = LineChart("training loss", "step")
    async with ChartApp(tiny).run_test(size=(12, 4)) as pilot:
        await pilot.pause()
        assert [line.strip() for line in tiny.text_lines()] == ["training loss"[:12]]


def test_mismatched_points_are_refused_with_both_counts() -> None:
    with pytest.raises(ValueError, match=r"as many x as y values \(2 x, 1 y\)"):
        LineChart("loss", "step").plot([1, 2], [0.5])


@pytest.mark.parametrize(
    ("values", "expected"), [([1.0, 1.0], (0.9, 1.1)), ([0.0], (-0.5, 0.5)), ([0.0, 10.0], (-0.5, 10.5))]
)
def test_padded_range_never_collapses(values: list[float], expected: tuple[float, float]) -> None:
    assert padded_range(values) == pytest.approx(expected)


def test_axis_numbers_are_short() -> None:
    assert [axis_number(v) for v in (3.0, 1021, 0.69314, 5e-5)] == ["3", "1021", "0.693", "5e-05"]
