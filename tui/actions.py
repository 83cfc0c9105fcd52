"""The console's actions registry: every key binding and palette command, in one table.

Each action has a stable id (``view.verb``), its key, the text the footer, the palette and the
F1 help show, and whether it changes state. Widgets build their bindings from this table, the
command palette lists it, and ``--read-only`` drops every mutating action in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class ConsoleAction:
    action_id: str  # "<view>.<verb>", also the Binding id (so users can remap it)
    key: str
    method: str  # the Textual action name on the owning widget
    title: str
    help: str
    mutating: bool = False
    show: bool = True
    priority: bool = False  # works even while a modal of this persona is open

    @property
    def view(self) -> str:
        return self.action_id.split(".", 1)[0]

    def binding(self) -> Binding:
        return Binding(self.key, self.method, self.title, show=self.show, priority=self.priority, id=self.action_id)


MAX_PERSONAS = 9
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")


def persona_keys(index: int) -> str:
    """The keys of persona tab ``index`` (0-based): Alt+1 .. Alt+9 for every tab, and F2/F3/F4
    too for the first three (the keys the three-persona console always had). Alt+digit, not the
    bare digit, because the digits already pick a view and an Input takes them as text."""
    return ",".join([*([f"f{index + 2}"] if index < 3 else []), f"alt+{index + 1}"])


ACTIONS: tuple[ConsoleAction, ...] = (
    # app-wide
    # the persona tab line already shows each tab's key with its name, so the footer does not repeat them
    *(
        ConsoleAction(
            f"app.persona-{index + 1}",
            persona_keys(index),
            f"switch_persona({index})",
            f"Persona {index + 1}",
            f"Switch to the {ORDINALS[index]} persona tab.",
            show=False,
            priority=True,
        )
        for index in range(MAX_PERSONAS)
    ),
    ConsoleAction("app.help", "f1", "help", "Help", "Show the keys of the focused view."),
    ConsoleAction(
        "app.live",
        "f5",
        "toggle_live",
        "Live/Pause",
        "Pause or resume the live event feed (the context bar shows LIVE or PAUSED).",
        priority=True,
    ),
    ConsoleAction("app.refresh", "ctrl+r", "refresh_view", "Refresh", "Reload the current view."),
    # views of a persona screen (digits: an Input that has focus takes them as text first)
    ConsoleAction(
        "views.proposals", "1", "show_view('proposals')", "Proposals", "Show proposals and contracts.", show=False
    ),
    ConsoleAction(
        "views.deployments",
        "2",
        "show_view('deployments')",
        "Deployments",
        "Show deployments and their logs.",
        show=False,
    ),
    ConsoleAction("views.training", "3", "show_view('training')", "Training", "Show the training monitor.", show=False),
    ConsoleAction(
        "views.inference", "4", "show_view('inference')", "Inference", "Show the inference view.", show=False
    ),
    ConsoleAction(
        "views.data", "5", "show_view('data')", "Data", "Show this persona's datasources and datasinks.", show=False
    ),
    ConsoleAction("views.ledger", "6", "show_view('ledger')", "Ledger", "Show the ledger.", show=False),
    ConsoleAction(
        "views.privacy",
        "7",
        "show_view('privacy')",
        "Privacy",
        "Show each dataset's privacy budget: epsilon spent, reserved and left.",
        show=False,
    ),
    ConsoleAction(
        "views.summaries",
        "9",
        "show_view('summaries')",
        "Summaries",
        "Show the summaries sealed to this party: sentences and ratio against the voted caps, and the method.",
        show=False,
    ),
    ConsoleAction(
        "views.usage",
        "0",
        "show_view('usage')",
        "Usage",
        "Show each caller's use of each contract's endpoint: requests, rows and refusals per minute.",
        show=False,
    ),
    ConsoleAction(
        "views.models",
        "8",
        "show_view('models')",
        "Models",
        "Show the model registry: each version's status (written by the clean room only) and why.",
        show=False,
    ),
    # on a persona screen only, so they never fire from a modal (where q closes help, y/n answer)
    ConsoleAction(
        "views.help", "question_mark", "app.help", "Help", "Show the keys of the focused view (as F1 does).", show=False
    ),
    ConsoleAction(
        "views.quit",
        "q",
        "app.quit",
        "Quit",
        "Quit the console; while clean rooms run it asks first, as Ctrl+Q does.",
        show=False,
    ),
    # proposals
    ConsoleAction(
        "proposals.filter", "slash", "filter", "Filter", "Filter proposals by id, action, contract, proposer or state."
    ),
    ConsoleAction(
        "proposals.accept",
        "a",
        "vote(True)",
        "Accept",
        "Accept the selected open proposal (asks for confirmation).",
        mutating=True,
    ),
    ConsoleAction(
        "proposals.reject",
        "r",
        "vote(False)",
        "Reject",
        "Reject the selected open proposal (asks for confirmation).",
        mutating=True,
    ),
    ConsoleAction(
        "proposals.withdraw",
        "w",
        "withdraw",
        "Withdraw",
        "Withdraw an open proposal you made (asks for confirmation).",
        mutating=True,
    ),
    # ledger
    ConsoleAction(
        "ledger.verify", "v", "verify", "Verify", "Verify the whole ledger chain and its signed checkpoints."
    ),
    # data
    ConsoleAction(
        "data.upload",
        "u",
        "upload",
        "Upload",
        "Encrypt a local folder and upload it as the selected datasource.",
        mutating=True,
    ),
    ConsoleAction(
        "data.download",
        "d",
        "download",
        "Download",
        "Download and decrypt the selected datasource or datasink into a folder.",
    ),
    # deployments
    ConsoleAction(
        "deployments.stop", "s", "stop", "Stop", "Stop the selected deployment (asks for confirmation).", mutating=True
    ),
    ConsoleAction(
        "deployments.kill",
        "k",
        "kill_switch",
        "Kill switch",
        "Disable execution of the contract (confirm by typing its id).",
        mutating=True,
    ),
    ConsoleAction(
        "deployments.follow", "end", "follow", "Follow log", "Jump to the end of the log and resume following it."
    ),
    # models
    ConsoleAction(
        "models.publish",
        "p",
        "publish",
        "Publish",
        "Propose publishing the selected verified version (asks for confirmation; every member votes).",
        mutating=True,
    ),
    # inference
    ConsoleAction(
        "inference.run",
        "e",
        "run_evaluation",
        "Evaluate",
        "Run the consumer's test set against the contract's endpoint.",
        mutating=True,
    ),
)

BY_ID: dict[str, ConsoleAction] = {action.action_id: action for action in ACTIONS}


def actions_for(view: str, *, read_only: bool = False) -> list[ConsoleAction]:
    return [a for a in ACTIONS if a.view == view and not (read_only and a.mutating)]


def bindings_for(view: str) -> list[BindingType]:
    """Bindings are declared in full; ``check_action`` hides mutating ones in read-only mode."""
    return [action.binding() for action in actions_for(view)]


def is_mutating(method: str) -> bool:
    name = method.split("(", 1)[0]
    return any(a.mutating and a.method.split("(", 1)[0] == name for a in ACTIONS)
