"""The Usage view: who calls each contract's endpoint, how much, and what the ingress turned away.

Endpoint owners watch two things: which callers (client applications and members) are using a
contract now, and whether anyone is being refused (401 no token, 403 revoked or wrong route, 429
over the voted rate limit...). So the view shows, over the last N minutes, one row per contract
and caller with its requests, rows and refusals by status, and a per-minute chart of the selected
row's requests and refusals (every caller's when nothing is selected). The numbers are the
ingress's own per-minute usage events, read from governance through the engine
(``core.engine.usage``) and kept up to date by the live event feed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from core.engine import CleanroomEvent, PersonaEngine
from core.engine.usage import DEFAULT_WINDOW_MINUTES, MINUTE, CallerUsage, UsageLog, UsageWindow
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.line_chart import LineChart
from tui.widgets.worker_errors import ToastsWorkerErrors

COLUMNS = ("Contract", "Caller", "Kind", "Requests", "Rows", "Refused", "By status", "Last min")
ALL_CALLERS = "all callers"
NO_USAGE = (
    "No endpoint usage in this window: the TLS ingress of a served contract reports each caller's "
    "requests once a minute (`cleanroom deployment start`, then call its endpoint, e.g. "
    "`cleanroom governance app token` and POST /score)."
)


def caller_label(caller: str, names: dict[str, str]) -> str:
    """An app by its name, a member by its persona name (else its short id), the rest as reported."""
    if caller.startswith("app:"):
        return caller.removeprefix("app:")
    if caller in names:
        return names[caller]
    return f"{caller[:8]}…" if len(caller) > 24 else caller


def refusals_text(refusals: dict[str, int]) -> str:
    return ", ".join(f"{status}×{count}" for status, count in sorted(refusals.items()))


def headline(window: UsageWindow) -> Content:
    """One line: the window, how many callers on how many contracts, and the totals."""
    until = time.strftime("%H:%M", time.gmtime(window.last_minute + MINUTE))
    callers = window.callers
    requests = sum(c.requests for c in callers)
    rows = sum(c.rows for c in callers)
    refusals: dict[str, int] = {}
    for caller in callers:
        for status, count in caller.refusals.items():
            refusals[status] = refusals.get(status, 0) + count
    refused = sum(refusals.values())
    contracts = len({c.contract_id for c in callers})
    return Content.assemble(
        Content.styled(f"Last {window.minutes} min to {until} UTC", "bold"),
        Content.styled(
            f" · {len(callers)} caller{'s' * (len(callers) != 1)} on {contracts} "
            f"contract{'s' * (contracts != 1)} · {requests} requests · {rows} rows · ",
            "$text-muted",
        ),
        Content.styled(
            f"{refused} refused" + (f" ({refusals_text(refusals)})" if refused else ""),
            "$warning" if refused else "$text-muted",
        ),
    )


class UsageView(ToastsWorkerErrors, Vertical):
    """A headline, one row per contract and caller, and the selected row's requests per minute."""

    VIEW_ID = "usage"
    FOCUS_FIRST = "#usage-table"
    DEFAULT_CSS = """
    UsageView #usage-headline { height: 1; padding: 0 1; }
    UsageView #usage-table { height: auto; max-height: 12; }
    UsageView #usage-charts { height: 1fr; min-height: 8; }
    UsageView #usage-chart { width: 3fr; }
    UsageView #usage-refused-chart { width: 2fr; }
    """

    def __init__(
        self, engine: PersonaEngine, *, now: Callable[[], float] = time.time, minutes: int = DEFAULT_WINDOW_MINUTES
    ) -> None:
        super().__init__(id="usage-view")
        self.engine = engine
        self.now = now
        self.minutes = minutes
        self.usage_log = UsageLog()
        self.names: dict[str, str] = {}
        self.window = UsageWindow(int(now()) // MINUTE * MINUTE, minutes, [])
        self._by_key: dict[str, CallerUsage] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="usage-headline")
        table: DataTable[str | Text] = DataTable(id="usage-table", cursor_type="row")
        table.add_columns(*COLUMNS)
        yield table
        yield EmptyHint(NO_USAGE, id="usage-empty")
        with Horizontal(id="usage-charts"):
            yield LineChart(f"Requests per minute: {ALL_CALLERS}", "minutes ago", id="usage-chart")
            yield LineChart("Refused per minute", "minutes ago", id="usage-refused-chart")

    def on_mount(self) -> None:
        self.set_interval(MINUTE / 4, self._slide)

    def _slide(self) -> None:
        """The window moves with the clock even when nobody calls: redraw when a new minute starts."""
        if int(self.now()) // MINUTE * MINUTE != self.window.last_minute:
            self.show()

    @work(thread=True, exclusive=True, group="usage-load", exit_on_error=False)
    def load(self) -> None:
        names = {m.member_id: m.name for m in self.engine.members()}
        self.engine.read_usage(self.usage_log)
        self.app.call_from_thread(self._loaded, names)

    def _loaded(self, names: dict[str, str]) -> None:
        self.names = names
        self.show()

    def add_event(self, event: CleanroomEvent) -> None:
        """A usage event from the live feed (counted once, however often it arrives)."""
        if self.usage_log.add(event.contract_id, event.seqno, event.data):
            self.show()

    def show(self) -> None:
        window = self.usage_log.window(self.now(), self.minutes)
        self.window = window
        self.query_one("#usage-headline", Static).update(headline(window))
        table = self.query_one("#usage-table", DataTable)
        selected = self._selected_key(table)
        table.clear()
        self._by_key = {}
        for usage in window.callers:
            key = f"{usage.contract_id}/{usage.caller}"
            self._by_key[key] = usage
            table.add_row(
                Text(usage.contract_id),
                Text(caller_label(usage.caller, self.names)),
                usage.kind,
                str(usage.requests),
                str(usage.rows),
                Text(str(usage.refused), style="bold" if usage.refused else ""),
                Text(refusals_text(usage.refusals)),
                str(usage.requests_per_minute[-1]),
                key=key,
            )
        if selected in self._by_key:
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        self.query_one(EmptyHint).follow(len(window.callers))
        self._plot(self._by_key.get(self._selected_key(table) or ""))

    @staticmethod
    def _selected_key(table: DataTable[str | Text]) -> str | None:
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._plot(self._by_key.get(str(event.row_key.value)))

    def _plot(self, usage: CallerUsage | None) -> None:
        """The selected row's requests and refusals per minute, or every caller's when there is no row."""
        if usage is None:
            requests, refused = self.window.totals()
            who = ALL_CALLERS
        else:
            requests, refused = usage.requests_per_minute, usage.refused_per_minute
            who = f"{caller_label(usage.caller, self.names)} on {usage.contract_id}"
        minutes_ago = [float(i - (self.minutes - 1)) for i in range(self.minutes)]
        for chart_id, title, counts in (
            ("#usage-chart", f"Requests per minute: {who}", requests),
            ("#usage-refused-chart", f"Refused per minute ({sum(refused)} in the window)", refused),
        ):
            chart = self.query_one(chart_id, LineChart)
            chart.title = title
            chart.y_range = (0.0, float(max(1, *counts)))  # counts: whole numbers from 0, never a negative axis
            chart.plot(minutes_ago, [float(count) for count in counts])
