"""A faulty model package: refused before serving (check, voted digest, its own sample), and when
its wrapper misbehaves on a request, a 500 with one line that never carries the wrapper's exception
text or the request's content."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from containers.inference_server.app import BadRequest
from containers.inference_server.classifier import ModelFolderError
from containers.inference_server.open_inference import outputs_to_tensors, records_from_inputs, tensor_metadata
from containers.inference_server.scoring import create_package_app
from containers.inference_server.served_model import load_package, load_served_model
from core.onboarding.package import check_package
from tests.model_package_corpus import clean_package, global_pickle

ROOT = Path(__file__).resolve().parent.parent
SECRET = "consumer-secret-7f3a"

FAULTY_WRAPPER = '''
from typing import Any


class TextClassifier:
    """Answers every text with pos/0.5, except the texts that make it misbehave."""

    def init(self, model_dir: Any) -> None:
        self.model_dir = model_dir

    def input_schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"text": {"type": "string", "minLength": 1}}, "required": ["text"]}

    def output_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"label": {"enum": ["neg", "pos"]}, "score": {"type": "number", "minimum": 0, "maximum": 1}},
            "required": ["label", "score"],
            "additionalProperties": False,
        }

    def convert_input(self, record: Any) -> str:
        return record["text"]

    def convert_output(self, raw: Any) -> dict[str, Any]:
        return raw

    def inference(self, record: Any) -> dict[str, Any]:
        return self.inference_batch([record])[0]

    def inference_batch(self, records: Any) -> Any:
        texts = [self.convert_input(r) for r in records]
        if any(t.startswith("boom") for t in texts):
            raise ValueError("cannot classify " + texts[0])
        if "short" in texts:
            return []
        if "score" in texts:
            return [{"label": "pos", "score": 7.5} for _ in texts]
        if any(t.startswith("keys") for t in texts):
            return [{"label": "pos", "score": 0.5, t: 1} for t in texts]
        if "none" in texts:
            return None
        return [{"label": "pos", "score": 0.5} for _ in texts]
'''


@pytest.fixture
def faulty(tmp_path: Path) -> Path:
    root = clean_package(tmp_path / "package")
    (root / "src" / "inference.py").write_text(FAULTY_WRAPPER)
    return root


@pytest.fixture
def served(faulty: Path) -> TestClient:
    return TestClient(create_package_app(load_package(faulty, "model"), max_batch=8))


def test_a_well_behaved_answer_passes(served: TestClient) -> None:
    assert served.post("/score", json={"data": [{"text": "fine"}]}).json() == {
        "predictions": [{"label": "pos", "score": 0.5}]
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"boom {SECRET}",
            "the model failed on this request (ValueError); its provider must fix the model package",
        ),
        ("short", "the model answered 0 output(s) for 1 record(s); its provider must fix inference_batch"),
        ("none", "the model answered a NoneType for 1 record(s)"),
        (
            "score",
            "the model's answer does not match its output schema (output[0].score breaks maximum); "
            "its provider must fix the model package",
        ),
        (
            f"keys {SECRET}",
            "the model's answer does not match its output schema (output[0] breaks additionalProperties)",
        ),
    ],
)
@pytest.mark.parametrize("route", ["/score", "/v2/models/model/infer", "/infer"])
def test_a_wrapper_that_fails_or_answers_garbage_is_a_one_line_500(
    served: TestClient, capsys: pytest.CaptureFixture[str], route: str, text: str, message: str
) -> None:
    body = {
        "/score": {"data": [{"text": text}]},
        "/v2/models/model/infer": {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]},
        "/infer": {"data": {"text": text}},
    }[route]
    answer = served.post(route, json=body)
    assert answer.status_code == 500
    assert set(answer.json()) == {"error"} and message in answer.json()["error"]
    assert "\n" not in answer.json()["error"]
    assert SECRET not in answer.text and "cannot classify" not in answer.text
    logged = capsys.readouterr().err
    assert message in logged and SECRET not in logged
    assert served.post("/score", json={"data": [{"text": "fine"}]}).status_code == 200


# -- refused before serving -----------------------------------------------------------------------
def test_a_package_that_fails_its_check_is_not_loaded(faulty: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (faulty / "src" / "inference.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + FAULTY_WRAPPER)
    (faulty / "model" / "extra.bin").write_bytes(global_pickle("os", "system", "id"))
    with pytest.raises(ModelFolderError) as refused:
        load_package(faulty, "model")
    assert str(refused.value).startswith(
        f"model package '{faulty}' does not pass its check (1 finding(s), first: model/extra.bin"
    )
    assert str(refused.value).endswith("run `cleanroom model package check` and fix each finding")
    assert not marker.exists()


def test_a_package_that_fails_its_own_sample_is_not_served(faulty: Path) -> None:
    (faulty / "src" / "settings.yml").write_text(
        f'python: "3.11"\ntask: text-classification\nsample_post_data:\n  text: boom {SECRET}\n'
    )
    with pytest.raises(ModelFolderError) as refused:
        load_package(faulty, "model")
    assert str(refused.value) == (
        f"model package '{faulty}' fails on its own sample_post_data: the model failed on this request (ValueError); "
        "its provider must fix the model package"
    )


def test_a_package_other_than_the_voted_one_exits_2(faulty: Path) -> None:
    voted = "0" * 64
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "containers.inference_server",
            "--model-dir",
            str(faulty),
            "--source-sha256",
            voted,
            "--uds",
            str(faulty.parent / "s.sock"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"error: model package '{faulty}' has wrapper source sha256 {check_package(faulty).source_sha256}, "
        f"not the voted {voted}; mount the package the contract names\n"
    )
    assert not (faulty.parent / "s.sock").exists()


def test_a_wrapper_that_fails_to_start_is_named_in_one_line(faulty: Path) -> None:
    source = (faulty / "src" / "inference.py").read_text()
    (faulty / "src" / "inference.py").write_text(
        source.replace("        self.model_dir = model_dir", "        raise OSError('no weights here\\nsecond line')")
    )
    with pytest.raises(ModelFolderError) as refused:
        load_package(faulty, "model")
    assert str(refused.value) == (
        f"model package '{faulty}': its wrapper failed to start (OSError: no weights here second line); "
        "its provider must fix src/inference.py"
    )


def test_onnx_tuning_flags_are_refused_for_a_package_and_the_pin_for_an_onnx_folder(faulty: Path) -> None:
    with pytest.raises(ModelFolderError) as refused:
        load_served_model(faulty, "model", quantised=True, threads=2)
    assert str(refused.value) == (
        f"--quantised, --threads tune an ONNX folder, but '{faulty}' is a model package; "
        "leave them out (the package's wrapper decides)"
    )
    with pytest.raises(
        ModelFolderError, match="--source-sha256 pins a model package's wrapper, but .* is an ONNX folder"
    ):
        load_served_model(faulty / "model", "model", source_sha256="0" * 64)


# -- Open Inference Protocol tensors for other record shapes ---------------------------------------
def test_v2_tensors_follow_the_property_types_and_optional_fields() -> None:
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "top_k": {"type": "integer"}, "flag": {"type": "boolean"}},
        "required": ["text"],
    }
    assert tensor_metadata(schema) == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "top_k", "datatype": "INT64", "shape": [-1]},
        {"name": "flag", "datatype": "BOOL", "shape": [-1]},
    ]
    request = {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [2, 1], "data": ["a", "b"]},
            {"name": "top_k", "datatype": "INT64", "shape": [2], "data": [1, 3]},
        ]
    }
    assert records_from_inputs(request, schema, 8) == [{"text": "a", "top_k": 1}, {"text": "b", "top_k": 3}]
    with pytest.raises(BadRequest, match=r"input tensor\(s\) text are missing; the model needs text"):
        records_from_inputs({"inputs": request["inputs"][1:]}, schema, 8)
    uneven = [request["inputs"][0], {"name": "top_k", "datatype": "INT64", "shape": [1], "data": [1]}]
    with pytest.raises(BadRequest, match=r"different batch sizes \(1, 2\)"):
        records_from_inputs({"inputs": uneven}, schema, 8)
    wanted = [("text", "BYTES"), ("flag", "BOOL")]
    assert outputs_to_tensors([{"text": "x", "flag": True}, {"text": "y"}], schema, wanted) == [
        {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]},
        {"name": "flag", "datatype": "BOOL", "shape": [2], "data": [True, None]},
    ]


def test_v2_carries_whole_records_when_the_schema_names_no_properties() -> None:
    schema = {"type": "array", "items": {"type": "number"}}
    assert tensor_metadata(schema) == [{"name": "record", "datatype": "BYTES", "shape": [-1]}]
    request = {"inputs": [{"name": "record", "datatype": "BYTES", "shape": [2], "data": [[1, 2], [3]]}]}
    assert records_from_inputs(request, schema, 8) == [[1, 2], [3]]
    assert outputs_to_tensors([0.5, 0.25], {"type": "number"}, [("record", "BYTES")]) == [
        {"name": "record", "datatype": "BYTES", "shape": [2], "data": [0.5, 0.25]}
    ]
