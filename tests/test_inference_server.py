"""The inference server as the runtime runs it: a real process on a unix socket (and on TCP)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from containers.inference_server.classifier import OnnxClassifier, sha256_file
from core.ml.model_preparation import prepare
from tests.ml_tiny_model import build_tiny_base, synthetic_reviews

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    build_tiny_base(root / "base")
    return prepare(root / "base", root / "model", max_length=32).output


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "containers.inference_server", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_healthy(client: httpx.Client, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("inference server did not become healthy")


@pytest.fixture(scope="module")
def uds_client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    sock = tmp_path_factory.mktemp("sock") / "infer.sock"
    process = _start(["--model-dir", str(model_dir), "--uds", str(sock), "--max-batch", "8", "--threads", "1"])
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://workload")
    try:
        _wait_healthy(client, process)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def test_metadata_names_the_model_hash_labels_and_precision(uds_client: httpx.Client, model_dir: Path) -> None:
    metadata = uds_client.get("/metadata").json()
    assert metadata["model_sha256"] == sha256_file(model_dir / "onnx" / "model.onnx")
    assert metadata["labels"] == ["neg", "pos"] and metadata["quantised"] is False
    assert metadata["max_batch"] == 8 and metadata["threads"] == 1


def test_single_and_batch_shapes_agree_with_the_torch_model(uds_client: httpx.Client, model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts, _ = synthetic_reviews(8, seed=11)
    batch = uds_client.post("/infer", json={"inputs": texts}).json()
    singles = [uds_client.post("/infer", json={"data": t}).json() for t in texts]
    assert batch["label_ids"] == [s["label_id"] for s in singles]
    assert batch["labels"] == [["neg", "pos"][i] for i in batch["label_ids"]]
    np.testing.assert_allclose(batch["scores"], [s["score"] for s in singles], atol=1e-5)
    assert batch["truncated"] == [] and "warning" not in batch

    tokenizer = AutoTokenizer.from_pretrained(model_dir / "pytorch")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir / "pytorch").eval()
    with torch.no_grad():
        probabilities = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    assert batch["label_ids"] == probabilities.argmax(-1).tolist()
    np.testing.assert_allclose(batch["scores"], probabilities.max(-1).values.numpy(), atol=1e-4)


def test_a_long_text_is_truncated_and_said_so(uds_client: httpx.Client) -> None:
    answer = uds_client.post("/infer", json={"data": "good film " * 400})
    assert answer.status_code == 200
    assert answer.json()["truncated"] is True and "truncated" in answer.json()["warning"]
    batch = uds_client.post("/infer", json={"inputs": ["bad", "good film " * 400]}).json()
    assert batch["truncated"] == [1] and "1 text(s)" in batch["warning"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ('{"data": ""}', 422, '"data" is empty'),
        ('{"data": "   "}', 422, '"data" is empty'),
        ('{"data": 5}', 422, '"data" must be a string, not int'),
        ('{"inputs": "one text"}', 422, '"inputs" must be a list of strings, not str'),
        ('{"inputs": ["ok", 3]}', 422, '"inputs"[1] must be a string, not int'),
        ('{"inputs": ["ok", ""]}', 422, '"inputs"[1] is empty'),
        ('{"inputs": []}', 422, '"inputs" is empty'),
        ('{"data": "a", "inputs": ["b"]}', 422, 'exactly one of "data"'),
        ('["a list"]', 422, "JSON object"),
        ('{"inputs": ["x", "x", "x", "x", "x", "x", "x", "x", "x"]}', 413, "over the batch limit of 8"),
        ('{"data": "unterminated', 400, "not valid JSON"),
        (b"\xff\xfe not utf-8", 400, "not valid JSON"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_the_server_stays_up(
    uds_client: httpx.Client, body: str | bytes, status: int, message: str
) -> None:
    answer = uds_client.post("/infer", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert uds_client.get("/healthz").json() == {"status": "ok"}


def test_an_oversized_body_is_refused_with_413(uds_client: httpx.Client) -> None:
    answer = uds_client.post("/infer", content=json.dumps({"data": "x" * (5 * 1024 * 1024)}))
    assert answer.status_code == 413 and "over the limit" in answer.json()["error"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_int8_model_on_tcp_reports_quantised_and_agrees_mostly(model_dir: Path) -> None:
    port = _free_port()
    process = _start(
        ["--model-dir", str(model_dir / "onnx"), "--host", "127.0.0.1", "--port", str(port), "--quantised"]
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
    try:
        _wait_healthy(client, process)
        metadata = client.get("/metadata").json()
        assert metadata["quantised"] is True and metadata["model_file"] == "model.int8.onnx"
        assert metadata["model_sha256"] == sha256_file(model_dir / "onnx" / "model.int8.onnx")
        texts, _ = synthetic_reviews(40, seed=3)
        int8 = client.post("/infer", json={"inputs": texts}).json()["scores"]
        fp32 = [p.score for p in OnnxClassifier(model_dir).classify(texts)]
        np.testing.assert_allclose(int8, fp32, atol=0.05)
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def test_a_model_folder_without_onnx_exits_2_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "containers.inference_server",
            "--model-dir",
            str(tmp_path),
            "--uds",
            str(tmp_path / "s.sock"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: model file") and "does not exist" in result.stderr


def test_the_server_imports_neither_core_nor_tui() -> None:
    script = (
        "import sys, containers.inference_server.__main__, containers.trainer.__main__; "
        "print([m for m in sys.modules if m.split('.')[0] in ('core', 'tui')])"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_serving_uses_only_the_package_check_from_core() -> None:
    """The image ships core/__init__.py, core/errors.py and core/onboarding/ (see the Dockerfile)."""
    script = (
        "import sys, containers.inference_server.scoring, containers.inference_server.served_model; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('core', 'tui')))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    loaded = json.loads(result.stdout.replace("'", '"'))
    assert loaded and all(m in ("core", "core.errors") or m.startswith("core.onboarding") for m in loaded), loaded
