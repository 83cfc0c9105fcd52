"""The runtime's side of private training, through the real runtime and real governance on
loopback, with a tiny workload script in place of the trainer: the job it is given, epsilon
reserved before any key, the privacy record forwarded (once) and checked by governance, loss
kept in unless every member voted it out, and a swapped upload refused before anything runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.config.fragment import PrivacyBudget
from core.config.party import add_application, add_data_asset
from core.datasource import download_asset, upload_datasource
from core.errors import AccessDeniedError, IntegrityError, NotFoundError
from core.runtime import local
from core.storage.locator import local_store_spec
from core.storage.transfer import download_folder
from tests.runtime_world import World

pytest.importorskip("opacus")

UNIT = "person_id"
# A run's accounting as a DP trainer reports it; epsilon is what opacus's PRV accountant says.
SIGMA, SAMPLE_RATE, STEPS, DELTA = 1.1, 0.01, 20, 1e-5


def prv_epsilon() -> float:
    from opacus.accountants import PRVAccountant

    accountant = PRVAccountant()
    accountant.history = [(SIGMA, SAMPLE_RATE, STEPS)]
    return float(accountant.get_epsilon(DELTA))


def workload(*, epsilon: float, records: int = 1) -> str:
    """Writes its job and loss flag to the sink, a step with loss, one without, and its privacy record(s)."""
    record = {
        "event": "privacy_record",
        "noise_multiplier": SIGMA,
        "sample_rate": SAMPLE_RATE,
        "steps": STEPS,
        "delta": DELTA,
        "accountant": "prv",
        "epsilon": epsilon,
        "epsilon_rdp": epsilon * 1.1,
        "rows": 1200,
    }
    lines = [
        {"event": "step", "step": 1, "loss": 0.69},
        {"event": "step", "step": 1, "examples_per_s": 10.0},
        *[record] * records,
    ]
    return (
        "import json, os, pathlib\n"
        "out = pathlib.Path('/mnt/remote/output')\n"
        "(out / 'job.json').write_text(os.environ['CLEANROOM_PRIVATE_TRAINING'])\n"
        "(out / 'loss.txt').write_text(os.environ.get('CLEANROOM_LOSS_TELEMETRY', 'unset'))\n"
        "(out / 'texts.txt').write_text(open('/mnt/remote/texts/train.parquet').read())\n"
        f"lines = {json.dumps(lines)!r}\n"
        "with open(os.environ['CLEANROOM_TELEMETRY_FILE'], 'a') as telemetry:\n"
        "    for line in json.loads(lines):\n"
        "        telemetry.write(json.dumps(line) + '\\n')\n"
    )


def training(epsilon: float = 3.0) -> dict[str, Any]:
    return {
        "epsilon": epsilon,
        "delta": DELTA,
        "batch_size": 12,
        "max_steps": STEPS,
        "join": {
            "key": UNIT,
            "sources": [
                {"datasource": "texts", "file": "train.parquet", "columns": [UNIT, "text"], "how": "base"},
                {"datasource": "labels", "file": "train.parquet", "columns": [UNIT, "label"], "how": "inner"},
            ],
            "min_rows": 1000,
            "max_rows_per_key": 1,
        },
    }


def private_world(world: World, script: str, *, epsilon_total: float = 10.0) -> dict[str, Any]:
    """provider owns budgeted "texts", consumer budgeted "labels" and the sink "dp-out"; the
    hoster's "dp-trainer" joins them. Uploads come before the contract, so both are pinned."""
    budget = PrivacyBudget(epsilon_total=epsilon_total, delta=DELTA, privacy_unit=UNIT)
    for persona, name in (("provider", "texts"), ("consumer", "labels")):
        workspace = world.parties[persona]
        add_data_asset(workspace, "datasource", name, local_store_spec(workspace.root / "store"), privacy=budget)
        folder = world.root / f"{name}-data"
        folder.mkdir()
        (folder / "train.parquet").write_text(f"{name} rows")
        upload_datasource(workspace, name, folder)
    consumer = world.parties["consumer"]
    add_data_asset(consumer, "datasink", "dp-out", local_store_spec(consumer.root / "store"))
    add_application(
        world.parties["hoster"],
        name="dp-trainer",
        entrypoint="containers/inference_server",
        command=["python", "-c", script],
        mounts=[
            {"source": "texts", "target": "/mnt/remote/texts"},
            {"source": "labels", "target": "/mnt/remote/labels"},
            {"source": "dp-out", "target": "/mnt/remote/output"},
        ],
        private_training=training(),
    )
    return world.accept_contract("dp")


@pytest.fixture()
def world(tmp_path):
    world = World.create(tmp_path)
    yield world
    world.close()


def _telemetry(world: World) -> list[dict[str, Any]]:
    return [event["data"] for event in world.events("dp") if event["type"] == "telemetry"]


def _events(world: World, kind: str) -> list[dict[str, Any]]:
    return [event["data"] for event in world.events("dp") if event["type"] == kind]


@pytest.mark.parametrize("loss_voted", [False, True])
def test_a_private_run_gets_its_job_reserves_first_and_records_its_epsilon(world, tmp_path, loss_voted) -> None:
    epsilon = prv_epsilon()
    private_world(world, workload(epsilon=epsilon, records=2))
    world.vote_all(world.clients["hoster"].set_runtime_option("dp", "telemetry", enable=True))
    if loss_voted:
        world.vote_all(world.clients["hoster"].set_runtime_option("dp", "loss_telemetry", enable=True))

    outcome = world.runtime().run("dp")

    assert outcome.exit_codes == {"dp-trainer": 0} and outcome.sealed == ["dp-out"]
    download_asset(world.parties["consumer"], "datasink", "dp-out", tmp_path / "got")
    job = json.loads((tmp_path / "got" / "job.json").read_text())
    assert job["epsilon"] == 3.0 and job["join"]["max_rows_per_key"] == 1
    assert job["mounts"] == {"texts": "/mnt/remote/texts", "labels": "/mnt/remote/labels"}
    assert (tmp_path / "got" / "texts.txt").read_text() == "texts rows"  # the pinned upload, decrypted
    assert (tmp_path / "got" / "loss.txt").read_text() == ("1" if loss_voted else "unset")

    types = [event["type"] for event in world.events("dp")]
    assert types.index("privacy_reserved") < types.index("keys_released")
    assert [e["application"] for e in _events(world, "privacy_reservation")] == ["dp-trainer"]
    (recorded,) = _events(world, "privacy_recorded")
    assert recorded["epsilonRecomputed"] == pytest.approx(epsilon, rel=1e-3)
    (duplicate,) = _events(world, "privacy_record_refused")
    assert "a run reports its privacy record once" in duplicate["reason"]

    telemetry = _telemetry(world)
    assert all(record.get("event") != "privacy_record" for record in telemetry)  # it went to the ledger
    assert any(record.get("examples_per_s") == 10.0 for record in telemetry)  # the step without loss
    assert any("loss" in record for record in telemetry) is loss_voted

    texts = next(d for d in world.clients["provider"].privacy_datasets() if d["name"] == "texts")
    assert texts["spent"] == pytest.approx(epsilon, rel=1e-3) and texts["reserved"] == pytest.approx(0.0)


def test_a_privacy_record_governance_refuses_keeps_the_model_in(world, tmp_path) -> None:
    private_world(world, workload(epsilon=prv_epsilon() / 2))  # claims half of what it spent

    outcome = world.runtime().run("dp")

    assert outcome.exit_codes == {"dp-trainer": 0} and outcome.sealed == []
    (refused,) = _events(world, "privacy_record_refused")
    assert "refused" in refused["reason"]
    (withheld,) = [e for e in _events(world, "seal_refused") if e["datasink"] == "dp-out"]
    assert "has no privacy record accepted by governance" in withheld["reason"]
    with pytest.raises(NotFoundError):
        download_asset(world.parties["consumer"], "datasink", "dp-out", tmp_path / "got")
    texts = next(d for d in world.clients["provider"].privacy_datasets() if d["name"] == "texts")
    assert texts["reserved"] == pytest.approx(3.0)  # the whole reservation stays charged


def test_a_run_the_budget_cannot_cover_gets_no_key(world) -> None:
    private_world(world, workload(epsilon=prv_epsilon()))
    world.clients["provider"].lower_privacy_budget("texts", 2.0)

    with pytest.raises(AccessDeniedError, match=r"run needs epsilon 3\.00 of dataset 'texts' but 2\.00 of 2\.00"):
        world.runtime().run("dp")

    types = [event["type"] for event in world.events("dp")]
    assert "key_released" not in types and "keys_released" not in types and "running" not in types
    (refused,) = _events(world, "privacy_refused")
    assert refused["dataset"] == "texts" and refused["left"] == pytest.approx(2.0) and refused["needed"] == 3.0
    (noted,) = _events(world, "privacy_reservation_refused")
    assert "dataset 'texts'" in noted["reason"]


def test_an_upload_swapped_after_the_vote_is_refused_before_anything_is_decrypted(world, monkeypatch) -> None:
    private_world(world, workload(epsilon=prv_epsilon()))
    swapped = world.root / "swapped"
    swapped.mkdir()
    (swapped / "train.parquet").write_text("other rows")
    upload_datasource(world.parties["provider"], "texts", swapped)  # after the contract was accepted
    decrypted: list[str] = []
    real_download = download_folder

    def recording_download(*args: Any, **kwargs: Any) -> Any:  # the real download, with a note of each call
        decrypted.append(kwargs["label"])
        return real_download(*args, **kwargs)

    monkeypatch.setattr(local, "download_folder", recording_download)

    with pytest.raises(IntegrityError, match="datasource 'texts' differs from the upload pinned in the contract"):
        world.runtime().run("dp")

    assert decrypted == []
    types = [event["type"] for event in world.events("dp")]
    assert "privacy_reserved" not in types and "keys_released" not in types and "key_released" not in types
    (failed,) = _events(world, "failed")
    assert "the owner re-uploads and the contract is voted again" in failed["reason"]
    assert not any((world.runtime_state / "mounts").iterdir())


def test_no_telemetry_option_still_records_privacy_but_forwards_nothing(world) -> None:
    private_world(world, workload(epsilon=prv_epsilon()))

    outcome = world.runtime().run("dp")

    assert outcome.sealed == ["dp-out"]
    assert _telemetry(world) == []
    assert len(_events(world, "privacy_recorded")) == 1


def test_a_telemetry_flood_never_pushes_the_privacy_record_out(tmp_path) -> None:
    """The record is claimed on the reader thread before the bounded queue, which drops the oldest."""
    telemetry = tmp_path / "telemetry.jsonl"
    flood = [json.dumps({"event": "step", "step": n}) for n in range(5 * local.TELEMETRY_QUEUE)]
    record = json.dumps({"event": "privacy_record", "epsilon": 1.0})
    telemetry.write_text("\n".join([*flood, record, *flood]) + "\n")
    claimed: list[dict[str, Any]] = []
    forwarded: list[dict[str, Any]] = []

    def claim(item: dict[str, Any]) -> bool:
        if item.get("event") != "privacy_record":
            return False
        claimed.append(item)
        return True

    forwarder = local.TelemetryForwarder(
        local._TelemetryTail(telemetry), forward=forwarded.append, claim=claim, keep=lambda item: True
    ).start()
    forwarder.stop()

    assert claimed == [{"event": "privacy_record", "epsilon": 1.0}]
    assert forwarder.dropped > 0 and all(item.get("event") == "step" for item in forwarded)
