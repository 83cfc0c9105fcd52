"""The summarise scenario: what it narrates parses with the real command lines, what it runs builds
the same fragments as those lines (the caps included), the owner's documents are the documented
ones, and (smoke: the shipped MiniLM summarises in the sandbox) the quick scenario runs end to end:
every summary within the voted caps, the over-size document refused by id, no document in the
reader's sink.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.config.party import party_fragment
from core.errors import InvalidInputError
from core.scenario import Invocation, Reporter, Scenario, Step, operations, scenario_definition, summary_documents
from core.scenario.steps import SERVICES_HOME
from core.scenario.summarise import (
    APPLICATION,
    CONTRACT,
    PERSONAS,
    SUMMARISE,
    SUMMARY_POLICY,
    SUMMARY_POLICY_FILE,
)
from core.workspace import Workspace
from tests.cli_runner import cleanroom
from tests.test_scenario_narration import FRAGMENT_VERBS, parse

ROOT = Path(__file__).resolve().parents[1]
DEMO = (sys.executable, "-m", "tui.cli", "demo", "--scenario", "summarise", "--quick")
NARRATED = [(step, invocation) for step in SUMMARISE.steps for invocation in step.invocations]


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


def test_the_narrated_documents_line_parses_with_its_module() -> None:
    (line,) = [i for _, i in NARRATED if i.program == "python"]
    assert line.args[:2] == ("-m", "core.scenario.summary_documents")
    parsed = summary_documents.parser().parse_args(list(line.args[2:]))
    assert parsed.output_dir == Path("W/owner/documents") and parsed.count is None


@pytest.mark.parametrize("invocation", [i for _, i in NARRATED], ids=lambda i: i.narration()[:70])
def test_every_narrated_line_reads_back_as_the_argv_it_runs(invocation: Invocation) -> None:
    words = shlex.split(invocation.narration())
    if invocation.services:
        assert words.pop(0) == f"CLEANROOM_HOME={SERVICES_HOME}"
    if invocation.stdout:
        assert words[-2:] == [">", invocation.stdout]
        words = words[:-2]
    assert words == [invocation.program, *invocation.argv()]


def test_the_scenario_is_registered_and_every_party_votes_the_caps() -> None:
    assert scenario_definition("summarise") is SUMMARISE
    assert SUMMARISE.personas == ("hoster", "owner", "reader")
    assert {s.persona for s in SUMMARISE.steps if s.key.startswith(f"{CONTRACT}:vote-contract:")} == set(PERSONAS)
    assert {s.persona for s in SUMMARISE.steps if s.key.startswith(f"{CONTRACT}:vote-deployment:")} == set(PERSONAS)
    add = next(s for s in SUMMARISE.steps if s.key == "add-summariser").invocation("config", "add-application")
    assert add.value("--summary-policy") == SUMMARY_POLICY_FILE
    # the documents mount is read by the summariser and its sink is the reader's, nothing else
    assert add.values("--mounts") == [
        "src=documents,dst=/mnt/remote/documents",
        "src=summaries,dst=/mnt/remote/summaries",
    ]
    read = next(s for s in SUMMARISE.steps if s.key == "read-summaries")
    assert read.persona == "reader" and read.invocation("summarise", "show").value("--contract") == CONTRACT


def test_the_fragment_lines_build_through_the_cli_what_the_step_bodies_build(tmp_path: Path) -> None:
    """Every party's fragment twice: once by the narrated lines through the CLI, once by the step
    bodies; the summariser's voted caps must agree and be the scenario's."""
    by_cli, by_steps = tmp_path / "cli", tmp_path / "steps"
    scenario = Scenario.open(by_steps, quick=True, definition=SUMMARISE)
    policy_file = by_cli / SUMMARY_POLICY_FILE.removeprefix("W/")
    for step in SUMMARISE.steps:
        lines = [i for i in step.invocations if i.verb in FRAGMENT_VERBS]
        if not lines:
            continue
        if step.invocations_of("config", "add-application"):
            policy_file.parent.mkdir(parents=True, exist_ok=True)
            policy_file.write_text(json.dumps(SUMMARY_POLICY))
        for invocation in lines:
            argv = [str(by_cli / word[2:]) if word.startswith("W/") else word for word in invocation.argv()]
            outcome = cleanroom(*argv)
            assert outcome.code == 0, (invocation.narration(), outcome.stderr)
        if step.key == "add-summariser":
            step.perform(scenario, step, Reporter())
        else:  # a step that also writes or uploads documents: only its fragment lines here
            operations.perform_each(
                scenario, Step(step.key, step.phase, step.persona, step.title, tuple(lines), step.perform), Reporter()
            )
    for persona in PERSONAS:
        mine, theirs = (party_fragment(Workspace.open(root / persona)) for root in (by_steps, by_cli))
        assert [a.model_dump(exclude={"owner"}) for a in mine.applications] == [
            a.model_dump(exclude={"owner"}) for a in theirs.applications
        ], persona
        assert [a.name for a in mine.datasources] == [a.name for a in theirs.datasources], persona
        assert [a.name for a in mine.datasinks] == [a.name for a in theirs.datasinks], persona
    (summariser,) = party_fragment(scenario.workspace("hoster")).applications
    assert summariser.name == APPLICATION
    assert summariser.summary_policy is not None and summariser.summary_policy.model_dump() == SUMMARY_POLICY
    assert scenario.state.results["summaryPolicy"] == SUMMARY_POLICY


# -- the owner's documents ----------------------------------------------------------------------
def test_the_documents_are_text_files_parquet_rows_and_one_over_size_archive(tmp_path: Path) -> None:
    written = summary_documents.write_documents(tmp_path, 6)
    assert written == {
        "text": [f"{d['id']}.txt" for i, d in enumerate(summary_documents.evaluation_documents()[:6]) if i != 4],
        "parquet": [summary_documents.evaluation_documents()[4]["id"]],
        "oversize": ["archive.txt"],
    }
    rows = pq.read_table(tmp_path / summary_documents.PARQUET_FILE).to_pylist()
    assert rows == [{"id": d["id"], "text": d["text"]} for d in summary_documents.evaluation_documents()[4:5]]
    assert (tmp_path / "archive.txt").stat().st_size > SUMMARY_POLICY["max_document_bytes"]
    assert all((tmp_path / name).stat().st_size < SUMMARY_POLICY["max_document_bytes"] for name in written["text"])
    assert not list(tmp_path.glob(".*partial"))
    # the references are the benchmark's: none is handed to the owner's folder
    text = "".join(p.read_text() for p in tmp_path.glob("*.txt"))
    assert not any(d["reference"] in text for d in summary_documents.evaluation_documents())
    assert summary_documents.main(["--output-dir", str(tmp_path / "all")]) == 0
    assert len(list((tmp_path / "all").glob("*.txt"))) == 40 + 1


def test_a_count_outside_the_set_is_a_one_line_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--count 51 is not between 1 and 50"):
        summary_documents.write_documents(tmp_path / "docs", 51)
    assert not (tmp_path / "docs").exists()


# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.smoke
@pytest.mark.timeout(600)
def test_quick_summarise_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "CLEANROOM_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*DEMO, "--workspace", str(tmp_path / "demo"), "--output", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=560,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["status"] == "complete" and result["scenario"] == "summarise"
    assert result["documents"] == {"text": 5, "parquet": 1, "oversize": 1}
    assert result["method"] == "extractive-centroid-minilm"
    assert result["summarised"] == 6 and result["withinCaps"] is True and result["withinCapsPct"] == 100.0
    assert [r["id"] for r in result["refused"]] == ["archive.txt"]
    assert "over the voted max_document_bytes of 16384" in result["refused"][0]["refused"]
    assert result["documentsInSink"] == 0 and result["sinkFiles"] == ["report.json", "summaries.jsonl"]
    for summary in result["summaries"]:
        assert 1 <= summary["sentences"] <= SUMMARY_POLICY["max_sentences"]
        assert 0 < summary["ratio"] <= SUMMARY_POLICY["max_ratio"]
    assert result["summaryPolicy"] == SUMMARY_POLICY
