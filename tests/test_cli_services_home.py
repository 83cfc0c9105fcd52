"""Forgetting CLEANROOM_HOME: the deployment verbs find the services from the workspace's pinned
governance instead of offering a second consortium or calling a running clean room undeployed;
when they cannot, one line says which CLEANROOM_HOME to set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import NotFoundError
from tests.cli_runner import cleanroom
from tests.runtime_world import World

SLEEPER = "import time; print('up', flush=True); time.sleep(600)"


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    world = World.create(tmp_path)
    monkeypatch.setenv("CLEANROOM_HOME", str(tmp_path / "forgotten"))  # not where `cleanroom up` put them
    yield world
    cleanroom("-w", world.parties["hoster"].root, "deployment", "stop", "--contract-id", "collab1")
    world.close()


def test_the_verbs_find_the_services_the_workspace_is_deployed_to(world: World, tmp_path: Path) -> None:
    world.setup_assets({"weights.txt": "w"})
    world.add_app(["python", "-c", SLEEPER])
    world.accept_contract("collab1")
    hoster, consumer = world.parties["hoster"].root, world.parties["consumer"].root

    started = cleanroom("-w", hoster, "deployment", "start", "--contract-id", "collab1", "-o", "json")
    assert started.code == 0, started.stderr
    assert json.loads(started.stdout)["state"] == "running"
    assert f"is deployed to the services in {world.home}" in " ".join(started.stderr.split())

    shown = cleanroom("deployment", "status", "--contract-id", "collab1", "-o", "json", "-w", consumer)
    assert shown.code == 0, shown.stderr
    assert json.loads(shown.stdout)["status"]["state"] == "running"  # not "not deployed on this machine"
    listed = cleanroom("governance", "contract", "list", "-w", consumer, "--query", "[?state=='Accepted'].id")
    assert json.loads(listed.stdout) == ["collab1"]
    proposed = cleanroom("governance", "ca", "propose-enable", "--contract-id", "collab1", "-w", hoster, "-o", "json")
    assert proposed.code == 0, proposed.stderr  # a write verb says what it did, in JSON too
    assert json.loads(proposed.stdout)["proposalState"] == "Open"
    open_ids = cleanroom(
        "-w", consumer, "governance", "proposal", "list", "--query", "[?proposalState=='Open'].proposalId | [0]"
    )
    assert open_ids.stdout.strip() == json.loads(proposed.stdout)["proposalId"]

    stopped = cleanroom("deployment", "stop", "--contract-id", "collab1", "-w", hoster, "-o", "json")
    assert stopped.code == 0, stopped.stderr
    assert json.loads(stopped.stdout)["state"] == "exited"
    assert not (tmp_path / "forgotten").exists()  # nothing was created in the forgotten home


def test_services_that_cannot_be_found_name_the_home_to_set(world: World, tmp_path: Path) -> None:
    hoster = world.parties["hoster"].root
    world.close()  # stopped, and their home is not beside the workspaces: nothing finds it
    for verb in ("start", "status", "stop"):
        refused = cleanroom("-w", hoster, "deployment", verb, "--contract-id", "collab1")
        assert refused.code == NotFoundError.exit_code, refused.stdout
        assert refused.stderr.count("\n") == 1
        assert (
            f"which CLEANROOM_HOME={tmp_path / 'forgotten'} does not run; set CLEANROOM_HOME to the folder "
            "`cleanroom up` used for it" in refused.stderr
        )
        assert "service start" not in refused.stderr


def test_start_without_a_workspace_or_services_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEANROOM_HOME", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    refused = cleanroom("deployment", "start", "--contract-id", "collab1")
    assert refused.code == NotFoundError.exit_code
    assert refused.stderr == (
        f"error: no embedded services in CLEANROOM_HOME={tmp_path / 'empty'}; pass -w WORKSPACE "
        "of a party deployed to them (it finds their home), or set CLEANROOM_HOME to the "
        "folder `cleanroom up` used\n"
    )
