"""How a console session on the embedded scenario ends: what it stops, what it leaves, what it says.

Closing the console used to stop every clean room the scenario runs (a training run included)
and the services, whatever the operator meant. Now the end of a session follows one rule: work
that is running is stopped only when the operator chose "stop all" in the quit modal. Left
running (by choice, or because SIGTERM/SIGHUP ended the session and nobody could be asked),
it is named on stderr and in ``<root>/left-running.txt``, which the next console prints first,
so a closed terminal does not orphan services silently.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from core.scenario import Scenario

NOTE_NAME = "left-running.txt"


def running_deployments(scenario: Scenario) -> list[tuple[str, str]]:
    """(contract id, state) of the scenario's clean rooms whose runtime is alive."""
    running = []
    for contract_id in scenario.definition.contracts:
        try:
            status = scenario.deployment_status(contract_id)
        except (ValueError, OSError):
            continue
        if status is not None and status.alive:
            running.append((contract_id, status.state))
    return running


def say(line: str) -> None:
    """One line on stderr; a closed terminal (SIGHUP) must not turn the goodbye into a traceback."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def left_running_line(scenario: Scenario, contracts: list[tuple[str, str]], why: str) -> str:
    """The one line that says what is still running and the commands that stop it."""
    home = scenario.services_home
    stops = "; ".join(f"CLEANROOM_HOME={home} cleanroom deployment stop --contract-id {c}" for c, _ in contracts)
    what = ", ".join(f"clean room '{c}' ({state})" for c, state in contracts) or "no clean room"
    return (
        f"{why}: left running {what} and the scenario's services under {home}. `cleanroom console` "
        f"resumes; to stop them: {stops + '; ' if stops else ''}CLEANROOM_HOME={home} cleanroom down"
    )


def end_session(scenario: Scenario, *, choice: str | None, signal_name: str | None) -> str:
    """Act on how the session ended and return the line said about it.

    ``choice`` "leave" leaves the clean rooms and the services running and records the line
    in ``left-running.txt``; anything else stops them (the operator chose "stop all", or
    nothing was running)."""
    note = scenario.root / NOTE_NAME
    if choice == "leave":
        why = f"{signal_name} received" if signal_name else "you chose to leave them running"
        line = left_running_line(scenario, running_deployments(scenario), why)
        with contextlib.suppress(OSError):
            note.write_text(line + "\n")
        return line
    note.unlink(missing_ok=True)
    stopped = [c for c, _ in running_deployments(scenario)]
    scenario.stop_services()
    done, total = scenario.progress
    ended = f"{signal_name} received; " if signal_name else ""
    return (
        f"{ended}scenario {scenario.root}: {done}/{total} steps done; "
        + (f"stopped clean rooms {', '.join(stopped)} and the services" if stopped else "services stopped")
        + ". `cleanroom console` resumes it."
    )


def previous_note(root: Path) -> str | None:
    """What the last session left running, if it said so (read once, then removed)."""
    note = root / NOTE_NAME
    try:
        text = note.read_text().strip()
    except OSError:
        return None
    note.unlink(missing_ok=True)
    return f"the last console session: {text}" if text else None
