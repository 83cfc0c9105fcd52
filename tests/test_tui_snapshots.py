"""Pixel snapshots: each persona's home, the vote modal and the training monitor, in all three themes.

Deterministic by construction: seeded data (tests/tui_seeded.py), a fixed clock, a fixed
terminal size, no background feeds, and focus on a table (no blinking cursor).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui_seeded import NOW, SeededPersona, training_events
from tui.app import CleanroomConsole, EngineEvent
from tui.widgets.training import TrainingMonitor

SIZE = (140, 40)
THEMES = ("cleanroom-dark", "cleanroom-light", "cleanroom-high-contrast")


def seeded_app(tmp_path: Path, theme: str) -> CleanroomConsole:
    engines = [SeededPersona(tmp_path, index) for index in range(3)]
    return CleanroomConsole(engines, theme=theme, now=lambda: NOW, background=False)


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("persona_key", ["f2", "f3", "f4"])
def test_persona_home(snap_compare, tmp_path: Path, theme: str, persona_key: str) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press(persona_key)
        await settle(pilot)

    assert snap_compare(seeded_app(tmp_path, theme), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_vote_modal(snap_compare, tmp_path: Path, theme: str) -> None:
    async def run_before(pilot) -> None:
        await pilot.press("f4")  # the consumer still has to vote on the open set_contract
        await settle(pilot)
        await pilot.press("down", "down", "down", "a")
        await settle(pilot)  # the modal loads what the ballot accepts in a worker

    assert snap_compare(seeded_app(tmp_path, theme), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_training_monitor(snap_compare, tmp_path: Path, theme: str) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.screen.show_view("training")
        for event in training_events():
            pilot.app.post_message(EngineEvent(0, event))
        await pilot.pause()
        pilot.app.screen.query_one(TrainingMonitor).redraw()
        await pilot.pause()

    assert snap_compare(seeded_app(tmp_path, theme), terminal_size=SIZE, run_before=run_before)
