"""Proposals and contracts: the table operators vote from, and the detail of the selected one.

The table shows each member's ballot as ✔ (accept) ✖ (reject) · (not yet) in a fixed member
order, so "who is still missing" reads at a glance. Vote keys are offered only where they
apply; a key with nothing to act on (already voted, a closed proposal, someone else's to
withdraw) is dimmed and, pressed, says why.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from core.engine import Contract, Member, PersonaEngine, Proposal
from core.governance.models import ProposalState
from tui.actions import bindings_for
from tui.screens.confirm import ConfirmScreen, VoteScreen
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.idle_keys import ExplainsIdleKeys
from tui.widgets.worker_errors import ToastsWorkerErrors

STATE_ICONS = {
    "Open": ("◌", "$accent"),
    "Accepted": ("✔", "$success"),
    "Rejected": ("✖", "$error"),
    "Withdrawn": ("↩", "$text-muted"),
    "Failed": ("!", "$error"),
    "Dropped": ("–", "$text-muted"),
    "Draft": ("✎", "$text-muted"),
    "Proposed": ("◌", "$accent"),
}
STATE_WIDTH = 11
BALLOT_MARKS = {"accept": ("✔", "$success"), "reject": ("✖", "$error")}


def state_cell(state: str) -> Content:
    icon, style = STATE_ICONS.get(state, ("?", "$text-muted"))
    return Content.styled(f"{icon} {state}", style)


def ballot_mark(proposal: Proposal, member_id: str) -> Content:
    mark, style = BALLOT_MARKS.get(proposal.ballots.get(member_id, ""), ("·", "$text-muted"))
    return Content.styled(mark, style)


def ballots_cell(proposal: Proposal, members: list[Member]) -> Content:
    return Content(" ").join([ballot_mark(proposal, m.member_id) for m in members])


def age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def content_diff(proposal: Proposal) -> Content:
    """The proposal content, as a diff against the previous version when there is one."""
    current = json.dumps(proposal.content, indent=2, sort_keys=True).splitlines()
    if proposal.previous_content is None:
        return Content("\n".join(current) or "(empty)")
    previous = json.dumps(proposal.previous_content, indent=2, sort_keys=True).splitlines()
    lines = []
    for line in difflib.unified_diff(previous, current, "previous", "proposed", lineterm="", n=2):
        style = (
            "$success"
            if line.startswith("+")
            else "$error"
            if line.startswith("-")
            else "$accent"
            if line.startswith("@@")
            else ""
        )
        lines.append(Content.styled(line, style) if style else Content(line))
    return Content("\n").join(lines) if lines else Content("(identical to the previous version)")


NO_PROPOSALS = (
    "No proposals yet: a party proposes a contract (`cleanroom governance contract propose`) "
    "and it appears here for every member to vote on."
)
NO_CONTRACTS = (
    "No contracts yet: the hoster creates one from the merged config fragments "
    "(`cleanroom governance contract create`)."
)


class ProposalsView(ExplainsIdleKeys, ToastsWorkerErrors, Vertical):
    """The home view of every persona: proposals with ballots, contracts, and a detail pane."""

    VIEW_ID = "proposals"
    BINDINGS = bindings_for("proposals")

    class Voted(Message):
        """A ballot was recorded (so the app can toast it and other personas can refresh)."""

        def __init__(self, proposal: Proposal, accept: bool) -> None:
            super().__init__()
            self.proposal = proposal
            self.accept = accept

    def __init__(self, engine: PersonaEngine, *, read_only: bool, now: Callable[[], float] = time.time) -> None:
        super().__init__(id="proposals-view")
        self.engine = engine
        self.read_only = read_only
        self.now = now
        self.proposals: list[Proposal] = []
        self.contracts: list[Contract] = []
        self.members: list[Member] = []
        self.filter_text = ""
        self._loaded = False

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: id, action, contract, proposer or state (Esc clears)",
            id="proposal-filter",
            classes="hidden",
        )
        with Horizontal():
            with Vertical(id="proposal-tables"):
                yield DataTable(id="proposals-table", cursor_type="row", zebra_stripes=True)
                yield EmptyHint(NO_PROPOSALS, id="proposals-empty")
                yield Static("Contracts", classes="section-title")
                yield DataTable(id="contracts-table", cursor_type="row")
                yield EmptyHint(NO_CONTRACTS, id="contracts-empty")
            with VerticalScroll(id="proposal-detail"):
                yield Static("Select a proposal to see its content.", id="proposal-detail-body")

    def on_mount(self) -> None:
        self._add_proposal_columns()
        contracts = self.query_one("#contracts-table", DataTable)
        contracts.add_columns("contract")
        contracts.add_column("state", width=STATE_WIDTH)
        contracts.add_columns("version", "hash")
        contracts.add_column("execution", width=11)

    def _add_proposal_columns(self) -> None:
        # Content cells are not measured by DataTable, so their columns get explicit widths.
        table = self.query_one("#proposals-table", DataTable)
        table.clear(columns=True)
        table.add_columns("id", "action", "contract", "proposer")
        table.add_column("state", width=STATE_WIDTH)
        # the header names each ballot column by the member's initial, aligned over its mark
        initials = " ".join(m.name[:1] for m in self.members) or "ballots"
        table.add_column(initials, width=max(7, 2 * len(self.members) - 1), key="ballots")
        table.add_column("age", key="age")

    # data -------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="proposals-load", exit_on_error=False)
    def load(self) -> None:
        members = self.engine.members()
        proposals = self.engine.proposals()
        contracts = self.engine.contracts()
        self.app.call_from_thread(self.show, members, proposals, contracts)

    def show(self, members: list[Member], proposals: list[Proposal], contracts: list[Contract]) -> None:
        members = sorted(members, key=lambda m: (m.name, m.member_id))
        proposals = sorted(proposals, key=lambda p: p.created_at)
        if self._loaded and (members, proposals, contracts) == (self.members, self.proposals, self.contracts):
            # the periodic reload found nothing new: refilling would repaint (and re-lay out)
            # the view every few seconds, so only the age column moves
            self._refresh_ages()
            return
        self._loaded = True
        if members != self.members:
            self.members = members
            self._add_proposal_columns()
        self._toast_decisions(proposals)
        self.proposals = proposals
        self.contracts = contracts
        self._fill_proposals()
        contracts_table = self.query_one("#contracts-table", DataTable)
        contracts_table.clear()
        for contract in contracts:
            execution = (
                Content.styled("▶ enabled", "$success")
                if contract.execution_enabled
                else Content.styled("■ disabled", "bold $error")
            )
            contracts_table.add_row(
                contract.contract_id,
                state_cell(contract.state),
                contract.version[:8],
                (contract.contract_hash or "")[:12],
                execution,
                key=contract.contract_id,
            )
        self.query_one("#contracts-empty", EmptyHint).follow(len(contracts))

    def _toast_decisions(self, proposals: list[Proposal]) -> None:
        """A proposal that closed since the last load is news for every persona: toast it."""
        before = {p.proposal_id: p.state for p in self.proposals}
        if not before:
            return
        for proposal in proposals:
            if before.get(proposal.proposal_id) == ProposalState.OPEN and not proposal.is_open:
                icon, _ = STATE_ICONS.get(proposal.state, ("?", ""))
                self.notify(
                    f"{icon} {proposal.action} {proposal.proposal_id[:10]} on "
                    f"{proposal.contract_id or '–'} is {proposal.state}",
                    title=f"Proposal {proposal.state.lower()}",
                    severity="information" if proposal.state == ProposalState.ACCEPTED else "warning",
                )

    def _visible(self) -> list[Proposal]:
        needle = self.filter_text.lower()
        if not needle:
            return self.proposals
        return [
            p
            for p in self.proposals
            if needle
            in " ".join(
                (p.proposal_id, p.action, p.contract_id, p.proposer_id, self._member_name(p.proposer_id), p.state)
            ).lower()
        ]

    def _member_name(self, member_id: str) -> str:
        for member in self.members:
            if member.member_id == member_id:
                return member.name
        return member_id[:8]

    def _fill_proposals(self) -> None:
        table = self.query_one("#proposals-table", DataTable)
        selected = self.selected
        table.clear()
        now = self.now()
        for proposal in self._visible():
            proposer = self._member_name(proposal.proposer_id)
            if proposal.proposer_id == self.engine.member_id:
                proposer += " (you)"
            table.add_row(
                proposal.proposal_id[:10],
                proposal.action,
                proposal.contract_id,
                proposer,
                state_cell(proposal.state),
                ballots_cell(proposal, self.members),
                age_text(now - proposal.created_at) if proposal.created_at else "–",
                key=proposal.proposal_id,
            )
        if selected is not None and selected.proposal_id in table.rows:
            table.move_cursor(row=table.get_row_index(selected.proposal_id))
        self.query_one("#proposals-empty", EmptyHint).follow(len(self.proposals))
        self._show_detail()

    def _refresh_ages(self) -> None:
        table = self.query_one("#proposals-table", DataTable)
        now = self.now()
        for proposal in self._visible():
            if proposal.created_at and proposal.proposal_id in table.rows:
                age = age_text(now - proposal.created_at)
                if table.get_cell(proposal.proposal_id, "age") != age:
                    table.update_cell(proposal.proposal_id, "age", age)

    def replace(self, proposal: Proposal) -> None:
        self.proposals = [proposal if p.proposal_id == proposal.proposal_id else p for p in self.proposals]
        self._fill_proposals()

    @property
    def selected(self) -> Proposal | None:
        table = self.query_one("#proposals-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((p for p in self.proposals if p.proposal_id == key), None)

    @on(DataTable.RowHighlighted, "#proposals-table")
    def _highlighted(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    def _show_detail(self) -> None:
        body = self.query_one("#proposal-detail-body", Static)
        proposal = self.selected
        if proposal is None:
            body.update("No proposals yet." if not self.proposals else "No proposal matches the filter.")
            return
        header = Content.assemble(
            Content.styled(f"{proposal.action}", "bold"),
            f"  {proposal.proposal_id[:16]}…\n",
            "contract ",
            proposal.contract_id or "–",
            "   state ",
            state_cell(proposal.state),
            "\n",
            "proposer ",
            self._member_name(proposal.proposer_id),
            "\n",
            "ballots  ",
            Content(", ").join(
                [Content.assemble(m.name, " ", ballot_mark(proposal, m.member_id)) for m in self.members]
            )
            if self.members
            else "–",
            "\n",
            Content.styled(
                "changes against the previous version\n" if proposal.previous_content is not None else "content\n",
                "$text-muted underline",
            ),
        )
        body.update(Content.assemble(header, content_diff(proposal)))

    # keys -------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.read_only and action in ("vote", "withdraw"))

    def idle_reason(self, action: str) -> str | None:
        if action not in ("vote", "withdraw"):
            return None
        proposal = self.selected
        if proposal is None:
            return "no proposal selected: " + (
                "none match the filter (Esc clears it)"
                if self.proposals
                else "none yet; they appear when a party proposes a contract"
            )
        short = proposal.proposal_id[:10]
        if not proposal.is_open:
            return f"proposal {short} is {proposal.state}: {'voting' if action == 'vote' else 'withdrawing'} is over"
        if action == "vote" and self.engine.member_id in proposal.ballots:
            return f"you already voted {proposal.ballots[self.engine.member_id]} on {short}: a signed ballot is final"
        if action == "withdraw" and proposal.proposer_id != self.engine.member_id:
            return f"only its proposer ({self._member_name(proposal.proposer_id)}) can withdraw {short}"
        return None

    def action_filter(self) -> None:
        box = self.query_one("#proposal-filter", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#proposal-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self._fill_proposals()

    @on(Input.Submitted, "#proposal-filter")
    def _filter_done(self) -> None:
        self.query_one("#proposals-table", DataTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#proposal-filter", Input)
        if not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
            self.query_one("#proposals-table", DataTable).focus()

    def action_vote(self, accept: bool) -> None:
        proposal = self.selected
        if self.explain_idle("vote") or proposal is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.submit_vote(proposal.proposal_id, accept)

        self.app.push_screen(VoteScreen(self.engine, proposal, accept), confirmed)

    @work(thread=True, group="proposals-write", exit_on_error=False)
    def submit_vote(self, proposal_id: str, accept: bool) -> None:
        proposal = self.engine.vote(proposal_id, accept)
        self.app.call_from_thread(self._after_write, proposal)
        self.post_message(self.Voted(proposal, accept))

    def action_withdraw(self) -> None:
        proposal = self.selected
        if self.explain_idle("withdraw") or proposal is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.submit_withdraw(proposal.proposal_id)

        self.app.push_screen(
            ConfirmScreen(
                f"Withdraw proposal {proposal.proposal_id[:10]} ({proposal.action}) as {self.engine.persona}?",
                confirm_label="Withdraw",
            ),
            confirmed,
        )

    @work(thread=True, group="proposals-write", exit_on_error=False)
    def submit_withdraw(self, proposal_id: str) -> None:
        proposal = self.engine.withdraw(proposal_id)
        self.app.call_from_thread(self._after_write, proposal)

    def _after_write(self, proposal: Proposal) -> None:
        self.replace(proposal)  # immediate feedback, then the full picture (contracts may change)
        self.refresh_bindings()
        self.load()
