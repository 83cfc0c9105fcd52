"""A private training run on the Azure path: `python -m core.runtime.sidecar` with the environment
the ARM template gives it, data and datasink in azurite, the workload running the template's own
wrapped command and environment (in bubblewrap, the group's volumes bound where ACI mounts them),
against a real loopback governance service and key service (``VirtualKeyRelease``; no live Azure).

What the local runtime does for a private run, the sidecar must do too, through the same code
(``core.runtime.private_training``): reserve before any key, route the one ``privacy_record`` to
governance (which recomputes epsilon), and drop loss unless every member voted ``loss_telemetry``.
The vote is read from governance and reaches the workload through the wrapper (a template cannot
carry it: it is measured before the vote)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.config.fragment import AzureBlobStoreSpec, PrivacyBudget
from core.config.party import add_application, add_data_asset
from core.datasource import download_asset, upload_datasource
from core.governance import launcher as governance_launcher
from core.runtime.aci import (
    LOSS_TELEMETRY_OFF_FILE,
    LOSS_TELEMETRY_ON_FILE,
    READY_FILE,
    RUNTIME_SIDECAR_NAME,
    WAIT_FOR_DATA,
    aci_template,
    container_group,
)
from core.runtime.deployment import LOSS_TELEMETRY_ENV, PRIVATE_TRAINING_ENV, RUN_DIR
from core.runtime.sidecar import sidecar_environment, write_control_file
from tests.azurite import Azurite
from tests.runtime_world import World

pytest.importorskip("opacus")
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")

ROOT = Path(__file__).resolve().parents[1]
CS_VAR = "CLEANROOM_TEST_PRIVATE_SIDECAR_CS"
UNIT = "person_id"
SIGMA, SAMPLE_RATE, STEPS, DELTA = 1.1, 0.01, 20, 1e-5


def prv_epsilon() -> float:
    from opacus.accountants import PRVAccountant

    accountant = PRVAccountant()
    accountant.history = [(SIGMA, SAMPLE_RATE, STEPS)]
    return float(accountant.get_epsilon(DELTA))


def workload_script() -> str:
    """What the DP trainer reports, and what it was told: the loss flag is written to the sink.
    It sends its privacy record twice (the first one stands), and one record with a ``category``
    key, which must stay telemetry data."""
    record = {
        "event": "privacy_record",
        "noise_multiplier": SIGMA,
        "sample_rate": SAMPLE_RATE,
        "steps": STEPS,
        "delta": DELTA,
        "accountant": "prv",
        "epsilon": prv_epsilon(),
        "epsilon_rdp": prv_epsilon() * 1.1,
        "rows": 1200,
    }
    lines = [
        {"event": "step", "step": 1, "loss": 0.69},
        {"event": "step", "step": 1, "examples_per_s": 10.0},
        {"event": "step", "step": 2, "category": "throughput", "examples_per_s": 11.0},
        record,
        record,
    ]
    return (
        "import json, os, pathlib\n"
        "out = pathlib.Path('/mnt/remote/output')\n"
        f"(out / 'loss.txt').write_text(os.environ.get({LOSS_TELEMETRY_ENV!r}, 'unset'))\n"
        "(out / 'texts.txt').write_text(open('/mnt/remote/texts/train.parquet').read())\n"
        f"lines = {json.dumps(lines)!r}\n"
        "with open(os.environ['CLEANROOM_TELEMETRY_FILE'], 'a') as telemetry:\n"
        "    for line in json.loads(lines):\n"
        "        telemetry.write(json.dumps(line) + '\\n')\n"
    )


def training() -> dict[str, Any]:
    return {
        "epsilon": 3.0,
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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, azurite_server: Azurite):
    """provider's budgeted "texts" and consumer's budgeted "labels" and sink "dp-out", all in
    azurite; the hoster's "dp-trainer" image joins them. Uploads come before the contracts, so
    both sources are pinned."""
    os.environ[CS_VAR] = azurite_server.connection_string
    world = World.create(tmp_path_factory.mktemp("azure-private"))
    try:
        store = AzureBlobStoreSpec(connection_string_env=CS_VAR)
        budget = PrivacyBudget(epsilon_total=10.0, delta=DELTA, privacy_unit=UNIT)
        for persona, name in (("provider", "texts"), ("consumer", "labels")):
            workspace = world.parties[persona]
            add_data_asset(workspace, "datasource", name, store, privacy=budget)
            folder = world.root / f"{name}-data"
            folder.mkdir()
            (folder / "train.parquet").write_text(f"{name} rows")
            upload_datasource(workspace, name, folder)
        add_data_asset(world.parties["consumer"], "datasink", "dp-out", store)
        add_application(
            world.parties["hoster"],
            name="dp-trainer",
            image="acr.azurecr.io/dp-trainer:1",
            command=[sys.executable, "-c", workload_script()],
            mounts=[
                {"source": "texts", "target": "/mnt/remote/texts"},
                {"source": "labels", "target": "/mnt/remote/labels"},
                {"source": "dp-out", "target": "/mnt/remote/output"},
            ],
            private_training=training(),
        )
        yield world
    finally:
        world.close()
        os.environ.pop(CS_VAR, None)


def _sidecar_env(world: World, spec: dict[str, Any], mount_root: Path) -> dict[str, str]:
    """The sidecar's environment as ACI gets it (from the SDK model of the template), with the
    embedded default's key release in place of MAA + Key Vault."""
    info = governance_launcher.info(world.governance_state)
    template = aci_template(
        spec,
        sidecar_env=sidecar_environment(
            governance_url=info.endpoint, governance_cert_pem=info.service_cert_pem, maa_endpoint=None, kek_vaults={}
        ),
    )
    _name, group = container_group(template, location="westeurope", secrets={CS_VAR: os.environ[CS_VAR]})
    sidecar = group.containers[-1]
    assert sidecar.name == RUNTIME_SIDECAR_NAME
    env = {str(e.name): str(e.value or e.secure_value) for e in sidecar.environment_variables or []}
    assert not any("LOSS" in name for name in env)  # the vote is not the template's to carry
    env.update(
        CLEANROOM_KEY_RELEASE="virtual",
        CLEANROOM_RUNTIME_STATE_DIR=str(world.runtime_state),
        CLEANROOM_KEY_SERVICE_STATE_DIR=str(world.key_state),
        CLEANROOM_MOUNT_ROOT=str(mount_root),
    )
    host = {k: v for k, v in os.environ.items() if k != CS_VAR}
    return {**host, "PYTHONPATH": str(ROOT), **env}


def _bwrap(binds: list[str], command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # its own PID namespace, as a container has: killing bwrap ends every process of the workload
    bwrap = [str(shutil.which("bwrap")), "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/"]
    bwrap += ["--dev", "/dev", "--proc", "/proc"]
    return subprocess.Popen(
        [*bwrap, "--tmpfs", "/mnt", "--tmpfs", "/run", *binds, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _workload(template: dict[str, Any], mount_root: Path) -> subprocess.Popen[bytes]:
    """The template's workload container: its exact command and environment (nothing of the
    test's own), the group's volumes bound at its mount paths."""
    container = template["resources"][0]["properties"]["containers"][0]["properties"]
    binds: list[str] = []
    for mount in container["volumeMounts"]:
        (mount_root / mount["name"]).mkdir(parents=True, exist_ok=True)
        binds += ["--ro-bind" if mount["readOnly"] else "--bind", str(mount_root / mount["name"]), mount["mountPath"]]
    env = {"PATH": os.environ["PATH"], **{e["name"]: e["value"] for e in container["environmentVariables"]}}
    return _bwrap(binds, container["command"], env)


def _run(world: World, contract_id: str, tmp_path: Path, *, loss_voted: bool) -> dict[str, Any]:
    spec = world.accept_contract(contract_id)
    world.vote_all(world.clients["hoster"].set_runtime_option(contract_id, "telemetry", enable=True))
    if loss_voted:
        world.vote_all(world.clients["hoster"].set_runtime_option(contract_id, "loss_telemetry", enable=True))
    mount_root = tmp_path / "group"
    workload = _workload(aci_template(spec), mount_root)  # starts first, as in ACI: it waits for its data
    sidecar = subprocess.run(
        [sys.executable, "-m", "core.runtime.sidecar"],
        env=_sidecar_env(world, spec, mount_root),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    output = workload.communicate(timeout=60)[0]
    assert sidecar.returncode == 0, sidecar.stderr
    assert workload.returncode == 0, output
    return {"events": world.events(contract_id), "run_dir": mount_root / "cleanroom-run"}


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event["data"] for event in events if event["type"] == kind]


@pytest.mark.parametrize("loss_voted", [False, True], ids=["loss-not-voted", "loss-voted"])
def test_the_sidecar_records_the_privacy_record_and_drops_loss_unless_voted(world, tmp_path, loss_voted) -> None:
    contract_id = f"dp-azure-{'loss' if loss_voted else 'noloss'}"
    spent_before = {d["name"]: d["spent"] for d in world.clients["provider"].privacy_datasets()}.get("texts", 0.0)
    run = _run(world, contract_id, tmp_path, loss_voted=loss_voted)
    events = run["events"]

    types = [event["type"] for event in events]
    assert types.index("privacy_reservation") < types.index("keys_released")  # reserved before any key
    (recorded,) = _of(events, "privacy_recorded")
    assert recorded["epsilonRecomputed"] == pytest.approx(prv_epsilon(), rel=1e-3)
    (duplicate,) = _of(events, "privacy_record_refused")
    assert "a run reports its privacy record once" in duplicate["reason"]
    texts = next(d for d in world.clients["provider"].privacy_datasets() if d["name"] == "texts")
    assert texts["spent"] - spent_before == pytest.approx(prv_epsilon(), rel=1e-3)

    telemetry = _of(events, "telemetry")
    assert all(record.get("event") != "privacy_record" for record in telemetry)  # it went to the ledger
    assert any(record.get("examples_per_s") == 10.0 for record in telemetry)  # the step without loss
    assert any(record.get("category") == "throughput" for record in telemetry)  # data, not a keyword
    assert any("loss" in record for record in telemetry) is loss_voted

    # what governance said reached the workload through the wrapper, and only that
    marker = LOSS_TELEMETRY_ON_FILE if loss_voted else LOSS_TELEMETRY_OFF_FILE
    assert sorted(p.name for p in run["run_dir"].glob("loss-telemetry-*")) == [marker]
    assert "sealed" in types
    download_asset(world.parties["consumer"], "datasink", "dp-out", tmp_path / "got")
    assert (tmp_path / "got" / "loss.txt").read_text() == ("1" if loss_voted else "unset")
    assert (tmp_path / "got" / "texts.txt").read_text() == "texts rows"  # the pinned upload, decrypted


# -- the wrapper alone: what it tells a workload about loss ----------------------------------------
def _told(tmp_path: Path, markers: list[str], *, private: bool) -> str:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in [*markers, READY_FILE]:
        write_control_file(run_dir, name, "1")
    env = {"PATH": os.environ["PATH"], **({PRIVATE_TRAINING_ENV: "{}"} if private else {})}
    command = ["/bin/sh", "-c", WAIT_FOR_DATA, "app", "sh", "-c", f'echo "${{{LOSS_TELEMETRY_ENV}:-unset}}"']
    process = _bwrap(["--bind", str(run_dir), RUN_DIR], command, env)
    output = process.communicate(timeout=30)[0].decode().strip()
    assert process.returncode == 0, output
    return output


def test_the_wrapper_tells_a_private_workload_loss_only_when_the_sidecar_said_on(tmp_path: Path) -> None:
    assert _told(tmp_path, [LOSS_TELEMETRY_ON_FILE], private=True) == "1"


@pytest.mark.parametrize(
    ("markers", "private"),
    [
        ([LOSS_TELEMETRY_OFF_FILE, LOSS_TELEMETRY_ON_FILE], True),  # "on" planted beside the sidecar's "off"
        ([], True),  # no word from the sidecar: off
        ([LOSS_TELEMETRY_ON_FILE], False),  # not a private training workload: as the local runtime
    ],
    ids=["planted-on-beside-off", "no-marker", "not-private"],
)
def test_the_wrapper_keeps_loss_off_otherwise(tmp_path: Path, markers: list[str], private: bool) -> None:
    assert _told(tmp_path, markers, private=private) == "unset"
