"""The Summaries view: what a summariser sealed to this party, one row per document.

The party that receives summaries (party I) cares about two things at a glance: what each
document was reduced to, and that the reduction stayed within what the documents owner agreed
to. So each row shows the sentences and the ratio of summary to document next to the voted cap,
and the method that made it (the extractive default is named as such, never "abstractive").
It reads the sinks the way `cleanroom summarise show` does (``core.summaries``): decrypted into
a private temporary folder and re-checked against the contract's caps, with nothing left on disk.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from core.engine import PersonaEngine
from core.summaries import SummarySet
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.worker_errors import ToastsWorkerErrors

COLUMNS = ("Document", "Sentences", "Ratio / cap", "Within caps", "Method", "Contract")


def caps_line(sets: list[SummarySet]) -> Content:
    """One line per summary set: where it came from, its caps, and what was refused (by id only)."""
    lines = []
    for received in sets:
        policy = received.sink.policy
        refused = ", ".join(r["id"] for r in received.refused)
        lines.append(
            Content.assemble(
                Content.styled(f"{received.contract_id} → {received.sink.datasink}", "bold"),
                Content.styled(
                    f"  caps: {policy['max_sentences']} sentences, ratio {policy['max_ratio']}, "
                    f"{policy['max_document_bytes']} bytes per document",
                    "$text-muted",
                ),
                Content.styled(f"  refused: {refused}", "$warning") if refused else "",
            )
        )
    return Content("\n").join(lines)


class SummariesView(ToastsWorkerErrors, Vertical):
    """The summaries view: the caps of each set, then one row per summary."""

    VIEW_ID = "summaries"
    FOCUS_FIRST = "#summaries-table"

    def __init__(self, engine: PersonaEngine) -> None:
        super().__init__(id="summaries-view")
        self.engine = engine
        self.sets: list[SummarySet] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="summaries-caps")
        table: DataTable[str] = DataTable(id="summaries-table", cursor_type="row")
        table.add_columns(*COLUMNS)
        yield table
        yield EmptyHint(
            "No summaries sealed to you yet: they arrive in your datasink when the hoster runs a summariser "
            "contract (`cleanroom deployment start`); read them with `cleanroom summarise show --contract ID`.",
            id="summaries-empty",
        )

    @work(thread=True, exclusive=True, group="summaries-load", exit_on_error=False)
    def load(self) -> None:
        from core.summaries import received_summaries

        sets = received_summaries(self.engine)
        self.app.call_from_thread(self.show, sets)

    def show(self, sets: list[SummarySet]) -> None:
        self.sets = sets
        self.query_one("#summaries-caps", Static).update(caps_line(sets))
        table = self.query_one("#summaries-table", DataTable)
        table.clear()
        rows = 0
        for received in sets:
            policy = received.sink.policy
            for item in received.summaries:
                table.add_row(
                    *item.against_caps(policy),
                    item.method,
                    received.contract_id,
                    key=f"{received.contract_id}/{received.sink.datasink}/{item.id}",
                )
                rows += 1
        self.query_one(EmptyHint).follow(rows)
