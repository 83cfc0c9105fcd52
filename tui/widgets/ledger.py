"""The ledger: every governance write in order, and an on-demand verification of the chain."""

from __future__ import annotations

import datetime as dt

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from core.engine import LedgerEntry, LedgerVerification, PersonaEngine
from tui.actions import bindings_for
from tui.widgets.worker_errors import ToastsWorkerErrors, error_text


def clock_text(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


class LedgerView(ToastsWorkerErrors, Vertical):
    VIEW_ID = "ledger"
    BINDINGS = bindings_for("ledger")

    def __init__(self, engine: PersonaEngine) -> None:
        super().__init__(id="ledger-view")
        self.engine = engine
        self.entries: list[LedgerEntry] = []
        self.verification: LedgerVerification | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            Content.styled("Press v to verify the chain and its signed checkpoints.", "$text-muted"), id="ledger-result"
        )
        yield DataTable(id="ledger-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("seqno", "time (UTC)", "signer", "action")

    @work(thread=True, exclusive=True, group="ledger-load", exit_on_error=False)
    def load(self) -> None:
        names = {m.member_id: m.name for m in self.engine.members()}
        entries = self.engine.ledger()
        self.app.call_from_thread(self.show, entries, names)

    def show(self, entries: list[LedgerEntry], names: dict[str, str] | None = None) -> None:
        self.entries = entries
        names = names or {}
        table = self.query_one(DataTable)
        table.clear()
        for entry in entries:
            signer = entry.signer_id[:8]
            if entry.signer_id in names:
                signer = f"{names[entry.signer_id]} {signer}"
            time_text = clock_text(entry.time) if entry.time else "–"
            table.add_row(str(entry.seqno), time_text, signer, entry.action)

    def action_verify(self) -> None:
        self.query_one("#ledger-result", Static).update(Content.styled("… verifying", "$text-muted"))
        self.verify()

    @work(thread=True, exclusive=True, group="ledger-verify", exit_on_error=False)
    def verify(self) -> None:
        try:
            result = self.engine.verify_ledger()
        except Exception as exc:
            # the toast (ToastsWorkerErrors) says what failed; "… verifying" must not stay behind
            self.app.call_from_thread(self.show_verify_error, exc)
            raise
        self.app.call_from_thread(self.show_verification, result)

    def show_verify_error(self, error: BaseException) -> None:
        self.verification = None
        self.query_one("#ledger-result", Static).update(
            Content.styled(f"✖ could not verify the ledger: {error_text(error)} (v tries again)", "bold $error")
        )

    def show_verification(self, result: LedgerVerification) -> None:
        self.verification = result
        text = (
            Content.styled(f"✔ ledger verified: {result.entries} entries; {result.detail}", "bold $success")
            if result.ok
            else Content.styled(f"✖ ledger verification FAILED: {result.detail}", "bold $error")
        )
        self.query_one("#ledger-result", Static).update(text)
