"""`contract show` and `proposal show` for a voter: a readable summary, or `--diff FILE`.

The JSON document (``-o json``, ``--query``) stays what the service returned, so scripts that
read ``proposalId`` or ``version`` are unchanged. For people, the table view is the header
(state, version, hashes, ballots by persona) and the summary of what a ballot accepts
(core.governance.review), never the raw certificates. ``--diff FILE`` compares that voted
document with the one the voter regenerated; its JSON says ``identical`` and lists the fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.engine import PersonaEngine
from core.governance.review import (
    MISSING,
    SHORT_ID,
    DocumentDiff,
    compare,
    read_regenerated,
    render,
    summarize,
    voted_document,
)
from tui.output import Result

BALLOT_MARKS = {"accept": "✔ accept", "reject": "✖ reject"}


def contract_result(engine: PersonaEngine, contract_id: str, diff_file: Path | None) -> Result:
    contract = engine.read_contract(contract_id)
    document = dict(contract.get("data") or {})
    if diff_file is not None:
        return diff_result(document, diff_file, f"contract {contract_id}")
    names = _names(engine)
    header = {
        "contract": contract_id,
        "state": contract.get("state"),
        "version": contract.get("version"),
        "proposalId": contract.get("proposalId") or "–",
        "hash": contract.get("hash") or "– (not accepted yet)",
        "createdBy": _who(contract.get("createdBy"), names),
    }
    return Result(contract, render=lambda console: _print_review(console, header, document, names))


def proposal_result(engine: PersonaEngine, proposal_id: str, diff_file: Path | None) -> Result:
    proposal, contract = engine.proposal_under_review(proposal_id)
    document = voted_document(proposal, contract)
    if diff_file is not None:
        return diff_result(document, diff_file, f"proposal {proposal_id[:SHORT_ID]}")
    names = _names(engine)
    ballots = proposal.get("ballots") or {}
    header = {
        "proposal": proposal_id,
        "action": proposal.get("action"),
        "state": proposal.get("proposalState"),
        "contract": proposal.get("contractId") or "–",
        "proposer": _who(proposal.get("proposerId"), names),
        "ballots": ", ".join(
            f"{name} {BALLOT_MARKS.get(ballots.get(member, ''), '· not yet')}"
            for member, name in sorted(names.items(), key=lambda item: item[1])
        )
        or "–",
    }
    if contract is not None:
        header["contractVersion"] = f"{proposal['args'].get('version')} (now {contract.get('version')})"
    return Result(proposal, render=lambda console: _print_review(console, header, document, names))


def diff_result(voted: dict[str, Any], diff_file: Path, subject: str) -> Result:
    diff = compare(voted, read_regenerated(diff_file))
    document = {
        "identical": diff.identical,
        "votedHash": diff.voted_hash,
        "regeneratedHash": diff.regenerated_hash,
        "changes": [
            {"path": c.path, "voted": _plain(c.voted), "regenerated": _plain(c.regenerated)} for c in diff.changes
        ],
    }
    return Result(document, render=lambda console: _print_diff(console, diff, subject, diff_file))


def _names(engine: PersonaEngine) -> dict[str, str]:
    return {m["memberId"]: m.get("name") or m["memberId"][:SHORT_ID] for m in engine.list_members()}


def _who(member_id: Any, names: dict[str, str]) -> str:
    if not member_id:
        return "–"
    return f"{names.get(member_id, '?')} ({str(member_id)[:SHORT_ID]})"


def _plain(value: Any) -> Any:
    """A field absent on one side is null in JSON (the table says which side lacks it)."""
    return None if value is MISSING else value


def _print_review(console: Console, header: dict[str, Any], document: dict[str, Any], names: dict[str, str]) -> None:
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in header.items():
        table.add_row(key, str(value))
    console.print(table)
    console.print(Text("\nwhat a ballot accepts", style="bold underline"))
    console.print(Text(render(summarize(document, names))), highlight=False)


def _print_diff(console: Console, diff: DocumentDiff, subject: str, diff_file: Path) -> None:
    head, *changes = diff.lines()
    console.print(
        Text(f"{subject} against {diff_file}: {head}", style="bold green" if diff.identical else "bold red"),
        highlight=False,
    )
    for line in changes:
        console.print(Text(f"  {line}"), highlight=False)
