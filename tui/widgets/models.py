"""The Models view: every model version in the registry, its status, and why.

A provider onboarding a model wants one answer first: did the clean room verify it, and if not,
what to fix. So each version is one row with its status icon and the reason or first finding,
and the selected version's full history (each status, who wrote it: the attested clean room, and
its details, every scan finding) is spelled out below. It reads governance's model registry, the
same document `cleanroom model list -o json` prints, reloaded on every ``model_status`` and
``model_regression`` event and every few seconds while shown. Beside the history, the selected
version's two results: its regression table (``regression_table``: both versions' scores, flips,
McNemar p and the voted gate's verdict, which decides whether it may be published) and its load
test (``loadtest_chart``: latency against load with the knee, achieved against target rate).
Publishing a verified version opens a proposal (every member then votes in the Proposals view),
after the confirm modal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import DataTable, Static

from core.engine import PersonaEngine
from core.governance.model_registry import ModelStatus
from tui.actions import bindings_for
from tui.model_statuses import FINAL_BAD, details_line, status_label
from tui.screens.confirm import ConfirmScreen
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.idle_keys import ExplainsIdleKeys
from tui.widgets.loadtest_chart import LoadTestPanel
from tui.widgets.regression_table import regression_lines
from tui.widgets.worker_errors import ToastsWorkerErrors

# governance's audit events that change the registry: a status or a regression result the clean room wrote
MODEL_EVENTS = frozenset({"model_status", "model_regression"})
RELOAD_SECONDS = 3.0
NO_MODELS = (
    "No model onboarded yet: a provider registers a version with `cleanroom model onboard --package DIR "
    "--name N --version V`, then an onboarding clean room verifies it."
)


@dataclass(frozen=True)
class VersionRow:
    model: str
    version: str
    data: dict[str, Any]


def version_rows(models: list[dict[str, Any]]) -> list[VersionRow]:
    return [VersionRow(m["name"], v, data) for m in models for v, data in m["versions"].items()]


def history_lines(row: VersionRow) -> Content:
    """The selected version: each status with its writer and details; scan findings one per line."""
    lines = [Content.styled(f"{row.model} {row.version}  package {row.data['packageHash'][:16]}…", "bold")]
    for entry in row.data["history"]:
        status = entry["status"]
        style = "$error" if status in FINAL_BAD else "$success" if status == ModelStatus.VERIFIED else ""
        writer = "clean room" if str(entry["writer"]).startswith("attested:") else "member"
        lines.append(
            Content.assemble(
                Content.styled(f"{status_label(status):<22}", style),
                Content.styled(f"{writer:<11}", "$text-muted"),
                details_line(entry["details"]),
            )
        )
        for finding in entry["details"].get("findings", []) if isinstance(entry["details"], dict) else []:
            lines.append(Content.styled(f"    {finding}", "$error"))
    return Content("\n").join(lines)


class ModelsView(ExplainsIdleKeys, ToastsWorkerErrors, Vertical):
    VIEW_ID = "models"
    BINDINGS = bindings_for("models")
    DEFAULT_CSS = """
    #models-table { height: auto; max-height: 10; }
    #models-results { height: 1fr; }
    #models-left { width: 1fr; padding: 0 1; }
    #models-regression { margin-top: 1; }
    #models-loadtest { width: 1fr; padding: 0 1; border-left: vkey $primary 50%; }
    """

    def __init__(self, engine: PersonaEngine, *, read_only: bool) -> None:
        super().__init__(id="models-view")
        self.engine = engine
        self.read_only = read_only
        self.rows: list[VersionRow] = []
        self.member_names: dict[str, str] = {}  # member id -> persona name: who recorded a load test

    def compose(self) -> ComposeResult:
        yield Static(
            Content.styled(
                "Statuses are written by the attested clean room only: ○ created ↓ downloaded ⋯ scanning "
                "⚙ environment ▶ deployed ✔ verified ✘ failed ↻ retried",
                "$text-muted",
            )
        )
        yield DataTable(id="models-table", cursor_type="row")
        yield EmptyHint(NO_MODELS, id="models-empty")
        with Horizontal(id="models-results"):
            with VerticalScroll(id="models-left"):
                yield Static("", id="models-detail")
                yield Static("", id="models-regression")
            yield LoadTestPanel(id="models-loadtest")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("model", "version", "status", "published", "why")
        self.set_interval(RELOAD_SECONDS, self._reload_if_shown)

    def _reload_if_shown(self) -> None:
        if getattr(self.screen, "active_view", None) == self.VIEW_ID:
            self.load()

    @work(thread=True, exclusive=True, group="models-load", exit_on_error=False)
    def load(self) -> None:
        models = self.engine.models()
        names = {member.member_id: member.name for member in self.engine.members()}
        self.app.call_from_thread(self.show, models, names)

    def show(self, models: list[dict[str, Any]], member_names: dict[str, str] | None = None) -> None:
        if member_names is not None:
            self.member_names = member_names
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        self.rows = version_rows(models)
        table.clear()
        for row in self.rows:
            table.add_row(
                row.model,
                row.version,
                status_label(row.data["status"]),
                "✔ published" if row.data["published"] else "·",
                details_line(row.data["details"]),
            )
        if self.rows:
            table.move_cursor(row=min(cursor, len(self.rows) - 1))
        self.query_one("#models-empty", EmptyHint).follow(len(self.rows))
        self._show_detail()
        self.refresh_bindings()

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        row = self.selected
        self.query_one("#models-results").display = row is not None
        if row is None:
            return
        self.query_one("#models-detail", Static).update(history_lines(row))
        self.query_one("#models-regression", Static).update(regression_lines(row.data.get("regression")))
        self.query_one(LoadTestPanel).show(row.data.get("loadtest"), self.member_names)

    @property
    def selected(self) -> VersionRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.row_count == 0:
            return None
        return self.rows[min(table.cursor_row, len(self.rows) - 1)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action == "publish")

    def idle_reason(self, action: str) -> str | None:
        if action != "publish":
            return None
        row = self.selected
        if row is None:
            return "no model version to publish: onboard one with `cleanroom model onboard`"
        if row.data["published"]:
            return f"{row.model} {row.version} is published already"
        if row.data["status"] != ModelStatus.VERIFIED:
            return f"{row.model} {row.version} is {row.data['status']}: only a verified version can be published"
        regression = row.data.get("regression")
        if regression is not None and (not isinstance(regression, dict) or regression.get("passed") is not True):
            # governance's own publish check, said before a proposal every member would vote on in vain
            return f"{row.model} {row.version} failed its regression gate: a failed gate blocks publishing"
        return None

    def action_publish(self) -> None:
        row = self.selected
        if self.explain_idle("publish") or row is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.publish(row.model, row.version)

        self.app.push_screen(
            ConfirmScreen(
                f"Propose publishing {row.model} version {row.version} as {self.engine.persona}? "
                "Every member must then accept it in the Proposals view.",
                confirm_label="Propose",
            ),
            confirmed,
        )

    @work(thread=True, group="models-write", exit_on_error=False)
    def publish(self, model: str, version: str) -> None:
        proposal = self.engine.propose_publish_model(model, version)
        self.app.call_from_thread(
            self.app.notify,
            f"proposed publishing {model} {version} ({str(proposal['proposalId'])[:12]}…): every member votes",
            title="Publish proposed",
        )
