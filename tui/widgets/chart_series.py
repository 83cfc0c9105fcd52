"""The points behind a live chart, bounded however long the run streams.

A training run can report hundreds of steps a second for hours, while a chart has only a few
hundred braille columns. plotext draws every segment it is given (12,000 points took 78 ms per
frame, 200 took 5 ms), so an unbounded series makes the console slower the longer a run goes.
This series keeps at most ``capacity`` points: when it fills, neighbouring points merge
pairwise into their means and later points are averaged in groups of the doubled stride, so
memory and drawing cost stay flat and the curve keeps its shape from first step to last.
"""

from __future__ import annotations

import math


class ChartSeries:
    def __init__(self, capacity: int = 2048) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError("a chart series needs an even capacity of at least 2")
        self.capacity = capacity
        self.count = 0  # points appended, before any merging
        self.last: tuple[float, float] | None = None
        self._xs: list[float] = []
        self._ys: list[float] = []
        self._stride = 1
        self._group = (0.0, 0.0, 0)  # running sums of the group being averaged, and its size

    def __len__(self) -> int:
        return self.count

    def append(self, x: float, y: float) -> None:
        self.count += 1
        self.last = (x, y)
        sum_x, sum_y, size = self._group
        sum_x, sum_y, size = sum_x + x, sum_y + y, size + 1
        if size < self._stride:
            self._group = (sum_x, sum_y, size)
            return
        self._group = (0.0, 0.0, 0)
        self._xs.append(sum_x / size)
        self._ys.append(sum_y / size)
        if len(self._xs) == self.capacity:
            self._xs = _pair_means(self._xs)
            self._ys = _pair_means(self._ys)
            self._stride *= 2

    def points(self, limit: int | None = None) -> tuple[list[float], list[float]]:
        """At most ``limit`` points (bucket means), the group still filling included, so the
        chart reaches the latest step."""
        xs, ys = list(self._xs), list(self._ys)
        sum_x, sum_y, size = self._group
        if size:
            xs.append(sum_x / size)
            ys.append(sum_y / size)
        if limit is None or len(xs) <= limit:
            return xs, ys
        bucket = math.ceil(len(xs) / max(1, limit))
        return _bucket_means(xs, bucket), _bucket_means(ys, bucket)


def _pair_means(values: list[float]) -> list[float]:
    return [(a + b) / 2 for a, b in zip(values[0::2], values[1::2], strict=True)]


def _bucket_means(values: list[float], bucket: int) -> list[float]:
    return [math.fsum(chunk) / len(chunk) for chunk in (values[i : i + bucket] for i in range(0, len(values), bucket))]
