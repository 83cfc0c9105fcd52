"""Inference throughput on the rotten_tomatoes test set: the field's way vs ours, one run.

(a) transformers ``pipeline`` in-process, one row at a time (what the field's sample does);
(b) our ONNX classifier in-process, 64-row batches sorted by length and padded dynamically;
(c) our inference server (fp32) behind the runtime's TLS ingress (``core.runtime.ingress``:
    TLS, route allow-list, bearer JWT), driven by the consumer's evaluation client in 64-row
    requests; (d) the same as (c) with the int8 model. Accuracy is measured on every path.

Targets: (c)/(b) >= 0.9 (serving costs little); (c) >= 2.5x (a); (d) >= 3.5x (a); int8
accuracy within 1 point of fp32.

It needs a fine-tuned model: ``--model DIR`` (a trainer output or prepared model with pytorch/
and onnx/), or it fine-tunes the offline MiniLM itself with ``containers.trainer`` (one epoch;
with ``--quick`` on 1,000 rows only and timing 300 test rows).

    python benchmarks/inference.py [--quick] [--model DIR] [--work-dir DIR] [--threads N]

Every path uses the same thread count (default: the CPUs this process may use). On a machine
shared with other busy processes use ``--threads 1``: with 2 threads on oversubscribed cores,
torch's per-row forward collapses (spinning thread pools), which would flatter our figures.

The last line is one JSON object with the figures, the targets and ``targets_met``.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BATCH = 64
QUICK_TEST_ROWS = 300
QUICK_TRAIN_ROWS = 1000
TRAIN_CONFIG = {
    "epochs": 1,
    "learning_rate": 5e-5,
    "batch_size": 32,
    "max_length": 64,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "seed": 42,
}
TARGETS = {
    "served_over_inprocess_min": 0.9,
    "served_over_pipeline_min": 2.5,
    "int8_over_pipeline_min": 3.5,
    "int8_accuracy_drop_max": 0.01,
}


def fine_tuned_model(work: Path, quick: bool) -> Path:
    """A trainer output, trained here once and then reused from the work folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.ml.datasets import load
    from core.ml.model_preparation import prepare

    run = work / ("inference-model-quick" if quick else "inference-model-full")
    if (run / "output" / "metrics.json").is_file():
        return run / "output"
    base = work / "minilm-base"
    if not (base / "pytorch" / "model.safetensors").is_file():
        prepare(None, base, max_length=TRAIN_CONFIG["max_length"])
    data = run / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, part in load("rotten_tomatoes").items():
        rows = part.shuffle(seed=0).select(range(QUICK_TRAIN_ROWS)) if quick and split == "train" else part
        pq.write_table(
            pa.table({"text": rows["text"], "label": [int(v) for v in rows["label"]]}), data / f"{split}.parquet"
        )
    (run / "config").mkdir(exist_ok=True)
    (run / "config" / "training_config.json").write_text(json.dumps(TRAIN_CONFIG))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "containers.trainer",
            "--model-dir",
            str(base),
            "--data-dir",
            str(data),
            "--config-dir",
            str(run / "config"),
            "--output-dir",
            str(run / "output"),
        ],
        cwd=ROOT,
        check=True,
    )
    return run / "output"


def accuracy(predicted: list[int], labels: list[int]) -> float:
    return sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)


def measure_pipeline(model: Path, texts: list[str], threads: int) -> tuple[float, list[int]]:
    import torch
    import transformers
    from transformers import pipeline

    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    classify = pipeline("text-classification", model=str(model / "pytorch"), device="cpu")
    label2id = classify.model.config.label2id
    max_length = json.loads((model / "onnx" / "serving.json").read_text())["max_length"]
    classify(texts[0])
    started = time.perf_counter()
    predicted = [label2id[classify(text, truncation=True, max_length=max_length)[0]["label"]] for text in texts]
    return time.perf_counter() - started, predicted


def measure_in_process(model: Path, texts: list[str], quantised: bool, threads: int) -> tuple[float, list[int]]:
    from containers.inference_server.classifier import OnnxClassifier

    classifier = OnnxClassifier(model, quantised=quantised, threads=threads)
    classifier.classify(texts[:BATCH])
    started = time.perf_counter()
    predicted = [
        p.label_id for start in range(0, len(texts), BATCH) for p in classifier.classify(texts[start : start + BATCH])
    ]
    return time.perf_counter() - started, predicted


class TlsIngress:
    """The runtime's ingress in front of a real inference server process, with a test CA and JWT."""

    def __init__(self, model: Path, work: Path, quantised: bool, threads: int) -> None:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec

        from core.runtime.ingress import IngressProxy, RouteAllowList, TokenPolicy

        self.folder = work / ("ingress-int8" if quantised else "ingress-fp32")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)  # the ingress refuses a socket folder others can enter
        self.ca, cert, key = self._certificates()
        sock = self.folder / "infer.sock"
        command = [
            sys.executable,
            "-m",
            "containers.inference_server",
            "--model-dir",
            str(model),
            "--uds",
            str(sock),
            "--threads",
            str(threads),
        ] + (["--quantised"] if quantised else [])
        sock.unlink(missing_ok=True)  # a socket left by an earlier run would look like a ready server
        self.server = subprocess.Popen(command, cwd=ROOT)
        self._wait_healthy(sock)
        signing = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(signing.public_key())) | {"kid": "bench", "alg": "ES256"}
        now = int(time.time())
        self.token = jwt.encode(
            {"contract_id": "benchmark", "sub": "consumer", "iat": now, "exp": now + 3600},
            signing,
            algorithm="ES256",
            headers={"kid": "bench"},
        )
        routes = RouteAllowList.from_policy(["POST /infer", "GET /metadata", "GET /healthz"])
        self.proxy = IngressProxy(
            upstream_socket=sock,
            cert_chain=cert,
            key_file=key,
            routes=routes,
            tokens=TokenPolicy(contract_id="benchmark", jwks=lambda: {"keys": [jwk]}),
        ).start()

    def _wait_healthy(self, sock: Path) -> None:
        import httpx

        deadline = time.monotonic() + 120
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://workload") as local:
            while True:
                if self.server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("inference server did not start")
                try:
                    if local.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.1)

    def _certificates(self) -> tuple[Path, Path, Path]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.UTC)
        ca_key, leaf_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "benchmark clean room CA")])

        def build(subject: x509.Name, key, ca: bool) -> x509.Certificate:
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(hours=2))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            )
            if not ca:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
                )
            return builder.sign(ca_key, hashes.SHA384())

        ca = build(ca_name, ca_key, True)
        leaf = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ingress")]), leaf_key, False)
        paths = (self.folder / "ca.pem", self.folder / "cert.pem", self.folder / "key.pem")
        paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        paths[1].write_bytes(
            leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
        )
        paths[2].write_bytes(
            leaf_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        paths[2].chmod(0o600)
        return paths

    def measure(self, texts: list[str], labels: list[int]) -> tuple[float, float]:
        from core.ml.datasets import LabelledRows
        from core.ml.evaluation import EvaluationRun, InferenceClient

        with InferenceClient(self.proxy.url, ca=self.ca, token=self.token) as client:
            client.classify(texts[:BATCH])
            run = EvaluationRun(LabelledRows(texts=texts, labels=labels), client, batch_size=BATCH)
            started = time.perf_counter()
            for _ in run:
                pass
            return time.perf_counter() - started, run.report().accuracy

    def close(self) -> None:
        self.proxy.stop()
        self.server.terminate()
        self.server.wait(timeout=30)


def measure_served(
    model: Path, work: Path, texts: list[str], labels: list[int], quantised: bool, threads: int
) -> tuple[float, float]:
    ingress = TlsIngress(model, work, quantised, threads)
    try:
        return ingress.measure(texts, labels)
    finally:
        ingress.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"time {QUICK_TEST_ROWS} test rows; train on {QUICK_TRAIN_ROWS} rows if no --model",
    )
    parser.add_argument("--model", type=Path, default=None, help="fine-tuned model folder (pytorch/ + onnx/)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/cleanroom-bench"))
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)

    from core.ml.datasets import load_split

    model = args.model or fine_tuned_model(args.work_dir, args.quick)
    rows = load_split("rotten_tomatoes", "test")
    count = QUICK_TEST_ROWS if args.quick else len(rows)
    # A seeded sample when cutting down: the split lists all positives first.
    picked = sorted(random.Random(0).sample(range(len(rows)), count)) if args.quick else list(range(count))
    texts, labels = [rows.texts[i] for i in picked], [rows.labels[i] for i in picked]

    a_s, a_pred = measure_pipeline(model, texts, args.threads)
    b_s, b_pred = measure_in_process(model, texts, False, args.threads)
    b8_s, b8_pred = measure_in_process(model, texts, True, args.threads)
    c_s, c_acc = measure_served(model, args.work_dir, texts, labels, False, args.threads)
    d_s, d_acc = measure_served(model, args.work_dir, texts, labels, True, args.threads)
    rate = {name: count / seconds for name, seconds in {"a": a_s, "b": b_s, "b_int8": b8_s, "c": c_s, "d": d_s}.items()}
    acc = {
        "a": accuracy(a_pred, labels),
        "b": accuracy(b_pred, labels),
        "b_int8": accuracy(b8_pred, labels),
        "c": c_acc,
        "d": d_acc,
    }
    names = {
        "a": "(a) transformers pipeline, per row",
        "b": "(b) ONNX fp32 in-process, batched",
        "b_int8": "    ONNX int8 in-process, batched",
        "c": "(c) server fp32 via TLS ingress, batched",
        "d": "(d) server int8 via TLS ingress, batched",
    }
    print(f"{count} rotten_tomatoes test rows, {args.threads} threads, model {model}")
    print(f"{'path':44}{'rows/s':>10}{'x (a)':>8}{'accuracy':>10}")
    for key, title in names.items():
        print(f"{title:44}{rate[key]:>10.1f}{rate[key] / rate['a']:>8.2f}{acc[key]:>10.4f}")
    figures = {
        "served_over_inprocess": rate["c"] / rate["b"],
        "served_over_pipeline": rate["c"] / rate["a"],
        "int8_over_pipeline": rate["d"] / rate["a"],
        "int8_accuracy_drop": acc["c"] - acc["d"],
    }
    met = (
        figures["served_over_inprocess"] >= TARGETS["served_over_inprocess_min"]
        and figures["served_over_pipeline"] >= TARGETS["served_over_pipeline_min"]
        and figures["int8_over_pipeline"] >= TARGETS["int8_over_pipeline_min"]
        and figures["int8_accuracy_drop"] <= TARGETS["int8_accuracy_drop_max"]
    )
    print(
        json.dumps(
            {
                "benchmark": "inference",
                "quick": args.quick,
                "rows": count,
                "threads": args.threads,
                "ingress": "core.runtime.ingress",
                "rows_per_s": {k: round(v, 1) for k, v in rate.items()},
                "accuracy": {k: round(v, 4) for k, v in acc.items()},
                **{k: round(v, 3) for k, v in figures.items()},
                "targets": TARGETS,
                "targets_met": met,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
