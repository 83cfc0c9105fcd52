"""The lines every persona screen starts with: persona tabs, context bar and view tabs.

The context bar answers "who am I acting as, against what, and is it current?" before any
keystroke: persona, short member id, governance endpoint health and LIVE/PAUSED. The tab lines
are single widgets that only repaint: a tab switch restyles nothing and lays nothing out.
"""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from core.engine import EndpointHealth, PersonaEngine

PERSONA_KEYS = ("F2", "F3", "F4", "Alt+4", "Alt+5", "Alt+6", "Alt+7", "Alt+8", "Alt+9")  # tui.actions.persona_keys
SCENARIO_MIN = 16  # "scenario 12/14 ▶": the step count survives any cut


class PersonaTabs(Static):
    """One tab per persona workspace (up to nine); click, F2/F3/F4 or Alt+1..9 switches (each keeps its own screens)."""

    def __init__(self, personas: list[str], active: int) -> None:
        super().__init__(classes="persona-tabs")
        self.personas = personas
        self.active = active

    def render(self) -> Content:
        parts: list[Content] = []
        for index, persona in enumerate(self.personas):
            key = PERSONA_KEYS[index] if index < len(PERSONA_KEYS) else "  "
            style = "reverse bold $primary" if index == self.active else "$text-muted"
            marker = "▸" if index == self.active else " "
            parts.append(
                Content.from_markup(
                    f"[@click=app.switch_persona({index})][{style}]{marker} {key} $persona [/][/]", persona=persona
                )
            )
        return Content(" ").join(parts)


class ViewTabs(Static):
    """The persona's views with their digit keys; click or press the digit to switch."""

    active: reactive[str] = reactive("")

    def __init__(self, views: tuple[tuple[str, str], ...], active: str) -> None:
        super().__init__(classes="view-tabs")
        self.views = views
        self.set_reactive(ViewTabs.active, active)

    def render(self) -> Content:
        parts: list[Content] = []
        for key, (view, title) in enumerate(self.views, start=1):
            style = "reverse bold $accent" if view == self.active else "$text-muted"
            digit = key % 10  # the tenth view's key is 0
            parts.append(Content.from_markup(f"[@click=screen.show_view('{view}')][{style}] {digit} {title} [/][/]"))
        return Content(" ").join(parts)


class ContextBar(Static):
    """Persona · member · governance endpoint health · LIVE/PAUSED (· READ-ONLY) (· scenario).

    On a narrow terminal (80 columns) the bar gives way from the least to the most important:
    first the endpoint address goes, then the member id, then the scenario text is cut; the
    persona, the health mark, LIVE/PAUSED, READ-ONLY and the scenario's step count always stay.
    """

    health: reactive[EndpointHealth | None] = reactive(None)
    live: reactive[bool] = reactive(True)
    scenario: reactive[str] = reactive("")  # the embedded scenario's progress, when there is one

    def __init__(self, engine: PersonaEngine, *, read_only: bool) -> None:
        super().__init__(classes="context-bar")
        self.engine = engine
        self.read_only = read_only

    def _status(self) -> Content:
        health = self.health
        if health is not None and health.endpoint is None:
            return Content.styled("✖ not configured", "$warning")
        if health is None:
            return Content.styled("… checking", "$text-muted")
        if health.reachable:
            return Content.styled("● healthy", "$success")
        return Content.styled("✖ unreachable", "bold $error")

    def render(self) -> Content:
        engine = self.engine
        endpoint = (self.health.endpoint if self.health else engine.governance_endpoint) or ""
        status = self._status()
        persona = Content.styled(f" {engine.persona}", "bold")
        member = Content.styled(f"member {engine.short_member_id}", "$text-muted")
        fixed = [
            Content.styled("● LIVE", "bold $success") if self.live else Content.styled("⏸ PAUSED", "bold $warning")
        ]
        if self.read_only:
            fixed.append(Content.styled("READ-ONLY", "bold $warning"))
        width = self.size.width or 10_000  # not laid out yet: the widest form
        layouts = (
            [persona, member, Content.assemble("governance ", endpoint, " ", status)],
            [persona, member, Content.assemble("gov ", status)],
            [persona, Content.assemble("gov ", status)],
        )
        separator = Content(" │ ")
        # the scenario keeps at least its step count ("scenario 4/12 ▶ …") however narrow
        scenario_needs = len(separator) + min(len(self.scenario), SCENARIO_MIN) if self.scenario else 0
        for head in layouts:
            bar = separator.join([*head, *fixed])
            if bar.cell_length + scenario_needs <= width:
                break
        if not self.scenario:
            return bar
        room = max(width - bar.cell_length - len(separator), 0)
        scenario = self.scenario if len(self.scenario) <= room else self.scenario[: max(room - 1, 0)] + "…"
        return separator.join([bar, Content.styled(scenario, "$accent")])
