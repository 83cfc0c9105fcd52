"""Scenario storage on Azure Blob: a real contract runs through the local runtime with the
provider's datasource and the consumer's datasink in azurite (the local-folder twin of this
test is ``test_runtime_e2e.test_accepted_contract_runs_and_seals_output_to_its_owner``)."""

from __future__ import annotations

import pytest

from core.config.fragment import AzureBlobStoreSpec
from core.datasource import download_asset
from core.storage.locator import open_store
from tests.azurite import Azurite
from tests.runtime_world import World

CS_VAR = "CLEANROOM_TEST_SCENARIO_CS"
COPY = (
    "import pathlib; "
    "text = pathlib.Path('/mnt/remote/model/weights.txt').read_text(); "
    "pathlib.Path('/mnt/remote/results/out.txt').write_text(text.upper()); print('done')"
)


@pytest.fixture()
def world(tmp_path, azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(CS_VAR, azurite_server.connection_string)
    world = World.create(tmp_path)
    yield world
    world.close()


def test_contract_runs_with_datasource_and_datasink_in_azurite(world: World, tmp_path) -> None:
    store = AzureBlobStoreSpec(connection_string_env=CS_VAR)
    world.setup_assets({"weights.txt": "provider secret weights"}, store=store)
    world.add_app(["python", "-c", COPY])
    world.accept_contract("azure-storage-1")

    outcome = world.runtime().run("azure-storage-1")

    assert outcome.exit_codes == {"app": 0} and outcome.sealed == ["results"]
    download_asset(world.parties["consumer"], "datasink", "results", tmp_path / "got")
    assert (tmp_path / "got" / "out.txt").read_text() == "PROVIDER SECRET WEIGHTS"
    # both assets live in azurite only, sealed: no party's local store folder holds them
    azure = open_store(store)
    for container in ("model", "results"):
        blobs = [blob.name for blob in azure.list(container)]
        assert blobs, container
        for name in blobs:
            with azure.open_read(container, name) as handle:
                assert b"SECRET WEIGHTS" not in handle.read().upper()
    assert not any((world.parties[p].root / "store").exists() for p in ("provider", "consumer"))
    types = world.event_types("azure-storage-1")
    for expected in ("keys_released", "running", "exited", "sealed"):
        assert expected in types, types
