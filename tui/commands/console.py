"""`cleanroom console`: open the multi-persona terminal console."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from core.engine import PersonaEngine, open_personas
from core.errors import InvalidInputError
from core.scenario import REFERENCE_SCENARIO, ScenarioDefinition, scenario_definition
from themes import ALIASES, THEMES
from tui.commands.demo import ScenarioName
from tui.preferences import ConsolePreferences


@click.command("console")
@click.option(
    "--workspace",
    "workspaces",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A persona workspace to open as a tab (repeat for each persona).",
)
@click.option("--read-only", is_flag=True, help="Hide every action that changes state.")
@click.option(
    "--theme",
    default=None,
    help=f"Colour theme: {', '.join([*ALIASES, *THEMES])} (default: the last one used, else dark; "
    "remembered in $XDG_CONFIG_HOME/cleanroom/console.json with the last persona).",
)
@click.option(
    "--quick/--full",
    default=None,
    help="Without --workspace: start the scenario's quick variant (50 training steps) "
    "or the full one; a scenario already started keeps its own.",
)
@click.option(
    "--scenario",
    "name",
    type=ScenarioName(),
    default=REFERENCE_SCENARIO,
    show_default=True,
    help="Without --workspace: the scenario of `cleanroom demo` to play, under "
    "$CLEANROOM_HOME/scenario (three-personas) or $CLEANROOM_HOME/scenario-NAME.",
)
def console(workspaces: tuple[Path, ...], read_only: bool, theme: str | None, quick: bool | None, name: str) -> None:
    """Open the console: one tab per persona, keyboard voting, live deployments and training.

    With no --workspace it opens the embedded default as a scenario of `cleanroom demo` (the
    three-persona one unless --scenario names another), under $CLEANROOM_HOME/scenario
    ($CLEANROOM_HOME/scenario-NAME for another): the first run creates the workspaces and
    starts governance and the key service on loopback; then Ctrl+P offers each persona its next
    step, and a later run resumes where this one stopped. Quitting (Ctrl+Q) stops its services;
    while a clean room or a step is running it asks first: stop all, leave running, or stay.
    SIGTERM or a closed terminal (SIGHUP) leaves running work running and says so (on stderr
    and, for the next console, in the scenario folder). One console per scenario at a time.

    \b
    Example (three personas of a running clean room):
      cleanroom console --workspace W/hoster --workspace W/provider --workspace W/consumer
    Example (an auditor's view that cannot change anything):
      cleanroom console --workspace W/consumer --read-only --theme high-contrast
    """
    if theme is not None and theme not in ALIASES and theme not in THEMES:
        raise InvalidInputError(
            f"theme {theme!r} does not exist", hint=f"choose one of {', '.join([*ALIASES, *THEMES])}"
        )
    if workspaces and quick is not None:
        raise InvalidInputError(
            "--quick/--full choose the embedded scenario's variant",
            hint="drop --quick/--full, or drop --workspace to open the embedded scenario",
        )
    if workspaces and name != REFERENCE_SCENARIO:
        raise InvalidInputError(
            "--scenario chooses the embedded scenario to play",
            hint="drop --scenario, or drop --workspace to open the embedded scenario",
        )
    if workspaces:
        engines = open_personas(list(workspaces))
        _run_console(engines, read_only=read_only, theme=theme)
        return
    _run_scenario_console(scenario_definition(name), quick=quick, read_only=read_only, theme=theme)


def _run_console(engines: list[PersonaEngine], *, read_only: bool, theme: str | None) -> None:
    """Persona workspaces given on the command line: the console starts and stops nothing."""
    from tui.app import (
        CleanroomConsole,  # textual loads only when the console really opens
    )

    try:
        CleanroomConsole(engines, read_only=read_only, theme=theme, preferences=ConsolePreferences.load()).run()
    finally:
        for engine in engines:
            engine.close()


def _run_scenario_console(
    definition: ScenarioDefinition, *, quick: bool | None, read_only: bool, theme: str | None
) -> None:
    """The embedded scenario: one console per scenario (session lock), a quit that asks before
    it stops running clean rooms, and SIGTERM/SIGHUP that end the session without destroying
    work or leaving it running unannounced (see tui.scenario_session)."""
    from core import embedded
    from core.scenario import Reporter, Scenario, open_embedded_scenario, scenario_root
    from tui.scenario_session import end_session, previous_note, say
    from tui.session_lock import SessionLock

    root = Scenario.open(
        scenario_root(embedded.home() / "scenario", definition.name), quick=quick, definition=definition
    ).root
    with SessionLock(root, "console"):
        note = previous_note(root)
        if note:
            say(note)
        with _stop_if_signalled_while_opening(root, definition):
            scenario, engines = open_embedded_scenario(
                root,
                quick=quick,
                definition=definition,
                reporter=Reporter(
                    note=lambda text: click.echo(text, err=True),
                    step_finished=lambda step, seconds, summary: click.echo(
                        f"done: {step.persona}: {step.title} ({seconds:.1f} s)", err=True
                    ),
                ),
            )
        # textual loads only when the console really opens
        from tui.app import CleanroomConsole
        from tui.terminal_driver import terminal_hung_up

        app = CleanroomConsole(
            engines, read_only=read_only, theme=theme, scenario=scenario, preferences=ConsolePreferences.load()
        )
        # our own loop: asyncio.run() would wait, after the app closed, for a step's worker
        # thread (a training run: an hour) before anything below could say or stop anything
        loop = asyncio.new_event_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, app.terminate, signal.Signals(signum).name)
        try:
            app.run(loop=loop)
        finally:
            for signum in (signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            if app.exit_signal is None and app.exit_choice is None and terminal_hung_up():
                # the window closed and the input thread's read failed before the SIGHUP
                # handler ran: the app ended on that error, and must still leave work running
                app.ended_by("SIGHUP")
            loop.close()  # a running step's thread is not waited for (shutdown(wait=False))
            for engine in engines:
                engine.close()
            say(end_session(scenario, choice=app.exit_choice, signal_name=app.exit_signal))
        abandoned = app.running_step is not None
    if abandoned:
        # a step's worker thread cannot be interrupted and the interpreter would wait for it
        # at exit; what it was driving was stopped or left running (and said so) above
        sys.stdout.flush()
        os._exit(0)


class _Signalled(Exception):
    """SIGTERM/SIGHUP while the consortium was being opened (before the app could handle it)."""


@contextlib.contextmanager
def _stop_if_signalled_while_opening(root: Path, definition: ScenarioDefinition) -> Iterator[None]:
    """While the services start, SIGTERM/SIGHUP stop what was started and say so, instead of
    killing the console between two services and orphaning the first one silently."""
    from core.scenario import Scenario
    from tui.scenario_session import say

    def interrupted(signum: int, frame: object) -> None:
        raise _Signalled(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupted) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    except _Signalled as exc:
        stopped = Scenario.open(root, definition=definition).stop_services()
        say(
            f"{exc} received while opening {root}: stopped {', '.join(stopped) or 'nothing'}; "
            "`cleanroom console` resumes it"
        )
        raise SystemExit(1) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
