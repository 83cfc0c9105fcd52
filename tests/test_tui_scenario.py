"""`cleanroom console` on the embedded default: the scenario, driven a step at a time from the palette.

Real services on loopback (the scenario's own governance and key service), real steps: the
test takes the consumer's first step through the console and checks what it did on disk and
what the console says about it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.engine import PersonaEngine
from core.scenario import Scenario, open_embedded_scenario
from tests.cli_runner import cleanroom
from tui.app import CleanroomConsole
from tui.widgets.context_bar import ContextBar
from tui.widgets.inference import InferenceView

SIZE = (140, 40)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scenario, list[PersonaEngine]]]:
    scenario, engines = open_embedded_scenario(tmp_path_factory.mktemp("home") / "scenario", quick=True)
    try:
        yield scenario, engines
    finally:
        for engine in engines:
            engine.close()
        scenario.stop_services()


def palette(app: CleanroomConsole) -> dict[str, object]:
    return {command.title: command.callback for command in app.get_system_commands(app.screen)}


async def test_opening_makes_the_consortium_and_leaves_every_later_step_to_the_operators(
    embedded: tuple[Scenario, list[PersonaEngine]],
) -> None:
    scenario, engines = embedded
    assert [e.persona for e in engines] == ["hoster", "provider", "consumer"]
    assert scenario.state.completed[:4] == ["init:hoster", "init:provider", "init:consumer", "services-up"]
    assert all(e.health().reachable for e in engines)


async def test_the_palette_walks_to_whose_turn_it_is_and_takes_that_step(
    embedded: tuple[Scenario, list[PersonaEngine]],
) -> None:
    scenario, engines = embedded
    app = CleanroomConsole(engines, background=False, scenario=scenario)
    total = len(scenario.steps)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert f"scenario 4/{total} · next: consumer" in app.screen.query_one(ContextBar).render().plain
        commands = palette(app)  # the hoster's palette: not its turn, so it points the way
        switch = "Next: switch to consumer to keep its test split; stage its training data"
        assert switch in commands and not any(t.startswith("Next: keep") for t in commands)
        commands[switch]()
        await pilot.pause()
        assert app.screen.engine.persona == "consumer"

        palette(app)["Next: keep its test split; stage its training data"]()
        assert app.running_step is not None and "▶ consumer" in app.scenario_status()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "consumer-data" in scenario.state.completed and app.running_step is None
        assert (scenario.workspace_dir("consumer") / "data" / "test.parquet").is_file()
        assert any(n.title == "✔ consumer: keep its test split; stage its training data" for n in app._notifications)
        assert f"scenario 5/{total} · next: provider" in app.screen.query_one(ContextBar).render().plain
        app.run_scenario_step("consumer")  # not the consumer's turn any more: nothing runs
        assert app.running_step is None and len(scenario.state.completed) == 5


async def test_read_only_offers_no_scenario_step(embedded: tuple[Scenario, list[PersonaEngine]]) -> None:
    scenario, engines = embedded
    app = CleanroomConsole(engines, background=False, scenario=scenario, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not [title for title in palette(app) if title.startswith(("Next", "Scenario"))]


async def test_an_evaluation_run_elsewhere_is_followed_live_in_the_inference_view(tmp_path: Path) -> None:
    from core.workspace import Workspace

    app = CleanroomConsole([PersonaEngine(Workspace.init(tmp_path / "consumer", "consumer"))], background=False)
    async with app.run_test(size=SIZE) as pilot:
        view = app.screen.query_one(InferenceView)
        for contract_id, correct in (("inference-base", 53), ("inference-finetuned", 82)):
            for done in (50, 100):
                view.follow(contract_id, done, correct * done // 100, 100)
            await pilot.pause()
        assert view.accuracy.points()[0] == [50, 100] and [r.finished for r in view.runs] == [True, True]
        compare = view.query_one("#inference-compare").render().plain
        assert "53.00%" in compare and "82.00%" in compare and "+29.0 points" in compare


def test_quick_or_full_only_apply_to_the_embedded_scenario(tmp_path: Path) -> None:
    outcome = cleanroom("console", "--workspace", tmp_path, "--quick")
    assert outcome.code == 2
    assert outcome.stderr.startswith("error: --quick/--full choose the embedded scenario's variant")
