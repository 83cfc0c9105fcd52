"""This persona's datasources and datasinks: what it brings to the clean room and where."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from core.engine import DataAsset, PersonaEngine
from tui.widgets.worker_errors import ToastsWorkerErrors

KIND_CELLS = {"datasource": ("⇩ datasource", "read-only mount"), "datasink": ("⇧ datasink", "write-only mount")}


class DataView(ToastsWorkerErrors, Vertical):
    VIEW_ID = "data"

    def __init__(self, engine: PersonaEngine) -> None:
        super().__init__(id="data-view")
        self.engine = engine
        self.assets: list[DataAsset] = []

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("Encrypted with your DEKs, wrapped by your KEK; only you and an "
                                    "attested clean room can open them.", "$text-muted"))
        yield DataTable(id="data-table", cursor_type="row")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("kind", "name", "mount", "store")

    @work(thread=True, exclusive=True, group="data-load", exit_on_error=False)
    def load(self) -> None:
        assets = self.engine.data_assets()
        self.app.call_from_thread(self.show, assets)

    def show(self, assets: list[DataAsset]) -> None:
        self.assets = assets
        table = self.query_one(DataTable)
        table.clear()
        for asset in assets:
            kind, mount_mode = KIND_CELLS.get(asset.kind, (asset.kind, ""))
            table.add_row(kind, asset.name, f"{asset.mount_path or '–'} ({mount_mode})", asset.store)
        if not assets:
            table.add_row("–", "no datasources or datasinks yet", "", "")
