"""A persona's home: its tabs, context bar and views. Each persona has its own screen stack.

The screen owns the persona's live state: it loads each view through workers (a slow or
failing service never blocks a key) and routes the persona's event feed to the views.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import TabbedContent, TabPane, Tabs

from core.engine import LIFECYCLE, CleanroomEvent, EndpointHealth, PersonaEngine
from tui.actions import bindings_for
from tui.widgets.context_bar import ContextBar, PersonaTabs
from tui.widgets.data import DataView
from tui.widgets.deployments import DeploymentsView
from tui.widgets.inference import InferenceView
from tui.widgets.key_bar import KeyBar
from tui.widgets.ledger import LedgerView
from tui.widgets.proposals import ProposalsView
from tui.widgets.training import TrainingMonitor

VIEW_TABS = (("proposals", "Proposals"), ("deployments", "Deployments"), ("training", "Training"),
             ("inference", "Inference"), ("data", "Data"), ("ledger", "Ledger"))


class PersonaScreen(Screen):
    BINDINGS = bindings_for("views")

    def __init__(self, engine: PersonaEngine, *, index: int, personas: list[str], read_only: bool,
                 now: Callable[[], float] = time.time) -> None:
        super().__init__(name=f"persona-{index}", classes="persona-screen")
        self.engine = engine
        self.index = index
        self.personas = personas
        self.read_only = read_only
        self.now = now

    def compose(self) -> ComposeResult:
        yield PersonaTabs(self.personas, self.index)
        yield ContextBar(self.engine, read_only=self.read_only)
        with TabbedContent(id="views"):
            with TabPane("Proposals", id="tab-proposals"):
                yield ProposalsView(self.engine, read_only=self.read_only, now=self.now)
            with TabPane("Deployments", id="tab-deployments"):
                yield DeploymentsView(self.engine, read_only=self.read_only, now=self.now)
            with TabPane("Training", id="tab-training"):
                yield TrainingMonitor()
            with TabPane("Inference", id="tab-inference"):
                yield InferenceView(self.engine, read_only=self.read_only)
            with TabPane("Data", id="tab-data"):
                yield DataView(self.engine, read_only=self.read_only)
            with TabPane("Ledger", id="tab-ledger"):
                yield LedgerView(self.engine)
        yield KeyBar(classes="key-bar")

    def on_mount(self) -> None:
        bar = self.query_one(ContextBar)
        bar.live = getattr(self.app, "live", True)
        bar.health = getattr(self.app, "health", {}).get(self.index)
        self.query_one("#proposals-table").focus()
        self.refresh_views()

    def refresh_views(self) -> None:
        """(Re)load every view in background workers; failures become toasts."""
        self.query_one(ProposalsView).load()
        self.query_one(LedgerView).load()
        self.query_one(DataView).load()
        self.query_one(DeploymentsView).load()

    @property
    def active_view(self) -> str:
        active = self.query_one(TabbedContent).active or "tab-proposals"
        return active.removeprefix("tab-")

    def show_view(self, view: str) -> None:
        """Show a view and focus its first table/log (or the tab bar).

        Focus moves first: a focused widget left in a now-hidden pane would make the tabs
        switch straight back to the pane that holds it.
        """
        tabs = self.query_one(TabbedContent)
        focusable = self.query_one(f"#tab-{view}").query("DataTable, Log")
        target = focusable.first() if focusable else tabs.query_one(Tabs)
        self.set_focus(target, scroll_visible=False)
        if view == TrainingMonitor.VIEW_ID:
            self._training.catch_up()
        tabs.active = f"tab-{view}"

    def action_show_view(self, view: str) -> None:
        self.show_view(view)

    def set_health(self, health: EndpointHealth) -> None:
        self.query_one(ContextBar).health = health

    def set_live(self, live: bool) -> None:
        self.query_one(ContextBar).live = live

    @cached_property
    def _training(self) -> TrainingMonitor:
        # the event feed routes hundreds of events a second: look its targets up once
        return self.query_one(TrainingMonitor)

    @cached_property
    def _deployments(self) -> DeploymentsView:
        return self.query_one(DeploymentsView)

    def route_event(self, event: CleanroomEvent) -> None:
        training = self._training
        if training.accepts(event):
            training.add_event(event)
            return
        deployments = self._deployments
        deployments.add_event(event)
        if event.kind in LIFECYCLE:
            deployments.load()
