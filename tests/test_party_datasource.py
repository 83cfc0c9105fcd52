"""A party's workspace operations at core level (what the CLI and the console both call)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.config.party import add_data_asset, init_party, party_fragment
from core.datasource import download_asset, list_assets, upload_datasource
from core.errors import ConflictError, IntegrityError, NotFoundError
from core.storage.locator import local_store_spec
from core.workspace import Workspace


@pytest.fixture
def consumer(tmp_path: Path) -> Workspace:
    workspace = init_party(tmp_path / "consumer", "consumer")
    add_data_asset(workspace, "datasource", "training-data")
    return workspace


def test_round_trip_and_list(consumer: Workspace, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(100_000))
    [before] = list_assets(consumer, "datasource")
    assert not before.uploaded and before.location.endswith("/store/training-data")
    upload_datasource(consumer, "training-data", data)
    [after] = list_assets(consumer, "datasource")
    assert after.uploaded and after.files == 1 and after.plaintext_bytes == 100_000
    download_asset(consumer, "datasource", "training-data", tmp_path / "out")
    assert (tmp_path / "out" / "a.bin").read_bytes() == (data / "a.bin").read_bytes()


def test_wrong_workspace(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no workspace at"):
        Workspace.open(tmp_path / "nowhere")
    init_party(tmp_path / "x", "consumer")
    with pytest.raises(ConflictError, match="already exists"):
        init_party(tmp_path / "x", "consumer")


def test_unknown_datasource(consumer: Workspace, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="datasource 'nope' is not in this workspace's config"):
        upload_datasource(consumer, "nope", tmp_path)
    with pytest.raises(NotFoundError, match="datasink 'training-data'"):
        download_asset(consumer, "datasink", "training-data", tmp_path / "out")


def test_missing_folder(consumer: Workspace, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="dataset folder .* does not exist"):
        upload_datasource(consumer, "training-data", tmp_path / "missing")


def test_a_party_with_the_wrong_key_gets_nothing(consumer: Workspace, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"secret rows")
    upload_datasource(consumer, "training-data", data)
    thief = init_party(tmp_path / "thief", "thief")
    add_data_asset(thief, "datasource", "training-data", local_store_spec(consumer.store_dir))
    assert party_fragment(thief).datasource("training-data").store.path == str(consumer.store_dir)
    with pytest.raises(IntegrityError, match="wrong key"):
        download_asset(thief, "datasource", "training-data", tmp_path / "stolen")
    assert not (tmp_path / "stolen" / "a.bin").exists()
