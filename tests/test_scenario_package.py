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
from core.errors import ConflictError, IntegrityError, InvalidInputError
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
    assert summary["status"] == "complete" and summary["stepsDone"] == summary["stepsTotal"] == 3
    assert summary["datasources"] == ["survey", "census"]
    assert set(summary["durationsSeconds"]) == {"setup", "data"}
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


def _governed_app_scenario() -> ScenarioDefinition:
    """Three parties, services on loopback, one application with no data: the governance steps of
    the reference scenario (`_contract_steps`) on a contract cheap enough to vote in a test."""
    from core.scenario.three_personas import PERSONAS, _contract_steps, build_steps

    setup = [s for s in build_steps() if s.key.startswith("init:") or s.key == "services-up"]
    app = Step(
        "add-app",
        "data",
        "hoster",
        "add an application",
        (
            cleanroom(
                "hoster",
                "config",
                "add-application",
                "--name",
                "echo",
                "--entrypoint",
                "containers/inference_server",
                "--command",
                "python -m containers.inference_server",
            ),
        ),
        perform_each,
    )
    governance = [
        s
        for s in _contract_steps("data", "c-echo", ["echo"], serves=False, data_owners=[])
        if ":vote-" in s.key or s.key.endswith((":propose", ":propose-deployment"))
    ]
    return ScenarioDefinition(
        "governed-app",
        PERSONAS,
        (Phase("setup", "Setup"), Phase("data", "Contract")),
        (*setup, app, *governance),
        ("c-echo",),
        frozenset({*(f"init:{p}" for p in PERSONAS), "services-up"}),
    )


def test_votes_read_what_their_narrated_lines_read_and_a_tampered_spec_is_rejected(tmp_path: Path) -> None:
    """The vote steps list the open proposals, regenerate the spec from the accepted contract and
    compare (`deployment generate`, `diff`, `proposal list`): a spec the hoster changed after the
    contract was accepted is voted down, and the step fails naming it."""
    from dataclasses import replace

    from core.runtime.deployment import deployment_spec
    from core.scenario.operations import READS, vote_open

    definition = _governed_app_scenario()
    scenario = Scenario.open(tmp_path / "root", definition=definition)
    try:
        scenario.run(Reporter(), stop_after="c-echo:propose-deployment", keep_services=True)
        hoster = scenario.engine("hoster")
        assert hoster.contract("c-echo").state == "Accepted"  # the three contract votes were cast
        honest = deployment_spec("c-echo", hoster.contract("c-echo").document)
        tampered = {**honest, "applications": [{**honest["applications"][0], "command": ["sh", "-c", "exfiltrate"]}]}
        step = next(s for s in definition.steps if s.key == "c-echo:vote-deployment:provider")
        listed = READS[("governance", "proposal", "list")](scenario, step.invocation("governance", "proposal", "list"))
        assert {p.action for p in listed} == {"set_deployment_spec", "set_clean_room_policy"}
        # the hoster withdraws its honest spec and proposes one with another command
        spec_proposal = next(p for p in listed if p.action == "set_deployment_spec")
        hoster.withdraw(spec_proposal.proposal_id)
        hoster.propose_deployment_spec("c-echo", tampered)
        with pytest.raises(
            IntegrityError, match="provider rejected set_deployment_spec on 'c-echo': the deployment spec differs"
        ):
            scenario.run(Reporter(), stop_after=step.key, keep_services=True)
        after = scenario.engine("provider").open_proposals("c-echo")
        assert [p.action for p in after] == ["set_clean_room_policy"]  # the veto ended the tampered one
        assert scenario.state.error is not None and scenario.state.error.startswith(step.key)

        # a vote step that does not narrate the comparison may not accept a deployment proposal
        unseen = [i for i in step.invocations if i.program != "diff" and i.verb[-1:] != ("generate",)]
        lines = tuple(replace(i, persona="consumer") for i in unseen)
        blind = Step("blind", "data", "consumer", "accept unseen", lines, vote_open)
        with pytest.raises(
            InvalidInputError, match="step 'blind' would accept set_clean_room_policy without comparing"
        ):
            vote_open(scenario, blind, Reporter())
        consumer = scenario.engine("consumer")
        assert all(consumer.member_id not in p.ballots for p in consumer.open_proposals("c-echo"))
    finally:
        scenario.stop_services()


def test_the_registry_names_each_scenario_once_and_loads_it_only_when_asked() -> None:
    import subprocess
    import sys

    from core.scenario import REFERENCE_SCENARIO, SCENARIOS, scenario_definition

    assert all(scenario_definition(name).name == name for name in SCENARIOS)
    assert scenario_definition(REFERENCE_SCENARIO).steps[0].key == "init:hoster"
    with pytest.raises(InvalidInputError) as unknown:
        scenario_definition("nope")
    assert unknown.value.one_line() == f"scenario 'nope' does not exist; choose one of {', '.join(SCENARIOS)}"
    # listing the names imports no scenario beyond the reference one (whose names the package exports)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, core.scenario; print(sorted(m for m in sys.modules if 'dp_' in m))"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
    )
    assert loaded.returncode == 0 and loaded.stdout == "[]\n", loaded.stderr
