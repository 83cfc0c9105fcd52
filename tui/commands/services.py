"""`cleanroom up` / `cleanroom down`: the embedded default's loopback services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from core import embedded
from core.workspace import Workspace
from tui.output import Result, stderr_console, verb_output


@click.command("up")
@click.option(
    "--workspace-dirs",
    "workspace_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Persona workspaces that form the consortium and are pointed at the services (repeatable; "
    "several may follow one flag).",
)
@click.argument("more_dirs", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@verb_output
@click.pass_context
def up(ctx: click.Context, workspace_dirs: tuple[Path, ...], more_dirs: tuple[Path, ...]) -> Result:
    """Start the embedded services on loopback (governance first) and deploy the workspaces to them.

    The first run creates the consortium from the workspaces' member certificates; later runs
    restart what is stopped. State lives in $CLEANROOM_HOME (default ~/.cleanroom).

    \b
    Example:
      cleanroom up --workspace-dirs W/hoster W/provider W/consumer
    """
    dirs = list(workspace_dirs) + list(more_dirs)
    if not dirs and (Path(ctx.obj["workspace"]) / "workspace.json").is_file():
        dirs = [Path(ctx.obj["workspace"])]
    workspaces = [Workspace.open(d) for d in dirs]
    with stderr_console().status("starting services…") as status:
        records = embedded.up(workspaces, progress=lambda name: status.update(f"starting {name}…"))
    return Result(records, render=lambda console: _render(console, records, workspaces))


def _render(console: Console, records: dict[str, Any], workspaces: list[Workspace]) -> None:
    table = Table(title=f"cleanroom services ({embedded.home()})")
    for column in ("service", "endpoint", "pid"):
        table.add_column(column)
    for name, record in records.items():
        table.add_row(name, record["endpoint"], str(record["pid"]))
    console.print(table)
    for workspace in workspaces:
        console.print(f"deployed {workspace.root} ({workspace.name})", highlight=False)


@click.command("down")
@verb_output
def down() -> Result:
    """Stop the embedded services (their state stays for the next `cleanroom up`).

    \b
    Example:
      cleanroom down
    """
    stopped = embedded.down()
    return Result(
        {"home": str(embedded.home()), "stopped": stopped},
        text=f"stopped: {', '.join(stopped)}" if stopped else "nothing was running",
    )
