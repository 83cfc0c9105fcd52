"""Confirmation modals for every mutating action.

A signed ballot cannot be taken back, so the vote modal restates exactly what will be signed
(proposal, choice, persona and member) and defaults to nothing: only `y` signs. The kill
switch is stronger still: the operator types the contract id, as in a cloud console's delete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from core.engine import PersonaEngine, Proposal
from core.errors import CleanroomError
from core.governance.review import DocumentDiff, Section, compare, read_regenerated, summarize
from tui.widgets.worker_errors import error_text


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no for a mutating action: `y` confirms, `n`, Esc or Enter cancels.

    Focus starts on Cancel and the confirm button cannot take focus at all: Enter is the key
    a hurried operator presses to get past a dialog, so it must never be the key that signs or
    stops something. Only the typed `y` (or a deliberate click) confirms."""

    AUTO_FOCUS = "#confirm-no"
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n", "answer(False)", "No", id="confirm.no"),
        Binding("escape", "answer(False)", "Cancel", show=False, id="confirm.cancel"),
    ]

    def __init__(self, question: str | Content, *, confirm_label: str = "Yes") -> None:
        super().__init__(classes="confirm-modal")
        self.question = question
        self.confirm_label = confirm_label

    def body(self) -> ComposeResult:
        yield Static(self.question, id="confirm-question")

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield from self.body()
            with Horizontal(id="confirm-buttons"):
                confirm = Button(f"{self.confirm_label} (y)", id="confirm-yes", variant="primary")
                confirm.can_focus = False  # neither Enter nor Tab+Enter may confirm: only `y`
                yield confirm
                yield Button("Cancel (n)", id="confirm-no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


class VoteScreen(ConfirmScreen):
    """Restates proposal, choice and persona before a ballot is signed, and what it accepts.

    Below the ballot line the modal loads the voted document (a set_contract's contract data,
    a proposed deployment spec or policy) and shows it readably, the same summary as
    `contract show` / `proposal show` (core.governance.review). A path typed into the box is the
    document the voter regenerated (`config view --output json`, `deployment generate`): Enter
    compares it field by field and says "identical" only when the canonical JSON is equal.
    Typing goes to the box, so `y` there is a letter, never a signature.
    """

    def __init__(self, engine: PersonaEngine, proposal: Proposal, accept: bool) -> None:
        super().__init__("", confirm_label="Sign ballot")
        self.add_class("vote-modal")
        self.engine = engine
        self.proposal = proposal
        self.accept = accept
        self.voted: dict[str, Any] | None = None  # once loaded

    def body(self) -> ComposeResult:
        proposal, engine = self.proposal, self.engine
        choice = (
            Content.styled("✔ ACCEPT", "bold $success") if self.accept else Content.styled("✖ REJECT", "bold $error")
        )
        yield Static(Content.styled("Sign this ballot?", "bold"), classes="modal-title")
        yield Static(
            Content.assemble(
                "proposal  ",
                Content.styled(proposal.proposal_id, "bold"),
                "\n",
                "action    ",
                proposal.action,
                "\n",
                "contract  ",
                proposal.contract_id or "–",
                "\n",
                "choice    ",
                choice,
                "\n",
                "as        ",
                Content.styled(engine.persona, "bold"),
                f" (member {engine.short_member_id})",
            ),
            id="vote-summary",
        )
        with VerticalScroll(id="vote-review"):
            yield Static(Content.styled("… loading what this ballot accepts", "$text-muted"), id="vote-review-body")
        yield Input(placeholder="compare with the file you regenerated: path, then Enter", id="vote-diff-input")
        yield Static("", id="vote-diff")
        yield Static(Content.styled("A signed ballot is final; the ledger records it.", "$text-muted"))

    def on_mount(self) -> None:
        self._load_review()

    @work(thread=True, exit_on_error=False)
    def _load_review(self) -> None:
        try:
            document = self.engine.voted_document(self.proposal.proposal_id)
            names = {member.member_id: member.name for member in self.engine.members()}
        except Exception as exc:  # shown where the summary would be; the modal still works
            self.app.call_from_thread(self._show_review_error, error_text(exc))
            return
        self.app.call_from_thread(self._show_review, document, names)

    def _show_review(self, document: dict[str, Any], names: dict[str, str]) -> None:
        self.voted = document
        self.query_one("#vote-review-body", Static).update(review_content(summarize(document, names)))

    def _show_review_error(self, text: str) -> None:
        self.query_one("#vote-review-body", Static).update(
            Content.styled(f"✖ could not load what this ballot accepts: {text}", "$error")
        )

    @on(Input.Submitted, "#vote-diff-input")
    def _compare(self, event: Input.Submitted) -> None:
        event.stop()
        target = self.query_one("#vote-diff", Static)
        if self.voted is None:
            target.update(Content.styled("the voted document has not loaded yet", "$warning"))
            return
        try:
            regenerated = read_regenerated(Path(event.value.strip()).expanduser())
        except CleanroomError as exc:
            target.update(Content.styled(f"✖ {exc.one_line()}", "$error"))
            return
        target.update(diff_content(compare(self.voted, regenerated)))


def review_content(sections: list[Section]) -> Content:
    """The review summary with bold section titles (the CLI prints the same text plainly)."""
    lines: list[Content] = []
    for section in sections:
        lines.append(Content.styled(section.title, "bold $primary"))
        lines.extend(Content(f"  {line}") for line in section.lines)
    return Content("\n").join(lines)


def diff_content(diff: DocumentDiff) -> Content:
    lines = diff.lines()
    head = Content.styled(
        f"✔ {lines[0]}" if diff.identical else f"✖ {lines[0]}", "bold $success" if diff.identical else "bold $error"
    )
    return Content("\n").join([head, *(Content.styled(line, "$warning") for line in lines[1:])])


class KillSwitchScreen(ModalScreen[bool]):
    """Disabling execution stops a running clean room: confirm by typing the contract id."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="kill.cancel")]

    def __init__(self, engine: PersonaEngine, contract_id: str) -> None:
        super().__init__(classes="confirm-modal")
        self.engine = engine
        self.contract_id = contract_id

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(Content.styled("■ Kill switch", "bold $error"), classes="modal-title")
            yield Static(
                Content.assemble(
                    "Disable execution of contract ",
                    Content.styled(self.contract_id, "bold"),
                    f" as {self.engine.persona} (member {self.engine.short_member_id}).\n"
                    "Running deployments stop; a restart needs you to re-enable it.\n\n"
                    "Type the contract id to confirm:",
                )
            )
            yield Input(placeholder=self.contract_id, id="kill-confirm-input")
            yield Static("", id="kill-confirm-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.contract_id:
            self.dismiss(True)
        else:
            self.query_one("#kill-confirm-error", Static).update(
                Content.styled("✖ that is not the contract id; Esc cancels", "$error")
            )

    def action_cancel(self) -> None:
        self.dismiss(False)


class FolderPromptScreen(ModalScreen[str | None]):
    """Ask for a local folder (upload source or download target); Enter submits, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, question: str, placeholder: str) -> None:
        super().__init__(classes="confirm-modal")
        self.question = question
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(self.question, classes="modal-title")
            yield Input(placeholder=self.placeholder, id="folder-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class QuitScreen(ModalScreen[str | None]):
    """Quitting the scenario console while clean rooms run: stop them, leave them, or stay.

    Quitting used to stop every deployment, a training run an hour in included, on one key.
    Now the modal lists what is running and waits for a letter: `s` stops it all (and seals
    the datasinks), `l` leaves it running and says how to stop it later; Esc, `n` and Enter
    (focus starts on Stay) keep the console open."""

    BINDINGS = [
        Binding("s", "answer('stop')", "Stop all and quit", id="quit.stop"),
        Binding("l", "answer('leave')", "Leave running and quit", id="quit.leave"),
        Binding("n", "answer(None)", "Stay", id="quit.stay"),
        Binding("escape", "answer(None)", "Stay", show=False, id="quit.cancel"),
    ]
    AUTO_FOCUS = "#quit-stay"

    def __init__(self, running: list[str]) -> None:
        super().__init__(classes="confirm-modal")
        self.running = running

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(Content.styled("Quit the console?", "bold"), classes="modal-title")
            yield Static("Still running:\n" + "\n".join(f"  • {item}" for item in self.running), id="quit-running")
            yield Static(
                Content.styled(
                    "s stops them (datasinks are sealed; a training run is lost); "
                    "l leaves them running; a later `cleanroom console` resumes."
                    + (
                        " A step in progress here is interrupted either way and done again on resume."
                        if any(item.startswith("step ") for item in self.running)
                        else ""
                    ),
                    "$text-muted",
                )
            )
            with Horizontal(id="confirm-buttons"):
                for label, button_id in (("Stop all (s)", "quit-stop"), ("Leave running (l)", "quit-leave")):
                    button = Button(label, id=button_id, variant="error" if button_id == "quit-stop" else "default")
                    button.can_focus = False  # Enter never stops work: only the letters do
                    yield button
                yield Button("Stay (n)", id="quit-stay")

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss({"quit-stop": "stop", "quit-leave": "leave"}.get(event.button.id or ""))
