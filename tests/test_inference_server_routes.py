"""The inference server serving a model package and a plain ONNX folder: /score, Open Inference
Protocol v2 and the package's /infer, each through a real server process on a unix socket, with
the tiny BERT built as a package by the same builder that ships the MiniLM package."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from containers.inference_server.classifier import OnnxClassifier, sha256_file
from core.errors import ConflictError
from core.ml.classifier_package import build_classifier_package
from core.onboarding.package import check_package
from core.onboarding.package_digest import package_sha256
from tests.cli_runner import cleanroom
from tests.ml_tiny_model import build_tiny_base, synthetic_reviews

ROOT = Path(__file__).resolve().parent.parent
MAX_BATCH = 8
SCHEMA_FIX = "send records valid under the model's input schema (GET /v2/models/model)"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built as the shipped MiniLM package is (`cleanroom model package init` without --from-model),
    from the tiny BERT instead of the offline MiniLM."""
    root = tmp_path_factory.mktemp("shipped")
    build_tiny_base(root / "base")
    built = cleanroom("model", "package", "init", "--base", root / "base", "--output-dir", root / "package")
    assert built.code == 0, built.stderr
    assert built.stdout.startswith(f"wrote model package {root / 'package'} (wrapper TextClassifier")
    return root / "package"


def _serve(model_dir: Path, sock: Path, *tuning: str) -> Iterator[httpx.Client]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "containers.inference_server",
            "--model-dir",
            str(model_dir),
            "--uds",
            str(sock),
            "--max-batch",
            str(MAX_BATCH),
            *tuning,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://workload")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "inference server did not become ready"
                time.sleep(0.2)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def package_client(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    yield from _serve(package, tmp_path_factory.mktemp("sock") / "package.sock")


@pytest.fixture(scope="module")
def onnx_client(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    # The package's model/ is itself a plain ONNX folder (model.onnx + tokenizer.json): the same weights.
    yield from _serve(package / "model", tmp_path_factory.mktemp("sock") / "onnx.sock", "--threads", "1")


@pytest.fixture(params=["package", "onnx"])
def client(request: pytest.FixtureRequest) -> httpx.Client:
    return request.getfixturevalue(f"{request.param}_client")


def _expected(package: Path, texts: list[str]) -> list[dict[str, object]]:
    return [{"label": p.label, "score": p.score} for p in OnnxClassifier(package / "model", threads=1).classify(texts)]


def _assert_same(answers: list[dict[str, object]], expected: list[dict[str, object]]) -> None:
    assert [a["label"] for a in answers] == [e["label"] for e in expected]
    assert [a["score"] for a in answers] == pytest.approx([e["score"] for e in expected], abs=1e-5)


# -- the shipped package --------------------------------------------------------------------------
def test_the_builder_writes_a_package_that_passes_its_check_and_nothing_else(package: Path) -> None:
    report = check_package(package)
    assert report.ok, [f.one_line() for f in report.findings]
    assert report.wrapper_class == "TextClassifier" and report.settings["task"] == "text-classification"
    assert {"model/model.onnx", "model/tokenizer.json", "src/inference.py"} <= {f.path for f in report.scan.files}
    assert sorted(p.name for p in package.parent.iterdir()) == ["base", "package"]  # no prepared/ left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--from-model", "prepared", "--base", "base"),
            "error: --base applies only without --from-model; give one of them",
        ),
        (("--task", "summarization"), "error: --task 'summarization' needs --from-model; a prepared base is packaged"),
    ],
)
def test_package_init_refuses_conflicting_options_and_writes_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    outcome = cleanroom("model", "package", "init", *args, "--output-dir", tmp_path / "package")
    assert outcome.code == 2 and outcome.stderr.startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_the_builder_refuses_a_used_output_before_preparing(tmp_path: Path) -> None:
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "mine.txt").write_text("keep")
    with pytest.raises(ConflictError, match="output folder '.*package' is not empty"):
        build_classifier_package(tmp_path / "package", base=tmp_path / "no-such-base")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package"]
    assert (tmp_path / "package" / "mine.txt").read_text() == "keep"


# -- /score ---------------------------------------------------------------------------------------
def test_score_answers_each_record_as_the_classifier_does(client: httpx.Client, package: Path) -> None:
    texts, _ = synthetic_reviews(6, seed=5)
    answer = client.post("/score", json={"data": [{"text": t} for t in texts]})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"predictions"}
    _assert_same(answer.json()["predictions"], _expected(package, texts))


# -- Open Inference Protocol v2 -------------------------------------------------------------------
def test_v2_health_is_live_and_ready(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/model/ready").json() == {"name": "model", "ready": True}


def test_v2_metadata_names_the_version_platform_and_tensors(
    package_client: httpx.Client, onnx_client: httpx.Client, package: Path
) -> None:
    tensors = {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP64", "shape": [-1]},
        ],
    }
    assert package_client.get("/v2/models/model").json() == {
        "name": "model",
        "versions": [package_sha256(package)[:12]],
        "platform": "cleanroom_package/text-classification",
        **tensors,
    }
    assert onnx_client.get("/v2/models/model").json() == {
        "name": "model",
        "versions": [sha256_file(package / "model" / "model.onnx")[:12]],
        "platform": "onnxruntime_onnx",
        **tensors,
    }


def test_v2_infer_turns_tensors_into_records_and_back(client: httpx.Client, package: Path) -> None:
    texts, _ = synthetic_reviews(3, seed=8)
    request = {"id": "req-1", "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": texts}]}
    answer = client.post("/v2/models/model/infer", json=request).json()
    version = client.get("/v2/models/model").json()["versions"][0]
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("model", version, "req-1")
    label, score = answer["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "BYTES", [3])
    assert (score["name"], score["datatype"], score["shape"]) == ("score", "FP64", [3])
    _assert_same(
        [{"label": a, "score": b} for a, b in zip(label["data"], score["data"], strict=True)], _expected(package, texts)
    )

    only_score = client.post(
        f"/v2/models/model/versions/{version}/infer", json={**request, "outputs": [{"name": "score"}]}
    )
    assert [o["name"] for o in only_score.json()["outputs"]] == ["score"]
    assert only_score.json()["outputs"][0]["data"] == score["data"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/other"),
        ("GET", "/v2/models/two%0Alines"),
        ("POST", "/v2/models/other/infer"),
        ("POST", "/v2/models/model/versions/0/infer"),
    ],
)
def test_another_model_name_or_version_is_404(client: httpx.Client, method: str, path: str) -> None:
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["fine"]}]}
    answer = client.request(method, path, json=body if method == "POST" else None)
    assert answer.status_code == 404
    (message,) = answer.json().values()
    assert "is not served here; this server serves 'model' version" in message and "\n" not in message


# -- refusals: one line, 4xx, nothing answered ----------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/score", {"data": [{"text": "x" * 1001}]}, 400, f"data[0].text breaks maxLength 1000; {SCHEMA_FIX}"),
        ("/score", {"data": [{"text": "ok"}, {}]}, 400, f'data[1] misses the required field(s) ["text"]; {SCHEMA_FIX}'),
        ("/score", {"data": [{"text": "ok", "id": 3}]}, 400, 'data[0] has field(s) the schema does not allow: ["id"]'),
        ("/score", {"data": [{"text": 5}]}, 400, 'data[0].text must be of type "string", not integer'),
        ("/score", {"data": ["just text"]}, 400, 'data[0] must be of type "object", not string'),
        ("/score", {"data": []}, 400, '"data" must be a non-empty list of records'),
        ("/score", {"inputs": [{"text": "ok"}]}, 400, 'a scoring request is a JSON object with only "data"'),
        ("/score", {"data": [{"text": "ok"}] * (MAX_BATCH + 1)}, 413, "data has 9 records, over the batch limit of 8"),
        (
            "/v2/models/model/infer",
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [""]}]},
            400,
            f"inputs[0].text breaks minLength 1; {SCHEMA_FIX}",
        ),
        (
            "/v2/models/model/infer",
            {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": ["ok"]}]},
            400,
            "inputs[0] (text) has datatype 'FP32'; use BYTES",
        ),
        (
            "/v2/models/model/infer",
            {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ok"]}]},
            400,
            "inputs[0] (text) shape [2] does not fit its 1 item(s); use [1]",
        ),
        (
            "/v2/models/model/infer",
            {"inputs": [{"name": "txt", "shape": [1], "datatype": "BYTES", "data": ["ok"]}]},
            400,
            "inputs[0] names tensor 'txt', which the model does not take; use text",
        ),
        ("/v2/models/model/infer", {"inputs": []}, 400, 'a non-empty "inputs" list'),
        (
            "/v2/models/model/infer",
            {
                "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["ok"]}],
                "outputs": [{"name": "x"}],
            },
            400,
            "output tensor 'x' is not one the model gives; use label, score",
        ),
        (
            "/v2/models/model/infer",
            {"inputs": [{"name": "text", "shape": [9], "datatype": "BYTES", "data": ["ok"] * 9}]},
            413,
            "the request has 9 rows, over the batch limit of 8",
        ),
    ],
)
def test_bad_records_are_refused_with_one_line_and_the_server_stays_up(
    client: httpx.Client, path: str, body: object, status: int, message: str
) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == status
    assert set(answer.json()) == {"error"}  # no predictions or outputs leave with a refusal
    assert message in answer.json()["error"] and "\n" not in answer.json()["error"]
    assert "x" * 50 not in answer.text  # the refused text is never echoed
    assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.parametrize("path", ["/score", "/v2/models/model/infer"])
def test_body_caps_and_content_type_hold_on_the_record_routes(client: httpx.Client, path: str) -> None:
    too_big = client.post(path, content=json.dumps({"data": [{"text": "x" * (5 * 1024 * 1024)}]}))
    assert too_big.status_code == 413 and "over the limit" in too_big.json()["error"]
    as_text = client.post(path, content=b'{"data": []}', headers={"content-type": "text/plain"})
    assert as_text.status_code == 415 and "is not application/json" in as_text.json()["error"]
    broken = client.post(path, content=b'{"data": [', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]


# -- the package's own /infer and /metadata -------------------------------------------------------
def test_package_infer_takes_the_packages_records(package_client: httpx.Client, package: Path) -> None:
    texts = ["a brilliant film", "dull and messy"]
    single = package_client.post("/infer", json={"data": {"text": texts[0]}}).json()
    batch = package_client.post("/infer", json={"inputs": [{"text": t} for t in texts]}).json()
    _assert_same([single], _expected(package, texts[:1]))
    _assert_same(batch["outputs"], _expected(package, texts))
    refused = package_client.post("/infer", json={"data": {"text": ""}})
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("data.text breaks minLength 1; send records valid")


def test_package_metadata_names_the_voted_source_digest(package_client: httpx.Client, package: Path) -> None:
    metadata = package_client.get("/metadata").json()
    report = check_package(package)
    assert metadata["source_sha256"] == report.source_sha256
    assert metadata["package_sha256"] == package_sha256(package)
    assert metadata["task"] == "text-classification" and metadata["max_batch"] == MAX_BATCH
    assert metadata["input_schema"]["properties"]["text"]["maxLength"] == 1000


@pytest.mark.smoke
def test_the_shipped_minilm_package_is_served(tmp_path: Path) -> None:
    """The real offline MiniLM, built as the shipped package, checked, loaded and answering."""
    package = build_classifier_package(tmp_path / "minilm-package")
    sample = check_package(package).settings["sample_post_data"]
    serving = _serve(package, tmp_path / "minilm.sock")
    client = next(serving)
    try:
        (prediction,) = client.post("/score", json={"data": [sample]}).json()["predictions"]
        assert prediction["label"] in ("neg", "pos") and 0 <= prediction["score"] <= 1
        v2 = client.post(
            "/v2/models/model/infer",
            json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [sample["text"]]}]},
        ).json()
        assert [o["data"] for o in v2["outputs"]] == [[prediction["label"]], [pytest.approx(prediction["score"])]]
    finally:
        serving.close()
