"""`cleanroom deployment start|status|logs|stop`: run an accepted contract's clean room here.

The runtime runs as a background process under ``$CLEANROOM_HOME/runtime`` and talks to the
embedded governance and key service (`cleanroom up`). Lifecycle events are also recorded in
governance, so every party can follow them with `cleanroom governance contract event list`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from core import embedded
from core.errors import CleanroomError
from core.runtime import process
from core.runtime.local import read_status
from core.workspace import Workspace
from tui.aci_backend import aci_backend

console = Console()
err_console = Console(stderr=True)
OUTPUT = click.option("--output", "-o", "output", type=click.Choice(["table", "json"]), default="table",
                      show_default=True, help="table for people, json for scripts (one document on stdout).")
CONTRACT = click.option("--contract-id", required=True, help="The accepted contract to deploy.")
LIFECYCLE = ("deploying", "attested", "keys_released", "running", "stopping", "exited", "sealed", "failed",
             "key_released", "key_release_refused")


def _environment() -> process.RuntimeEnvironment:
    home = embedded.home()
    return process.RuntimeEnvironment(embedded.runtime_state_dir(home), embedded.governance_state_dir(home),
                                      embedded.key_service_state_dir(home))


def _when(at: Any) -> str:
    return datetime.fromtimestamp(float(at), tz=timezone.utc).strftime("%H:%M:%S") if at else ""


@click.group("deployment")
def deployment() -> None:
    """Start, watch and stop the clean room of an accepted contract (the hoster runs it)."""


@deployment.command("start")
@CONTRACT
@click.option("--insecure-no-sandbox", is_flag=True,
              help="Run workloads as plain processes when bubblewrap is missing. NOT a clean room.")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Run this deployment spec file instead of the accepted one (it is attested as is; "
                   "keys are released only if it matches the accepted policy).")
@click.option("--ingress-port", type=int, default=0, show_default=True, help="Loopback port of the TLS ingress (0: any free).")
@OUTPUT
@aci_backend("start")
def start(contract_id: str, insecure_no_sandbox: bool, spec_file: Path | None, ingress_port: int,
          output: str) -> None:
    """Attest, get keys released, decrypt datasources into private mounts and run the workloads.

    \b
    Example:
      cleanroom -w W/hoster deployment start --contract-id inference-initial
      cleanroom -w W/hoster deployment start --contract-id inference-initial --backend aci \\
          --resource-group rg-cleanroom --location westeurope \\
          --template out/cleanroom-aci-template.json --cce-policy-file out/cce-policy.b64
    """
    if insecure_no_sandbox:
        err_console.print("[bold red]WARNING: --insecure-no-sandbox: workloads run WITHOUT bubblewrap. They can "
                          "reach the network and read this machine's files. This is not a clean room.[/]")
    with console.status(f"starting the clean room of {contract_id}…"):
        status = process.start_background(_environment(), contract_id, insecure_no_sandbox=insecure_no_sandbox,
                                          spec_file=spec_file, ingress_port=ingress_port)
    if status.get("state") == "failed":
        raise CleanroomError(f"deployment of '{contract_id}' failed: {status.get('error')}",
                             hint=f"see `cleanroom deployment logs --contract-id {contract_id}`")
    if output == "json":
        click.echo(json.dumps(status, sort_keys=True))
        return
    console.print(f"[bold]{contract_id}[/] is {status.get('state')} (pid {status.get('pid')}, sandbox "
                  f"{status.get('sandbox')})" + (f"; ingress {status['ingress']}" if status.get("ingress") else ""))


def _governance_events(ctx: click.Context, contract_id: str) -> list[dict[str, Any]]:
    """Lifecycle events from governance, when this workspace is deployed to it (else none)."""
    from core.governance.client import GovernanceClient

    try:
        with GovernanceClient.from_workspace(Workspace.open(ctx.obj["workspace"])) as client:  # events: members only
            events = client.events(contract_id)["events"]
    except CleanroomError:
        return []
    return [event for event in events if event["type"] in LIFECYCLE]


@deployment.command("status")
@CONTRACT
@OUTPUT
@click.pass_context
@aci_backend("status")
def status_verb(ctx: click.Context, contract_id: str, output: str) -> None:
    """Show the deployment's state here and its lifecycle events in governance.

    \b
    Example:
      cleanroom -w W/consumer deployment status --contract-id inference-initial -o json
    """
    try:
        local = read_status(_environment().runtime_state_dir, contract_id)
    except CleanroomError:
        local = {"contract_id": contract_id, "state": "not deployed on this machine"}
    events = _governance_events(ctx, contract_id)
    if output == "json":
        click.echo(json.dumps({"status": local, "events": events}, sort_keys=True))
        return
    console.print(f"[bold]{contract_id}[/]: {local.get('state')}"
                  + (f" (pid {local['pid']})" if local.get("pid") else "")
                  + (f", ingress {local['ingress']}" if local.get("ingress") and local.get("state") == "running" else "")
                  + (f", exit codes {local['exit_codes']}" if local.get("exit_codes") else "")
                  + (f", error: {local['error']}" if local.get("error") else ""))
    if events:
        table = Table(title="lifecycle events (governance)")
        for column in ("seqno", "time", "type", "detail"):
            table.add_column(column, overflow="fold")
        for event in events:
            table.add_row(str(event["seqno"]), _when(event.get("timestamp")), event["type"],
                          json.dumps(event.get("data", {}), sort_keys=True)[:160])
        console.print(table)


@deployment.command("logs")
@CONTRACT
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the deployment ends.")
@OUTPUT
@aci_backend("logs")
def logs(contract_id: str, follow: bool, output: str) -> None:
    """Print the runtime's log (lifecycle, refusals, telemetry). Application output is not here: it
    goes to the logging datasink only when the contract enables logging.

    \b
    Example:
      cleanroom -w W/hoster deployment logs --contract-id inference-initial --follow
    """
    env = _environment()
    shown = 0
    while True:
        lines = process.log_lines(env, contract_id)
        for line in lines[shown:]:
            if output == "json":
                click.echo(json.dumps(line, sort_keys=True))
            else:
                detail = {k: v for k, v in line.items() if k not in ("at", "type")}
                console.print(f"{_when(line.get('at'))} [bold]{line.get('type')}[/] "
                              f"{json.dumps(detail, sort_keys=True) if detail else ''}", highlight=False)
        shown = len(lines)
        if not follow or read_status(env.runtime_state_dir, contract_id).get("state") not in ("starting", "running"):
            return
        time.sleep(0.5)


@deployment.command("stop")
@CONTRACT
@OUTPUT
@aci_backend("stop")
def stop(contract_id: str, output: str) -> None:
    """Stop the workloads, seal the datasinks to their owners and remove the plaintext mounts.

    \b
    Example:
      cleanroom -w W/hoster deployment stop --contract-id inference-initial
    """
    with console.status(f"stopping {contract_id} and sealing its datasinks…"):
        status = process.stop(_environment(), contract_id)
    if output == "json":
        click.echo(json.dumps(status, sort_keys=True))
        return
    console.print(f"[bold]{contract_id}[/] is {status.get('state')}"
                  + (f"; sealed {', '.join(status['sealed'])}" if status.get("sealed") else ""))
