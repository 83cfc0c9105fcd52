"""`cleanroom deployment start|status|logs|stop`: run an accepted contract's clean room.

Where it runs is one option, ``--backend local|aci``: each verb builds that backend
(``core.runtime.backend``), calls its start/status/logs/stop and shows the data with that
backend's view (``LocalView`` here, ``tui.aci_backend.AciView`` for Azure).

Locally, the runtime runs as a background process under ``$CLEANROOM_HOME/runtime`` and talks to
the embedded governance and key service (`cleanroom up`). Which home that is comes from the
workspace: the one whose governance it is pinned to (see ``core.services_home``), so a forgotten
``CLEANROOM_HOME`` neither points at another consortium nor hides a running clean room.
Lifecycle events are also recorded in governance, so every party can follow them with
`cleanroom governance contract event list`.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import click
from rich.console import Console
from rich.table import Table

from core import embedded
from core.errors import CleanroomError, NotFoundError
from core.keys.release import KeyReleaseEvent
from core.runtime import process
from core.runtime.backend import DeploymentBackend, StartOptions, deployment_backend
from core.runtime.lifecycle import LIFECYCLE_EVENTS, DeploymentState
from core.services_home import services_home
from core.workspace import Workspace
from tui.aci_backend import AciView, aci_start_options, backend_options
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
    from core.engine import runtime_environment

    return runtime_environment(home)


def _when(at: Any) -> str:
    return datetime.fromtimestamp(float(at), tz=UTC).strftime("%H:%M:%S") if at else ""


def _backend(
    ctx: click.Context, backend: str, resource_group: str | None, subscription: str | None, *, starting: bool = False
) -> DeploymentBackend:
    return deployment_backend(
        backend,
        local_environment=lambda: _environment(ctx, starting=starting),
        resource_group=resource_group,
        subscription=subscription,
    )


class DeploymentView(Protocol):
    """How one backend's results are shown: what it prints while it works and what it returns."""

    def starting(self, contract_id: str, options: StartOptions) -> str: ...
    def started(self, contract_id: str, status: dict[str, Any]) -> Result: ...
    def status(self, ctx: click.Context, contract_id: str, status: dict[str, Any]) -> Result: ...
    def log_line(self, record: dict[str, Any]) -> str: ...
    def stopping(self, contract_id: str) -> str | None: ...
    def stopped(self, contract_id: str, status: dict[str, Any]) -> Result: ...


class LocalView:
    """How the local runtime's status files and log lines are shown, with governance's events."""

    def starting(self, contract_id: str, options: StartOptions) -> str:
        if options.insecure_no_sandbox:
            stderr_console().print(
                "[bold red]WARNING: --insecure-no-sandbox: workloads run WITHOUT bubblewrap. They can "
                "reach the network and read this machine's files. This is not a clean room.[/]"
            )
        return f"starting the clean room of {contract_id}…"

    def started(self, contract_id: str, status: dict[str, Any]) -> Result:
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

    def status(self, ctx: click.Context, contract_id: str, status: dict[str, Any]) -> Result:
        events = _governance_events(ctx, contract_id)
        return Result(
            {"status": camel_keys(status), "events": events},
            render=lambda console: _render_status(console, contract_id, status, events),
        )

    def log_line(self, record: dict[str, Any]) -> str:
        detail = {k: v for k, v in record.items() if k not in ("at", "type")}
        return (
            f"{_when(record.get('at'))} {record.get('type')} {json.dumps(detail, sort_keys=True) if detail else ''}"
        ).rstrip()

    def stopping(self, contract_id: str) -> str | None:
        return f"stopping {contract_id} and sealing its datasinks…"

    def stopped(self, contract_id: str, status: dict[str, Any]) -> Result:
        return Result(
            camel_keys(status),
            text=f"{contract_id} is {status.get('state')}"
            + (f"; sealed {', '.join(status['sealed'])}" if status.get("sealed") else ""),
        )


VIEWS: dict[str, DeploymentView] = {"local": LocalView(), "aci": AciView()}


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
@aci_start_options
@backend_options
def start(
    ctx: click.Context,
    contract_id: str,
    backend: str,
    resource_group: str | None,
    subscription: str | None,
    **start_options: Any,
) -> Result:
    """Attest, get keys released, decrypt datasources into private mounts and run the workloads.

    \b
    Example:
      cleanroom -w W/hoster deployment start --contract-id inference-initial
      cleanroom -w W/hoster deployment start --contract-id inference-initial --backend aci \\
          --resource-group rg-cleanroom --location westeurope \\
          --template out/cleanroom-aci-template.json --cce-policy-file out/cce-policy.b64
    """
    chosen = _backend(ctx, backend, resource_group, subscription, starting=True)
    view = VIEWS[backend]
    options = StartOptions(**start_options)
    with stderr_console().status(view.starting(contract_id, options)):
        status = chosen.start(contract_id, options)
    return view.started(contract_id, status)


def _governance_events(ctx: click.Context, contract_id: str) -> list[dict[str, Any]]:
    """Lifecycle events from governance, when this workspace is deployed to it (else none)."""
    from core.engine import PersonaEngine

    try:
        with PersonaEngine(Workspace.open(ctx.obj["workspace"])) as engine:  # events: members only
            events = engine.event_page(contract_id)["events"]
    except CleanroomError:
        return []
    return [event for event in events if event["type"] in DEPLOYMENT_EVENTS]


@deployment.command("status")
@CONTRACT
@verb_output
@click.pass_context
@backend_options
def status_verb(
    ctx: click.Context, contract_id: str, backend: str, resource_group: str | None, subscription: str | None
) -> Result:
    """Show the deployment's state here and its lifecycle events in governance.

    \b
    Example:
      cleanroom -w W/consumer deployment status --contract-id inference-initial -o json
    """
    chosen = _backend(ctx, backend, resource_group, subscription)
    return VIEWS[backend].status(ctx, contract_id, chosen.status(contract_id))


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
@backend_options
def logs(
    ctx: click.Context,
    contract_id: str,
    follow: bool,
    backend: str,
    resource_group: str | None,
    subscription: str | None,
) -> Stream:
    """Print the runtime's log (lifecycle, refusals, telemetry). Application output is not here: it
    goes to the logging datasink only when the contract enables logging.

    \b
    Example:
      cleanroom -w W/hoster deployment logs --contract-id inference-initial --follow
    """
    chosen = _backend(ctx, backend, resource_group, subscription)
    return Stream(chosen.logs(contract_id, follow=follow), VIEWS[backend].log_line)


@deployment.command("stop")
@CONTRACT
@verb_output
@click.pass_context
@backend_options
def stop(
    ctx: click.Context, contract_id: str, backend: str, resource_group: str | None, subscription: str | None
) -> Result:
    """Stop the workloads, seal the datasinks to their owners and remove the plaintext mounts.

    \b
    Example:
      cleanroom -w W/hoster deployment stop --contract-id inference-initial
    """
    chosen = _backend(ctx, backend, resource_group, subscription)
    view = VIEWS[backend]
    message = view.stopping(contract_id)
    with stderr_console().status(message) if message else contextlib.nullcontext():
        status = chosen.stop(contract_id)
    return view.stopped(contract_id, status)
