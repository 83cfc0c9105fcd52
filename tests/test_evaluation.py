"""The consumer's evaluation client against the real inference server behind real TLS.

The runtime's ingress is stood in for by uvicorn with a certificate from a test CA and a bearer
token check, which is what the client sees of any clean-room endpoint: pinned TLS + a token.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from containers.inference_server.app import create_app
from containers.inference_server.classifier import OnnxClassifier
from containers.trainer.__main__ import main as train_main
from core.errors import AccessDeniedError, IntegrityError, InvalidInputError, NotFoundError, ServiceUnavailableError
from core.ml.datasets import load_split
from core.ml.evaluation import EvaluationRun, InferenceClient, evaluate
from core.ml.model_preparation import prepare
from tests.ml_tiny_model import build_tiny_base, write_parquet_splits

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "consumer-token-for-tests"


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey, issuer: str, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tls")
    ca_key, other_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("clean room CA", ca_key, ca_key, "clean room CA", ca=True)
    other = _certificate("some other CA", other_key, other_key, "some other CA", ca=True)
    leaf = _certificate("ingress", leaf_key, ca_key, "clean room CA", ca=False)
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "ca": _pem(root / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        "other_ca": _pem(root / "other.pem", other.public_bytes(serialization.Encoding.PEM)),
        "cert": _pem(root / "cert.pem", leaf.public_bytes(serialization.Encoding.PEM)),
        "key": _pem(root / "key.pem", key_pem),
    }


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evalmodel")
    build_tiny_base(root / "base")
    prepare(root / "base", root / "model", max_length=48)
    data = write_parquet_splits(root / "data", {"train": 320, "validation": 60, "test": 150})
    (root / "config").mkdir()
    (root / "config" / "training_config.json").write_text(
        json.dumps(
            {"epochs": 4, "learning_rate": 3e-3, "batch_size": 16, "max_length": 48, "warmup_ratio": 0.1, "seed": 7}
        )
    )
    assert (
        train_main(
            [
                "--model-dir",
                str(root / "model"),
                "--data-dir",
                str(data),
                "--config-dir",
                str(root / "config"),
                "--output-dir",
                str(root / "out"),
            ]
        )
        == 0
    )
    return {"model": root / "out", "data": data}


def _bearer_guard(app):  # stands in for the ingress's token check
    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {TOKEN}".encode():
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": b'{"error": "missing or bad token"}'})
                return
        await app(scope, receive, send)

    return guarded


@pytest.fixture(scope="module")
def endpoint(trained_model: dict[str, Path], tls_files: dict[str, Path]) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = _bearer_guard(create_app(OnnxClassifier(trained_model["model"]), max_batch=32))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ssl_certfile=str(tls_files["cert"]),
            ssl_keyfile=str(tls_files["key"]),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    yield f"https://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def _expected_correct(trained_model: dict[str, Path]) -> tuple[int, int]:
    rows = load_split(trained_model["data"], "test")
    predictions = OnnxClassifier(trained_model["model"]).classify(rows.texts)
    return sum(p.label_id == y for p, y in zip(predictions, rows.labels, strict=True)), len(rows)


def test_batched_evaluation_scores_what_the_model_predicts(
    endpoint: str, tls_files: dict[str, Path], trained_model: dict[str, Path]
) -> None:
    rows = load_split(trained_model["data"], "test")
    seen = []
    report = evaluate(rows, endpoint, ca=tls_files["ca"], token=TOKEN, batch_size=64, on_progress=seen.append)
    correct, total = _expected_correct(trained_model)
    assert (report.total, report.correct) == (total, correct)
    assert report.accuracy >= 0.9 and report.requests == 5  # batch capped at the server's max_batch 32
    assert [p.done for p in seen] == [32, 64, 96, 128, 150] and seen[-1].correct == correct
    assert sum(map(sum, report.confusion)) == total
    per_class = report.per_class()
    assert per_class["pos"]["support"] == sum(rows.labels)
    assert 0 < per_class["neg"]["precision"] <= 1 and 0 < per_class["pos"]["recall"] <= 1


def test_per_row_protocol_gives_the_same_report(
    endpoint: str, tls_files: dict[str, Path], trained_model: dict[str, Path]
) -> None:
    rows = load_split(trained_model["data"], "test")
    with InferenceClient(endpoint, ca=tls_files["ca"], token=TOKEN) as client:
        batched = EvaluationRun(rows, client, batch_size=32)
        list(batched)
        per_row = EvaluationRun(rows, client, per_row=True)
        steps = list(per_row)
    assert len(steps) == len(rows) == per_row.report().requests
    assert per_row.report().confusion == batched.report().confusion


def test_cli_prints_totals_and_json_adds_per_class_and_confusion(
    endpoint: str, tls_files: dict[str, Path], trained_model: dict[str, Path]
) -> None:
    from tui.cli import cli

    base = [
        "infer",
        "--dataset",
        str(trained_model["data"]),
        "--split",
        "test",
        "--endpoint",
        endpoint,
        "--ca",
        str(tls_files["ca"]),
        "--token",
        TOKEN,
    ]
    table = CliRunner().invoke(cli, base)
    assert table.exit_code == 0, table.output
    correct, total = _expected_correct(trained_model)
    for needle in (f"Total rows │ {total}", f"Correct    │ {correct}", "Accuracy"):
        assert needle in table.stdout
    as_json = CliRunner().invoke(cli, [*base, "--output", "json", "--batch-size", "10", "--limit", "40"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert report["totalRows"] == 40 and report["requests"] == 4
    assert report["confusionMatrix"]["labels"] == ["neg", "pos"]
    assert set(report["perClass"]) == {"neg", "pos"} and set(report["perClass"]["pos"]) == {
        "precision",
        "recall",
        "support",
    }


def test_a_wrong_token_is_refused_with_one_error_line(
    endpoint: str, tls_files: dict[str, Path], trained_model: dict[str, Path]
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "infer",
            "--dataset",
            str(trained_model["data"]),
            "--endpoint",
            endpoint,
            "--ca",
            str(tls_files["ca"]),
            "--token",
            "stolen",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == AccessDeniedError.exit_code
    assert result.stderr.strip().splitlines()[-1].startswith("error: endpoint https://127.0.0.1:")
    assert "refused the token (401)" in result.stderr


def test_an_endpoint_not_signed_by_the_pinned_ca_is_refused(endpoint: str, tls_files: dict[str, Path]) -> None:
    with (
        pytest.raises(IntegrityError, match="not signed by the given CA"),
        InferenceClient(endpoint, ca=tls_files["other_ca"], token=TOKEN) as client,
    ):
        client.metadata()


def test_bad_client_arguments_say_what_to_fix(
    tls_files: dict[str, Path], endpoint: str, trained_model: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="not an http"):
        InferenceClient("ftp://127.0.0.1", ca=tls_files["ca"])
    with pytest.raises(NotFoundError, match="CA certificate"):
        InferenceClient(endpoint, ca=tmp_path / "missing.pem")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with (
        pytest.raises(ServiceUnavailableError, match="not reachable"),
        InferenceClient(f"https://127.0.0.1:{closed}", ca=tls_files["ca"]) as client,
    ):
        client.metadata()
    rows = load_split(trained_model["data"], "test")
    with InferenceClient(endpoint, ca=tls_files["ca"], token=TOKEN) as client:
        with pytest.raises(InvalidInputError, match="batch size 0"):
            EvaluationRun(rows, client, batch_size=0)
        with pytest.raises(InvalidInputError, match="answered 422.*is empty"):
            client.classify(["fine", ""])
