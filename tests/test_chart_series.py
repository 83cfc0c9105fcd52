"""The bounded series behind the live charts: flat memory, the curve's shape kept."""

from __future__ import annotations

import pytest

from tui.widgets.chart_series import ChartSeries


def test_short_series_keeps_every_point_exactly() -> None:
    series = ChartSeries(capacity=8)
    for step in range(1, 6):
        series.append(step, 1.0 / step)
    assert series.points() == ([1, 2, 3, 4, 5], [1.0, 0.5, 1 / 3, 0.25, 0.2])
    assert series.count == len(series) == 5 and series.last == (5, 0.2)


def test_long_series_stays_within_capacity_and_keeps_its_shape() -> None:
    series = ChartSeries(capacity=64)
    for step in range(100_000):
        series.append(step, 2.0 * step + 1.0)  # a straight line stays one under pairwise means
    xs, ys = series.points()
    assert len(xs) <= 64 + 1 and series.count == 100_000 and series.last == (99_999, 199_999.0)
    assert xs == sorted(xs) and xs[0] < 2048 and xs[-1] > 97_000, "spans the whole run"
    assert all(y == pytest.approx(2.0 * x + 1.0) for x, y in zip(xs, ys, strict=True))


def test_points_are_bucketed_down_to_the_chart_width() -> None:
    series = ChartSeries()
    for step in range(1, 1001):
        series.append(step, float(step % 2))  # noisy: alternates 0, 1
    xs, ys = series.points(limit=100)
    assert len(xs) == 100 and xs[0] == pytest.approx(5.5) and xs[-1] == pytest.approx(995.5)
    assert all(y == pytest.approx(0.5) for y in ys), "buckets average the noise"


@pytest.mark.parametrize("capacity", [0, 1, 7])
def test_capacity_must_be_even_and_at_least_two(capacity: int) -> None:
    with pytest.raises(ValueError, match="even capacity"):
        ChartSeries(capacity)
