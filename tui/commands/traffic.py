"""`cleanroom governance traffic ...`: blue/green between a contract's serving applications.

`propose` opens a ``set_traffic_split`` proposal every member votes (`governance proposal vote`);
`rollback` is one member's signed act that sends all traffic to one application at once (kept in
the ledger); `show` is what the ingress follows. The ingress polls the split every second.
"""

from __future__ import annotations

from typing import Any

import click

from core.engine import PersonaEngine
from core.workspace import Workspace
from tui.output import Result, verb_output

CONTRACT = click.option("--contract", "--id", "contract_id", required=True, help="Contract id.")


def _engine(ctx: click.Context) -> PersonaEngine:
    return PersonaEngine(Workspace.open(ctx.obj["workspace"]))


def _split_text(feed: dict[str, Any]) -> str:
    split = feed.get("split") or {}
    if not split:
        applications = feed.get("applications") or []
        return f"no split voted: even between {', '.join(applications) or 'no serving applications'}"
    shares = ", ".join(f"{name} {percent}%" for name, percent in split.items())
    rolled_back = f" (rolled back to {feed['rolledBackTo']})" if feed.get("rolledBackTo") else ""
    return f"{shares}{rolled_back}"


@click.group("traffic")
def traffic_group() -> None:
    """Blue/green: the voted traffic split between a contract's serving applications.

    \b
    Example (send 10 % to the fine-tuned model; every member votes; any member rolls back):
      cleanroom -w W/hoster governance traffic propose --contract serving --split base=90,tuned=10
      cleanroom -w W/consumer governance proposal vote --proposal-id P --action accept
      cleanroom -w W/consumer governance traffic rollback --contract serving --to base
    """


@traffic_group.command("propose")
@CONTRACT
@click.option("--split", "split_text", required=True, help="NAME=PERCENT,... summing to 100, e.g. base=90,tuned=10.")
@verb_output
@click.pass_context
def traffic_propose(ctx: click.Context, contract_id: str, split_text: str) -> Result:
    """Propose a traffic split; it applies when every member accepts it.

    \b
    Example:
      cleanroom -w W/hoster governance traffic propose --contract serving --split base=90,tuned=10
    """
    with _engine(ctx) as engine:
        result = engine.propose_traffic_split(contract_id, split_text)
    return Result(result, text=f"proposal {result['proposalId']} (set_traffic_split) is {result['proposalState']}")


@traffic_group.command("show")
@CONTRACT
@verb_output
@click.pass_context
def traffic_show(ctx: click.Context, contract_id: str) -> Result:
    """Show the split the ingress follows, its version and open split proposals.

    \b
    Example:
      cleanroom -w W/consumer governance traffic show --contract serving --query split
    """
    with _engine(ctx) as engine:
        feed = engine.traffic(contract_id)
    return Result({"contractId": contract_id, **feed, "summary": _split_text(feed)}, title=f"traffic of {contract_id}")


@traffic_group.command("rollback")
@CONTRACT
@click.option("--to", "application", required=True, help="The serving application to send all traffic to.")
@verb_output
@click.pass_context
def traffic_rollback(ctx: click.Context, contract_id: str, application: str) -> Result:
    """Send all traffic to one application now, on your signature alone (recorded in the ledger).

    \b
    Example (the fine-tuned version misbehaves):
      cleanroom -w W/consumer governance traffic rollback --contract serving --to base
    """
    with _engine(ctx) as engine:
        feed = engine.rollback_traffic(contract_id, application)
    return Result(
        {"contractId": contract_id, **feed},
        text=f"traffic of {contract_id} rolled back: {_split_text(feed)} (version {feed['version']})",
    )
