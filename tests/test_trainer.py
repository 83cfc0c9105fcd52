"""The trainer workload: validation first, real fine-tuning, determinism, atomic outputs, SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from containers.inference_server.classifier import OnnxClassifier
from containers.trainer.__main__ import EXIT_BAD_INPUT, EXIT_STOPPED, main
from containers.trainer.config import ConfigError, parse_config
from core.ml.model_preparation import prepare
from tests.ml_tiny_model import build_tiny_base, synthetic_reviews, write_parquet_splits

ROOT = Path(__file__).resolve().parent.parent
GOOD_CONFIG = {
    "epochs": 4,
    "learning_rate": 3e-3,
    "batch_size": 16,
    "max_length": 48,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "seed": 7,
    "eval_each_epoch": True,
}


@pytest.fixture(scope="module")
def mounts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mounts")
    build_tiny_base(root / "base")
    model = prepare(root / "base", root / "model", max_length=48).output
    data = write_parquet_splits(root / "data", {"train": 320, "validation": 80, "test": 80})
    (root / "config").mkdir()
    (root / "config" / "training_config.json").write_text(json.dumps(GOOD_CONFIG))
    return {"model": model, "data": data, "config": root / "config", "root": root}


def _args(mounts: dict[str, Path], output: Path, **override: Path) -> list[str]:
    paths = {"model": mounts["model"], "data": mounts["data"], "config": mounts["config"], **override}
    return [
        "--model-dir",
        str(paths["model"]),
        "--data-dir",
        str(paths["data"]),
        "--config-dir",
        str(paths["config"]),
        "--output-dir",
        str(output),
    ]


def _run(mounts: dict[str, Path], output: Path, progress: Path, extra: list[str] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLEANROOM_TELEMETRY_FILE": str(progress)}
    return subprocess.run(
        [sys.executable, "-m", "containers.trainer", *_args(mounts, output), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def trained(mounts: dict[str, Path]) -> dict[str, Path]:
    output, progress = mounts["root"] / "out", mounts["root"] / "progress.jsonl"
    result = _run(mounts, output, progress)
    assert result.returncode == 0, result.stderr
    return {"output": output, "progress": progress}


def test_outputs_are_complete_and_nothing_partial_is_left(trained: dict[str, Path]) -> None:
    output = trained["output"]
    assert sorted(p.name for p in output.iterdir()) == ["metrics.json", "onnx", "pytorch"]
    assert (output / "pytorch" / "model.safetensors").is_file()
    assert (output / "onnx" / "model.onnx").is_file() and (output / "onnx" / "model.int8.onnx").is_file()


def test_metrics_record_learning_per_epoch_and_the_test_split(trained: dict[str, Path]) -> None:
    metrics = json.loads((trained["output"] / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]
    assert metrics["epochs"][-1]["val_accuracy"] >= 0.9  # cue words are easy to learn; chance is 0.5
    assert metrics["epochs"][-1]["val_loss"] < metrics["epochs"][0]["val_loss"]
    assert metrics["test_accuracy"] >= 0.9 and metrics["wall_time_s"] > 0
    assert metrics["config"]["seed"] == 7 and metrics["steps"] == 4 * 20


def test_progress_lines_follow_the_telemetry_contract(trained: dict[str, Path]) -> None:
    lines = [json.loads(line) for line in trained["progress"].read_text().splitlines()]
    steps = [line for line in lines if line["event"] == "step"]
    evals = [line for line in lines if line["event"] == "eval"]
    assert {tuple(sorted(s)) for s in steps} == {
        ("epoch", "event", "examples_per_s", "learning_rate", "loss", "step", "total_steps")
    }
    assert [s["step"] for s in steps] == list(range(10, 81, 10)) and steps[-1]["total_steps"] == 80
    assert steps[-1]["learning_rate"] == 0.0 and all(s["examples_per_s"] > 0 for s in steps)
    assert [e["epoch"] for e in evals] == [1, 2, 3, 4]
    assert set(evals[0]) == {"event", "epoch", "val_accuracy", "val_loss"}


def test_the_onnx_output_serves_what_the_trainer_measured(trained: dict[str, Path], mounts: dict[str, Path]) -> None:
    texts = pq.read_table(mounts["data"] / "test.parquet").to_pydict()
    predictions = OnnxClassifier(trained["output"]).classify(texts["text"])
    accuracy = sum(p.label_id == y for p, y in zip(predictions, texts["label"], strict=True)) / len(predictions)
    metrics = json.loads((trained["output"] / "metrics.json").read_text())
    assert abs(accuracy - metrics["test_accuracy"]) <= 1 / len(predictions)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_the_same_run_and_another_seed_does_not(mounts: dict[str, Path], tmp_path: Path) -> None:
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        config = tmp_path / f"config-{name}"
        config.mkdir()
        (config / "training_config.json").write_text(json.dumps({**GOOD_CONFIG, "seed": seed, "max_steps": 6}))
        progress = tmp_path / f"{name}.jsonl"
        assert (
            main([*_args(mounts, tmp_path / name, config=config), "--progress-file", str(progress), "--log-every", "1"])
            == 0
        )
        losses = [
            json.loads(line)["loss"]
            for line in progress.read_text().splitlines()
            if json.loads(line)["event"] == "step"
        ]
        runs.append((losses, _digest(tmp_path / name / "pytorch" / "model.safetensors")))
    assert len(runs[0][0]) == 6
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0] and runs[0][1] != runs[2][1]


def test_sigterm_stops_cleanly_and_writes_nothing(mounts: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "training_config.json").write_text(json.dumps({**GOOD_CONFIG, "epochs": 100, "batch_size": 2}))
    progress, output = tmp_path / "progress.jsonl", tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "containers.trainer",
            *_args(mounts, output, config=config),
            "--progress-file",
            str(progress),
            "--log-every",
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (progress.exists() and progress.read_text().count("\n") >= 3):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_STOPPED
    assert "nothing was written" in stderr
    assert list(output.iterdir()) == []


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"learning_rate": 5e-5, "batch_size": 32}, "lacks required key(s) epochs"),
        ({**GOOD_CONFIG, "learning_rte": 1e-4}, "unknown key(s) learning_rte"),
        ({**GOOD_CONFIG, "batch_size": "32"}, "'batch_size' is \"32\", it must be an integer"),
        ({**GOOD_CONFIG, "epochs": True}, "'epochs' is true"),
        ({**GOOD_CONFIG, "learning_rate": 5}, "'learning_rate' is 5"),
        ({**GOOD_CONFIG, "max_length": 4096}, "'max_length' is 4096"),
        ({**GOOD_CONFIG, "warmup_steps": 10}, "both warmup_ratio and warmup_steps"),
        ({**GOOD_CONFIG, "eval_each_epoch": "yes"}, "'eval_each_epoch' is \"yes\", it must be true or false"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_config_errors_name_the_key_and_the_valid_range(document: object, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    assert message in str(error.value)


def _expect_bad_input(args: list[str], message: str, capsys: pytest.CaptureFixture[str], output: Path) -> None:
    assert main(args) == EXIT_BAD_INPUT
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and message in stderr, stderr
    assert not output.exists() or not any(output.iterdir())


def test_config_file_problems_exit_2_before_training(
    mounts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    _expect_bad_input(_args(mounts, out, config=tmp_path / "missing"), "does not exist", capsys, out)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "training_config.json").write_text("{epochs: 1")
    _expect_bad_input(_args(mounts, out, config=tmp_path / "broken"), "is not valid JSON", capsys, out)
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "a.json").write_text("{}")
    (tmp_path / "two" / "b.json").write_text("{}")
    _expect_bad_input(_args(mounts, out, config=tmp_path / "two"), "found 2 .json files", capsys, out)


def test_dataset_problems_exit_2_before_training(
    mounts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    only_train = write_parquet_splits(tmp_path / "only-train", {"train": 10})
    _expect_bad_input(_args(mounts, out, data=only_train), "lacks split(s) validation", capsys, out)
    texts, labels = synthetic_reviews(10, seed=1)
    cases = {
        "no-text": ({"sentence": texts, "label": labels}, "lacks column 'text'"),
        "str-label": ({"text": texts, "label": [str(v) for v in labels]}, "'label' must be an integer, not str"),
        "bad-label": ({"text": texts, "label": [3] * 10}, "label 3 is outside 0..1"),
        "no-rows": ({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}, "has no rows"),
    }
    for name, (columns, message) in cases.items():
        folder = write_parquet_splits(tmp_path / name, {"validation": 10})
        pq.write_table(pa.table(columns), folder / "train.parquet")
        _expect_bad_input(_args(mounts, out, data=folder), message, capsys, out)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "train.parquet").write_bytes(b"nope")
    (tmp_path / "damaged" / "validation.parquet").write_bytes(b"nope")
    _expect_bad_input(_args(mounts, out, data=tmp_path / "damaged"), "not readable parquet", capsys, out)


def test_model_and_output_problems_exit_2(
    mounts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    _expect_bad_input(_args(mounts, out, model=pickled), "only safetensors and ONNX", capsys, out)
    _expect_bad_input(_args(mounts, out, model=tmp_path / "nothing"), "has no config.json", capsys, out)
    used = tmp_path / "used"
    used.mkdir()
    (used / "metrics.json").write_text("{}")
    assert main(_args(mounts, used)) == EXIT_BAD_INPUT
    assert "already holds metrics.json" in capsys.readouterr().err
    assert (used / "metrics.json").read_text() == "{}"


def test_a_save_to_disk_dataset_trains(mounts: dict[str, Path], tmp_path: Path) -> None:
    import datasets

    parts = {}
    for split, count in (("train", 32), ("validation", 16)):
        texts, labels = synthetic_reviews(count, seed=count)
        parts[split] = datasets.Dataset.from_dict({"text": texts, "label": labels})
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "saved"))
    config = tmp_path / "config"
    config.mkdir()
    (config / "training_config.json").write_text(json.dumps({**GOOD_CONFIG, "epochs": 1}))
    assert main(_args(mounts, tmp_path / "out", data=tmp_path / "saved", config=config)) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and "test_accuracy" not in metrics
