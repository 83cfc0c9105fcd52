"""`cleanroom demo`: the three-persona scenario end to end, and its resume/refuse behaviour.

``test_quick_demo_end_to_end`` is the test that proves the whole product works: it runs the
console script as a user would, on the real pretrained model, through real governance, key
release, the bubblewrap runtime and TLS ingress, and checks the results the JSON reports.
The other tests are cheap: they stop the scenario after its first steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import embedded
from core.errors import InvalidInputError
from core.scenario import PERSONAS, SCENARIOS, STATE_FILE, Scenario, build_steps
from core.workspace import Workspace
from tests.cli_runner import cleanroom

ROOT = Path(__file__).resolve().parents[1]


def _run_demo(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLEANROOM_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "demo", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )


@pytest.mark.smoke
@pytest.mark.timeout(3600)
def test_quick_demo_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    done = _run_demo("--workspace", root, "--quick", "--output", "json", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # exactly one JSON document on stdout

    assert result["status"] == "complete"
    assert result["testRows"] == 1066
    assert result["baselineAccuracy"] < 0.6
    assert result["finetunedAccuracy"] - result["baselineAccuracy"] >= 0.10
    assert result["training"]["steps"] <= 50
    assert {c["id"]: c["state"] for c in result["contracts"]} == {
        "inference-base": "Accepted",
        "finetune": "Accepted",
        "inference-finetuned": "Accepted",
    }
    assert all(len(c["hash"]) == 64 for c in result["contracts"])
    # each party can recompute every contract's hash from the three fragments with the CLI
    hashes = {c["id"]: c["hash"] for c in result["contracts"]}
    for contract_id, application in (
        ("inference-base", "inference"),
        ("finetune", "trainer"),
        ("inference-finetuned", "inference-finetuned"),
    ):
        view = cleanroom(
            "config",
            "view",
            "--configs",
            root / "hoster",
            root / "provider",
            root / "consumer",
            "--application",
            application,
            "--output",
            "json",
        )
        assert json.loads(view.stdout)["specHash"] == hashes[contract_id]
    assert result["ledgerVerified"] is True
    assert result["ledger"]["byPersona"] == {p: "ok" for p in PERSONAS}

    checks = result["isolationChecks"]
    assert checks and all(check["passed"] for check in checks), [c for c in checks if not c["passed"]]
    assert {check["persona"] for check in checks} == set(PERSONAS)
    assert any("blob store" in check["check"] for check in checks)

    training_events = result["eventCounts"]["finetune"]
    assert training_events.get("telemetry", 0) >= 2  # progress streamed because the parties voted for it
    for contract_id in ("inference-base", "finetune", "inference-finetuned"):
        counts = result["eventCounts"][contract_id]
        for kind in ("attested", "keys_released", "running", "exited"):
            assert counts.get(kind, 0) >= 1, (contract_id, counts)
    assert result["eventCounts"]["finetune"].get("sealed", 0) >= 1
    assert set(result["durationsSeconds"]) == {"setup", "baseline", "fine-tuning", "fine-tuned", "proofs"}

    # The sealed model reached its owner only, and the services were stopped at the end.
    assert (root / "provider" / "finetuned" / "onnx" / "model.onnx").is_file()
    assert not (root / "consumer" / "finetuned").exists()
    assert all(not record.get("healthy") for record in embedded.status(home_dir=root / "services").values())

    # A finished demo is refused, and refusing changes nothing.
    before = (root / STATE_FILE).read_bytes()
    again = _run_demo("--workspace", root, "--quick", "--output", "json", home=tmp_path / "home")
    assert again.returncode == 5
    assert "already ran to the end" in again.stderr
    assert (root / STATE_FILE).read_bytes() == before


# -- cheap: resume and refuse -------------------------------------------------------------------
def _member_ids(root: Path) -> dict[str, str]:
    return {p: Workspace.open(root / p).identity.member_id for p in PERSONAS}


def test_stop_after_then_resume_keeps_identities_and_consortium(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    first = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "services-up", "--output", "json")
    assert first.code == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "running" and summary["stepsDone"] == 4
    members = _member_ids(root)
    endpoint = Workspace.open(root / "hoster").settings["governance"]["endpoint"]
    assert embedded.load_records(root / "services") == {}  # services stopped when the run stopped

    second = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "consumer-data", "--output", "json")
    assert second.code == 0, second.stderr
    assert json.loads(second.stdout)["stepsDone"] == 5
    assert _member_ids(root) == members  # resumed: nothing was re-created
    assert Workspace.open(root / "hoster").settings["governance"]["endpoint"] == endpoint
    assert (root / "consumer" / "data" / "test.parquet").is_file()
    state = json.loads((root / STATE_FILE).read_text())
    assert state["completed"][:5] == ["init:hoster", "init:provider", "init:consumer", "services-up", "consumer-data"]

    other_mode = cleanroom("demo", "--workspace", root, "--output", "json")
    assert other_mode.code == 5
    assert "was started with --quick" in other_mode.stderr


def test_refuses_a_folder_that_holds_something_else(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    outcome = cleanroom("demo", "--workspace", tmp_path, "--quick")
    assert outcome.code == 5
    assert "is not empty and holds no demo" in outcome.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_refuses_while_another_run_holds_the_lock_and_takes_over_a_stale_one(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    Scenario.open(root, quick=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (root / "demo.lock").write_text(f"{sleeper.pid}\n")
        busy = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "init:hoster")
        assert busy.code == 5
        assert f"another demo (pid {sleeper.pid}) is running" in busy.stderr
        assert not (root / "hoster").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    stale = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "init:hoster", "--output", "json")
    assert stale.code == 0, stale.stderr
    assert json.loads(stale.stdout)["stepsDone"] == 1
    assert not (root / "demo.lock").exists()


def test_unreadable_state_and_unknown_step_are_one_line_errors(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    Scenario.open(root, quick=True)
    unknown = cleanroom("demo", "--workspace", root, "--quick", "--stop-after", "no-such-step")
    assert unknown.code == 2
    assert "step 'no-such-step' is not a step of the scenario" in unknown.stderr
    (root / STATE_FILE).write_text("{not json")
    broken = cleanroom("demo", "--workspace", root, "--quick")
    assert broken.code == 2
    assert "is not valid JSON" in broken.stderr and len(broken.stderr.strip().splitlines()) == 1
    assert (root / STATE_FILE).read_text() == "{not json"


def test_every_step_names_its_persona_and_the_commands_a_team_would_type(tmp_path: Path) -> None:
    steps = build_steps()
    assert len({s.key for s in steps}) == len(steps)
    for step in steps:
        assert step.persona in (*PERSONAS, "all"), step.key
        # every step narrates what it runs: the isolation proofs (attacks no CLI verb mounts) are
        # `python -m core.scenario isolation ...` lines, the provider's training config a `write`
        assert step.commands, step.key
        assert all(i.program in ("cleanroom", "cp", "diff", "write", "python") for i in step.invocations), step.key
    # each contract is voted by all three parties, twice (contract, then deployment)
    for contract_id in ("inference-base", "finetune", "inference-finetuned"):
        voters = [s.persona for s in steps if s.key.startswith(f"{contract_id}:vote-")]
        assert sorted(voters) == sorted(PERSONAS * 2), contract_id
    scenario = Scenario.open(tmp_path / "demo", quick=True)
    assert scenario.next_step().key == "init:hoster"
    assert scenario.next_step("hoster").key == "init:hoster"
    assert scenario.next_step("consumer") is None  # the hoster acts first


def test_perform_next_acts_only_on_the_persona_whose_turn_it_is(tmp_path: Path) -> None:
    from core.errors import ConflictError
    from core.scenario import Reporter

    scenario = Scenario.open(tmp_path / "demo")
    with pytest.raises(ConflictError, match="not provider's turn: hoster must"):
        scenario.perform_next("provider", Reporter())
    assert "member" in scenario.perform_next("hoster", Reporter())
    assert scenario.next_step("provider").key == "init:provider"
    reopened = Scenario.open(tmp_path / "demo")  # any mode: resumes whatever was started
    assert reopened.state.completed == ["init:hoster"] and reopened.state.quick is False
    assert not (tmp_path / "demo" / "demo.lock").exists()


@pytest.mark.smoke
@pytest.mark.timeout(1800)
def test_resuming_at_the_evaluation_restarts_the_clean_room_the_interruption_stopped(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    first = cleanroom(
        "demo", "--workspace", root, "--quick", "--stop-after", "inference-base:start", "--output", "json"
    )
    assert first.code == 0, first.stderr
    status = json.loads((root / "services" / "runtime" / "deployments" / "inference-base" / "status.json").read_text())
    assert status["state"] == "exited"  # stopping the services at the pause stopped the clean room too

    resumed = cleanroom(
        "demo", "--workspace", root, "--quick", "--stop-after", "inference-base:evaluate", "--output", "json"
    )
    assert resumed.code == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["baselineAccuracy"] < 0.6 and summary["testRows"] == 1066
    state = json.loads((root / STATE_FILE).read_text())
    assert state["results"]["evaluation"]["inference-base"]["total_rows"] == 1066
    assert state["completed"][-2:] == ["inference-base:start", "inference-base:evaluate"]


def test_config_view_scopes_the_merged_spec_to_one_contracts_applications(tmp_path: Path) -> None:
    from core.config.party import add_application, add_data_asset, init_party

    parties = {p: init_party(tmp_path / p, p) for p in PERSONAS}
    for name in ("base-onnx", "base-pytorch"):
        add_data_asset(parties["provider"], "datasource", name)
    add_data_asset(parties["consumer"], "datasource", "training-data")
    add_application(
        parties["hoster"],
        name="inference",
        entrypoint="containers/inference_server",
        command=["x"],
        mounts=[{"source": "base-onnx", "target": "/mnt/remote/model"}],
    )
    add_application(
        parties["hoster"],
        name="trainer",
        entrypoint="containers/trainer",
        command=["y"],
        mounts=[
            {"source": "base-pytorch", "target": "/mnt/remote/model"},
            {"source": "training-data", "target": "/mnt/remote/data"},
        ],
    )
    configs = ["--configs", *(tmp_path / p for p in PERSONAS)]
    view = cleanroom("config", "view", *configs, "--application", "inference", "--output", "json")
    assert view.code == 0, view.stderr
    spec = json.loads(view.stdout)["spec"]
    assert [a["name"] for a in spec["applications"]] == ["inference"]
    assert [a["name"] for a in spec["datasources"]] == ["base-onnx"]  # the consumer's data stays out
    assert len(spec["parties"]) == 3
    unknown = cleanroom("config", "view", *configs, "--application", "nope")
    assert unknown.code == 3 and "application 'nope' is in no party's config" in unknown.stderr


# -- one output layer, any registered scenario ----------------------------------------------------
def test_list_steps_is_the_verbs_result_in_json_and_query() -> None:
    listed = cleanroom("demo", "--list-steps", "-o", "json")
    assert listed.code == 0, listed.stderr
    steps = json.loads(listed.stdout)
    assert [s["key"] for s in steps] == [s.key for s in build_steps()]
    assert steps[0] == {
        "key": "init:hoster",
        "phase": "setup",
        "persona": "hoster",
        "title": "create its workspace: member identity and KEK",
        "commands": ["cleanroom -w W/hoster config init --persona hoster"],
    }
    first = cleanroom("demo", "--list-steps", "--query", "[0].commands[0]")
    assert first.stdout == "cleanroom -w W/hoster config init --persona hoster\n"
    table = cleanroom("demo", "--list-steps", "--scenario", "three-personas")
    assert "inference-base:evaluate" in table.stdout and "$ cleanroom -w W/consumer infer" in table.stdout
    assert "── 4. Proofs: isolation, ledger, events ──" in table.stdout
    assert max(map(len, table.stdout.splitlines())) < 1000  # piped output is unbounded: nothing may fill it


def test_an_unknown_scenario_is_refused_naming_the_registered_ones(tmp_path: Path) -> None:
    refused = cleanroom("demo", "-w", tmp_path / "demo", "--scenario", "no-such")
    assert refused.code == 2
    assert "Invalid value for '--scenario': 'no-such' is not" in refused.stderr
    assert all(f"'{name}'" in refused.stderr for name in SCENARIOS)
    assert not (tmp_path / "demo").exists()


@pytest.fixture
def sketch(monkeypatch: pytest.MonkeyPatch) -> str:
    """The one-persona scenario of test_scenario_package, registered as a real scenario is."""
    from tests.test_scenario_package import ONBOARDING

    monkeypatch.setitem(SCENARIOS, ONBOARDING.name, lambda: ONBOARDING)
    return ONBOARDING.name


def test_another_scenario_runs_through_demo_in_its_own_folder_with_a_generic_summary(
    tmp_path: Path, sketch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ran = cleanroom("demo", "--scenario", sketch, "-o", "json")
    assert ran.code == 0, ran.stderr
    summary = json.loads(ran.stdout)
    root = tmp_path / f"cleanroom-demo-{sketch}"  # beside, never inside, the reference scenario's folder
    assert summary["workspace"] == str(root) and summary["scenario"] == sketch
    assert summary["status"] == "complete" and summary["stepsDone"] == summary["stepsTotal"] == 3
    assert summary["datasources"] == ["survey", "census"]
    assert set(summary["durationsSeconds"]) == {"setup", "data"}
    assert not (tmp_path / "cleanroom-demo").exists()
    assert "onboarding-sketch demo in" in ran.stderr  # narration on stderr, the document alone on stdout

    listed = cleanroom("demo", "--scenario", sketch, "--list-steps")
    assert "analyst" in listed.stdout and "cleanroom -w W/analyst config add-datasource --name census" in listed.stdout


def test_the_generic_summary_table_shows_the_phases_and_the_definitions_figures(tmp_path: Path, sketch: str) -> None:
    shown = cleanroom("demo", "--scenario", sketch, "-w", tmp_path / "sketch")
    assert shown.code == 0, shown.stderr
    assert "onboarding-sketch scenario" in shown.stdout
    assert "Setup" in shown.stdout and "Data" in shown.stdout and "total" in shown.stdout
    assert "datasources" in shown.stdout and '["survey", "census"]' in shown.stdout
    assert "results kept in" in shown.stderr


def test_a_folder_holding_one_scenario_is_refused_to_another_and_left_as_it_was(tmp_path: Path, sketch: str) -> None:
    root = tmp_path / "demo"
    first = cleanroom("demo", "-w", root, "--quick", "--stop-after", "init:hoster", "-o", "json")
    assert first.code == 0, first.stderr
    before = (root / STATE_FILE).read_bytes()
    other = cleanroom("demo", "--scenario", sketch, "-w", root, "--quick")
    assert other.code == 5 and other.stdout == ""
    assert other.stderr.strip() == (
        f"error: {root.resolve()} holds the scenario 'three-personas', not '{sketch}'; resume it with "
        "--scenario three-personas, or use a new --workspace directory for this one"
    )
    assert (root / STATE_FILE).read_bytes() == before
    assert not (root / "analyst").exists()


def test_a_stopped_run_in_table_output_says_how_far_it_got(tmp_path: Path) -> None:
    stopped = cleanroom("demo", "-w", tmp_path / "demo", "--quick", "--stop-after", "init:hoster")
    assert stopped.code == 0, stopped.stderr
    assert (
        stopped.stdout == f"{(tmp_path / 'demo').resolve()}: 1/{len(build_steps())} steps done, next: init:provider\n"
    )
    assert "stopped after init:hoster; run it again" in stopped.stderr
    figure = cleanroom(
        "demo", "-w", tmp_path / "demo", "--quick", "--stop-after", "init:hoster", "--query", "stepsDone"
    )
    assert figure.code == 0 and figure.stdout == "1\n"


def test_the_console_opens_another_scenario_in_its_own_folder_of_the_embedded_home(
    tmp_path: Path, sketch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.scenario import open_embedded_scenario, scenario_definition

    monkeypatch.setenv("CLEANROOM_HOME", str(tmp_path / "home"))
    scenario, engines = open_embedded_scenario(definition=scenario_definition(sketch))
    for engine in engines:
        engine.close()
    assert scenario.root == (tmp_path / "home" / f"scenario-{sketch}").resolve()
    assert scenario.state.completed == ["init:analyst"]  # its consortium steps, nothing more
    assert not (tmp_path / "home" / "scenario").exists()

    both = cleanroom("console", "--workspace", tmp_path / "w", "--scenario", sketch)
    assert both.code == InvalidInputError.exit_code and both.stdout == ""
    assert both.stderr == (
        "error: --scenario chooses the embedded scenario to play; drop --scenario, or drop --workspace "
        "to open the embedded scenario\n"
    )
    unknown = cleanroom("console", "--scenario", "no-such")
    assert unknown.code == 2 and "Invalid value for '--scenario': 'no-such' is not" in unknown.stderr
