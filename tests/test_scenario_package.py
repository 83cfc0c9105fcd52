"""A scenario is data: a definition of steps (their `cleanroom` invocations) plus the bodies
only it needs, played by the one runner that knows no particular scenario.

These tests define a small scenario of their own (one persona, no services) and run it for
real through ``core.scenario.run.Scenario``: its steps, the state it keeps, resuming, the
summary it contributes, and the one-line refusals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.config.party import party_fragment
from core.errors import ConflictError, InvalidInputError
from core.scenario import STATE_FILE, Invocation, Phase, Reporter, RunStatus, Scenario, ScenarioDefinition, Step
from core.scenario.operations import perform_each
from core.scenario.steps import cleanroom


def _note(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """A step body of this scenario only: it records what the persona's fragment holds."""
    fragment = party_fragment(scenario.workspace("analyst"))
    scenario.state.results["datasources"] = [asset.name for asset in fragment.datasources]
    return f"{len(fragment.datasources)} datasources"


def _summarise(scenario: Scenario) -> dict[str, Any]:
    return {"datasources": scenario.state.results.get("datasources", [])}


ONBOARDING = ScenarioDefinition(
    name="onboarding-sketch",
    personas=("analyst",),
    phases=(Phase("setup", "Setup"), Phase("data", "Data")),
    steps=(
        Step(
            "init:analyst",
            "setup",
            "analyst",
            "create its workspace",
            (cleanroom("analyst", "config", "init", "--persona", "analyst"),),
            perform_each,
        ),
        Step(
            "declare",
            "data",
            "analyst",
            "declare two datasources",
            (
                cleanroom("analyst", "config", "add-datasource", "--name", "survey"),
                cleanroom("analyst", "config", "add-datasource", "--name", "census"),
            ),
            perform_each,
        ),
        Step("record", "data", "analyst", "record what it declared", (), _note),
    ),
    contracts=(),
    consortium_steps=frozenset({"init:analyst"}),
    summarise=_summarise,
)


def test_a_new_scenario_is_a_definition_plus_its_own_step_bodies(tmp_path: Path) -> None:
    finished: list[tuple[str, str]] = []
    scenario = Scenario.open(tmp_path / "root", quick=True, definition=ONBOARDING)
    scenario.run(
        Reporter(step_finished=lambda step, seconds, summary: finished.append((step.key, summary))),
        stop_after="declare",
    )
    assert [key for key, _ in finished] == ["init:analyst", "declare"]
    assert [a.name for a in party_fragment(scenario.workspace("analyst")).datasources] == ["survey", "census"]
    assert not (tmp_path / "root" / "demo.lock").exists()

    resumed = Scenario.open(tmp_path / "root", definition=ONBOARDING)
    upcoming = resumed.next_step("analyst")
    assert upcoming is not None and upcoming.key == "record"
    resumed.run(Reporter())
    summary = resumed.summary()
    assert summary["status"] == "complete" and summary["steps_done"] == summary["steps_total"] == 3
    assert summary["datasources"] == ["survey", "census"]
    assert set(summary["durations_s"]) == {"setup", "data"}
    assert json.loads((tmp_path / "root" / STATE_FILE).read_text())["scenario"] == "onboarding-sketch"


def test_a_root_plays_one_scenario_only(tmp_path: Path) -> None:
    Scenario.open(tmp_path / "root", definition=ONBOARDING)
    with pytest.raises(ConflictError, match="holds the scenario 'onboarding-sketch', not 'three-personas'"):
        Scenario.open(tmp_path / "root")


def test_a_step_that_fails_is_recorded_and_the_state_stays_valid(tmp_path: Path) -> None:
    broken = Step(
        "declare",
        "data",
        "analyst",
        "declare a datasource with a bad name",
        (cleanroom("analyst", "config", "add-datasource", "--name", "Not A Name"),),
        perform_each,
    )
    definition = ScenarioDefinition(
        "broken", ("analyst",), ONBOARDING.phases, (ONBOARDING.steps[0], broken), (), frozenset()
    )
    scenario = Scenario.open(tmp_path / "root", definition=definition)
    with pytest.raises(InvalidInputError):
        scenario.run(Reporter())
    state = json.loads((tmp_path / "root" / STATE_FILE).read_text())
    assert state["status"] == RunStatus.FAILED == "failed"
    assert state["completed"] == ["init:analyst"] and state["error"].startswith("declare: ")
    assert not (tmp_path / "root" / "demo.lock").exists()


def test_a_state_file_with_an_unknown_status_is_a_one_line_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    Scenario.open(root, definition=ONBOARDING)
    state = json.loads((root / STATE_FILE).read_text())
    (root / STATE_FILE).write_text(json.dumps({**state, "status": "half-done"}))
    with pytest.raises(InvalidInputError, match="unknown status 'half-done'"):
        Scenario.open(root, definition=ONBOARDING)


def test_a_step_body_works_on_the_places_narration_names(tmp_path: Path) -> None:
    scenario = Scenario.open(tmp_path / "root", definition=ONBOARDING)
    assert scenario.path("W/analyst/data") == scenario.root / "analyst" / "data"
    with pytest.raises(InvalidInputError, match="is not under W/"):
        scenario.path("/etc/passwd")
    line = Invocation(("governance", "contract", "token", "--id", "c"), persona="analyst", export="CLEANROOM_TOKEN")
    assert line.narration() == "export CLEANROOM_TOKEN=$(cleanroom -w W/analyst governance contract token --id c)"
    assert line.verb == ("governance", "contract", "token")


def test_the_scenario_reaches_governance_only_through_the_engine() -> None:
    """No module of the scenario package imports the governance client: every governance call
    of a step goes through the persona's engine, the one operator layer."""
    import ast

    import core.scenario

    package = Path(core.scenario.__file__).parent
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("core.governance.client"), module.name
