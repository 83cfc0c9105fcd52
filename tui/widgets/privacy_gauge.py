"""Privacy budgets: one gauge per dataset, spent / reserved / left of its lifetime epsilon.

A budget is what stands between a data owner and the next run that would overspend it, so the
gauge answers at a glance "how many more runs fit?": the spent part (runs that recorded their
accounting), the reserved part (runs in progress, or crashed ones that keep their charge
forever) and what is left. It reads governance's privacy ledger (``privacy_datasets``), the
same figures `cleanroom governance privacy show` prints, reloaded on every privacy audit event
(a reservation, a record, a refusal) and every few seconds while shown, so a refused run is seen
as it happens.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from core.engine import PersonaEngine
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.worker_errors import ToastsWorkerErrors

BAR_WIDTH = 40
# governance's audit events that change a budget: the gauges reload on each, shown or not
LEDGER_EVENTS = frozenset({"privacy_reserved", "privacy_recorded", "privacy_refused"})
SPENT, RESERVED, LEFT = "█", "▒", "░"


def budget_cells(spent: float, reserved: float, total: float, width: int = BAR_WIDTH) -> tuple[int, int, int]:
    """How many of ``width`` cells are spent, reserved and left. A part that is not zero gets at
    least one cell (a small reservation must not vanish); what is left never goes below zero."""
    if total <= 0 or width <= 0:
        return 0, 0, max(width, 0)
    spent = min(max(spent, 0.0), total)
    reserved = min(max(reserved, 0.0), total - spent)
    cells = [round(width * spent / total), round(width * reserved / total)]
    for index, value in enumerate((spent, reserved)):
        if value > 0 and cells[index] == 0:
            cells[index] = 1
    while sum(cells) > width:
        cells[cells.index(max(cells))] -= 1
    return cells[0], cells[1], width - cells[0] - cells[1]


def gauge_line(
    item: dict[str, Any], owner: str, width: int = BAR_WIDTH, columns: tuple[int, int] = (12, 10)
) -> Content:
    """One dataset: name and owner (padded to ``columns`` so the bars line up), the bar, and the
    figures (epsilon)."""
    total, spent, reserved = float(item["epsilonTotal"]), float(item["spent"]), float(item["reserved"])
    left = float(item["left"])
    used, held, free = budget_cells(spent, reserved, total, width)
    style = "bold $error" if left <= 0 else ("bold $warning" if left < total / 4 else "bold $success")
    return Content.assemble(
        Content.styled(f"{item['name']:<{columns[0]}}", "bold"),
        Content.styled(f" {owner:<{columns[1]}} ", "$text-muted"),
        Content.styled(SPENT * used, "$error"),
        Content.styled(RESERVED * held, "$warning"),
        Content.styled(LEFT * free, "$success"),
        "  ",
        Content.styled(f"left {left:.2f}", style),
        Content.styled(
            f" of {total:.2f} · spent {spent:.2f} · reserved {reserved:.2f} · δ {float(item['delta']):g}",
            "$text-muted",
        ),
    )


class PrivacyGauges(ToastsWorkerErrors, Vertical):
    """The privacy view: a legend and one gauge line per budgeted dataset."""

    VIEW_ID = "privacy"
    FOCUS_FIRST = "#privacy-gauges"

    def __init__(self, engine: PersonaEngine) -> None:
        super().__init__(id="privacy-view")
        self.engine = engine
        self.datasets: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(
            Content.assemble(
                Content.styled("Lifetime epsilon per dataset, across every run and contract:  ", "$text-muted"),
                Content.styled(f"{SPENT} spent ", "$error"),
                Content.styled(f"{RESERVED} reserved ", "$warning"),
                Content.styled(f"{LEFT} left", "$success"),
            ),
            id="privacy-legend",
        )
        gauges = Static("", id="privacy-gauges")
        gauges.can_focus = True
        yield gauges
        yield EmptyHint(
            "No budgeted dataset yet: a provider declares one with `cleanroom config add-datasource --name N "
            "--epsilon-total E --delta D --privacy-unit COLUMN`, and it counts once a contract using it is accepted.",
            id="privacy-empty",
        )

    @work(thread=True, exclusive=True, group="privacy-load", exit_on_error=False)
    def load(self) -> None:
        names = {m.member_id: m.name for m in self.engine.members()}
        datasets = self.engine.privacy_datasets()
        self.app.call_from_thread(self.show, datasets, names)

    def show(self, datasets: list[dict[str, Any]], names: dict[str, str] | None = None) -> None:
        self.datasets = datasets
        names = names or {}
        owners = [names.get(str(item["owner"]), str(item["owner"])[:8]) for item in datasets]
        columns = (max((len(str(i["name"])) for i in datasets), default=0), max(map(len, owners), default=0))
        lines = [gauge_line(item, owner, columns=columns) for item, owner in zip(datasets, owners, strict=True)]
        self.query_one("#privacy-gauges", Static).update(Content("\n").join(lines))
        self.query_one(EmptyHint).follow(len(datasets))
