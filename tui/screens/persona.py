"""A persona's home: its tabs, context bar and views. Each persona has its own screen stack.

The screen owns the persona's live state: it loads each view through workers (a slow or
failing service never blocks a key) and routes the persona's event feed to the views.

The seven views are stacked in one place; the one shown sits on stage and the others wait just
off it, laid out at their size but never drawn. A switch moves two views: nothing is shown or
hidden, so no widget gets Show, Hide or Resize (a DataTable re-renders every row on a resize),
no tab widgets are restyled, and the tab line is one widget that repaints. Measured side by
side in tmux, tab panes switched by display took 53-61 ms of CPU a switch and this takes 32-33
(docs/console.md, Performance).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property

from textual.app import ComposeResult
from textual.containers import Container
from textual.screen import Screen
from textual.widget import Widget

from core.engine import CleanroomEvent, EndpointHealth, PersonaEngine
from core.runtime.lifecycle import LIFECYCLE_EVENTS
from core.runtime.usage import USAGE_EVENT
from tui.actions import bindings_for
from tui.widgets.context_bar import ContextBar, PersonaTabs, ViewTabs
from tui.widgets.data import DataView
from tui.widgets.deployments import DeploymentsView
from tui.widgets.inference import InferenceView
from tui.widgets.key_bar import KeyBar
from tui.widgets.ledger import LedgerView
from tui.widgets.models import ModelsView
from tui.widgets.privacy_gauge import PrivacyGauges
from tui.widgets.proposals import ProposalsView
from tui.widgets.summaries import SummariesView
from tui.widgets.training import TrainingMonitor
from tui.widgets.usage import UsageView

# where views wait while another is shown: still laid out at their size, never drawn
OFF_STAGE = (0, 10_000)
VIEW_TABS = (
    ("proposals", "Proposals"),
    ("deployments", "Deployments"),
    ("training", "Training"),
    ("inference", "Inference"),
    ("data", "Data"),
    ("ledger", "Ledger"),
    ("privacy", "Privacy"),
    ("models", "Models"),
    ("summaries", "Summaries"),
    ("usage", "Usage"),
)


class PersonaScreen(Screen):
    BINDINGS = bindings_for("views")

    def __init__(
        self,
        engine: PersonaEngine,
        *,
        index: int,
        personas: list[str],
        read_only: bool,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name=f"persona-{index}", classes="persona-screen")
        self.engine = engine
        self.index = index
        self.personas = personas
        self.read_only = read_only
        self.now = now

    def compose(self) -> ComposeResult:
        yield PersonaTabs(self.personas, self.index)
        yield ContextBar(self.engine, read_only=self.read_only)
        yield ViewTabs(VIEW_TABS, active=VIEW_TABS[0][0])
        with Container(id="views"):
            yield ProposalsView(self.engine, read_only=self.read_only, now=self.now)
            yield DeploymentsView(self.engine, read_only=self.read_only, now=self.now)
            yield TrainingMonitor()
            yield InferenceView(self.engine, read_only=self.read_only)
            yield DataView(self.engine, read_only=self.read_only)
            yield LedgerView(self.engine)
            yield PrivacyGauges(self.engine)
            yield ModelsView(self.engine, read_only=self.read_only)
            yield SummariesView(self.engine)
            yield UsageView(self.engine, now=self.now)
        yield KeyBar(classes="key-bar")

    def on_mount(self) -> None:
        bar = self.query_one(ContextBar)
        bar.live = getattr(self.app, "live", True)
        bar.health = getattr(self.app, "health", {}).get(self.index)
        status = getattr(self.app, "scenario_status", None)
        bar.scenario = status() if status else ""
        self.show_view(VIEW_TABS[0][0])
        self.refresh_views()

    def refresh_views(self) -> None:
        """(Re)load every view in background workers; failures become toasts."""
        self.query_one(ProposalsView).load()
        self.query_one(LedgerView).load()
        self.query_one(DataView).load()
        self.query_one(DeploymentsView).load()
        self.query_one(PrivacyGauges).load()
        self.query_one(ModelsView).load()
        self.query_one(SummariesView).load()
        if self.active_view == UsageView.VIEW_ID:  # read when shown: the live feed keeps it current
            self._usage.load()

    @property
    def active_view(self) -> str:
        return self._view_tabs.active

    @cached_property
    def _view_tabs(self) -> ViewTabs:
        return self.query_one(ViewTabs)

    @cached_property
    def _views(self) -> dict[str, Widget]:
        return {view.VIEW_ID: view for view in self.query_one("#views").children}  # type: ignore[attr-defined]

    def show_view(self, view: str) -> None:
        """Put a view on stage and focus its input (``FOCUS_FIRST``) or its first table, log or chart.

        Offsets are set inline, so they apply at once (no stylesheet pass), and views off stage
        offer no focus, so neither this nor Tab can leave keys with a view that is not shown.
        """
        shown = self._views[view]
        for widget in self._views.values():
            on_stage = widget is shown
            widget.styles.offset = (0, 0) if on_stage else OFF_STAGE
            widget.can_focus_children = on_stage
        if view == TrainingMonitor.VIEW_ID:
            self._training.catch_up()
        elif view == UsageView.VIEW_ID:
            self._usage.load()  # only what governance recorded since the last read (its cursors)
        # a view that starts with something to type (Inference: the contract id) focuses it
        focus = getattr(shown, "FOCUS_FIRST", "DataTable, Log, LineChart")
        self.set_focus(shown.query(focus).first(), scroll_visible=False)
        self._view_tabs.active = view

    def action_show_view(self, view: str) -> None:
        self.show_view(view)

    def set_health(self, health: EndpointHealth) -> None:
        self.query_one(ContextBar).health = health

    def set_live(self, live: bool) -> None:
        self.query_one(ContextBar).live = live

    def set_scenario_status(self, text: str) -> None:
        self.query_one(ContextBar).scenario = text

    @cached_property
    def _training(self) -> TrainingMonitor:
        # the event feed routes hundreds of events a second: look its targets up once
        return self.query_one(TrainingMonitor)

    @cached_property
    def _deployments(self) -> DeploymentsView:
        return self.query_one(DeploymentsView)

    @cached_property
    def _usage(self) -> UsageView:
        return self.query_one(UsageView)

    def route_event(self, event: CleanroomEvent) -> None:
        training = self._training
        if training.accepts(event):
            training.add_event(event)
            return
        deployments = self._deployments
        deployments.add_event(event)
        if event.kind == USAGE_EVENT:  # the ingress's per-caller minute: the usage view counts it too
            self._usage.add_event(event)
        if event.kind in LIFECYCLE_EVENTS:
            deployments.load()
