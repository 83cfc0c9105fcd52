"""The dp-join scenario: what it narrates parses with the real command lines, what it runs builds
the same fragments as those lines, its data split is the documented one, and (smoke) the whole
quick scenario runs: two private runs accepted, the third refused by the labels budget, the
privacy ledger verified offline.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from core.config.party import party_fragment
from core.ml import dp_split, local_evaluation
from core.ml.datasets import load_split
from core.scenario import Invocation, Reporter, Scenario, Step, dp_operations, operations, scenario_definition
from core.scenario.dp_join import (
    BUDGETS,
    CONTRACT,
    DELTA,
    DP_JOIN,
    PERSONAS,
    PRIVATE_TRAINING_FILE,
    QUICK_PRIVATE_TRAINING,
    RUN_EPSILON,
)
from core.scenario.steps import SERVICES_HOME
from core.workspace import Workspace
from tests.cli_runner import cleanroom
from tests.test_scenario_narration import FRAGMENT_VERBS, parse

ROOT = Path(__file__).resolve().parents[1]
DEMO = (sys.executable, "-m", "tui.cli", "demo", "--scenario", "dp-join", "--quick")
NARRATED = [(step, invocation) for step in DP_JOIN.steps for invocation in step.invocations]
PYTHON_MODULES = {"core.ml.dp_split": dp_split.parser, "core.ml.local_evaluation": local_evaluation.parser}


# -- narration ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "invocation"),
    [pytest.param(s, i, id=f"{s.key}:{' '.join(i.verb)}") for s, i in NARRATED if i.program == "cleanroom"],
)
def test_every_narrated_command_parses_with_the_real_command_tree(step: Step, invocation: Invocation) -> None:
    ctx = parse(invocation.argv())
    assert ctx.command_path.split()[1:] == list(invocation.verb)
    assert not ctx.args, f"`{invocation.narration()}` leaves {ctx.args} unparsed"
    if invocation.persona is not None:
        assert ctx.find_root().params["workspace"] == Path(f"W/{invocation.persona}")


@pytest.mark.parametrize(
    "invocation", [i for _, i in NARRATED if i.program == "python"], ids=lambda i: i.narration()[:70]
)
def test_every_narrated_python_line_parses_with_its_module(invocation: Invocation) -> None:
    assert invocation.args[0] == "-m"
    module, *argv = invocation.args[1:]
    parsed = PYTHON_MODULES[module]().parse_args(argv)
    assert all(value is not None for value in vars(parsed).values())


@pytest.mark.parametrize("invocation", [i for _, i in NARRATED], ids=lambda i: i.narration()[:70])
def test_every_narrated_line_reads_back_as_the_argv_it_runs(invocation: Invocation) -> None:
    words = shlex.split(invocation.narration())
    if invocation.services:
        assert words.pop(0) == f"CLEANROOM_HOME={SERVICES_HOME}"
    if invocation.stdout:
        assert words[-2:] == [">", invocation.stdout]
        words = words[:-2]
    assert words == [invocation.program, *invocation.argv()]


def test_every_plain_step_has_a_body_for_each_line() -> None:
    for step in DP_JOIN.steps:
        if step.perform in (dp_operations.perform_each, operations.perform_each):
            for invocation in step.invocations:
                known = invocation.program == "cp" or invocation.verb in operations.OPERATIONS
                assert known or invocation.args[1:2] == ("core.ml.dp_split",), (step.key, invocation.narration())


def test_the_scenario_is_registered_and_its_budgets_refuse_exactly_the_third_run() -> None:
    assert scenario_definition("dp-join") is DP_JOIN
    assert DP_JOIN.personas == ("hoster", "texts", "labels", "extra", "consumer")
    assert min(BUDGETS, key=lambda name: BUDGETS[name]) == "labels"
    # two runs of RUN_EPSILON fit in the strictest budget; a third does not
    assert 2 * RUN_EPSILON <= BUDGETS["labels"] < 3 * RUN_EPSILON
    runs = [s.key for s in DP_JOIN.steps if s.key.startswith(f"{CONTRACT}:run-")]
    assert runs == [f"{CONTRACT}:run-{n}" for n in (1, 2, 3)]
    refused = next(s for s in DP_JOIN.steps if s.key == f"{CONTRACT}:run-3")
    assert refused.perform is dp_operations.refused_run
    assert refused.invocation("governance", "privacy", "history").value("--dataset") == "labels"
    everyone_votes = {s.persona for s in DP_JOIN.steps if s.key.startswith(f"{CONTRACT}:vote-deployment:")}
    assert everyone_votes == set(PERSONAS)
    deployment = next(s for s in DP_JOIN.steps if s.key == f"{CONTRACT}:propose-deployment")
    assert [
        i.value("--option") for i in deployment.invocations_of("governance", "contract", "runtime-option", "set")
    ] == [
        "telemetry",
        "loss-telemetry",
    ]


def _fragment_lines(step: Step) -> list[Invocation]:
    return [i for i in step.invocations if i.verb in FRAGMENT_VERBS]


def test_the_fragment_lines_build_through_the_cli_what_the_step_bodies_build(tmp_path: Path) -> None:
    """Every party's fragment twice: once by the narrated lines through the CLI, once by the step
    bodies; the datasources' budgets and the trainer's private training section must agree."""
    by_cli, by_steps = tmp_path / "cli", tmp_path / "steps"
    scenario = Scenario.open(by_steps, quick=True, definition=DP_JOIN)
    training_file = by_cli / PRIVATE_TRAINING_FILE.removeprefix("W/")
    for step in DP_JOIN.steps:
        lines = _fragment_lines(step)
        if not lines:
            continue
        if step.invocations_of("config", "add-application"):
            training_file.parent.mkdir(parents=True, exist_ok=True)
            training_file.write_text(json.dumps(QUICK_PRIVATE_TRAINING))
        for invocation in lines:
            argv = [str(by_cli / word[2:]) if word.startswith("W/") else word for word in invocation.argv()]
            outcome = cleanroom(*argv)
            assert outcome.code == 0, (invocation.narration(), outcome.stderr)
        if len(lines) == len(step.invocations):
            step.perform(scenario, step, Reporter())
        else:  # a step that also prepares data or uploads: only its fragment lines here
            operations.perform_each(
                scenario, Step(step.key, step.phase, step.persona, step.title, tuple(lines), step.perform), Reporter()
            )
    for persona in PERSONAS:
        mine, theirs = (party_fragment(Workspace.open(root / persona)) for root in (by_steps, by_cli))
        assert [a.model_dump(exclude={"owner"}) for a in mine.applications] == [
            a.model_dump(exclude={"owner"}) for a in theirs.applications
        ], persona
        assert [(a.name, a.privacy) for a in mine.datasources] == [(a.name, a.privacy) for a in theirs.datasources]
        assert [a.name for a in mine.datasinks] == [a.name for a in theirs.datasinks], persona
    for provider, epsilon in BUDGETS.items():
        (source,) = party_fragment(scenario.workspace(provider)).datasources
        assert source.privacy is not None
        assert (source.name, source.privacy.epsilon_total, source.privacy.delta) == (provider, epsilon, DELTA)
        assert source.privacy.privacy_unit == dp_split.KEY
    (trainer,) = party_fragment(scenario.workspace("hoster")).applications
    assert trainer.private_training is not None
    assert trainer.private_training.epsilon == RUN_EPSILON
    assert trainer.private_training.join.datasources == list(dp_split.PROVIDERS)
    assert [s.how for s in trainer.private_training.join.sources] == ["base", "inner", "union"]


# -- the data split ------------------------------------------------------------------------------
def test_the_split_has_the_documented_groups_and_is_deterministic() -> None:
    groups = dp_split.person_groups(8530)
    sizes = {name: len(groups.of(name)) for name in ("both", "texts_only", "labels_only", "neither")}
    assert sizes == {"both": 6824, "texts_only": 768, "labels_only": 768, "neither": 170}
    assert dp_split.person_groups(8530) == groups
    assert dp_split.person_groups(8530, seed=dp_split.SEED + 1) != groups
    everyone = groups.both | groups.texts_only | groups.labels_only | groups.neither
    assert everyone == frozenset(range(8530))
    assert sum(sizes.values()) == 8530  # disjoint


def test_each_provider_holds_its_columns_and_the_join_is_one_row_per_person() -> None:
    train = dp_split.train_table()
    tables = {p: dp_split.provider_table(p, train) for p in dp_split.PROVIDERS}
    assert tables["texts"].column_names == ["person_id", "text"]
    assert tables["labels"].column_names == ["person_id", "label"]
    assert tables["extra"].column_names == ["person_id", "text", "label"]
    assert {p: t.num_rows for p, t in tables.items()} == {"texts": 7592, "labels": 7592, "extra": 938}
    ids = {p: set(t.column("person_id").to_pylist()) for p, t in tables.items()}
    for table in tables.values():
        assert len(set(table.column("person_id").to_pylist())) == table.num_rows  # one row per person
    assert abs(len(ids["texts"]) / 8530 - 0.9) < 0.02 and abs(len(ids["labels"]) / 8530 - 0.9) < 0.02
    inner = tables["texts"].join(tables["labels"], "person_id", join_type="inner")
    assert inner.num_rows == 6824  # ~80 % of the persons
    assert not ids["extra"] & set(inner.column("person_id").to_pylist())  # union adds, never duplicates
    joined = pa.concat_tables([inner.select(["person_id", "text", "label"]), tables["extra"]])
    assert joined.num_rows == len(set(joined.column("person_id").to_pylist())) == 7762
    # the rows are the train split's own: person p-000001 is train row 0
    row = tables["extra"].to_pylist()[0]
    index = int(row["person_id"].removeprefix("p-")) - 1
    assert (row["text"], row["label"]) == (train.column("text")[index].as_py(), train.column("label")[index].as_py())
    assert tables == {p: dp_split.provider_table(p, train) for p in dp_split.PROVIDERS}


def test_the_narrated_split_line_writes_the_providers_file(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    assert dp_split.main(["--provider", "labels", "--output-dir", str(tmp_path)]) == 0
    assert pq.read_table(tmp_path / "labels.parquet").equals(dp_split.provider_table("labels"))
    assert not list(tmp_path.glob(".*partial"))


def test_an_unknown_provider_is_a_one_line_error() -> None:
    from core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="provider 'ratings' is not part of the dp-join split"):
        dp_split.provider_table("ratings")


# -- the consumer's own scoring ------------------------------------------------------------------
def test_the_consumer_scores_an_onnx_folder_as_the_inference_server_would(tmp_path: Path) -> None:
    from containers.inference_server.classifier import OnnxClassifier
    from core.ml.model_preparation import prepare
    from tests.ml_tiny_model import build_tiny_base, write_parquet_splits

    build_tiny_base(tmp_path / "base")
    model = prepare(tmp_path / "base", tmp_path / "model", max_length=32).output
    data = write_parquet_splits(tmp_path / "data", {"test": 300})
    seen: list[tuple[int, int, int]] = []
    score = local_evaluation.score_onnx(model, data, progress=lambda *p: seen.append(p))
    rows = load_split(data, "test")
    predictions = OnnxClassifier(model, quantised=True).classify(rows.texts)
    correct = sum(p.label_id == label for p, label in zip(predictions, rows.labels, strict=True))
    assert (score.rows, score.correct, score.model_file) == (300, correct, "model.int8.onnx")
    assert score.accuracy == correct / 300
    assert [done for done, _, _ in seen] == [128, 256, 300] and seen[-1][1:] == (correct, 300)
    assert local_evaluation.main(["--model-dir", str(model), "--dataset", str(data), "--fp32"]) == 0


def test_scoring_a_folder_without_a_model_is_a_one_line_error(tmp_path: Path) -> None:
    from core.errors import InvalidInputError
    from tests.ml_tiny_model import write_parquet_splits

    data = write_parquet_splits(tmp_path / "data", {"test": 10})
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"model file .*model.int8.onnx' does not exist"):
        local_evaluation.score_onnx(tmp_path / "empty", data)


# -- the console ------------------------------------------------------------------------------------
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_console_opens_five_tabs_and_walks_to_the_provider_whose_turn_it_is(tmp_path: Path) -> None:
    """Real services on loopback: the console opens the dp-join consortium, points the hoster to
    the texts provider, and takes that provider's step (split, budget, pinned upload) from the palette."""
    from core.scenario import open_embedded_scenario
    from tui.app import CleanroomConsole
    from tui.widgets.context_bar import PersonaTabs
    from tui.widgets.empty_hint import EmptyHint
    from tui.widgets.privacy_gauge import PrivacyGauges

    scenario, engines = open_embedded_scenario(tmp_path / "scenario", quick=True, definition=DP_JOIN)
    try:
        assert [e.persona for e in engines] == list(PERSONAS)
        app = CleanroomConsole(engines, background=False, scenario=scenario)
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause()
            tabs = app.screen.query_one(PersonaTabs).render().plain
            assert "Alt+4 extra" in tabs and "Alt+5 consumer" in tabs
            commands = {c.title: c.callback for c in app.get_system_commands(app.screen)}
            title = "prepare its rows keyed by person_id, declare its budget (epsilon 10), upload"
            commands[f"Next: switch to texts to {title}"]()
            await pilot.pause()
            assert app.screen.engine.persona == "texts"
            {c.title: c.callback for c in app.get_system_commands(app.screen)}[f"Next: {title}"]()
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert "upload:texts" in scenario.state.completed
            (source,) = party_fragment(scenario.workspace("texts")).datasources
            assert source.privacy is not None and source.privacy.epsilon_total == BUDGETS["texts"]
            assert source.content_hash is not None and source.content_hash.startswith("sha256:")
            await pilot.press("7")  # no contract accepted yet: no budget in the ledger, and the view says why
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.screen.query_one(PrivacyGauges).query_one(EmptyHint).display
    finally:
        for engine in engines:
            engine.close()
        scenario.stop_services()


# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.smoke
@pytest.mark.timeout(1800)
def test_quick_dp_join_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "CLEANROOM_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*DEMO, "--workspace", str(tmp_path / "demo"), "--output", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["status"] == "complete"
    runs = {run["run"]: run for run in result["runs"]}
    assert runs[1]["accepted"] is True and runs[2]["accepted"] is True
    assert runs[3]["accepted"] is False
    for run in (1, 2):
        assert 0.0 <= runs[run]["accuracy"] <= 1.0
        assert runs[run]["testRows"] == 1066
    refused = result["refusedRun"]
    assert refused["run"] == 3 and refused["dataset"] == "labels"
    assert "'labels'" in refused["reason"] and "left" in refused["reason"]
    spent = result["epsilonSpent"]
    assert set(spent) == set(BUDGETS)
    assert 0 < spent["labels"] <= 2 * RUN_EPSILON + 1e-6
    assert result["privacyVerified"] is True
