"""F1: the keys of the view that has focus (and the app-wide ones), from the actions registry."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.actions import actions_for

VIEW_TITLES = {
    "proposals": "Proposals and contracts",
    "deployments": "Deployments",
    "training": "Training monitor",
    "inference": "Inference",
    "data": "Data",
    "ledger": "Ledger",
    "privacy": "Privacy budgets",
    "models": "Model registry",
    "views": "Views",
    "app": "Everywhere",
}
VIEW_NOTES = {
    "proposals": "Ballots per member: ✔ accept  ✖ reject  · not yet. Keys that do not apply to the "
    "selected proposal are hidden (closed, or not yours to withdraw).",
    "deployments": "The log follows new lines; scroll up to hold it (it counts +N lines).",
    "training": "Fed by the contract's telemetry events; enable telemetry by vote to see them.",
    "inference": "Type the contract id of an inference deployment and press Enter.",
    "data": "Your datasources (read-only mounts) and datasinks (write-only mounts).",
    "ledger": "Every governance write, hash-chained and signed.",
    "privacy": "Epsilon per dataset across every run and contract: █ spent, ▒ reserved, ░ left.",
    "models": "Statuses come from the attested onboarding clean room only; p proposes publishing a verified one.",
}


def key_label(key: str) -> str:
    """How a binding's keys read in help and docs: ``f2,alt+1`` is ``F2/Alt+1``."""
    names = {"slash": "/", "end": "End", "question_mark": "?"}
    return "/".join(
        names.get(one, one.upper() if one.startswith("f") else one.replace("alt+", "Alt+")) for one in key.split(",")
    )


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, view: str, *, read_only: bool) -> None:
        super().__init__(classes="help-modal")
        self.view = view
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        lines: list[Content] = []
        for view in (self.view, "views", "app"):
            lines.append(Content.styled(VIEW_TITLES.get(view, view), "bold $primary"))
            if view in VIEW_NOTES:
                lines.append(Content.styled(VIEW_NOTES[view], "$text-muted"))
            actions = actions_for(view, read_only=self.read_only)
            if not actions:
                lines.append(Content("  (no keys: this view only shows)"))
            for action in actions:
                lines.append(
                    Content.assemble(
                        Content.styled(f"  {key_label(action.key):<8}", "bold $accent"),
                        f"{action.title:<12} {action.help}",
                    )
                )
            lines.append(Content(""))
        if self.read_only:
            lines.append(Content.styled("read-only: actions that change state are hidden", "$warning"))
        lines.append(
            Content.styled("Ctrl+P opens the command palette; q or Ctrl+Q quits. Esc closes this help.", "$text-muted")
        )
        with Vertical(id="help-dialog"):
            yield Static(Content("\n").join(lines), id="help-body")
