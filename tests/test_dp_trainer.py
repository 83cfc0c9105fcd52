"""The private trainer workload: a real DP-LoRA run on a tiny BERT, its accounting, every refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from containers.dp_trainer.__main__ import main
from containers.dp_trainer.job import JOB_ENV, LOSS_TELEMETRY_ENV, PrivacyConfigError, parse_job
from core.ml.model_preparation import prepare
from tests.ml_tiny_model import build_tiny_base, synthetic_reviews

ROOT = Path(__file__).resolve().parent.parent
ROWS, LABELLED = 600, 540


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dp")
    build_tiny_base(root / "base")
    model = prepare(root / "base", root / "model", max_length=48).output
    texts, labels = synthetic_reviews(ROWS, 3)
    ids = [f"p-{i:04d}" for i in range(ROWS)]
    (root / "texts").mkdir()
    (root / "labels").mkdir()
    pq.write_table(pa.table({"person_id": ids, "text": texts}), root / "texts" / "train.parquet")
    pq.write_table(
        pa.table({"person_id": ids[:LABELLED], "label": labels[:LABELLED]}), root / "labels" / "train.parquet"
    )
    return {"root": root, "model": model, "texts": root / "texts", "labels": root / "labels"}


def job_of(world: dict[str, Path], **override: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "epsilon": 8.0,
        "delta": 1e-4,
        "batch_size": 64,
        "epochs": 1,
        "max_steps": 4,
        "learning_rate": 5e-3,
        "max_length": 48,
        "join": {
            "key": "person_id",
            "sources": [
                {"datasource": "texts", "file": "train.parquet", "columns": ["person_id", "text"], "how": "base"},
                {"datasource": "labels", "file": "train.parquet", "columns": ["person_id", "label"], "how": "inner"},
            ],
            "min_rows": 100,
            "max_rows_per_key": 1,
        },
        "mounts": {"texts": str(world["texts"]), "labels": str(world["labels"])},
    }
    job.update(override)
    return job


def run_in_process(
    world: dict[str, Path], name: str, job: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *, loss: bool = False
) -> tuple[int, Path, Path]:
    output, telemetry = world["root"] / name, world["root"] / f"{name}.jsonl"
    monkeypatch.setenv(JOB_ENV, json.dumps(job))
    if loss:
        monkeypatch.setenv(LOSS_TELEMETRY_ENV, "1")
    else:
        monkeypatch.delenv(LOSS_TELEMETRY_ENV, raising=False)
    code = main(["--model-dir", str(world["model"]), "--output-dir", str(output), "--progress-file", str(telemetry)])
    return code, output, telemetry


def records(telemetry: Path) -> list[dict[str, Any]]:
    if not telemetry.exists():
        return []
    return [json.loads(line) for line in telemetry.read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(world: dict[str, Path]) -> dict[str, Any]:
    """One real run as the runtime starts it: a subprocess, the job in the environment, loss allowed."""
    output, telemetry = world["root"] / "out", world["root"] / "telemetry.jsonl"
    env = {
        **os.environ,
        JOB_ENV: json.dumps(job_of(world)),
        LOSS_TELEMETRY_ENV: "1",
        "CLEANROOM_TELEMETRY_FILE": str(telemetry),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "containers.dp_trainer",
            "--model-dir",
            str(world["model"]),
            "--output-dir",
            str(output),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return {"output": output, "records": records(telemetry), "stdout": result.stdout}


def test_a_private_run_writes_the_merged_model_onnx_and_both_reports(trained: dict[str, Any]) -> None:
    from containers.inference_server.classifier import OnnxClassifier

    output = trained["output"]
    assert sorted(p.name for p in output.iterdir()) == ["join_report.json", "onnx", "privacy_report.json", "pytorch"]
    assert (output / "pytorch" / "model.safetensors").is_file() and (output / "pytorch" / "tokenizer.json").is_file()
    weights = (output / "pytorch" / "model.safetensors").read_bytes()
    assert b"lora_" not in weights  # merged into the base: a plain classifier, no adapter left
    assert {"model.onnx", "model.int8.onnx", "serving.json"} <= {p.name for p in (output / "onnx").iterdir()}
    classifier = OnnxClassifier(output / "onnx")
    assert len(classifier.classify(["a great film", "a dull film"])) == 2
    join = json.loads((output / "join_report.json").read_text())
    assert join["trainable_rows"] == 500 and join["sources"] == {"texts": 600, "labels": 500}  # rounded to 100
    report = json.loads((output / "privacy_report.json").read_text())
    assert report["steps"] == 4 and report["planned_steps"] == 4 and report["poisson_sampling"] is True
    assert report["epsilon"]["prv"] <= 8.0 and report["epsilon"]["rdp"] > report["epsilon"]["prv"]


def test_the_privacy_record_epsilon_is_what_a_fresh_opacus_accountant_computes(trained: dict[str, Any]) -> None:
    from opacus.accountants import PRVAccountant, RDPAccountant

    [record] = [r for r in trained["records"] if r["event"] == "privacy_record"]
    assert set(record) == {
        "event",
        "noise_multiplier",
        "sample_rate",
        "steps",
        "delta",
        "accountant",
        "epsilon",
        "epsilon_rdp",
        "rows",
    }
    assert record["steps"] == 4 and record["delta"] == 1e-4 and record["accountant"] == "prv"
    assert record["rows"] == LABELLED and record["sample_rate"] == pytest.approx(1 / 9)  # ceil(540 / 64) batches
    history = [(record["noise_multiplier"], record["sample_rate"], record["steps"])]
    prv, rdp = PRVAccountant(), RDPAccountant()
    prv.history, rdp.history = list(history), list(history)
    assert record["epsilon"] == pytest.approx(prv.get_epsilon(delta=1e-4), rel=1e-9)
    assert record["epsilon_rdp"] == pytest.approx(rdp.get_epsilon(delta=1e-4), rel=1e-9)
    assert 7.5 <= record["epsilon"] <= 8.0  # calibrated for the 4 planned steps, never above the target


def test_loss_is_in_telemetry_when_the_owners_voted_for_it(trained: dict[str, Any]) -> None:
    steps = [r for r in trained["records"] if r["event"] == "step"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(isinstance(r["loss"], float) for r in steps)


def test_without_the_loss_option_no_record_carries_a_loss(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import containers.dp_trainer.private_training as private_training

    monkeypatch.setattr(private_training, "PHYSICAL_BATCH", 16)  # each ~64-row Poisson batch in chunks
    code, output, telemetry = run_in_process(world, "no-loss", job_of(world, max_steps=2), monkeypatch)
    assert code == 0
    written = records(telemetry)
    assert [r["event"] for r in written] == ["step", "step", "privacy_record"]
    assert not any("loss" in r for r in written)
    assert written[-1]["steps"] == 2  # chunks of one logical batch are one noised step
    assert (output / "privacy_report.json").is_file()


def test_a_poisson_batch_without_rows_is_still_a_noised_accounted_step(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expected batch 1 of 540 rows: about a third of the Poisson batches are empty (e^-1). Each
    is a step (noise only), counted by the accountant; skipping it would change the sampling. The
    sampler draws from OS entropy, so 40 steps: the chance that none is empty is 0.632^40 ~ 1e-8."""
    code, _output, telemetry = run_in_process(world, "empty", job_of(world, batch_size=1, max_steps=40), monkeypatch)
    assert code == 0
    steps = [r for r in records(telemetry) if r["event"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 41))
    assert any(r["examples_per_s"] == 0 for r in steps)  # at least one batch drew no row
    [record] = [r for r in records(telemetry) if r["event"] == "privacy_record"]
    assert record["steps"] == 40 and record["sample_rate"] == pytest.approx(1 / LABELLED)


def refused(
    world: dict[str, Path],
    name: str,
    job: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Run a job that must be refused: exit 2, one line, nothing in the output or telemetry."""
    code, output, telemetry = run_in_process(world, name, job, monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not output.exists() or list(output.iterdir()) == []
    assert records(telemetry) == []
    return err


def test_delta_not_below_one_over_n_is_refused_never_clamped(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(world, "big-delta", job_of(world, delta=0.002), monkeypatch, capsys)
    assert (
        err == "error: delta 0.002 is not below 1/N for the about 500 joined rows; vote a delta below 1/N (e.g. 0.0001)"
    )


def test_poisson_sampling_off_is_refused(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(world, "no-poisson", job_of(world, poisson_sampling=False), monkeypatch, capsys)
    assert "poisson_sampling false is refused: the accountant's guarantee holds only for Poisson" in err


def test_a_join_refusal_stops_the_run_before_training(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_of(world)
    job["join"]["min_rows"] = 541
    err = refused(world, "few-rows", job, monkeypatch, capsys)
    assert err.startswith("error: the join yields fewer trainable rows than min_rows 541") and "540" not in err


def test_an_output_mount_with_earlier_results_is_refused(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (world["root"] / "used" / "onnx").mkdir(parents=True)
    code, _output, telemetry = run_in_process(world, "used", job_of(world), monkeypatch)
    assert code == 2 and "already holds onnx" in capsys.readouterr().err
    assert records(telemetry) == []


def test_a_batchnorm_layer_is_refused() -> None:
    import torch

    from containers.dp_trainer.private_training import check_private_layers

    tiny = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    with pytest.raises(PrivacyConfigError, match="the model has layer\\(s\\) opacus cannot clip per sample \\("):
        check_private_layers(tiny)
    check_private_layers(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8)))  # accepted


def one_private_step(world: dict[str, Path], *, before: Any = None, after: Any = None) -> None:
    """Build the run's model as train_private does, let ``before`` (ahead of the optimizer) or
    ``after`` (once wrapped) break it, take one DP step, check."""
    import torch
    from opacus import PrivacyEngine

    from containers.dp_trainer.private_training import FirstStepCheck, load_lora_model

    job = parse_job(job_of(world))
    model, tokenizer = load_lora_model(world["model"] / "pytorch", job)
    if before:
        before(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    data = torch.utils.data.TensorDataset(torch.arange(32))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    private, private_optimizer, _ = PrivacyEngine().make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0
    )
    private.train()
    check = FirstStepCheck(private)
    if after:
        after(private)
    batch = tokenizer(["a great film", "a dull film"] * 4, padding=True, return_tensors="pt")
    loss = torch.nn.functional.cross_entropy(private(**batch).logits, torch.tensor([1, 0] * 4))
    loss.backward()
    private_optimizer.step()
    check.verify(private)


def test_the_first_step_check_catches_adapters_that_did_not_train(world: dict[str, Path]) -> None:
    from containers.dp_trainer.private_training import LoraUpdateError

    def freeze_lora(model: Any) -> None:
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.requires_grad_(False)

    with pytest.raises(LoraUpdateError, match="LoRA weight\\(s\\) did not change after the first private step"):
        one_private_step(world, after=freeze_lora)


def test_the_first_step_check_catches_a_frozen_weight_that_moved(world: dict[str, Path]) -> None:
    from containers.dp_trainer.private_training import LoraUpdateError

    def unfreeze_a_base_layer(model: Any) -> None:
        for name, parameter in model.named_parameters():
            if "embeddings.LayerNorm" in name:
                parameter.requires_grad_(True)

    with pytest.raises(LoraUpdateError, match="frozen weight\\(s\\) changed after the first private step"):
        one_private_step(world, before=unfreeze_a_base_layer)
    one_private_step(world)  # the run's own set-up passes


# --- the job document --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epsilon": 0}, "epsilon 0 must be above 0"),
        ({"delta": 1.5}, "private_training delta 1.5 must be below 1"),
        ({"accountant": "gdp"}, "accountant 'gdp' is unknown; use prv or rdp"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, not 0"),
        ({"shadow": True}, "private_training has unknown field(s) shadow"),
        ({"mounts": {"texts": "/mnt/t"}}, "join datasource(s) labels are not mounted in this clean room"),
        ({"lora": {"r": 8, "alpha": 16, "dropout": 1.0}}, "lora dropout 1.0 must be below 1"),
    ],
)
def test_a_malformed_job_is_refused(world: dict[str, Path], change: dict[str, Any], message: str) -> None:
    with pytest.raises(PrivacyConfigError) as refusal:
        parse_job(job_of(world, **change))
    assert message in str(refusal.value)


def test_a_join_that_drops_its_key_or_escapes_its_mount_is_refused(world: dict[str, Path]) -> None:
    job = job_of(world)
    job["join"]["drop"] = ["person_id"]
    with pytest.raises(PrivacyConfigError, match="join drops its key 'person_id'"):
        parse_job(job)
    job = job_of(world)
    job["join"]["sources"][1]["file"] = "../texts/train.parquet"
    with pytest.raises(PrivacyConfigError, match="must be a relative .parquet path without '..'"):
        parse_job(job)


def test_the_contracts_job_is_what_the_workload_reads(world: dict[str, Path]) -> None:
    """core.config (voted) and the workload's parser (which imports nothing from core) must read
    the same document: a job the contract accepts runs, with the same fields, nothing dropped."""
    from core.config.fragment import PrivateTraining
    from core.config.join_spec import JoinSpec as VotedJoinSpec
    from core.runtime.deployment import private_training_job

    document = job_of(world)
    mounts = document.pop("mounts")
    voted = PrivateTraining.model_validate(document)
    located = [{"name": name, "path": path, "kind": "datasource"} for name, path in mounts.items()]
    job = parse_job(json.loads(private_training_job(voted.model_dump(mode="json"), located)))
    assert set(PrivateTraining.model_fields) | {"mounts"} == set(job.__dataclass_fields__)
    assert set(VotedJoinSpec.model_fields) == set(job.join.__dataclass_fields__)
    assert [s.datasource for s in job.join.sources] == voted.join.datasources
    assert (job.epsilon, job.delta, job.batch_size, job.max_steps) == (8.0, 1e-4, 64, 4)
    assert job.mounts == {name: Path(path) for name, path in mounts.items()}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j: j.update(drop=["person_id"]), "the join drops its key 'person_id'"),
        (
            lambda j: j["sources"][1].update(columns=["person_id", "text"]),
            "column(s) text of join source 'labels' are already in the join",
        ),
        (
            lambda j: j["sources"].append(
                {"datasource": "extra", "file": "x.parquet", "columns": ["person_id", "text"], "how": "union"}
            ),
            "union source 'extra' takes person_id, text but the join so far has label, person_id, text",
        ),
    ],
)
def test_the_contract_refuses_a_join_the_workload_would_refuse(
    world: dict[str, Path], mutate: Any, message: str
) -> None:
    from pydantic import ValidationError

    from core.config.join_spec import JoinSpec as VotedJoinSpec

    document = job_of(world)["join"]
    mutate(document)
    with pytest.raises(ValidationError) as refusal:
        VotedJoinSpec.model_validate(document)
    assert message in str(refusal.value)


def test_a_stop_mid_training_writes_nothing_and_reports_no_record(world: dict[str, Path]) -> None:
    """SIGTERM between steps: exit 143, an empty output mount, no privacy_record (governance then
    keeps the whole reservation charged, as for a crash)."""
    import signal
    import time

    output, telemetry = world["root"] / "stopped", world["root"] / "stopped.jsonl"
    env = {**os.environ, JOB_ENV: json.dumps(job_of(world, epochs=50, max_steps=None))}
    command = [sys.executable, "-m", "containers.dp_trainer", "--model-dir", str(world["model"])]
    process = subprocess.Popen(
        [*command, "--output-dir", str(output), "--progress-file", str(telemetry)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not [r for r in records(telemetry) if r["event"] == "step"] and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "stopped: training stopped on request before completion; nothing was written" in err
    assert list(output.iterdir()) == []
    assert [r for r in records(telemetry) if r["event"] == "privacy_record"] == []
