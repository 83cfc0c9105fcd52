"""core.ml.datasets: the vendored rotten_tomatoes and local dataset folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import IntegrityError, InvalidInputError, NotFoundError
from core.ml import datasets as ml_datasets


def test_vendored_rotten_tomatoes_has_the_hub_split_sizes_and_labels() -> None:
    dataset = ml_datasets.load("rotten_tomatoes")
    assert {name: len(part) for name, part in dataset.items()} == {"train": 8530, "validation": 1066, "test": 1066}
    assert dataset["train"].features["label"].names == ["neg", "pos"]
    test = ml_datasets.load_split("rotten_tomatoes", "test")
    assert sum(test.labels) == 533 and all(isinstance(t, str) and t for t in test.texts)


def test_vendored_files_match_their_checksums_including_raw() -> None:
    folder = ml_datasets.VENDORED_DIR / "rotten_tomatoes"
    listed = {line.split()[1] for line in (folder / "SHA256SUMS").read_text().splitlines() if line}
    assert {"raw/rt-polarity.pos", "raw/rt-polarity.neg", "test.parquet"} <= listed
    ml_datasets.verify_checksums(folder)


@pytest.fixture()
def vendored_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "rt"
    shutil.copytree(ml_datasets.VENDORED_DIR / "rotten_tomatoes", copy)
    for path in copy.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return copy


def test_an_altered_file_is_refused(vendored_copy: Path) -> None:
    data = bytearray((vendored_copy / "test.parquet").read_bytes())
    data[100] ^= 0xFF
    (vendored_copy / "test.parquet").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="test.parquet.*does not match"):
        ml_datasets.load(vendored_copy)


def test_a_missing_listed_file_is_refused(vendored_copy: Path) -> None:
    (vendored_copy / "raw" / "rt-polarity.neg").unlink()
    with pytest.raises(IntegrityError, match="rt-polarity.neg.*missing"):
        ml_datasets.load(vendored_copy)


def test_a_plain_parquet_folder_and_a_single_file_load(tmp_path: Path) -> None:
    table = pa.table({"text": ["good", "bad"], "label": [1, 0]})
    pq.write_table(table, tmp_path / "test.parquet")
    assert len(ml_datasets.load(tmp_path)["test"]) == 2
    assert ml_datasets.load_split(tmp_path / "test.parquet", "test").labels == [1, 0]


def test_a_save_to_disk_folder_loads(tmp_path: Path) -> None:
    import datasets

    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": ["fine"], "label": [1]})}).save_to_disk(
        str(tmp_path / "saved")
    )
    assert ml_datasets.load_split(tmp_path / "saved", "test").texts == ["fine"]


def test_a_split_without_a_text_column_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"sentence": ["good"], "label": [1]}), tmp_path / "test.parquet")
    with pytest.raises(InvalidInputError, match="lacks column.*text"):
        ml_datasets.load(tmp_path)


def test_a_non_parquet_file_and_an_empty_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("text,label\n")
    with pytest.raises(InvalidInputError, match="not a parquet file"):
        ml_datasets.load(tmp_path / "data.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no train/validation/test"):
        ml_datasets.load(tmp_path / "empty")


def test_a_damaged_parquet_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "test.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InvalidInputError, match="not readable parquet"):
        ml_datasets.load(tmp_path)


def test_unknown_names_and_splits_say_what_exists() -> None:
    with pytest.raises(NotFoundError, match="neither a vendored dataset"):
        ml_datasets.load("imdb-not-vendored")
    with pytest.raises(NotFoundError, match="split 'dev'.*train, validation, test"):
        ml_datasets.load_split("rotten_tomatoes", "dev")
    with pytest.raises(InvalidInputError, match="source 'ftp'"):
        ml_datasets.load("rotten_tomatoes", source="ftp")


def test_the_hub_loader_fails_clearly_when_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(NotFoundError, match="could not be loaded from the Hugging Face hub"):
        ml_datasets.load("rotten_tomatoes", source="hub")
