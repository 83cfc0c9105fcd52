"""Deployments: each application's state, its log tail and runtime events, stop and kill switch."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from core.engine import ApplicationStatus, CleanroomEvent, PersonaEngine
from core.runtime.lifecycle import ApplicationState
from core.runtime.usage import USAGE_EVENT, describe_usage
from tui.actions import bindings_for
from tui.screens.confirm import ConfirmScreen, KillSwitchScreen
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.idle_keys import ExplainsIdleKeys
from tui.widgets.log_tail import LogTail
from tui.widgets.proposals import age_text
from tui.widgets.worker_errors import ToastsWorkerErrors

APP_STATES = {
    "deploying": ("◌", "$accent"),
    "attested": ("◌", "$accent"),
    "running": ("▶", "$success"),
    "exited": ("■", "$text-muted"),
    "stopped": ("■", "$text-muted"),
    "failed": ("✖", "$error"),
    "killed": ("✖", "$error"),
}


def short(value: object) -> str:
    """Hashes and ids are long; the first 12 characters identify them in a log line."""
    text = str(value)
    return f"{text[:12]}…" if len(text) > 24 and all(c in "0123456789abcdef" for c in text) else text


def app_state_cell(status: ApplicationStatus) -> Content:
    icon, style = APP_STATES.get(status.state, ("?", "$text-muted"))
    if status.state == ApplicationState.EXITED and status.exit_code not in (None, 0):
        icon, style = "✖", "$error"
    return Content.styled(f"{icon} {status.state}", style)


NO_DEPLOYMENTS = (
    "No deployments here yet: once a contract and its clean-room policy are accepted, "
    "`cleanroom deployment start` runs its clean room and its applications appear here."
)
ACTIVE_STATES = (ApplicationState.RUNNING, ApplicationState.DEPLOYING, ApplicationState.ATTESTED)


class DeploymentsView(ExplainsIdleKeys, ToastsWorkerErrors, Vertical):
    VIEW_ID = "deployments"
    BINDINGS = bindings_for("deployments")

    def __init__(self, engine: PersonaEngine, *, read_only: bool, now: Callable[[], float] = time.time) -> None:
        super().__init__(id="deployments-view")
        self.engine = engine
        self.read_only = read_only
        self.now = now
        self.statuses: list[ApplicationStatus] = []

    def compose(self) -> ComposeResult:
        yield DataTable(id="deployments-table", cursor_type="row")
        yield EmptyHint(NO_DEPLOYMENTS, id="deployments-empty")
        yield Static("Log and runtime events", classes="section-title")
        yield LogTail(id="deployment-log")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("contract", "application")
        table.add_column("state", width=12)  # a Content cell: DataTable does not measure it
        table.add_columns("uptime", "exit code")

    @work(thread=True, exclusive=True, group="deployments-load", exit_on_error=False)
    def load(self) -> None:
        statuses = self.engine.deployments()
        self.app.call_from_thread(self.show, statuses)

    def show(self, statuses: list[ApplicationStatus]) -> None:
        self.statuses = statuses
        table = self.query_one(DataTable)
        table.clear()
        for status in statuses:
            uptime = (
                age_text(self.now() - status.started_at)
                if status.started_at and status.state == ApplicationState.RUNNING
                else "–"
            )
            exit_code = "–" if status.exit_code is None else str(status.exit_code)
            table.add_row(
                status.contract_id,
                status.application,
                app_state_cell(status),
                uptime,
                exit_code,
                key=f"{status.contract_id}/{status.application}",
            )
        self.query_one("#deployments-empty", EmptyHint).follow(len(statuses))
        self.refresh_bindings()

    def add_event(self, event: CleanroomEvent) -> None:
        """Runtime events become log lines; a workload's own log lines are shown as they are."""
        tail = self.query_one(LogTail)
        if "line" in event.data:
            tail.append(str(event.data["line"]))
        elif event.kind == USAGE_EVENT:  # the ingress's per-caller minute (core.runtime.usage)
            tail.append(f"[{event.contract_id} #{event.seqno}] {describe_usage(event.data)}")
        else:
            details = " ".join(f"{k}={short(v)}" for k, v in sorted(event.data.items()))
            tail.append(f"[{event.contract_id} #{event.seqno}] {event.kind} {details}".rstrip())

    @property
    def selected(self) -> ApplicationStatus | None:
        table = self.query_one(DataTable)
        if table.row_count == 0 or not self.statuses:
            return None
        return self.statuses[min(table.cursor_row, len(self.statuses) - 1)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action in ("stop", "kill_switch"))

    def idle_reason(self, action: str) -> str | None:
        if action not in ("stop", "kill_switch"):
            return None
        status = self.selected
        if status is None:
            verb = "stop" if action == "stop" else "kill"
            return f"no deployment to {verb}: no clean room has been started here (`cleanroom deployment start`)"
        if action == "stop" and status.state not in ACTIVE_STATES:
            return f"the clean room of {status.contract_id} is {status.state} already: nothing to stop"
        return None

    def action_follow(self) -> None:
        self.query_one(LogTail).follow()

    def action_stop(self) -> None:
        status = self.selected
        if self.explain_idle("stop") or status is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.stop(status.contract_id)

        self.app.push_screen(
            ConfirmScreen(
                f"Stop the clean room of contract {status.contract_id} as {self.engine.persona}?", confirm_label="Stop"
            ),
            confirmed,
        )

    @work(thread=True, group="deployments-write", exit_on_error=False)
    def stop(self, contract_id: str) -> None:
        self.engine.stop_deployment(contract_id)
        self.app.call_from_thread(self.load)

    def action_kill_switch(self) -> None:
        status = self.selected
        if not self.explain_idle("kill_switch") and status is not None:
            self.confirm_kill(status.contract_id)

    def confirm_kill(self, contract_id: str) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self.kill(contract_id)

        self.app.push_screen(KillSwitchScreen(self.engine, contract_id), confirmed)

    @work(thread=True, group="deployments-write", exit_on_error=False)
    def kill(self, contract_id: str) -> None:
        self.engine.disable_execution(contract_id)
        self.app.call_from_thread(
            self.app.notify, f"■ execution of {contract_id} disabled", title="Kill switch", severity="warning"
        )
        self.app.call_from_thread(self.load)
