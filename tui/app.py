"""`cleanroom console`: one Textual app, one mode (screen stack) per persona workspace.

The app owns what is shared between personas (themes, read-only, LIVE/PAUSED, the palette)
and the background feeds: endpoint health, proposal refresh and each persona's event stream.
Everything that talks to a service runs in a worker thread; an error becomes a toast and the
app keeps running. Given ``preferences`` (``cleanroom console`` passes the XDG file), the theme
and the last persona are restored at start and remembered when they change.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input
from textual.worker import get_current_worker

from core.engine import CleanroomEvent, EndpointHealth, PersonaEngine
from core.runtime.lifecycle import ApplicationState, LifecycleEvent
from themes import ALIASES, CSS_PATH, DEFAULT_THEME, THEMES
from tui.actions import ACTIONS, MAX_PERSONAS, actions_for, is_mutating
from tui.preferences import ConsolePreferences
from tui.screens.confirm import QuitScreen
from tui.screens.help import HelpScreen
from tui.screens.persona import VIEW_TABS, PersonaScreen
from tui.terminal_driver import console_driver
from tui.widgets.data import DataView
from tui.widgets.deployments import DeploymentsView
from tui.widgets.inference import InferenceView
from tui.widgets.models import MODEL_EVENTS, ModelsView
from tui.widgets.privacy_gauge import LEDGER_EVENTS, PrivacyGauges
from tui.widgets.proposals import ProposalsView
from tui.widgets.worker_errors import ToastsWorkerErrors

if TYPE_CHECKING:
    from core.scenario import Scenario, Step

HEALTH_SECONDS = 5.0
PROPOSALS_SECONDS = 3.0
PROGRESS_SECONDS = 0.25  # a running step's progress reaches the context bar at most this often
# scenario steps worth watching: the view that shows them live, by the last part of the step key
# without its run number ("dp-join:run-2" -> "run")
STEP_VIEWS = {
    "train": "training",
    "evaluate": "inference",
    "run": "training",
    "budget": "privacy",
    "read-summaries": "summaries",
}


class EngineEvent(Message):
    """An event from one persona's feed, delivered on the UI thread."""

    def __init__(self, persona_index: int, event: CleanroomEvent) -> None:
        super().__init__()
        self.persona_index = persona_index
        self.event = event


class CleanroomConsole(ToastsWorkerErrors, App[None]):
    TITLE = "cleanroom console"
    CSS_PATH = CSS_PATH
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        *(a.binding() for a in actions_for("app")),
        Binding("ctrl+q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        engines: list[PersonaEngine],
        *,
        read_only: bool = False,
        theme: str | None = None,
        now: Callable[[], float] = time.time,
        background: bool = True,
        scenario: Scenario | None = None,
        preferences: ConsolePreferences | None = None,
    ) -> None:
        super().__init__(driver_class=console_driver())
        if not engines:
            raise ValueError("the console needs at least one persona workspace")
        if len(engines) > MAX_PERSONAS:
            raise ValueError(f"the console shows at most {MAX_PERSONAS} persona workspaces, not {len(engines)}")
        self.engines = engines
        self.scenario = scenario  # the embedded default's scenario, driven step by step
        self.running_step: Step | None = None
        self.read_only = read_only
        self.now = now
        self.background = background
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # tab underline slides cost a frame budget per key; operators want the answer now
            self.animation_level = "none"
        self.live = True
        # how the session ended, for `cleanroom console` to act on after the app returns:
        # "stop" (the operator chose to stop the running work), "leave" (leave it running),
        # None (nothing was running: the services stop as usual)
        self.exit_choice: str | None = None
        self.exit_signal: str | None = None  # SIGTERM / SIGHUP, when one ended the session
        self.health: dict[int, EndpointHealth] = {}
        self.paused_events: list[EngineEvent] = []
        for definition in THEMES.values():
            self.register_theme(definition)
        self.preferences = preferences
        if theme is None and preferences is not None and preferences.theme in THEMES:
            theme = preferences.theme  # an explicit --theme wins over the remembered one
        self.theme = ALIASES.get(theme or "", theme or DEFAULT_THEME)
        personas = [engine.persona for engine in engines]
        for index, engine in enumerate(engines):
            self.add_mode(self.mode_name(index), self._screen_factory(index, engine, personas))

    @staticmethod
    def mode_name(index: int) -> str:
        return f"persona-{index}"

    def _screen_factory(self, index: int, engine: PersonaEngine, personas: list[str]) -> Callable[[], Screen]:
        return lambda: PersonaScreen(engine, index=index, personas=personas, read_only=self.read_only, now=self.now)

    def on_ready(self) -> None:
        self._freeze_long_lived()

    @staticmethod
    def _freeze_long_lived() -> None:
        """Screens, views and styles live as long as the console: keep them out of the cyclic
        collector's full passes, which walked all of them (about 50 ms each, long enough to
        hold up a key) while a run streamed telemetry."""
        gc.freeze()

    def on_mount(self) -> None:
        self.switch_mode(self.mode_name(self._remembered_persona()))
        if self.preferences is not None:
            if self.preferences.warning:
                self.notify(self.preferences.warning, title="Preferences", severity="warning", timeout=8)
            self.theme_changed_signal.subscribe(self, lambda _theme: self._remember())
        if self.background:
            self.set_interval(HEALTH_SECONDS, self.check_health)
            self.set_interval(PROPOSALS_SECONDS, self.refresh_proposals)
            for index, engine in enumerate(self.engines):
                self.follow_events(index, engine)
        self.check_health()

    # persona screens --------------------------------------------------------------------
    @property
    def persona_index(self) -> int:
        return int(self.current_mode.removeprefix("persona-"))

    def persona_screen(self, index: int | None = None) -> PersonaScreen:
        mode = self.mode_name(self.persona_index if index is None else index)
        stack = self._screen_stacks.get(mode)
        base = stack[0] if stack else None  # the base of that persona's own stack
        if not isinstance(base, PersonaScreen):
            raise LookupError(f"persona {index} has not been opened yet")
        return base

    def action_switch_persona(self, index: int) -> None:
        if 0 <= index < len(self.engines):
            self.switch_mode(self.mode_name(index))
            self.call_after_refresh(self._freeze_long_lived)  # a persona opened for the first time
            self._remember()

    # preferences ------------------------------------------------------------------------
    def _remembered_persona(self) -> int:
        wanted = self.preferences.persona if self.preferences is not None else None
        return next((i for i, engine in enumerate(self.engines) if engine.persona == wanted), 0)

    def _remember(self) -> None:
        preferences = self.preferences
        if preferences is None or not self.current_mode:
            return
        persona = self.engines[self.persona_index].persona
        if (preferences.theme, preferences.persona) != (self.theme, persona):
            preferences.theme, preferences.persona = self.theme, persona
            self._save_preferences(preferences)

    @work(thread=True, exclusive=True, group="preferences", exit_on_error=False)
    def _save_preferences(self, preferences: ConsolePreferences) -> None:
        """Off the UI thread: an fsync must not hold up the key that switched persona."""
        try:
            preferences.save()
        except OSError as exc:
            self.call_from_thread(
                self.notify,
                f"could not remember the theme and persona in {preferences.path}: {exc.strerror or exc}",
                title="Preferences",
                severity="warning",
            )

    def action_help(self) -> None:
        view = self.focused_view()
        self.push_screen(HelpScreen(view, read_only=self.read_only))

    def focused_view(self) -> str:
        node: DOMNode | None = self.focused
        while node is not None:
            view = getattr(node, "VIEW_ID", None)
            if view:
                return str(view)
            node = node.parent
        screen = self.screen
        return screen.active_view if isinstance(screen, PersonaScreen) else "app"

    def action_toggle_live(self) -> None:
        self.live = not self.live
        for index in range(len(self.engines)):
            try:
                self.persona_screen(index).set_live(self.live)
            except LookupError:
                continue
        if self.live:
            pending, self.paused_events = self.paused_events, []
            for message in pending:
                self._deliver(message)

    def action_refresh_view(self) -> None:
        screen = self.screen
        if isinstance(screen, PersonaScreen):
            screen.refresh_views()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and is_mutating(action):
            return False
        return not (action == "switch_persona" and parameters and int(str(parameters[0])) >= len(self.engines))

    # background feeds -------------------------------------------------------------------
    def check_health(self) -> None:
        for index, engine in enumerate(self.engines):
            self._probe(index, engine)

    @work(thread=True, group="health", exit_on_error=False)
    def _probe(self, index: int, engine: PersonaEngine) -> None:
        health = engine.health()
        self.call_from_thread(self._show_health, index, health)

    def _show_health(self, index: int, health: EndpointHealth) -> None:
        self.health[index] = health
        try:
            self.persona_screen(index).set_health(health)
        except LookupError:
            return

    def _opened_screens(self) -> Iterable[PersonaScreen]:
        for index in range(len(self.engines)):
            try:
                yield self.persona_screen(index)
            except LookupError:
                continue

    def scenario_status(self) -> str:
        """The context bar's scenario part: how far along, and what runs now."""
        scenario = self.scenario
        if scenario is None:
            return ""
        done, total = scenario.progress
        if self.running_step is not None:
            return f"scenario {done}/{total} ▶ {self.running_step.persona}: {self.running_step.title}"
        upcoming = scenario.next_step()
        if upcoming is None:
            return f"scenario {done}/{total} ✔ complete"
        return f"scenario {done}/{total} · next: {upcoming.persona}"

    def _show_scenario_status(self, detail: str = "") -> None:
        text = self.scenario_status() + (f" · {detail}" if detail else "")
        for screen in self._opened_screens():
            screen.set_scenario_status(text)

    def refresh_proposals(self) -> None:
        """Every few seconds: the shown persona's proposals, and its privacy budgets while they are
        on screen (a run reserving or being refused changes them without an event of this persona)."""
        if not self.live:
            return
        screen = self.screen
        if isinstance(screen, PersonaScreen):
            screen.query_one(ProposalsView).load()
            if screen.active_view == PrivacyGauges.VIEW_ID:
                screen.query_one(PrivacyGauges).load()

    @work(thread=True, group="events", exit_on_error=False)
    def follow_events(self, index: int, engine: PersonaEngine) -> None:
        worker = get_current_worker()
        for event in engine.follow_events(lambda: worker.is_cancelled):
            self.post_message(EngineEvent(index, event))

    def on_engine_event(self, message: EngineEvent) -> None:
        if not self.live:
            self.paused_events.append(message)
            return
        self._deliver(message)

    def _deliver(self, message: EngineEvent) -> None:
        event = message.event
        try:
            screen = self.persona_screen(message.persona_index)
        except LookupError:
            return
        screen.route_event(event)
        if event.kind in LEDGER_EVENTS:  # a run reserved, recorded or was refused: the budgets moved
            screen.query_one(PrivacyGauges).load()
        if event.kind in MODEL_EVENTS:  # the clean room moved a model version or tested it: the registry changed
            screen.query_one(ModelsView).load()
        if message.persona_index == self.persona_index:
            self._toast_for(event)

    def _toast_for(self, event: CleanroomEvent) -> None:
        if event.kind == LifecycleEvent.EXITED:
            codes = dict(event.data.get("exit_codes", {}))
            failed = {app: code for app, code in codes.items() if code != 0}
            detail = ", ".join(f"{app} {code}" for app, code in sorted(codes.items())) or "no applications"
            self.notify(
                f"contract {event.contract_id} exited ({detail})",
                title="Deployment exited",
                severity="error" if failed else "information",
            )
        elif event.kind == LifecycleEvent.FAILED:
            self.notify(
                f"contract {event.contract_id}: {event.data.get('reason', 'failed')}",
                title="Deployment failed",
                severity="error",
            )

    def on_proposals_view_voted(self, message: ProposalsView.Voted) -> None:
        proposal = message.proposal
        choice = "accepted" if message.accept else "rejected"
        self.notify(
            f"you {choice} {proposal.action} {proposal.proposal_id[:10]}; now {proposal.state}", title="Ballot signed"
        )

    # the embedded scenario ---------------------------------------------------------------
    def run_scenario_step(self, persona: str) -> None:
        """Take the scenario's next step as ``persona`` in a worker: only one step runs at a time,
        the context bar follows it, and the views reload when it is done."""
        if self.scenario is None or self.running_step is not None:
            return
        step = self.scenario.next_step(persona)
        if step is None:
            return
        self.running_step = step
        self._show_scenario_status()
        self.notify(f"{persona}: {step.title}", title="Scenario step started")
        view = STEP_VIEWS.get(step.key.rpartition(":")[2].rstrip("0123456789").rstrip("-"))
        if view and isinstance(self.screen, PersonaScreen):
            self.screen.show_view(view)
        self._perform_step(persona, step)

    @work(thread=True, group="scenario", exit_on_error=False)
    def _perform_step(self, persona: str, step: Step) -> None:
        from core.scenario import Reporter

        assert self.scenario is not None
        last = [0.0]

        def progress(task: str, done: float, total: float | None, detail: str) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_SECONDS or (total and done >= total):
                last[0] = now
                share = f" {done / total:.0%}" if total else ""
                self.call_from_thread(self._show_scenario_status, f"{task}{share} {detail}".strip())

        def evaluation(contract_id: str, done: int, correct: int, total: int) -> None:
            self.call_from_thread(self._follow_evaluation, persona, contract_id, done, correct, total)

        try:
            summary = self.scenario.perform_next(persona, Reporter(progress=progress, evaluation=evaluation))
        finally:
            self.call_from_thread(self._step_ended)
        self.call_from_thread(self.notify, summary, title=f"✔ {step.persona}: {step.title}")

    def _follow_evaluation(self, persona: str, contract_id: str, done: int, correct: int, total: int) -> None:
        for screen in self._opened_screens():
            if screen.engine.persona == persona:
                screen.query_one(InferenceView).follow(contract_id, done, correct, total)

    def _step_ended(self) -> None:
        self.running_step = None
        self._show_scenario_status()
        for screen in self._opened_screens():
            screen.refresh_views()

    # quitting -------------------------------------------------------------------------
    def work_in_progress(self) -> list[str]:
        """What quitting the scenario console would stop: its clean rooms that are running and
        the step in progress. Outside the embedded scenario the console stops nothing."""
        if self.scenario is None:
            return []
        from tui.scenario_session import running_deployments

        running = [f"clean room '{contract_id}' ({state})" for contract_id, state in running_deployments(self.scenario)]
        if self.running_step is not None:
            running.append(f"step {self.running_step.key!r}: {self.running_step.persona} {self.running_step.title}")
        return running

    async def action_quit(self) -> None:
        """Ctrl+Q: quit at once when nothing runs, else ask (stop all, leave running, stay)."""
        self.request_quit()

    def request_quit(self) -> None:
        running = self.work_in_progress()
        if not running:
            self.exit()
            return
        if isinstance(self.screen, QuitScreen):
            return
        self.push_screen(QuitScreen(running), self._quit_answered)

    def _quit_answered(self, choice: str | None) -> None:
        if choice in ("stop", "leave"):
            self.exit_choice = choice
            self.exit()

    def terminate(self, signal_name: str) -> None:
        """SIGTERM / SIGHUP (the terminal closed): nobody can answer a modal, so the choice that
        destroys nothing is taken: running work is left running and `cleanroom console` says
        so (on stderr and in the scenario folder); with nothing running it stops cleanly."""
        self.ended_by(signal_name)
        self.exit()

    def ended_by(self, signal_name: str) -> None:
        """Record a session ended by a signal or a closed terminal (not by an answer), so the
        goodbye leaves running work running instead of taking the default of stopping it."""
        self.exit_signal = signal_name
        self.exit_choice = "leave" if self.work_in_progress() else None

    # command palette --------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for index, engine in enumerate(self.engines):
            yield SystemCommand(
                f"Persona: {engine.persona}",
                f"Act as {engine.persona} (member {engine.short_member_id})",
                lambda i=index: self.action_switch_persona(i),
            )
        for name in THEMES:
            yield SystemCommand(f"Theme: {name}", "Switch the colour theme", lambda n=name: setattr(self, "theme", n))
        if isinstance(screen, PersonaScreen):
            for view, title in VIEW_TABS:
                yield SystemCommand(
                    f"View: {title}", f"Show the {title.lower()} view", lambda v=view, s=screen: s.show_view(v)
                )
            yield from self._scenario_steps(screen)
        for action in ACTIONS:
            if action.view == "app" and not (self.read_only and action.mutating):
                yield SystemCommand(action.title, action.help, lambda a=action: self.run_action(a.method))
        yield SystemCommand("Quit", "Quit the console (asks first while clean rooms run)", self.request_quit)

    def _scenario_steps(self, screen: PersonaScreen) -> Iterable[SystemCommand]:
        """The next steps for this persona: on the embedded default, the scenario's own next step
        (or whose turn it is); then, from what its views last loaded, ballots still owed,
        datasources not uploaded yet and running clean rooms to evaluate."""
        if self.read_only:
            return
        if self.scenario is not None:
            yield from self._scenario_next(screen)
        me = screen.engine.member_id
        for proposal in screen.query_one(ProposalsView).proposals:
            if proposal.is_open and me not in proposal.ballots:
                yield SystemCommand(
                    f"Next: vote on {proposal.action} {proposal.proposal_id[:10]}",
                    f"contract {proposal.contract_id}: still waiting for your ballot",
                    lambda p=proposal, s=screen: self._select_proposal(s, p.proposal_id),
                )
        for asset in screen.query_one(DataView).assets:
            if asset.kind == "datasource" and not asset.uploaded:
                yield SystemCommand(
                    f"Next: upload datasource {asset.name}",
                    "encrypt a local folder with its DEK and upload it",
                    lambda s=screen: s.show_view("data"),
                )
        for status in screen.query_one(DeploymentsView).statuses:
            if status.state == ApplicationState.RUNNING:
                yield SystemCommand(
                    f"Next: evaluate {status.contract_id}",
                    "run your test set against its endpoint and watch accuracy",
                    lambda c=status.contract_id, s=screen: self._prepare_evaluation(s, c),
                )

    def _scenario_next(self, screen: PersonaScreen) -> Iterable[SystemCommand]:
        assert self.scenario is not None
        persona = screen.engine.persona
        done, total = self.scenario.progress
        if self.running_step is not None:
            yield SystemCommand(
                f"Scenario: {self.running_step.title} is running",
                f"step {done + 1}/{total}; the context bar shows its progress",
                lambda: None,
            )
            return
        step = self.scenario.next_step()
        if step is None:
            yield SystemCommand(
                "Scenario: complete",
                f"all {total} steps done; results in {self.scenario.root / 'demo.json'}",
                lambda: None,
            )
        elif step.persona in (persona, "all"):
            yield SystemCommand(
                f"Next: {step.title}",
                f"step {done + 1}/{total} ({step.phase}) as {persona}: "
                f"{step.commands[0] if step.commands else step.title}",
                lambda: self.run_scenario_step(persona),
            )
        else:
            index = next((i for i, e in enumerate(self.engines) if e.persona == step.persona), None)
            if index is not None:
                yield SystemCommand(
                    f"Next: switch to {step.persona} to {step.title}",
                    f"step {done + 1}/{total} is {step.persona}'s to take",
                    lambda: self.action_switch_persona(index),
                )

    @staticmethod
    def _prepare_evaluation(screen: PersonaScreen, contract_id: str) -> None:
        screen.show_view("inference")
        box = screen.query_one("#inference-contract", Input)
        box.value = contract_id
        box.focus()

    @staticmethod
    def _select_proposal(screen: PersonaScreen, proposal_id: str) -> None:
        screen.show_view("proposals")
        view = screen.query_one(ProposalsView)
        table = view.query_one("#proposals-table", DataTable)
        table.move_cursor(row=table.get_row_index(proposal_id))
        table.focus()
