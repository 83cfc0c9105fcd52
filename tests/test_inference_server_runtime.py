"""A provider's model package served from inside the clean room: encrypted, mounted, checked and
loaded by the sandboxed inference server, called by the consumer through the TLS ingress on the
record routes the network policy lists."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.ml.classifier_package import build_classifier_package
from core.onboarding.package_digest import package_sha256
from tests.ml_tiny_model import build_tiny_base
from tests.runtime_world import World

SERVE = [
    "python",
    "-m",
    "containers.inference_server",
    "--model-dir",
    "/mnt/remote/model",
    "--uds",
    "/run/cleanroom/app.sock",
    "--max-batch",
    "8",
]
ROUTES = ["POST /score", "GET /v2/health/ready", "GET /v2/models/{name}", "POST /v2/models/{name}/infer"]


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    world = World.create(tmp_path)
    yield world
    world.close()


def test_the_consumer_scores_a_mounted_model_package_through_the_clean_room(world: World, tmp_path: Path) -> None:
    build_tiny_base(tmp_path / "base")
    package = build_classifier_package(tmp_path / "package", base=tmp_path / "base", max_length=32)
    world.setup_assets(source_folder=package)
    world.add_app(SERVE, ports=[8000], routes=ROUTES)
    world.accept_contract("inference1", enable_ca=True)
    runtime = world.runtime()
    seen: list[str] = []
    runtime.listener = lambda kind, _detail: seen.append(kind)
    done: dict[str, object] = {}
    thread = threading.Thread(target=lambda: done.update(outcome=runtime.run("inference1")))
    thread.start()
    try:
        deadline = time.monotonic() + 180
        while runtime.ingress_url is None or "running" not in seen:
            assert time.monotonic() < deadline and thread.is_alive(), seen
            time.sleep(0.05)
        consumer = world.clients["consumer"]
        client = httpx.Client(
            base_url=runtime.ingress_url,
            timeout=30,
            verify=ssl.create_default_context(cadata=consumer.ca("inference1")["caCert"]),
            headers={"authorization": f"Bearer {consumer.issue_token('inference1')['token']}"},
        )
        ready = client.get("/v2/health/ready")
        while ready.status_code == 502 and time.monotonic() < deadline:  # the package is still being checked
            time.sleep(0.2)
            ready = client.get("/v2/health/ready")
        assert ready.json() == {"ready": True}, ready.text

        scored = client.post("/score", json={"data": [{"text": "a great film"}, {"text": "a dull plot"}]})
        assert scored.status_code == 200, scored.text
        predictions = scored.json()["predictions"]
        assert [set(p) for p in predictions] == [{"label", "score"}] * 2
        assert all(p["label"] in ("neg", "pos") and 0 <= p["score"] <= 1 for p in predictions)

        metadata = client.get("/v2/models/model").json()
        assert metadata["versions"] == [package_sha256(package)[:12]]  # the very package the provider built
        inferred = client.post(
            "/v2/models/model/infer",
            json={
                "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a great film", "a dull plot"]}]
            },
        ).json()
        assert [o["data"] for o in inferred["outputs"]] == [
            [p["label"] for p in predictions],
            pytest.approx([p["score"] for p in predictions], abs=1e-6),
        ]
        refused = client.post("/score", json={"data": [{"text": "x" * 1001}]})
        assert refused.status_code == 400 and "data[0].text breaks maxLength 1000" in refused.json()["error"]
        assert client.get("/metadata").status_code == 404  # not in the network policy
        client.close()
    finally:
        runtime.request_stop("test finished")
        thread.join(timeout=60)
    assert done["outcome"].stopped_by == "test finished"
