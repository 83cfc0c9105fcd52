"""The onboarding scenario: what it narrates parses with the real command lines, the pickled copy is
what the scanner must stop, and the scenario runs end to end on a package of the tiny BERT (real
governance and key service on loopback, the onboarding workload in the bubblewrap sandbox): the
good package ends verified by the clean room's own ledger entries and is published by every
member's vote, the pickled one ends vulnerable with its finding and cannot be published; the
regression clean room writes version 2's regression result, which `model show` prints; a clean room
serving the published version is load-tested and the provider's report recorded on the version.
(smoke: the same through `cleanroom demo --scenario onboard` on the shipped MiniLM, within 60 s.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config.party import party_fragment
from core.errors import ConflictError, IntegrityError, NotFoundError
from core.governance.onboarding_contract import onboarding_env
from core.governance.serving_contract import serving_env, serving_targets
from core.onboarding.scan import scan_folder
from core.scenario import Invocation, Reporter, Scenario, Step, scenario_definition
from core.scenario.onboard import (
    CANDIDATE,
    GATE,
    LOADTEST_PLAN,
    MINILM,
    MOUNT,
    ONBOARD,
    PACKAGE_FOLDER,
    PERSONAS,
    PICKLE_FILE,
    PICKLED,
    PICKLED_FOLDER,
    REGRESSION_CONTRACT,
    SERVE_APP,
    SERVE_CONTRACT,
    contract_of,
    definition,
)
from core.scenario.onboard_operations import CODE_RUNNING_PICKLE, build_pickled_package, ended_as
from core.scenario.steps import SERVICES_HOME
from tests.test_scenario_narration import parse

ROOT = Path(__file__).resolve().parents[1]
NARRATED = [(step, invocation) for step in ONBOARD.steps for invocation in step.invocations]
TO_VERIFIED = ["created", "downloaded", "scanning", "environmentCreated", "deployed", "verified"]


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


@pytest.mark.parametrize("invocation", [i for _, i in NARRATED], ids=lambda i: i.narration()[:70])
def test_every_narrated_line_reads_back_as_the_argv_it_runs(invocation: Invocation) -> None:
    words = shlex.split(invocation.narration())
    if invocation.services:
        assert words.pop(0) == f"CLEANROOM_HOME={SERVICES_HOME}"
    if invocation.stdout:
        assert words[-2:] == [">", invocation.stdout]
        words = words[:-2]
    assert words == [invocation.program, *invocation.argv()]


def test_the_scenario_is_registered_and_every_member_votes_each_contract_and_the_publication() -> None:
    assert scenario_definition("onboard") is ONBOARD
    assert ONBOARD.personas == ("hoster", "provider")
    for contract in (contract_of(MINILM), contract_of(PICKLED), REGRESSION_CONTRACT, SERVE_CONTRACT):
        for vote in ("vote-contract", "vote-deployment"):
            assert {s.persona for s in ONBOARD.steps if s.key.startswith(f"{contract}:{vote}:")} == set(PERSONAS)
    assert {s.persona for s in ONBOARD.steps if s.key.startswith("publish:vote:")} == set(PERSONAS)
    init = next(s for s in ONBOARD.steps if s.key == "build-package").invocation("model", "package", "init")
    assert not init.has("--base")  # the shipped MiniLM, offline
    assert init.value("--output-dir") == PACKAGE_FOLDER


def test_the_onboarding_application_pins_every_name_the_contract_rule_reads() -> None:
    """The narrated --env are the names core.governance.onboarding_contract reads, the hashes as
    placeholders the hoster fills from the registry (`model show`), and the mount is the package's."""
    step = next(s for s in ONBOARD.steps if s.key == f"{MINILM}:add-onboarding")
    add = step.invocation("config", "add-application")
    narrated = dict(value.partition("=")[::2] for value in add.values("--env"))
    assert narrated == onboarding_env(MINILM, "1", "PACKAGE_SHA256", "WRAPPER_SHA256")
    assert add.values("--mounts") == [f"src={MINILM}-package,dst=/mnt/remote/package"]
    assert step.invocation("model", "show").args[-1] == MINILM  # (the name last: the verb is the words before options)


def test_the_serving_application_names_the_published_version_as_the_serving_rule_reads_it() -> None:
    """The narrated --env are the names core.governance.serving_contract reads (so governance
    checks the version is servable and takes a load test only through this contract), the package
    hash a placeholder the hoster fills from the registry, the mount the package's; the load test
    records on that version, with a short plan, and the clean room is stopped last."""
    step = next(s for s in ONBOARD.steps if s.key == "serve:add-application")
    add = step.invocation("config", "add-application")
    narrated = dict(value.partition("=")[::2] for value in add.values("--env"))
    assert narrated == serving_env(MINILM, "1", "PACKAGE_SHA256", MOUNT)
    assert serving_targets({"applications": [{"env": narrated}]}) == {(MINILM, "1"): ("PACKAGE_SHA256", MOUNT)}
    assert add.values("--mounts") == [f"src={MINILM}-package,dst={MOUNT}"] and add.value("--name") == SERVE_APP
    serve = [s for s in ONBOARD.steps if s.phase == "serve"]
    loadtest = next(s for s in serve if s.key == f"{SERVE_CONTRACT}:loadtest").invocation("model", "loadtest")
    assert loadtest.value("--contract") == SERVE_CONTRACT and loadtest.value("--record") == f"{MINILM}@1"
    assert loadtest.value("--mode") == "per-rps" and loadtest.value("--steps") == LOADTEST_PLAN[1]
    assert serve[-1].invocations[0].verb == ("deployment", "stop")


def test_the_pickled_copy_is_the_good_package_plus_a_pickle_the_scan_flags(tmp_path: Path) -> None:
    scenario = Scenario.open(tmp_path / "root", definition=ONBOARD)
    good = scenario.path(PACKAGE_FOLDER)
    (good / "model").mkdir(parents=True)
    (good / "model" / "config.json").write_text("{}")
    step = next(s for s in ONBOARD.steps if s.key == "build-pickled-package")
    summary = step.perform(scenario, step, Reporter())
    assert "model/extra.pkl (a code-running pickle)" in summary
    pickled = scenario.path(PICKLED_FOLDER)
    assert (pickled / "model" / "config.json").read_text() == "{}"
    assert scenario.path(PICKLE_FILE).read_bytes() == CODE_RUNNING_PICKLE
    report = scan_folder(pickled, package=False)
    assert report.vulnerable and any("extra.pkl" in f["line"] for f in report.document()["findings"])
    build_pickled_package(scenario, step, Reporter())  # done again: the copy is left as it is
    assert sorted(p.name for p in (pickled / "model").iterdir()) == ["config.json", "extra.pkl"]


# -- end to end on the tiny BERT ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """The whole scenario over a package of the tiny BERT; services left up for the checks."""
    from core.runtime import sandbox
    from tests.ml_tiny_model import build_tiny_base

    if sandbox.bwrap_path() is None:
        pytest.skip("bubblewrap is not installed: the onboarding clean room runs in it")
    base = build_tiny_base(tmp_path_factory.mktemp("tiny") / "base")
    scenario = Scenario.open(tmp_path_factory.mktemp("onboard") / "root", definition=definition(base=str(base)))
    try:
        scenario.run(Reporter(), keep_services=True)
        yield scenario
    finally:
        scenario.stop_services()


@pytest.mark.timeout(900)
def test_the_package_ends_verified_by_the_clean_room_and_published_by_every_member(played: Scenario) -> None:
    summary: dict[str, Any] = played.definition.summarise(played)
    verified = summary["verified"]
    assert verified["status"] == "verified" and verified["history"] == TO_VERIFIED
    assert verified["writers"] == [f"attested:{contract_of(MINILM)}"]  # no member wrote a status
    assert verified["published"] is True
    assert 0 < summary["onboardToVerifiedSeconds"] <= summary["targetSeconds"] == 60.0
    assert summary["withinTarget"] is True and summary["buildPackageSeconds"] > 0
    provider = played.engine("provider")
    (publication,) = [p for p in provider.proposals() if p.action == "publish_model_version"]
    assert publication.state == "Accepted"
    assert set(publication.ballots) == {played.engine(p).member_id for p in PERSONAS}
    # the hoster's voted application pins the bytes the provider registered
    registered = provider.model(MINILM)["versions"]["1"]
    (application,) = [
        a for a in party_fragment(played.workspace("hoster")).applications if a.name == f"onboard-{MINILM}"
    ]
    assert application.env == onboarding_env(MINILM, "1", registered["packageHash"], registered["wrapperHash"])


@pytest.mark.timeout(900)
def test_the_pickled_package_ends_vulnerable_with_its_finding(played: Scenario) -> None:
    vulnerable: Any = played.definition.summarise(played)["vulnerable"]
    assert vulnerable["status"] == "vulnerable"
    assert vulnerable["history"] == ["created", "downloaded", "scanning", "vulnerable"]
    assert vulnerable["writers"] == [f"attested:{contract_of(PICKLED)}"]
    assert vulnerable["reasons"] == ["pickle"] and vulnerable["published"] is False
    assert any(line.startswith("model/extra.pkl") for line in vulnerable["findings"]), vulnerable["findings"]


@pytest.mark.timeout(900)
def test_publishing_the_vulnerable_version_is_refused_and_nothing_is_proposed(played: Scenario) -> None:
    provider = played.engine("provider")
    before = len(provider.proposals())
    with pytest.raises(ConflictError, match=f"model '{PICKLED}' version '1' is vulnerable, not verified"):
        provider.propose_publish_model(PICKLED, "1")
    assert len(provider.proposals()) == before
    assert provider.model(PICKLED)["versions"]["1"]["published"] is False


@pytest.mark.timeout(900)
def test_a_version_that_ends_otherwise_than_its_package_deserves_fails_the_step(played: Scenario) -> None:
    before = dict(played.state.results["models"])
    with pytest.raises(
        IntegrityError, match=rf"{PICKLED} 1 ended vulnerable \(created -> .* -> vulnerable\), not verified"
    ):
        ended_as(played.engine("hoster").model(PICKLED), "verified")
    assert played.state.results["models"] == before


@pytest.mark.timeout(900)
def test_an_onboarding_application_for_an_unregistered_model_is_refused_and_not_added(played: Scenario) -> None:
    step = next(s for s in played.steps if s.key == f"{MINILM}:add-onboarding")
    lines = tuple(
        dataclasses.replace(i, args=tuple(w.replace(MINILM, "absent") for w in i.args)) for i in step.invocations
    )
    with pytest.raises(NotFoundError, match="model 'absent' is not registered"):
        step.perform(played, dataclasses.replace(step, invocations=lines), Reporter())
    assert [a.name for a in party_fragment(played.workspace("hoster")).applications] == [
        f"onboard-{MINILM}",
        f"onboard-{PICKLED}",
        f"regression-{MINILM}",
        SERVE_APP,
    ]


@pytest.mark.timeout(900)
def test_the_run_step_done_again_reads_the_ended_version_and_runs_no_clean_room_again(played: Scenario) -> None:
    step = next(s for s in played.steps if s.key == f"{contract_of(MINILM)}:run")
    before = played.deployment_status(contract_of(MINILM))
    summary = step.perform(played, step, Reporter())
    assert summary.startswith(f"{MINILM} 1: created -> downloaded") and "-> verified in" in summary
    assert played.deployment_status(contract_of(MINILM)) == before
    assert played.engine("hoster").model(MINILM)["versions"]["1"]["history"][-1]["status"] == "verified"


@pytest.mark.timeout(900)
def test_the_regression_clean_room_writes_version_2s_result_and_model_show_prints_it(
    played: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.governance.regression_contract import regression_env
    from tests.cli_runner import cleanroom

    regression: Any = played.definition.summarise(played)["regression"]
    assert regression["version"] == CANDIDATE and regression["baselineVersion"] == "1"
    assert regression["contractId"] == REGRESSION_CONTRACT and regression["passed"] is True
    assert regression["cases"] > 200 and regression["accuracyDelta"] == 0.0  # a re-release of the same bytes
    assert regression["flips"]["baselineRightCandidateWrong"] == 0 and regression["mcnemarP"] == 1.0
    versions = played.engine("hoster").model(MINILM)["versions"]
    assert versions[CANDIDATE]["regression"] == {k: v for k, v in regression.items() if k != "version"}
    assert versions["1"]["regression"] is None and versions["1"]["published"] is True
    # the hoster's voted application pins both versions' registry hashes and the gate
    (application,) = [a for a in party_fragment(played.workspace("hoster")).applications if a.name.startswith("reg")]
    pins = ((CANDIDATE, versions[CANDIDATE]["packageHash"]), ("1", versions["1"]["packageHash"]))
    assert application.env == regression_env(MINILM, *pins, GATE)
    events = played.engine("provider").events(REGRESSION_CONTRACT)
    assert [e.data["passed"] for e in events if e.kind == "model_regression"] == [True]

    monkeypatch.setenv("CLEANROOM_HOME", str(played.services_home))
    shown = cleanroom("-w", played.workspace_dir("provider"), "model", "show", MINILM)
    assert shown.code == 0, shown.stderr
    assert f"version {CANDIDATE} regression against version 1 (contract {REGRESSION_CONTRACT}" in shown.stdout
    assert "gate: passed" in shown.stdout


@pytest.mark.timeout(900)
def test_the_served_version_carries_the_providers_recorded_load_test(
    played: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cli_runner import cleanroom

    loadtest: Any = played.definition.summarise(played)["loadtest"]
    provider = played.engine("provider")
    recorded = provider.model(MINILM)["versions"]["1"]["loadtest"]
    assert recorded["writer"] == provider.member_id and recorded["contractId"] == SERVE_CONTRACT
    assert [s["target"] for s in recorded["steps"]] == [5, 10, 20] and recorded["mode"] == "per-rps"
    assert all(s["sent"] > 0 and s["peakRssMb"] > 0 for s in recorded["steps"])  # measured in this clean room
    assert loadtest["model"] == MINILM and loadtest["version"] == "1" and loadtest["writer"] == provider.member_id
    assert loadtest["steps"] == [5, 10, 20] and loadtest["contractId"] == SERVE_CONTRACT
    assert loadtest["kneeRps"] == (recorded["knee"] or {}).get("target")
    knee = next((s for s in recorded["steps"] if s["target"] == loadtest["kneeRps"]), None)
    assert loadtest["p50AtKneeMs"] == (knee["latencyMs"]["p50"] if knee else None)
    # the voted application serves the registry's bytes; the clean room was stopped
    registered = provider.model(MINILM)["versions"]["1"]
    (application,) = [a for a in party_fragment(played.workspace("hoster")).applications if a.name == SERVE_APP]
    assert application.env == serving_env(MINILM, "1", registered["packageHash"], MOUNT)
    status = played.deployment_status(SERVE_CONTRACT)
    assert status is not None and not status.alive

    monkeypatch.setenv("CLEANROOM_HOME", str(played.services_home))
    shown = cleanroom("-w", played.workspace_dir("hoster"), "model", "show", MINILM)
    assert shown.code == 0, shown.stderr
    assert f"version 1 load test through contract {SERVE_CONTRACT}" in shown.stdout


# -- end to end on the shipped MiniLM -------------------------------------------------------------------
@pytest.mark.smoke
@pytest.mark.timeout(900)
def test_onboard_demo_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "CLEANROOM_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    demo = [sys.executable, "-m", "tui.cli", "demo", "--scenario", "onboard", "--quick"]
    done = subprocess.run(
        [*demo, "--workspace", str(tmp_path / "demo"), "--output", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=860,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["status"] == "complete" and result["scenario"] == "onboard"
    assert result["verified"]["history"] == TO_VERIFIED and result["verified"]["published"] is True
    assert result["vulnerable"]["status"] == "vulnerable" and result["vulnerable"]["reasons"] == ["pickle"]
    assert result["withinTarget"] is True, result["onboardToVerifiedSeconds"]
    assert result["loadtest"]["contractId"] == SERVE_CONTRACT and result["loadtest"]["steps"] == [5, 10, 20]
