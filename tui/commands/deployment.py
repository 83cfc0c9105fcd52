"""`cleanroom deployment start|status|logs|stop`: run an accepted contract's clean room here.

The runtime runs as a background process under ``$CLEANROOM_HOME/runtime`` and talks to the
embedded governance and key service (`cleanroom up`). Which home that is comes from the workspace:
the one whose governance it is pinned to (see ``core.services_home``), so a forgotten
``CLEANROOM_HOME`` neither points at another consortium nor hides a running clean room.
Lifecycle events are also recorded in governance, so every party can follow them with
`cleanroom governance contract event list`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from core import embedded
from core.errors import CleanroomError, NotFoundError
from core.keys.release import KeyReleaseEvent
from core.runtime import process
from core.runtime.lifecycle import LIFECYCLE_EVENTS, LIVE_STATES, DeploymentState
from core.runtime.local import read_status
from core.services_home import services_home
from core.workspace import Workspace
from tui.aci_backend import aci_backend
from tui.output import Result, Stream, camel_keys, stderr_console, verb_output

CONTRACT = click.option("--contract-id", required=True, help="The accepted contract to deploy.")
# what `deployment status` shows of governance's events: the runtime's lifecycle and key releases
DEPLOYMENT_EVENTS = LIFECYCLE_EVENTS | frozenset(KeyReleaseEvent)


def _environment(ctx: click.Context, *, starting: bool = False) -> process.RuntimeEnvironment:
    """The runtime's environment in the home of the services this workspace was deployed to
    (``starting``: those services must exist, and the error says where they were looked for)."""
    home, elsewhere = services_home(Path(ctx.obj["workspace"]))
    if elsewhere:
        stderr_console().print(
            f"note: {ctx.obj['workspace']} is deployed to the services in {home}, not "
            f"{embedded.HOME_ENV}={embedded.home()}; using {home}",
            highlight=False,
        )
    elif starting and not embedded.governance_state_dir(home).is_dir():
        raise NotFoundError(
            f"no embedded services in {embedded.HOME_ENV}={home}",
            hint=f"pass -w WORKSPACE of a party deployed to them (it finds their home), or set "
            f"{embedded.HOME_ENV} to the folder `cleanroom up` used",
        )
    return process.RuntimeEnvironment(
        embedded.runtime_state_dir(home), embedded.governance_state_dir(home), embedded.key_service_state_dir(home)
    )


def _when(at: Any) -> str:
    return datetime.fromtimestamp(float(at), tz=UTC).strftime("%H:%M:%S") if at else ""


@click.group("deployment")
def deployment() -> None:
    """Start, watch and stop the clean room of an accepted contract (the hoster runs it)."""


@deployment.command("start")
@CONTRACT
@click.option(
    "--insecure-no-sandbox",
    is_flag=True,
    help="Run workloads as plain processes when bubblewrap is missing. NOT a clean room.",
)
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Run this deployment spec file instead of the accepted one (it is attested as is; "
    "keys are released only if it matches the accepted policy).",
)
@click.option(
    "--ingress-port", type=int, default=0, show_default=True, help="Loopback port of the TLS ingress (0: any free)."
)
@verb_output
@click.pass_context
@aci_backend("start")
def start(
    ctx: click.Context, contract_id: str, insecure_no_sandbox: bool, spec_file: Path | None, ingress_port: int
) -> Result:
    """Attest, get keys released, decrypt datasources into private mounts and run the workloads.

    \b
    Example:
      cleanroom -w W/hoster deployment start --contract-id inference-initial
      cleanroom -w W/hoster deployment start --contract-id inference-initial --backend aci \\
          --resource-group rg-cleanroom --location westeurope \\
          --template out/cleanroom-aci-template.json --cce-policy-file out/cce-policy.b64
    """
    err_console = stderr_console()
    if insecure_no_sandbox:
        err_console.print(
            "[bold red]WARNING: --insecure-no-sandbox: workloads run WITHOUT bubblewrap. They can "
            "reach the network and read this machine's files. This is not a clean room.[/]"
        )
    environment = _environment(ctx, starting=True)
    with err_console.status(f"starting the clean room of {contract_id}…"):
        status = process.start_background(
            environment,
            contract_id,
            insecure_no_sandbox=insecure_no_sandbox,
            spec_file=spec_file,
            ingress_port=ingress_port,
        )
    if status.get("state") == DeploymentState.FAILED:
        raise CleanroomError(
            f"deployment of '{contract_id}' failed: {status.get('error')}",
            hint=f"see `cleanroom deployment logs --contract-id {contract_id}`",
        )
    return Result(
        camel_keys(status),
        text=f"{contract_id} is {status.get('state')} (pid {status.get('pid')}, sandbox "
        f"{status.get('sandbox')})" + (f"; ingress {status['ingress']}" if status.get("ingress") else ""),
    )


def _governance_events(ctx: click.Context, contract_id: str) -> list[dict[str, Any]]:
    """Lifecycle events from governance, when this workspace is deployed to it (else none)."""
    from core.governance.client import GovernanceClient

    try:
        with GovernanceClient.from_workspace(Workspace.open(ctx.obj["workspace"])) as client:  # events: members only
            events = client.events(contract_id)["events"]
    except CleanroomError:
        return []
    return [event for event in events if event["type"] in DEPLOYMENT_EVENTS]


@deployment.command("status")
@CONTRACT
@verb_output
@click.pass_context
@aci_backend("status")
def status_verb(ctx: click.Context, contract_id: str) -> Result:
    """Show the deployment's state here and its lifecycle events in governance.

    \b
    Example:
      cleanroom -w W/consumer deployment status --contract-id inference-initial -o json
    """
    environment = _environment(ctx)
    try:
        local = read_status(environment.runtime_state_dir, contract_id)
    except CleanroomError:
        local = {"contract_id": contract_id, "state": "not deployed on this machine"}
    events = _governance_events(ctx, contract_id)
    return Result(
        {"status": camel_keys(local), "events": events},
        render=lambda console: _render_status(console, contract_id, local, events),
    )


def _render_status(console: Console, contract_id: str, local: dict[str, Any], events: list[dict[str, Any]]) -> None:
    console.print(
        f"[bold]{contract_id}[/]: {local.get('state')}"
        + (f" (pid {local['pid']})" if local.get("pid") else "")
        + (
            f", ingress {local['ingress']}"
            if local.get("ingress") and local.get("state") == DeploymentState.RUNNING
            else ""
        )
        + (f", exit codes {local['exit_codes']}" if local.get("exit_codes") else "")
        + (f", error: {local['error']}" if local.get("error") else "")
    )
    if events:
        table = Table(title="lifecycle events (governance)")
        for column in ("seqno", "time", "type", "detail"):
            table.add_column(column, overflow="fold")
        for event in events:
            table.add_row(
                str(event["seqno"]),
                _when(event.get("timestamp")),
                event["type"],
                json.dumps(event.get("data", {}), sort_keys=True)[:160],
            )
        console.print(table)


@deployment.command("logs")
@CONTRACT
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the deployment ends.")
@verb_output
@click.pass_context
@aci_backend("logs")
def logs(ctx: click.Context, contract_id: str, follow: bool) -> Stream:
    """Print the runtime's log (lifecycle, refusals, telemetry). Application output is not here: it
    goes to the logging datasink only when the contract enables logging.

    \b
    Example:
      cleanroom -w W/hoster deployment logs --contract-id inference-initial --follow
    """
    return Stream(_log_lines(_environment(ctx), contract_id, follow), _log_line)


def _log_lines(env: process.RuntimeEnvironment, contract_id: str, follow: bool) -> Iterator[dict[str, Any]]:
    shown = 0
    while True:
        lines = process.log_lines(env, contract_id)
        yield from lines[shown:]
        shown = len(lines)
        if not follow or read_status(env.runtime_state_dir, contract_id).get("state") not in LIVE_STATES:
            return
        time.sleep(0.5)


def _log_line(line: dict[str, Any]) -> str:
    detail = {k: v for k, v in line.items() if k not in ("at", "type")}
    return f"{_when(line.get('at'))} {line.get('type')} {json.dumps(detail, sort_keys=True) if detail else ''}".rstrip()


@deployment.command("stop")
@CONTRACT
@verb_output
@click.pass_context
@aci_backend("stop")
def stop(ctx: click.Context, contract_id: str) -> Result:
    """Stop the workloads, seal the datasinks to their owners and remove the plaintext mounts.

    \b
    Example:
      cleanroom -w W/hoster deployment stop --contract-id inference-initial
    """
    environment = _environment(ctx)
    with stderr_console().status(f"stopping {contract_id} and sealing its datasinks…"):
        status = process.stop(environment, contract_id)
    return Result(
        camel_keys(status),
        text=f"{contract_id} is {status.get('state')}"
        + (f"; sealed {', '.join(status['sealed'])}" if status.get("sealed") else ""),
    )
