"""A braille line chart: the live training loss and the running inference accuracy.

Each cell holds a 2x4 braille dot grid, so a 100-column chart draws 200 points across. This
replaced plotext, which built ANSI text that Rich then parsed back: about 10 ms a frame on
this machine, most of a view switch's budget while a training run streams. This one draws
from at most two points per column (see ``ChartSeries``) in well under a millisecond, and its
colours are theme variables, so a theme switch needs nothing special.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from textual.strip import Strip
from textual.widget import Widget

from tui.widgets.chart_series import ChartSeries

BRAILLE_BLANK = 0x2800
# the dot bit for (column 0..1, row 0..3) of a braille cell (Unicode's dot numbering)
DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
MIN_PLOT_WIDTH, MIN_PLOT_HEIGHT = 8, 2
MIN_SERIES_COLUMNS = 40  # a chart not laid out yet still gets a curve worth drawing


def axis_number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.3g}"


def padded_range(values: Sequence[float]) -> tuple[float, float]:
    """The span of ``values`` with a little air, never empty (one point still gets an axis)."""
    low, high = min(values), max(values)
    if low == high:
        pad = abs(low) * 0.1 or 0.5
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


class LineChart(Widget):
    """Title, y axis with three ticks, the braille plot, and an x axis with its two ends.

    Lines are drawn as strips (Textual's line API), once per change of data, size or theme:
    laid out as rich text, the same chart cost several milliseconds a frame in wrapping alone.
    """

    COMPONENT_CLASSES = {"line-chart--title", "line-chart--axis", "line-chart--line"}
    DEFAULT_CSS = """
    LineChart { width: 1fr; height: 1fr; }
    LineChart > .line-chart--title { text-style: bold; }
    LineChart > .line-chart--axis { color: $text-muted; }
    LineChart > .line-chart--line { color: $accent; }
    """
    # a view whose only content is a chart focuses it, so keys never stay with a hidden view
    can_focus = True

    def __init__(
        self, title: str, x_label: str, *, y_range: tuple[float, float] | None = None, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.title = title
        self.x_label = x_label
        self.y_range = y_range
        self.xs: list[float] = []
        self.ys: list[float] = []
        self._strips: list[Strip] | None = None  # drawn for _strips_size; None: draw again
        self._strips_size = (0, 0)

    def plot(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        if len(xs) != len(ys):
            raise ValueError(f"a line needs as many x as y values ({len(xs)} x, {len(ys)} y)")
        self.xs, self.ys = list(xs), list(ys)
        self._strips = None
        self.refresh()

    def plot_series(self, series: ChartSeries) -> None:
        """Plot a live series at this chart's resolution: braille packs two points per cell
        across, so more would only cost drawing time."""
        self.plot(*series.points(2 * max(self.size.width, MIN_SERIES_COLUMNS)))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None  # a theme switch recolours the cached strips

    def render_line(self, y: int) -> Strip:
        # keyed by size: Textual renders at a new size before the Resize event arrives
        if self._strips is None or self._strips_size != self.size:
            self._strips, self._strips_size = self._render_strips(), self.size
        width = self.size.width
        if y < len(self._strips):
            return self._strips[y].adjust_cell_length(width, self.rich_style)
        return Strip.blank(width, self.rich_style)

    def text_lines(self) -> list[str]:
        """The chart as plain text, as a terminal shows it."""
        return [strip.text for strip in self._render_strips()]

    def _render_strips(self) -> list[Strip]:
        width, height = self.size
        title_style, axis_style, line_style = (
            self.get_component_rich_style(name)  # full styles: translucent colours blended
            for name in ("line-chart--title", "line-chart--axis", "line-chart--line")
        )
        strips = [Strip([Segment(self.title.center(width)[:width], title_style)])]
        y_low, y_high = self.y_range or (padded_range(self.ys) if self.ys else (0.0, 1.0))
        top, middle, bottom = (axis_number(v) for v in (y_high, (y_low + y_high) / 2, y_low))
        label_width = max(len(top), len(middle), len(bottom))
        plot_width, plot_height = width - label_width - 1, height - 3
        if plot_width < MIN_PLOT_WIDTH or plot_height < MIN_PLOT_HEIGHT:
            return strips
        ticks = {0: top, plot_height // 2: middle, plot_height - 1: bottom}
        cells = self._draw(plot_width, plot_height, y_low, y_high)
        for row in range(plot_height):
            label = ticks.get(row)
            axis = f"{label:>{label_width}}┤" if label is not None else f"{'':>{label_width}}│"
            dots = "".join(
                chr(BRAILLE_BLANK + bits) if bits else " " for bits in cells[row * plot_width : (row + 1) * plot_width]
            )
            strips.append(Strip([Segment(axis, axis_style), Segment(dots, line_style)]))
        strips.append(Strip([Segment(f"{'':>{label_width}}└{'─' * plot_width}", axis_style)]))
        x_low, x_high = (min(self.xs), max(self.xs)) if self.xs else (0.0, 1.0)
        left, right = axis_number(x_low), axis_number(x_high)
        name = self.x_label.center(max(0, plot_width - len(left) - len(right)))
        strips.append(Strip([Segment(f"{'':>{label_width + 1}}{left}{name}{right}"[:width], axis_style)]))
        return strips

    def _draw(self, plot_width: int, plot_height: int, y_low: float, y_high: float) -> list[int]:
        """Braille bits per cell, row-major, with consecutive points joined by straight lines."""
        cells = [0] * (plot_width * plot_height)
        if not self.xs:
            return cells
        columns, rows = plot_width * 2, plot_height * 4
        x_low, x_high = min(self.xs), max(self.xs)
        x_scale = (columns - 1) / (x_high - x_low) if x_high > x_low else 0.0
        y_scale = (rows - 1) / (y_high - y_low)

        def dot(x: float, y: float) -> tuple[int, int]:
            row = round((y_high - y) * y_scale)
            return round((x - x_low) * x_scale), min(rows - 1, max(0, row))  # clip to the y range

        previous = None
        for x, y in zip(self.xs, self.ys, strict=True):
            current = dot(x, y)
            for column, row in _segment(previous or current, current):
                cells[(row // 4) * plot_width + column // 2] |= DOT_BITS[column % 2][row % 4]
            previous = current
        return cells


def _segment(start: tuple[int, int], end: tuple[int, int]) -> list[tuple[int, int]]:
    """The dots of a straight line between two dots, ends included (Bresenham)."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    step_x, step_y = (1 if x1 >= x0 else -1), (1 if y1 >= y0 else -1)
    error = dx + dy
    dots = []
    while True:
        dots.append((x0, y0))
        if (x0, y0) == (x1, y1):
            return dots
        doubled = 2 * error
        if doubled >= dy:
            error += dy
            x0 += step_x
        if doubled <= dx:
            error += dx
            y0 += step_y
