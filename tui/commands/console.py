"""`cleanroom console`: open the multi-persona terminal console."""

from __future__ import annotations

from pathlib import Path

import click

from core.engine import open_embedded_scenario, open_personas
from core.errors import InvalidInputError
from themes import ALIASES, THEMES


@click.command("console")
@click.option("--workspace", "workspaces", multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="A persona workspace to open as a tab (repeat for each persona).")
@click.option("--read-only", is_flag=True, help="Hide every action that changes state.")
@click.option("--theme", default="dark", show_default=True,
              help=f"Colour theme: {', '.join([*ALIASES, *THEMES])}.")
@click.option("--quick/--full", default=None,
              help="Without --workspace: start the scenario's quick variant (100 training steps) "
                   "or the full one; a scenario already started keeps its own.")
def console(workspaces: tuple[Path, ...], read_only: bool, theme: str, quick: bool | None) -> None:
    """Open the console: one tab per persona, keyboard voting, live deployments and training.

    With no --workspace it opens the embedded default as the three-persona scenario of
    `cleanroom demo`, under $CLEANROOM_HOME/scenario: the first run creates the workspaces and
    starts governance and the key service on loopback; then Ctrl+P offers each persona its next
    step, and a later run resumes where this one stopped (its services stop when it closes).

    \b
    Example (three personas of a running clean room):
      cleanroom console --workspace W/hoster --workspace W/provider --workspace W/consumer
    Example (an auditor's view that cannot change anything):
      cleanroom console --workspace W/consumer --read-only --theme high-contrast
    """
    if theme not in ALIASES and theme not in THEMES:
        raise InvalidInputError(f"theme {theme!r} does not exist",
                                hint=f"choose one of {', '.join([*ALIASES, *THEMES])}")
    if workspaces and quick is not None:
        raise InvalidInputError("--quick/--full choose the embedded scenario's variant",
                                hint="drop --quick/--full, or drop --workspace to open the embedded scenario")
    scenario = None
    if workspaces:
        engines = open_personas(list(workspaces))
    else:
        from core.scenario import Reporter

        scenario, engines = open_embedded_scenario(quick=quick, reporter=Reporter(
            note=lambda text: click.echo(text, err=True),
            step_finished=lambda step, seconds, summary: click.echo(
                f"done: {step.persona}: {step.title} ({seconds:.1f} s)", err=True)))
    from tui.app import CleanroomConsole  # textual loads only when the console really opens

    try:
        CleanroomConsole(engines, read_only=read_only, theme=theme, scenario=scenario).run()
    finally:
        for engine in engines:
            engine.close()
        if scenario is not None:
            scenario.stop_services()
            done, total = scenario.progress
            click.echo(f"scenario {scenario.root}: {done}/{total} steps done; services stopped. "
                       "`cleanroom console` resumes it.", err=True)
