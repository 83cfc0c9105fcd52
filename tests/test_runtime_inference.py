"""The real inference server (ONNX Runtime) serving a provider's encrypted model from inside the
clean room: sandboxed, behind the TLS ingress, called by the consumer with a governance token."""

from __future__ import annotations

import ssl
import threading
import time

import httpx
import pytest

from core.ml.model_preparation import prepare
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
    "--threads",
    "1",
    "--max-batch",
    "8",
]


@pytest.fixture()
def world(tmp_path):
    world = World.create(tmp_path)
    yield world
    world.close()


def test_consumer_gets_predictions_from_the_providers_model_through_the_clean_room(world, tmp_path) -> None:
    build_tiny_base(tmp_path / "base")
    model = prepare(tmp_path / "base", tmp_path / "prepared", max_length=32).output
    world.setup_assets(source_folder=model)
    world.add_app(SERVE, ports=[8000], routes=["POST /infer"])
    world.accept_contract("inference1", enable_ca=True)
    runtime = world.runtime()
    seen: list[str] = []
    runtime.listener = lambda kind, _detail: seen.append(kind)
    done: dict[str, object] = {}
    thread = threading.Thread(target=lambda: done.update(outcome=runtime.run("inference1")))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while runtime.ingress_url is None or "running" not in seen:
            assert time.monotonic() < deadline and thread.is_alive(), seen
            time.sleep(0.05)
        consumer = world.clients["consumer"]
        token = consumer.issue_token("inference1")["token"]
        client = httpx.Client(
            base_url=runtime.ingress_url,
            timeout=30,
            verify=ssl.create_default_context(cadata=consumer.ca("inference1")["caCert"]),
            headers={"authorization": f"Bearer {token}"},
        )
        answer = client.post("/infer", json={"inputs": ["a great film", "a dull plot"]})
        while answer.status_code == 502 and time.monotonic() < deadline:  # model still loading
            time.sleep(0.2)
            answer = client.post("/infer", json={"inputs": ["a great film", "a dull plot"]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["labels"]) == 2 and all(0.0 <= s <= 1.0 for s in body["scores"])
        assert client.get("/metadata").status_code == 404  # not in the network policy
        client.close()
    finally:
        runtime.request_stop("test finished")
        thread.join(timeout=60)
    assert done["outcome"].stopped_by == "test finished"
    assert not any((world.runtime_state / "mounts").iterdir())
