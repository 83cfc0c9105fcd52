"""A braille line chart: the live training loss and the running inference accuracy.

Each cell holds a 2x4 braille dot grid, so a 100-column chart draws 200 points across. This
replaced plotext, which built ANSI text that Rich then parsed back: about 10 ms a frame on
this machine, most of a view switch's budget while a training run streams. This one draws
from at most two points per column (see ``ChartSeries``) in well under a millisecond, and its
colours are theme variables, so a theme switch needs nothing special.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from tui.widgets.chart_series import ChartSeries

BRAILLE_BLANK = 0x2800
# the dot bit for (column 0..1, row 0..3) of a braille cell (Unicode's dot numbering)
DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
MIN_PLOT_WIDTH, MIN_PLOT_HEIGHT = 8, 2
MIN_SERIES_COLUMNS = 40  # a chart not laid out yet still gets a curve worth drawing
# one colour per line, in plotting order (a cell two lines cross takes the later line's colour)
LINE_CLASSES = ("line-chart--line", "line-chart--line-2", "line-chart--line-3")


@dataclass(frozen=True)
class AxisMark:
    """One cell on the x axis under ``x``: a tick, or a symbol that flags the point above it
    (the load test's knee, a step with failures). ``component`` is one of the chart's component
    classes, so the mark is coloured by the theme."""

    x: float
    symbol: str
    component: str = "line-chart--axis"


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

    COMPONENT_CLASSES = {
        "line-chart--title",
        "line-chart--axis",
        *LINE_CLASSES,
        "line-chart--good",
        "line-chart--bad",
    }
    DEFAULT_CSS = """
    LineChart { width: 1fr; height: 1fr; }
    LineChart > .line-chart--title { text-style: bold; }
    LineChart > .line-chart--axis { color: $text-muted; }
    LineChart > .line-chart--line { color: $accent; }
    LineChart > .line-chart--line-2 { color: $primary; }  /* $warning is $accent in some themes */
    LineChart > .line-chart--line-3 { color: $text-muted; }
    LineChart > .line-chart--good { color: $success; text-style: bold; }
    LineChart > .line-chart--bad { color: $error; text-style: bold; }
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
        self.lines: list[tuple[list[float], list[float]]] = []
        self.marks: list[AxisMark] = []
        self._strips: list[Strip] | None = None  # drawn for _strips_size; None: draw again
        self._strips_size = (0, 0)

    def plot(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        self.plot_lines([(xs, ys)])

    def plot_lines(
        self, lines: Sequence[tuple[Sequence[float], Sequence[float]]], marks: Sequence[AxisMark] = ()
    ) -> None:
        """Up to three lines on one pair of axes (coloured in order, see ``LINE_CLASSES``), and
        marks on the x axis; the axes span every line's points."""
        if len(lines) > len(LINE_CLASSES):
            raise ValueError(f"a chart draws at most {len(LINE_CLASSES)} lines, not {len(lines)}")
        for xs, ys in lines:
            if len(xs) != len(ys):
                raise ValueError(f"a line needs as many x as y values ({len(xs)} x, {len(ys)} y)")
        self.lines = [(list(xs), list(ys)) for xs, ys in lines]
        self.marks = list(marks)
        self._strips = None
        self.refresh()

    @property
    def xs(self) -> list[float]:
        return [x for xs, _ in self.lines for x in xs]

    @property
    def ys(self) -> list[float]:
        return [y for _, ys in self.lines for y in ys]

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
        title_style, axis_style = (
            self.get_component_rich_style(name)  # full styles: translucent colours blended
            for name in ("line-chart--title", "line-chart--axis")
        )
        line_styles = [self.get_component_rich_style(name) for name in LINE_CLASSES]
        strips = [Strip([Segment(self.title.center(width)[:width], title_style)])]
        ys = self.ys
        y_low, y_high = self.y_range or (padded_range(ys) if ys else (0.0, 1.0))
        top, middle, bottom = (axis_number(v) for v in (y_high, (y_low + y_high) / 2, y_low))
        label_width = max(len(top), len(middle), len(bottom))
        plot_width, plot_height = width - label_width - 1, height - 3
        if plot_width < MIN_PLOT_WIDTH or plot_height < MIN_PLOT_HEIGHT:
            return strips
        ticks = {0: top, plot_height // 2: middle, plot_height - 1: bottom}
        cells, owners = self._draw(plot_width, plot_height, y_low, y_high)
        for row in range(plot_height):
            label = ticks.get(row)
            axis = f"{label:>{label_width}}┤" if label is not None else f"{'':>{label_width}}│"
            span = slice(row * plot_width, (row + 1) * plot_width)
            dots = [
                (chr(BRAILLE_BLANK + bits) if bits else " ", owner)
                for bits, owner in zip(cells[span], owners[span], strict=True)
            ]
            strips.append(Strip([Segment(axis, axis_style), *_runs(dots, line_styles)]))
        x_low, x_high = self._x_span()
        axis_cells = [(f"{'':>{label_width}}└", -1)] + [("─", -1)] * plot_width
        mark_styles = [self.get_component_rich_style(mark.component) for mark in self.marks]
        for index, mark in enumerate(self.marks):
            axis_cells[1 + _column(mark.x, x_low, x_high, plot_width) // 2] = (mark.symbol[:1], index)
        strips.append(Strip(_runs(axis_cells, mark_styles, axis_style)))
        left, right = axis_number(x_low), axis_number(x_high)
        name = self.x_label.center(max(0, plot_width - len(left) - len(right)))
        strips.append(Strip([Segment(f"{'':>{label_width + 1}}{left}{name}{right}"[:width], axis_style)]))
        return strips

    def _x_span(self) -> tuple[float, float]:
        """Every line's points and every mark: a mark is always on the axis it marks."""
        xs = self.xs + [mark.x for mark in self.marks]
        return (min(xs), max(xs)) if xs else (0.0, 1.0)

    def _draw(self, plot_width: int, plot_height: int, y_low: float, y_high: float) -> tuple[list[int], list[int]]:
        """Braille bits per cell, row-major, with consecutive points joined by straight lines, and
        per cell the index of the last line drawn through it (its colour; -1 where none is)."""
        cells = [0] * (plot_width * plot_height)
        owners = [-1] * (plot_width * plot_height)
        rows = plot_height * 4
        x_low, x_high = self._x_span()
        y_scale = (rows - 1) / (y_high - y_low)

        def dot(x: float, y: float) -> tuple[int, int]:
            row = round((y_high - y) * y_scale)
            return _column(x, x_low, x_high, plot_width), min(rows - 1, max(0, row))  # clip to the y range

        for index, (xs, ys) in enumerate(self.lines):
            previous = None
            for x, y in zip(xs, ys, strict=True):
                current = dot(x, y)
                for column, row in _segment(previous or current, current):
                    cell = (row // 4) * plot_width + column // 2
                    cells[cell] |= DOT_BITS[column % 2][row % 4]
                    owners[cell] = index
                previous = current
        return cells, owners


def _column(x: float, x_low: float, x_high: float, plot_width: int) -> int:
    """The braille dot column (two per cell) of ``x`` on a plot ``plot_width`` cells wide."""
    columns = plot_width * 2
    return round((x - x_low) * (columns - 1) / (x_high - x_low)) if x_high > x_low else 0


def _runs(cells: Sequence[tuple[str, int]], styles: Sequence[Style], default: Style | None = None) -> list[Segment]:
    """Cells as few segments as their styles allow: ``styles[owner]``, or ``default`` (the first
    style when None) where the owner is -1. A blank cell joins the run it sits in."""
    unowned = styles[0] if default is None else default
    segments: list[Segment] = []
    text, current = "", unowned
    for char, owner in cells:
        style = unowned if owner < 0 else styles[owner]
        if text and style != current and char != " ":  # a blank's colour is never seen: no new run
            segments.append(Segment(text, current))
            text = ""
        if not text:
            current = style
        text += char
    if text:
        segments.append(Segment(text, current))
    return segments


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
