"""Model preparation: safetensors + ONNX (fp32, int8) from a base, pickle refused, atomic output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from core.errors import ConflictError, InvalidInputError, NotFoundError
from core.ml.model_preparation import prepare
from tests.ml_tiny_model import build_tiny_base, synthetic_reviews

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prep")
    build_tiny_base(root / "base")
    return prepare(root / "base", root / "model", max_length=64).output


def test_layout_has_pytorch_and_onnx_folders_with_two_labels(prepared: Path) -> None:
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (prepared / "pytorch" / name).is_file()
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json", "serving.json"):
        assert (prepared / "onnx" / name).is_file()
    config = json.loads((prepared / "pytorch" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    serving = json.loads((prepared / "onnx" / "serving.json").read_text())
    assert serving == {
        "labels": ["neg", "pos"],
        "max_length": 64,
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
    }
    assert not list(prepared.rglob("*.bin")) and not list(prepared.parent.glob(".model.partial-*"))


def _torch_and_onnx_logits(prepared: Path, model_file: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(prepared / "pytorch")
    model = AutoModelForSequenceClassification.from_pretrained(prepared / "pytorch").eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = model(**batch).logits.numpy()
    session = ort.InferenceSession(str(prepared / "onnx" / model_file), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
    return reference, logits


@pytest.mark.parametrize("count", [1, 3, 9])
def test_onnx_matches_torch_for_other_batch_and_sequence_sizes(prepared: Path, count: int) -> None:
    texts, _ = synthetic_reviews(count, seed=count)
    reference, logits = _torch_and_onnx_logits(prepared, "model.onnx", texts)
    assert logits.shape == (count, 2)
    np.testing.assert_allclose(logits, reference, atol=1e-4)


def test_onnx_axes_are_dynamic_and_int8_weights_are_quantised(prepared: Path) -> None:
    graph = onnx.load(str(prepared / "onnx" / "model.onnx")).graph
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"]
    int8 = onnx.load(str(prepared / "onnx" / "model.int8.onnx")).graph
    assert any(node.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for node in int8.node)
    texts, _ = synthetic_reviews(8, seed=5)
    reference, logits = _torch_and_onnx_logits(prepared, "model.int8.onnx", texts)
    np.testing.assert_allclose(logits, reference, atol=0.05)


def test_pickle_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "config.json").write_text("{}")
    (tmp_path / "legacy" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(InvalidInputError, match="pytorch_model.bin.*only safetensors and ONNX"):
        prepare(tmp_path / "legacy", tmp_path / "out")
    (tmp_path / "model.pt").write_bytes(b"\x80\x04pickle")
    with pytest.raises(InvalidInputError, match="pickle checkpoint"):
        prepare(tmp_path / "model.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_bases_and_a_used_output_are_refused(tmp_path: Path, prepared: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        prepare("./no/such/folder", tmp_path / "out")
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(InvalidInputError, match="no config.json"):
        prepare(tmp_path / "notamodel", tmp_path / "out")
    before = sorted(p.name for p in prepared.iterdir())
    with pytest.raises(ConflictError, match="not empty"):
        prepare(None, prepared)
    assert sorted(p.name for p in prepared.iterdir()) == before


def test_cli_prepare_refuses_a_hub_id_while_offline(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "model",
            "prepare",
            "--base",
            "example-org/no-such-model",
            "--output-dir",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == NotFoundError.exit_code
    assert result.stderr.startswith("error: base model 'example-org/no-such-model' could not be loaded")
    assert "offline" in result.stderr and not (tmp_path / "out").exists()


def test_cli_prepare_writes_a_json_file_list(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tui.cli import cli

    build_tiny_base(tmp_path / "base")
    result = CliRunner().invoke(
        cli, ["model", "prepare", "--base", str(tmp_path / "base"), "--output-dir", str(tmp_path / "out"), "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert {"onnx/model.onnx", "onnx/model.int8.onnx", "pytorch/model.safetensors"} <= {
        f["path"] for f in listing["files"]
    }


@pytest.mark.smoke
def test_offline_minilm_default_prepares(tmp_path: Path) -> None:
    prepared = prepare(None, tmp_path / "minilm")
    config = json.loads((prepared.pytorch_dir / "config.json").read_text())
    assert len(config["id2label"]) == 2
    assert config["hidden_size"] == 384 and config["num_hidden_layers"] == 6
    texts = ["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés"]
    reference, logits = _torch_and_onnx_logits(prepared.output, "model.onnx", texts)
    np.testing.assert_allclose(logits, reference, atol=1e-4)
