"""The clean-room runtime end to end: real governance, key service, sandbox and sealing."""

from __future__ import annotations

import pytest

from core.datasource import download_asset
from tests.runtime_world import World

COPY = ("import pathlib; "
        "text = pathlib.Path('/mnt/remote/model/weights.txt').read_text(); "
        "pathlib.Path('/mnt/remote/results/out.txt').write_text(text.upper()); print('done')")


@pytest.fixture()
def world(tmp_path):
    world = World.create(tmp_path)
    yield world
    world.close()


def test_accepted_contract_runs_and_seals_output_to_its_owner(world, tmp_path) -> None:
    world.setup_assets({"weights.txt": "provider secret weights"})
    world.add_app(["python", "-c", COPY])
    world.accept_contract("collab1")
    runtime = world.runtime()
    outcome = runtime.run("collab1")
    assert outcome.exit_codes == {"app": 0}
    assert outcome.sealed == ["results"]
    download_asset(world.parties["consumer"], "datasink", "results", tmp_path / "got")
    assert (tmp_path / "got" / "out.txt").read_text() == "PROVIDER SECRET WEIGHTS"
    types = world.event_types("collab1")
    for expected in ("key_released", "deploying", "attested", "keys_released", "running", "exited", "sealed"):
        assert expected in types, types
    assert not any((world.runtime_state / "mounts").iterdir())
