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

from core.engine import DataAssetStatus, PersonaEngine
from tui.actions import bindings_for
from tui.screens.confirm import FolderPromptScreen
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.idle_keys import ExplainsIdleKeys
from tui.widgets.worker_errors import ToastsWorkerErrors

KIND_CELLS = {"datasource": ("⇩ datasource", "read-only mount"), "datasink": ("⇧ datasink", "write-only mount")}


def size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value} B"


NO_ASSETS = (
    "This persona brings no datasources or datasinks yet: declare them with "
    "`cleanroom config add-datasource` / `add-datasink` in its workspace."
)


class DataView(ExplainsIdleKeys, ToastsWorkerErrors, Vertical):
    VIEW_ID = "data"
    BINDINGS = bindings_for("data")

    def __init__(self, engine: PersonaEngine, *, read_only: bool) -> None:
        super().__init__(id="data-view")
        self.engine = engine
        self.read_only = read_only
        self.assets: list[DataAssetStatus] = []

    def compose(self) -> ComposeResult:
        yield Static(
            Content.styled(
                "Encrypted with your DEKs, wrapped by your KEK; only you and an attested clean room can open them.",
                "$text-muted",
            )
        )
        yield DataTable(id="data-table", cursor_type="row")
        yield EmptyHint(NO_ASSETS, id="data-empty")
        with Horizontal(id="transfer-row", classes="hidden"):
            yield Static("", id="transfer-label")
            yield ProgressBar(total=None, show_eta=True, id="transfer-progress")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("kind", "name", "mount", "uploaded", "store")

    @work(thread=True, exclusive=True, group="data-load", exit_on_error=False)
    def load(self) -> None:
        assets = self.engine.data_assets()
        self.app.call_from_thread(self.show, assets)

    def show(self, assets: list[DataAssetStatus]) -> None:
        self.assets = assets
        table = self.query_one(DataTable)
        table.clear()
        for asset in assets:
            kind, mount_mode = KIND_CELLS.get(asset.kind, (asset.kind, ""))
            uploaded = (
                f"✔ {asset.files} files, {size_text(asset.plaintext_bytes)}" if asset.uploaded else "· nothing yet"
            )
            table.add_row(kind, asset.name, f"{asset.mount_path or '–'} ({mount_mode})", uploaded, asset.store)
        self.query_one("#data-empty", EmptyHint).follow(len(assets))
        self.refresh_bindings()

    @property
    def selected(self) -> DataAssetStatus | None:
        table = self.query_one(DataTable)
        if not self.assets or table.row_count == 0:
            return None
        return self.assets[min(table.cursor_row, len(self.assets) - 1)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action == "upload")

    def idle_reason(self, action: str) -> str | None:
        if action not in ("upload", "download"):
            return None
        asset = self.selected
        if asset is None:
            return f"nothing to {action}: this persona has no datasources or datasinks"
        if action == "upload" and asset.kind != "datasource":
            return f"'{asset.name}' is a datasink: the clean room writes it; only datasources are uploaded"
        if action == "download" and not asset.uploaded:
            return f"nothing uploaded to {asset.kind} '{asset.name}' yet"
        return None

    def action_upload(self) -> None:
        asset = self.selected
        if self.explain_idle("upload") or asset is None:
            return

        def chosen(folder: str | None) -> None:
            if folder:
                self.transfer("upload", asset, Path(folder).expanduser())

        self.app.push_screen(
            FolderPromptScreen(
                f"Encrypt and upload a folder as datasource '{asset.name}' ({self.engine.persona})", "/path/to/folder"
            ),
            chosen,
        )

    def action_download(self) -> None:
        asset = self.selected
        if self.explain_idle("download") or asset is None:
            return

        def chosen(folder: str | None) -> None:
            if folder:
                self.transfer("download", asset, Path(folder).expanduser())

        self.app.push_screen(
            FolderPromptScreen(f"Download and decrypt {asset.kind} '{asset.name}' into", "/path/to/target-folder"),
            chosen,
        )

    @work(thread=True, exclusive=True, group="data-transfer", exit_on_error=False)
    def transfer(self, direction: str, asset: DataAssetStatus, folder: Path) -> None:
        self.app.call_from_thread(self._transfer_started, direction, asset)

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(
                self.query_one("#transfer-progress", ProgressBar).update, total=max(total, 1), progress=done
            )

        try:
            if direction == "upload":
                files = self.engine.upload_datasource(asset.name, folder, progress)
            else:
                files = self.engine.download_asset(asset.kind, asset.name, folder, progress)
        finally:
            self.app.call_from_thread(self.query_one("#transfer-row").add_class, "hidden")
        verb = "uploaded (encrypted)" if direction == "upload" else f"downloaded (decrypted) to {folder}"
        self.app.call_from_thread(
            self.notify, f"{asset.kind} '{asset.name}': {files} files {verb}", title="Transfer done"
        )
        self.app.call_from_thread(self.load)

    def _transfer_started(self, direction: str, asset: DataAssetStatus) -> None:
        self.query_one("#transfer-label", Static).update(f"{direction} {asset.name} ")
        self.query_one("#transfer-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#transfer-row").remove_class("hidden")
