"""This persona's datasources and datasinks: what it brings to the clean room, and transfers.

Upload encrypts with the asset's DEK before anything leaves the machine; download decrypts
into a local folder. Both run in a worker with a progress bar, so the console stays live.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import DataTable, ProgressBar, Static

from core.engine import DataAsset, PersonaEngine
from tui.actions import bindings_for
from tui.screens.confirm import FolderPromptScreen
from tui.widgets.worker_errors import ToastsWorkerErrors

KIND_CELLS = {"datasource": ("⇩ datasource", "read-only mount"), "datasink": ("⇧ datasink", "write-only mount")}


def size_text(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


class DataView(ToastsWorkerErrors, Vertical):
    VIEW_ID = "data"
    BINDINGS = bindings_for("data")

    def __init__(self, engine: PersonaEngine, *, read_only: bool) -> None:
        super().__init__(id="data-view")
        self.engine = engine
        self.read_only = read_only
        self.assets: list[DataAsset] = []

    def compose(self) -> ComposeResult:
        yield Static(Content.styled("Encrypted with your DEKs, wrapped by your KEK; only you and an "
                                    "attested clean room can open them.", "$text-muted"))
        yield DataTable(id="data-table", cursor_type="row")
        with Horizontal(id="transfer-row", classes="hidden"):
            yield Static("", id="transfer-label")
            yield ProgressBar(total=None, show_eta=True, id="transfer-progress")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("kind", "name", "mount", "uploaded", "store")

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
            uploaded = (f"✔ {asset.files} files, {size_text(asset.plaintext_bytes)}" if asset.uploaded
                        else "· nothing yet")
            table.add_row(kind, asset.name, f"{asset.mount_path or '–'} ({mount_mode})", uploaded, asset.store)
        self.refresh_bindings()

    @property
    def selected(self) -> DataAsset | None:
        table = self.query_one(DataTable)
        if not self.assets or table.row_count == 0:
            return None
        return self.assets[min(table.cursor_row, len(self.assets) - 1)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        asset = self.selected
        if action == "upload":
            if self.read_only:
                return False
            return True if asset is not None and asset.kind == "datasource" else None
        if action == "download":
            return True if asset is not None and asset.uploaded else None
        return True

    def action_upload(self) -> None:
        asset = self.selected
        if asset is None or asset.kind != "datasource":
            return

        def chosen(folder: str | None) -> None:
            if folder:
                self.transfer("upload", asset, Path(folder).expanduser())

        self.app.push_screen(FolderPromptScreen(
            f"Encrypt and upload a folder as datasource '{asset.name}' ({self.engine.persona})",
            "/path/to/folder"), chosen)

    def action_download(self) -> None:
        asset = self.selected
        if asset is None:
            return

        def chosen(folder: str | None) -> None:
            if folder:
                self.transfer("download", asset, Path(folder).expanduser())

        self.app.push_screen(FolderPromptScreen(
            f"Download and decrypt {asset.kind} '{asset.name}' into", "/path/to/target-folder"), chosen)

    @work(thread=True, exclusive=True, group="data-transfer", exit_on_error=False)
    def transfer(self, direction: str, asset: DataAsset, folder: Path) -> None:
        self.app.call_from_thread(self._transfer_started, direction, asset)

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self.query_one("#transfer-progress", ProgressBar).update,
                                      total=max(total, 1), progress=done)

        try:
            if direction == "upload":
                files = self.engine.upload_datasource(asset.name, folder, progress)
            else:
                files = self.engine.download_asset(asset.kind, asset.name, folder, progress)
        finally:
            self.app.call_from_thread(self.query_one("#transfer-row").add_class, "hidden")
        verb = "uploaded (encrypted)" if direction == "upload" else f"downloaded (decrypted) to {folder}"
        self.app.call_from_thread(self.notify, f"{asset.kind} '{asset.name}': {files} files {verb}",
                                  title="Transfer done")
        self.app.call_from_thread(self.load)

    def _transfer_started(self, direction: str, asset: DataAsset) -> None:
        self.query_one("#transfer-label", Static).update(f"{direction} {asset.name} ")
        self.query_one("#transfer-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#transfer-row").remove_class("hidden")
