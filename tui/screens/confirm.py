"""Confirmation modals for every mutating action.

A signed ballot cannot be taken back, so the vote modal restates exactly what will be signed
(proposal, choice, persona and member) and defaults to nothing: only `y` signs. The kill
switch is stronger still: the operator types the contract id, as in a cloud console's delete.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from core.engine import PersonaEngine, Proposal


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no for a mutating action: `y` confirms, `n` or Esc cancels."""

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
                yield Button(f"{self.confirm_label} (y)", id="confirm-yes", variant="primary")
                yield Button("Cancel (n)", id="confirm-no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


class VoteScreen(ConfirmScreen):
    """Restates proposal, choice and persona before a ballot is signed."""

    def __init__(self, engine: PersonaEngine, proposal: Proposal, accept: bool) -> None:
        super().__init__("", confirm_label="Sign ballot")
        self.engine = engine
        self.proposal = proposal
        self.accept = accept

    def body(self) -> ComposeResult:
        proposal, engine = self.proposal, self.engine
        choice = (Content.styled("✔ ACCEPT", "bold $success") if self.accept
                  else Content.styled("✖ REJECT", "bold $error"))
        yield Static(Content.styled("Sign this ballot?", "bold"), classes="modal-title")
        yield Static(Content.assemble(
            "proposal  ", Content.styled(proposal.proposal_id, "bold"), "\n",
            "action    ", proposal.action, "\n",
            "contract  ", proposal.contract_id or "–", "\n",
            "choice    ", choice, "\n",
            "as        ", Content.styled(engine.persona, "bold"), f" (member {engine.short_member_id})",
        ), id="vote-summary")
        yield Static(Content.styled("A signed ballot is final; the ledger records it.", "$text-muted"))


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
            yield Static(Content.assemble(
                "Disable execution of contract ", Content.styled(self.contract_id, "bold"),
                f" as {self.engine.persona} (member {self.engine.short_member_id}).\n"
                "Running deployments stop; a restart needs you to re-enable it.\n\n"
                "Type the contract id to confirm:"))
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
                Content.styled("✖ that is not the contract id; Esc cancels", "$error"))

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
