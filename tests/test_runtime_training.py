"""Fine-tuning inside the clean room: the real trainer reads the provider's model and config and
the consumer's data, the trained model is sealed to the provider only, and training progress
reaches governance as telemetry because the contract enabled it."""

from __future__ import annotations

import json

import pytest

from core.config.party import add_application, add_data_asset
from core.datasource import download_asset, upload_datasource
from core.errors import NotFoundError
from core.ml.model_preparation import prepare
from core.storage.locator import local_store_spec
from tests.ml_tiny_model import build_tiny_base, write_parquet_splits
from tests.runtime_world import World

CONFIG = {
    "epochs": 1,
    "learning_rate": 3e-3,
    "batch_size": 16,
    "max_length": 32,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "seed": 7,
    "eval_each_epoch": True,
}
TRAIN = [
    "python",
    "-m",
    "containers.trainer",
    "--model-dir",
    "/mnt/remote/model",
    "--data-dir",
    "/mnt/remote/data",
    "--config-dir",
    "/mnt/remote/config",
    "--output-dir",
    "/mnt/remote/output",
    "--threads",
    "1",
    "--log-every",
    "2",
]


@pytest.fixture()
def world(tmp_path):
    world = World.create(tmp_path)
    yield world
    world.close()


def test_trained_model_is_sealed_to_the_provider_and_progress_is_telemetry(world, tmp_path) -> None:
    provider, consumer, hoster = (world.parties[p] for p in ("provider", "consumer", "hoster"))
    build_tiny_base(tmp_path / "base")
    model = prepare(tmp_path / "base", tmp_path / "prepared", max_length=32).output
    data = write_parquet_splits(tmp_path / "data", {"train": 96, "validation": 32, "test": 32})
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "training_config.json").write_text(json.dumps(CONFIG))
    for owner, name, folder in (
        (provider, "model", model),
        (provider, "training-config", tmp_path / "config"),
        (consumer, "training-data", data),
    ):
        add_data_asset(owner, "datasource", name, local_store_spec(owner.root / "store"))
        upload_datasource(owner, name, folder)
    add_data_asset(provider, "datasink", "trained-model", local_store_spec(provider.root / "store"))
    add_application(
        hoster,
        name="trainer",
        entrypoint="containers/trainer",
        command=TRAIN,
        mounts=[
            {"source": "model", "target": "/mnt/remote/model"},
            {"source": "training-config", "target": "/mnt/remote/config"},
            {"source": "training-data", "target": "/mnt/remote/data"},
            {"source": "trained-model", "target": "/mnt/remote/output"},
        ],
    )
    world.accept_contract("finetune1")
    world.vote_all(world.clients["hoster"].set_runtime_option("finetune1", "telemetry", enable=True))

    outcome = world.runtime().run("finetune1")
    assert outcome.exit_codes == {"trainer": 0}
    assert outcome.sealed == ["trained-model"]
    download_asset(provider, "datasink", "trained-model", tmp_path / "mine")
    metrics = json.loads((tmp_path / "mine" / "metrics.json").read_text())
    assert metrics["config"]["seed"] == 7
    telemetry = [e["data"] for e in world.events("finetune1") if e["type"] == "telemetry"]
    assert telemetry and any("loss" in record for record in telemetry)
    for other in (consumer, hoster):  # nobody else can read the trained model
        with pytest.raises(NotFoundError):
            download_asset(other, "datasink", "trained-model", tmp_path / "theirs")
