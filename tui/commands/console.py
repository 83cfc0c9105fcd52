"""`cleanroom console`: open the multi-persona terminal console."""

from __future__ import annotations

from pathlib import Path

import click

from core.engine import open_embedded_default, open_personas
from core.errors import InvalidInputError
from themes import ALIASES, THEMES


@click.command("console")
@click.option("--workspace", "workspaces", multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="A persona workspace to open as a tab (repeat for each persona).")
@click.option("--read-only", is_flag=True, help="Hide every action that changes state.")
@click.option("--theme", default="dark", show_default=True,
              help=f"Colour theme: {', '.join([*ALIASES, *THEMES])}.")
def console(workspaces: tuple[Path, ...], read_only: bool, theme: str) -> None:
    """Open the console: one tab per persona, keyboard voting, live deployments and training.

    With no --workspace it starts the embedded default (governance and key service on loopback,
    as `cleanroom up` does) with three persona workspaces under $CLEANROOM_HOME/personas
    (created on first use) and opens them.

    \b
    Example (three personas of a running clean room):
      cleanroom console --workspace W/hoster --workspace W/provider --workspace W/consumer
    Example (an auditor's view that cannot change anything):
      cleanroom console --workspace W/consumer --read-only --theme high-contrast
    """
    if theme not in ALIASES and theme not in THEMES:
        raise InvalidInputError(f"theme {theme!r} does not exist",
                                hint=f"choose one of {', '.join([*ALIASES, *THEMES])}")
    engines = open_personas(list(workspaces)) if workspaces else open_embedded_default()
    from tui.app import CleanroomConsole  # textual loads only when the console really opens

    try:
        CleanroomConsole(engines, read_only=read_only, theme=theme).run()
    finally:
        for engine in engines:
            engine.close()

