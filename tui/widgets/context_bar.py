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

PERSONA_KEYS = ("F2", "F3", "F4")


class PersonaTabs(Static):
    """One tab per persona workspace; click or F2/F3/F4 switches (each keeps its own screens)."""

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
            parts.append(Content.from_markup(
                f"[@click=app.switch_persona({index})][{style}]{marker} {key} $persona [/][/]",
                persona=persona))
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
            parts.append(Content.from_markup(
                f"[@click=screen.show_view('{view}')][{style}] {key} {title} [/][/]"))
        return Content(" ").join(parts)


class ContextBar(Static):
    """Persona · member · governance endpoint health · LIVE/PAUSED (· READ-ONLY) (· scenario)."""

    health: reactive[EndpointHealth | None] = reactive(None)
    live: reactive[bool] = reactive(True)
    scenario: reactive[str] = reactive("")  # the embedded scenario's progress, when there is one

    def __init__(self, engine: PersonaEngine, *, read_only: bool) -> None:
        super().__init__(classes="context-bar")
        self.engine = engine
        self.read_only = read_only

    def render(self) -> Content:
        engine = self.engine
        health = self.health
        if health is not None and health.endpoint is None:
            status = Content.styled("✖ not configured", "$warning")
        elif health is None:
            status = Content.styled("… checking", "$text-muted")
        elif health.reachable:
            status = Content.styled("● healthy", "$success")
        else:
            status = Content.styled("✖ unreachable", "bold $error")
        endpoint = (health.endpoint if health else engine.governance_endpoint) or ""
        live = (Content.styled("● LIVE", "bold $success") if self.live
                else Content.styled("⏸ PAUSED", "bold $warning"))
        pieces = [
            Content.styled(f" {engine.persona}", "bold"),
            Content.styled(f"member {engine.short_member_id}", "$text-muted"),
            Content.assemble("governance ", endpoint, " ", status),
            live,
        ]
        if self.read_only:
            pieces.append(Content.styled("READ-ONLY", "bold $warning"))
        if self.scenario:
            pieces.append(Content.styled(self.scenario, "$accent"))
        return Content(" │ ").join(pieces)
