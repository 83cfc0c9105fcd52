"""Regression comparison: metrics against sklearn, McNemar's exact p, the gate, and the workload
that compares two real ONNX classifiers on encrypted-at-rest cases and writes only the aggregate."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import InvalidInputError, NotFoundError
from core.ml.regression import (
    classification_metrics,
    compare,
    evaluate_gate,
    load_gate,
    mcnemar_exact_p,
    validate_gate,
)
from tests.ml_tiny_model import build_tiny_base, synthetic_reviews

ROOT = Path(__file__).resolve().parents[1]


# -- metrics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearns_on_multiclass_labels(seed: int) -> None:
    metrics_module = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    truth = [rng.choice("abcd") for _ in range(300)]
    predicted = [t if rng.random() < 0.6 else rng.choice("abcde") for t in truth]  # "e" is never true
    ours = classification_metrics(truth, predicted)
    assert ours.accuracy == pytest.approx(metrics_module.accuracy_score(truth, predicted))
    for average in ("macro", "micro", "weighted"):
        expected = metrics_module.f1_score(truth, predicted, average=average, zero_division=0)
        assert getattr(ours, f"{average}_f1") == pytest.approx(expected), average


def test_metrics_of_a_hand_computed_binary_case() -> None:
    # truth 1 1 1 0 0, predicted 1 0 1 0 1: class 1 tp 2 fp 1 fn 1 -> F1 2/3; class 0 tp 1 fp 1 fn 1 -> 1/2
    metrics = classification_metrics([1, 1, 1, 0, 0], [1, 0, 1, 0, 1])
    assert metrics.accuracy == pytest.approx(3 / 5)
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics.micro_f1 == pytest.approx(3 / 5)
    assert metrics.weighted_f1 == pytest.approx((2 / 3 * 3 + 1 / 2 * 2) / 5)


def test_flips_count_each_direction_and_each_label_change() -> None:
    truth = [0, 0, 1, 1, 1, 0]
    baseline = [0, 1, 1, 0, 1, 0]
    candidate = [1, 0, 1, 1, 0, 0]
    comparison = compare(truth, baseline, candidate)
    assert comparison.baseline_right_candidate_wrong == 2  # rows 0 and 4
    assert comparison.baseline_wrong_candidate_right == 2  # rows 1 and 3
    assert comparison.label_flips == {"0->1": 2, "1->0": 2}
    assert comparison.mcnemar_p == pytest.approx(1.0)
    assert comparison.as_dict()["flips"]["labels"] == {"0->1": 2, "1->0": 2}


def test_mismatched_and_empty_inputs_are_refused_in_one_line() -> None:
    with pytest.raises(InvalidInputError, match="candidate predictions cover 2 cases but there are 3 labels"):
        compare([0, 1, 0], [0, 1, 0], [0, 1])
    with pytest.raises(InvalidInputError, match="the regression cases are empty"):
        classification_metrics([], [])


# -- McNemar ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("regressions", "fixes", "expected"),
    [
        (0, 10, 2 * 0.5**10),
        (3, 3, 1.0),
        (0, 0, 1.0),
        (1, 9, 2 * (1 + 10) / 2**10),
        (2, 12, 2 * (1 + 14 + 91) / 2**14),
    ],
)
def test_mcnemar_exact_p_is_the_two_sided_binomial_tail(regressions: int, fixes: int, expected: float) -> None:
    assert mcnemar_exact_p(regressions, fixes) == pytest.approx(expected)
    assert mcnemar_exact_p(fixes, regressions) == pytest.approx(expected)


def test_mcnemar_without_scipy_matches_scipy_far_into_the_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("scipy.stats")
    cases = [(5, 60), (20, 200), (0, 1000), (400, 600)]
    with_scipy = [mcnemar_exact_p(b, c) for b, c in cases]
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # import now raises ImportError
    without = [mcnemar_exact_p(b, c) for b, c in cases]
    for a, b in zip(with_scipy, without, strict=True):
        assert b == pytest.approx(a, rel=1e-9)
    assert 0 < without[1] < 1e-30  # no underflow to zero deep in the tail
    assert math.log(without[2]) == pytest.approx(math.log(2) - 1000 * math.log(2))  # 2 * 2**-1000


def test_a_real_separation_on_a_constructed_case_set_is_far_below_1e_minus_6() -> None:
    truth = [i % 2 for i in range(400)]
    base = [0] * 400  # an untrained head that always says 0: 50 %
    tuned = [t if i % 10 else 1 - t for i, t in enumerate(truth)]  # 90 %
    comparison = compare(truth, base, tuned)
    assert comparison.mcnemar_p < 1e-6
    assert comparison.accuracy_delta == pytest.approx(0.4)


# -- the gate --------------------------------------------------------------------------------------
def test_gate_passes_an_improvement_and_lists_every_rule_a_regression_misses() -> None:
    truth = [i % 2 for i in range(400)]
    good = [t if i % 10 else 1 - t for i, t in enumerate(truth)]
    degraded = [1 - t if i % 3 else t for i, t in enumerate(truth)]
    gate = {"min_accuracy_delta": 0.0, "max_p": 1e-6, "max_regressions": 20, "min_accuracy": 0.8}
    improved = evaluate_gate(gate, compare(truth, degraded, good))
    assert improved.passed and improved.reasons == []
    verdict = evaluate_gate(gate, compare(truth, good, degraded))
    assert not verdict.passed
    assert any(r.startswith("accuracy delta -0.") and "below the gate's +0.0000" in r for r in verdict.reasons)
    assert any("cases regressed (baseline right, candidate wrong), over the gate's 20" in r for r in verdict.reasons)
    assert any("candidate accuracy 0.3" in r for r in verdict.reasons)
    assert len(verdict.reasons) == 3  # p is tiny: the difference is real, and it is a regression


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({}, "the regression gate is empty"),
        ({"min_acuracy_delta": 0.0}, "regression gate key 'min_acuracy_delta' is unknown"),
        ({"max_p": 2}, "regression gate 'max_p' is 2; give a value between 0 and 1"),
        ({"max_p": "0.01"}, "regression gate 'max_p' must be a finite number"),
        ({"min_accuracy_delta": float("nan")}, "must be a finite number"),
        ({"max_regressions": 1.5}, "give a whole number >= 0"),
        ({"max_p": True}, "must be a finite number"),
    ],
)
def test_bad_gates_are_refused_naming_the_key(gate: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate_gate(gate)


def test_gate_file_is_checked_before_anyone_votes_it(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="gate file"):
        load_gate(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="is not JSON"):
        load_gate(tmp_path / "bad.json")
    (tmp_path / "gate.json").write_text('{"min_accuracy_delta": 0.05, "max_p": 0.001}')
    assert load_gate(tmp_path / "gate.json") == {"min_accuracy_delta": 0.05, "max_p": 0.001}


def test_a_sealed_folder_without_a_whole_report_is_refused(tmp_path: Path) -> None:
    from core.errors import IntegrityError
    from core.ml.regression import read_report

    with pytest.raises(NotFoundError, match="'sink' holds no regression_report.json"):
        read_report(tmp_path / "sink")
    (tmp_path / "sink").mkdir()
    (tmp_path / "sink" / "regression_report.json").write_text("{truncated")
    with pytest.raises(IntegrityError, match="regression_report.json in 'sink' is not JSON"):
        read_report(tmp_path / "sink")
    (tmp_path / "sink" / "regression_report.json").write_text('{"report": "model_regression", "cases": 3}')
    with pytest.raises(IntegrityError, match=r"is not a regression report \(missing baseline, candidate"):
        read_report(tmp_path / "sink")


# -- the workload: two real ONNX classifiers inside one run ----------------------------------------
@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base (untrained head), a fine-tuned version, and a deliberately degraded copy of the
    fine-tuned one (its head negated, so it predicts the opposite label), all exported as ONNX
    classifier folders by the trainer's own export code."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from containers.trainer.model_files import export_onnx
    from core.ml.model_preparation import prepare

    root = tmp_path_factory.mktemp("versions")
    build_tiny_base(root / "tiny")
    prepared = prepare(root / "tiny", root / "base", max_length=32, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(prepared.pytorch_dir)
    model = AutoModelForSequenceClassification.from_pretrained(prepared.pytorch_dir)
    texts, labels = synthetic_reviews(320, seed=5)
    torch.manual_seed(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _epoch in range(6):
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start : start + 32], padding=True, return_tensors="pt")
            loss = model(**batch, labels=torch.tensor(labels[start : start + 32])).loss
            loss.backward()
            optimiser.step()
            optimiser.zero_grad()
    export_onnx(model, tokenizer, root / "tuned", max_length=32)
    with torch.no_grad():
        model.classifier.weight.neg_()
        model.classifier.bias.neg_()
    export_onnx(model, tokenizer, root / "degraded", max_length=32)
    return {"base": prepared.onnx_dir, "tuned": root / "tuned", "degraded": root / "degraded"}


def _cases(folder: Path, kind: str = "parquet", count: int = 400) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    texts, labels = synthetic_reviews(count, seed=99)  # not the rows the tuned version saw
    if kind == "parquet":
        pq.write_table(pa.table({"text": texts, "label": labels}), folder / "cases.parquet")
    else:
        lines = [json.dumps({"text": t, "label": ["neg", "pos"][y]}) for t, y in zip(texts, labels, strict=True)]
        (folder / "cases.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _run(
    args: list[str], telemetry: Path | None = None, pinned: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", **(pinned or {})}
    if telemetry is not None:
        env["CLEANROOM_TELEMETRY_FILE"] = str(telemetry)
    return subprocess.run(
        [sys.executable, "-m", "containers.regression", *args, "--threads", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_fine_tuned_against_base_separates_below_1e_minus_6_and_passes_the_gate(
    versions: dict[str, Path], tmp_path: Path
) -> None:
    output, telemetry = tmp_path / "out", tmp_path / "telemetry.jsonl"
    gate = json.dumps({"min_accuracy_delta": 0.1, "max_p": 1e-6})
    args = ["--cases-dir", str(_cases(tmp_path / "cases")), "--baseline-dir", str(versions["base"])]
    args += ["--candidate-dir", str(versions["tuned"]), "--gate", gate, "--output-dir", str(output)]
    result = _run(args, telemetry)
    assert result.returncode == 0, result.stderr
    report = json.loads((output / "regression_report.json").read_text())
    assert report["mcnemar_p"] < 1e-6
    assert report["candidate"]["accuracy"] > 0.85 > report["baseline"]["accuracy"]
    assert report["verdict"] == {"passed": True, "reasons": []}
    assert sorted(p.name for p in output.iterdir()) == ["regression_report.json"]  # nothing per row
    assert report["cases"] == 400 and "texts" not in json.dumps(report)
    (record,) = [json.loads(line) for line in telemetry.read_text().splitlines()]
    assert record["event"] == "model_regression" and record["passed"] is True
    assert record["mcnemar_p"] == report["mcnemar_p"]


def test_a_deliberately_degraded_version_fails_the_gate(versions: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "out"
    gate = json.dumps({"min_accuracy_delta": 0.0, "max_p": 0.01})
    args = ["--cases-dir", str(_cases(tmp_path / "cases", "jsonl")), "--baseline-dir", str(versions["tuned"])]
    args += ["--candidate-dir", str(versions["degraded"]), "--gate", gate, "--output-dir", str(output)]
    result = _run(args)
    assert result.returncode == 0, result.stderr
    report = json.loads((output / "regression_report.json").read_text())
    assert report["verdict"]["passed"] is False
    assert report["verdict"]["reasons"][0].startswith("accuracy delta -")
    assert report["flips"]["baseline_right_candidate_wrong"] > 300
    assert "gate failed" in result.stdout


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("few_cases", "holds 10 cases, fewer than 30"),
        ("two_files", "holds 2 .parquet/.jsonl files"),
        ("bad_gate", "regression gate key 'max_pvalue' is unknown"),
        ("no_model", "does not exist"),
        ("report_exists", "already holds regression_report.json"),
    ],
)
def test_bad_mounts_exit_2_before_any_model_runs_and_write_nothing(
    problem: str, message: str, versions: dict[str, Path], tmp_path: Path
) -> None:
    cases = _cases(tmp_path / "cases", count=10 if problem == "few_cases" else 400)
    if problem == "two_files":
        _cases(cases, "jsonl")
    output = tmp_path / "out"
    output.mkdir()
    if problem == "report_exists":
        (output / "regression_report.json").write_text("{}")
    gate = json.dumps({"max_pvalue": 0.1} if problem == "bad_gate" else {"max_p": 0.1})
    baseline = tmp_path / "nothing" if problem == "no_model" else versions["base"]
    args = ["--cases-dir", str(cases), "--baseline-dir", str(baseline), "--candidate-dir", str(versions["tuned"])]
    result = _run([*args, "--gate", gate, "--output-dir", str(output)])
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.startswith("error: ")
    expected = ["regression_report.json"] if problem == "report_exists" else []
    assert sorted(p.name for p in output.iterdir()) == expected
    if problem == "report_exists":
        assert (output / "regression_report.json").read_text() == "{}"


# -- `cleanroom model regression ...` ------------------------------------------------------------------
def test_cli_gate_check_lists_the_rules_and_refuses_a_misspelt_one(tmp_path: Path) -> None:
    from tests.cli_runner import cleanroom

    (tmp_path / "gate.json").write_text('{"min_accuracy_delta": 0.0, "max_p": 0.01}')
    outcome = cleanroom("model", "regression", "gate", tmp_path / "gate.json", "-o", "json")
    assert outcome.code == 0, outcome.stderr
    assert json.loads(outcome.stdout) == {"minAccuracyDelta": 0.0, "maxP": 0.01}
    (tmp_path / "typo.json").write_text('{"max_pvalue": 0.01}')
    refused = cleanroom("model", "regression", "gate", tmp_path / "typo.json")
    assert refused.code == 2 and "regression gate key 'max_pvalue' is unknown" in refused.stderr


def test_cli_local_run_gives_the_workloads_report(versions: dict[str, Path], tmp_path: Path) -> None:
    from tests.cli_runner import cleanroom

    (tmp_path / "gate.json").write_text('{"min_accuracy_delta": 0.0}')
    cases = _cases(tmp_path / "cases")
    args = ["model", "regression", "run", "--cases", cases, "--baseline", versions["tuned"]]
    outcome = cleanroom(*args, "--candidate", versions["degraded"], "--gate", tmp_path / "gate.json", "-o", "json")
    assert outcome.code == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    assert document["verdict"]["passed"] is False and document["cases"] == 400
    assert document["flips"]["baselineRightCandidateWrong"] > 300 and document["mcnemarP"] < 1e-6
    table = cleanroom(*args, "--candidate", versions["base"])
    assert table.code == 0 and "McNemar exact p" in table.stdout and "gate: none given" in table.stdout
    missing = cleanroom(*args, "--candidate", tmp_path / "nothing")
    assert missing.code == 2 and "does not exist" in missing.stderr


# -- inside a real clean room -------------------------------------------------------------------------
def test_the_clean_room_seals_only_the_aggregate_to_the_provider_and_reports_telemetry(
    versions: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer's cases and the provider's two versions are decrypted only inside the sandbox;
    the voted gate is in the command (so in the measured spec); the provider's datasink receives
    the report alone, which `cleanroom model regression show` decrypts and shows."""
    from core.config.party import add_application, add_data_asset
    from core.datasource import upload_datasource
    from core.storage.locator import local_store_spec
    from tests.cli_runner import cleanroom
    from tests.runtime_world import World

    world = World.create(tmp_path / "world")
    try:
        provider, consumer, hoster = (world.parties[p] for p in ("provider", "consumer", "hoster"))
        for owner, name, folder in (
            (provider, "baseline", versions["base"]),
            (provider, "candidate", versions["tuned"]),
            (consumer, "cases", _cases(tmp_path / "cases")),
        ):
            add_data_asset(owner, "datasource", name, local_store_spec(owner.root / "store"))
            upload_datasource(owner, name, folder)
        add_data_asset(provider, "datasink", "regression-report", local_store_spec(provider.root / "store"))
        gate = json.dumps({"min_accuracy_delta": 0.1, "max_p": 1e-6})
        command = ["python", "-m", "containers.regression", "--cases-dir", "/mnt/remote/cases"]
        command += ["--baseline-dir", "/mnt/remote/baseline", "--candidate-dir", "/mnt/remote/candidate"]
        command += ["--output-dir", "/mnt/remote/output", "--gate", gate, "--threads", "1"]
        mounts = [{"source": name, "target": f"/mnt/remote/{name}"} for name in ("cases", "baseline", "candidate")]
        mounts.append({"source": "regression-report", "target": "/mnt/remote/output"})
        add_application(hoster, name="regression", entrypoint="containers/regression", command=command, mounts=mounts)
        world.accept_contract("regression1")
        world.vote_all(world.clients["hoster"].set_runtime_option("regression1", "telemetry", enable=True))

        outcome = world.runtime().run("regression1")
        assert outcome.exit_codes == {"regression": 0}
        assert outcome.sealed == ["regression-report"]
        telemetry = [e["data"] for e in world.events("regression1") if e["type"] == "telemetry"]
        (record,) = [r for r in telemetry if r.get("event") == "model_regression"]
        assert record["passed"] is True and record["mcnemar_p"] < 1e-6 and record["cases"] == 400

        monkeypatch.setenv("CLEANROOM_HOME", str(world.home))
        show = ["model", "regression", "show", "--datasink", "regression-report"]
        shown = cleanroom("-w", provider.root, *show, "-o", "json")
        assert shown.code == 0, shown.stderr
        document = json.loads(shown.stdout)
        assert document["verdict"] == {"passed": True, "reasons": []} and document["mcnemarP"] < 1e-6
        assert document["gate"] == {"minAccuracyDelta": 0.1, "maxP": 1e-6}
        theirs = cleanroom("-w", consumer.root, *show)
        assert theirs.code == 3 and theirs.stdout == ""  # the report is sealed to the provider only
        assert "datasink 'regression-report' is not in this workspace's config" in theirs.stderr
    finally:
        world.close()


# -- registry versions: both pinned by package hash, the result written to the candidate ------------------
@pytest.fixture(scope="module")
def packages(versions: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The base and the fine-tuned version as model packages (what the registry's versions are)."""
    from core.onboarding.scaffold import scaffold_package

    root = tmp_path_factory.mktemp("packages")
    return {
        role: scaffold_package(versions[role], root / role, task="text-classification") for role in ("base", "tuned")
    }


def _pins(packages: dict[str, Path], gate: dict[str, float], **overrides: str) -> dict[str, str]:
    from core.governance.regression_contract import regression_env
    from core.onboarding.package_digest import package_sha256

    candidate = ("2", overrides.get("candidate_hash", package_sha256(packages["tuned"])))
    baseline = ("1", overrides.get("baseline_hash", package_sha256(packages["base"])))
    return regression_env("minilm", candidate, baseline, gate)


def test_pinned_versions_compare_under_the_voted_gate_and_name_both_versions(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    output, telemetry = tmp_path / "out", tmp_path / "telemetry.jsonl"
    gate = {"min_accuracy_delta": 0.1, "max_p": 1e-6}
    args = ["--cases-dir", str(_cases(tmp_path / "cases")), "--baseline-dir", str(packages["base"])]
    args += ["--candidate-dir", str(packages["tuned"]), "--output-dir", str(output)]  # no --gate: the pinned one
    result = _run(args, telemetry, _pins(packages, gate))
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in telemetry.read_text().splitlines()]
    pins = _pins(packages, gate)
    assert (record["model"], record["candidate_version"], record["baseline_version"]) == ("minilm", "2", "1")
    assert record["candidate_package_sha256"] == pins["CLEANROOM_REGRESSION_CANDIDATE_SHA256"]
    assert record["baseline_package_sha256"] == pins["CLEANROOM_REGRESSION_BASELINE_SHA256"]
    assert record["gate"] == gate and record["verdict"] == {"passed": True, "reasons": []}
    assert record["flips"]["baseline_wrong_candidate_right"] > 0 and set(record["candidate"]) == {
        "accuracy", "macro_f1", "micro_f1", "weighted_f1",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("other_bytes", "the baseline mount holds other bytes than minilm 1"),
        ("other_gate", "--gate differs from the contract's pinned gate"),
        ("half_pinned", "but not CLEANROOM_REGRESSION_GATE"),
    ],
)
def test_pinned_versions_refuse_other_bytes_or_gate_before_any_model_runs(
    problem: str, message: str, packages: dict[str, Path], tmp_path: Path
) -> None:
    output, telemetry = tmp_path / "out", tmp_path / "telemetry.jsonl"
    pins = _pins(packages, {"max_p": 0.1}, **({"baseline_hash": "0" * 64} if problem == "other_bytes" else {}))
    if problem == "half_pinned":
        del pins["CLEANROOM_REGRESSION_GATE"]
    args = ["--cases-dir", str(_cases(tmp_path / "cases")), "--baseline-dir", str(packages["base"])]
    args += ["--candidate-dir", str(packages["tuned"]), "--output-dir", str(output)]
    if problem == "other_gate":
        args += ["--gate", json.dumps({"max_p": 0.5})]
    result = _run(args, telemetry, pins)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not telemetry.exists() and (not output.exists() or list(output.iterdir()) == [])


def test_the_regression_clean_room_writes_the_candidates_registry_result(
    packages: dict[str, Path], tmp_path: Path
) -> None:
    """Both registry versions uploaded by the provider, the consumer's cases, the contract pinning
    both package hashes and the gate: the sandboxed run's aggregate reaches the candidate's
    ``regression`` field through the runtime (claimed from telemetry, attested), nowhere else."""
    from core.config.party import add_application, add_data_asset
    from core.datasource import upload_datasource
    from core.onboarding.package import check_package
    from core.onboarding.package_digest import package_sha256
    from core.runtime import sandbox
    from core.storage.locator import local_store_spec
    from tests.runtime_world import World

    if sandbox.bwrap_path() is None:
        pytest.skip("bubblewrap is not installed: the sandboxed run needs it")
    world = World.create(tmp_path / "world")
    try:
        provider, consumer, hoster = (world.parties[p] for p in ("provider", "consumer", "hoster"))
        for version, role in (("1", "base"), ("2", "tuned")):
            world.clients["provider"].onboard_model(
                "minilm",
                version,
                package_hash=package_sha256(packages[role]),
                wrapper_hash=check_package(packages[role]).source_sha256,
            )
        for owner, name, folder in (
            (provider, "baseline", packages["base"]),
            (provider, "candidate", packages["tuned"]),
            (consumer, "cases", _cases(tmp_path / "cases")),
        ):
            add_data_asset(owner, "datasource", name, local_store_spec(owner.root / "store"))
            upload_datasource(owner, name, folder)
        add_data_asset(provider, "datasink", "regression-report", local_store_spec(provider.root / "store"))
        command = ["python", "-m", "containers.regression", "--cases-dir", "/mnt/remote/cases"]
        command += ["--baseline-dir", "/mnt/remote/baseline", "--candidate-dir", "/mnt/remote/candidate"]
        command += ["--output-dir", "/mnt/remote/output", "--threads", "1"]
        mounts = [{"source": name, "target": f"/mnt/remote/{name}"} for name in ("cases", "baseline", "candidate")]
        mounts.append({"source": "regression-report", "target": "/mnt/remote/output"})
        gate = {"min_accuracy_delta": 0.1, "max_p": 1e-6}
        add_application(
            hoster,
            name="regression",
            entrypoint="containers/regression",
            command=command,
            mounts=mounts,
            env=_pins(packages, gate),
        )
        world.accept_contract("regression-minilm")

        outcome = world.runtime().run("regression-minilm")
        assert outcome.exit_codes == {"regression": 0}
        written = world.clients["consumer"].model("minilm")["versions"]["2"]["regression"]
        assert written["passed"] is True and written["mcnemarP"] < 1e-6 and written["cases"] == 400
        assert written["contractId"] == "regression-minilm" and written["baselineVersion"] == "1"
        assert written["gate"] == {"minAccuracyDelta": 0.1, "maxP": 1e-6}
        events = world.events("regression-minilm")
        assert [e["data"]["passed"] for e in events if e["type"] == "model_regression"] == [True]
        assert not [e for e in events if e["type"] in ("telemetry", "model_regression_refused")]
    finally:
        world.close()
