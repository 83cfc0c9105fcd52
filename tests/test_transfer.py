"""Datasource upload/download through the BlobStore protocol: byte for byte, and every attack caught."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from core.crypto.envelope import HEADER_SIZE, TAG_SIZE
from core.errors import IntegrityError, InvalidInputError, NotFoundError
from core.storage.blobstore import BlobStore
from core.storage.transfer import (
    DATA_PREFIX,
    MANIFEST_BLOB,
    TransferStatus,
    download_folder,
    read_manifest,
    upload_folder,
)

CHUNK = 4096
DEK = bytes(range(32))
LABEL = "datasource 'training-data'"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / "train.csv").write_bytes(os.urandom(5 * CHUNK + 123))
    (folder / "nested" / "labels.json").write_bytes(b'{"a": 1}')
    (folder / "nested" / "deeper" / "empty.bin").write_bytes(b"")
    (folder / "exact.bin").write_bytes(os.urandom(2 * CHUNK))
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _upload(store: BlobStore, container: str, folder: Path, **kwargs):  # type: ignore[no-untyped-def]
    return upload_folder(store, container, DEK, folder, label=LABEL, chunk_size=CHUNK, **kwargs)


def _blob(store: BlobStore, container: str, path: str) -> str:
    manifest = read_manifest(store, container, DEK, label=LABEL)
    return next(manifest.blob_name(e) for e in manifest.files if e.path == path)


def _rewrite(store: BlobStore, container: str, name: str, data: bytes) -> None:
    store.put(container, name, io.BytesIO(data))


def _read(store: BlobStore, container: str, name: str) -> bytes:
    with store.open_read(container, name) as handle:
        return handle.read()


def test_round_trip_byte_for_byte_with_progress(
    blob_store: BlobStore, container: str, dataset: Path, tmp_path: Path
) -> None:
    seen: list[TransferStatus] = []
    manifest = _upload(blob_store, container, dataset, progress=seen.append)
    assert seen[-1].bytes_done == seen[-1].bytes_total == sum(len(v) for v in _tree(dataset).values())
    assert [s.bytes_done for s in seen] == sorted(s.bytes_done for s in seen)
    assert len(manifest.files) == 4
    names = {info.name for info in blob_store.list(container)}
    assert MANIFEST_BLOB in names and all(n == MANIFEST_BLOB or n.startswith(DATA_PREFIX) for n in names)
    for info in blob_store.list(container, DATA_PREFIX):
        assert b"train" not in _read(blob_store, container, info.name)[:HEADER_SIZE]  # ciphertext only
    out = tmp_path / "out"
    seen.clear()
    download_folder(blob_store, container, DEK, out, label=LABEL, progress=seen.append)
    assert _tree(out) == _tree(dataset)
    assert seen[-1].bytes_done == seen[-1].bytes_total


def test_reupload_replaces_the_previous_upload(
    blob_store: BlobStore, container: str, dataset: Path, tmp_path: Path
) -> None:
    first = _upload(blob_store, container, dataset)
    (dataset / "train.csv").unlink()
    (dataset / "new.txt").write_bytes(b"new")
    second = _upload(blob_store, container, dataset)
    assert second.upload_id != first.upload_id
    assert all(
        info.name.startswith(f"{DATA_PREFIX}{second.upload_id}/") for info in blob_store.list(container, DATA_PREFIX)
    )
    download_folder(blob_store, container, DEK, tmp_path / "out", label=LABEL)
    assert _tree(tmp_path / "out") == _tree(dataset)


def test_missing_folder_and_empty_folder(blob_store: BlobStore, container: str, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="dataset folder .*nope does not exist"):
        _upload(blob_store, container, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="has no files"):
        _upload(blob_store, container, tmp_path / "empty")


def test_download_before_upload_is_not_found(blob_store: BlobStore, container: str, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="datasource 'training-data' has no uploaded data"):
        download_folder(blob_store, container, DEK, tmp_path / "out", label=LABEL)
    assert not (tmp_path / "out").exists()


def test_wrong_key_writes_nothing(blob_store: BlobStore, container: str, dataset: Path, tmp_path: Path) -> None:
    _upload(blob_store, container, dataset)
    with pytest.raises(IntegrityError, match="manifest of datasource 'training-data'.*wrong key"):
        download_folder(blob_store, container, os.urandom(32), tmp_path / "out", label=LABEL)
    assert not (tmp_path / "out").exists()


def _assert_failing_file_not_written(blob_store: BlobStore, container: str, out: Path, match: str) -> None:
    with pytest.raises(IntegrityError, match=match) as caught:
        download_folder(blob_store, container, DEK, out, label=LABEL)
    assert "\n" not in caught.value.one_line()
    assert not (out / "train.csv").exists()
    assert not [p for p in out.rglob("*") if ".partial" in p.name]


def test_flipped_byte_in_a_stored_chunk(blob_store: BlobStore, container: str, dataset: Path, tmp_path: Path) -> None:
    _upload(blob_store, container, dataset)
    name = _blob(blob_store, container, "train.csv")
    sealed = bytearray(_read(blob_store, container, name))
    sealed[HEADER_SIZE + 2 * (CHUNK + TAG_SIZE) + 17] ^= 0x04
    _rewrite(blob_store, container, name, bytes(sealed))
    _assert_failing_file_not_written(
        blob_store, container, tmp_path / "out", "file 'train.csv': chunk 2 failed authentication"
    )


def test_truncated_blob(blob_store: BlobStore, container: str, dataset: Path, tmp_path: Path) -> None:
    _upload(blob_store, container, dataset)
    name = _blob(blob_store, container, "train.csv")
    sealed = _read(blob_store, container, name)
    _rewrite(blob_store, container, name, sealed[: HEADER_SIZE + 3 * (CHUNK + TAG_SIZE)])
    _assert_failing_file_not_written(
        blob_store, container, tmp_path / "out", "file 'train.csv' is truncated after chunk 2"
    )


def test_swapped_chunks(blob_store: BlobStore, container: str, dataset: Path, tmp_path: Path) -> None:
    _upload(blob_store, container, dataset)
    name = _blob(blob_store, container, "train.csv")
    sealed = _read(blob_store, container, name)
    step = CHUNK + TAG_SIZE
    header, body = sealed[:HEADER_SIZE], sealed[HEADER_SIZE:]
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    chunks[0], chunks[1] = chunks[1], chunks[0]
    _rewrite(blob_store, container, name, header + b"".join(chunks))
    _assert_failing_file_not_written(
        blob_store, container, tmp_path / "out", "file 'train.csv': chunk 0 failed authentication"
    )


def test_blobs_swapped_between_files(blob_store: BlobStore, container: str, dataset: Path, tmp_path: Path) -> None:
    _upload(blob_store, container, dataset)
    train, exact = _blob(blob_store, container, "train.csv"), _blob(blob_store, container, "exact.bin")
    train_bytes, exact_bytes = _read(blob_store, container, train), _read(blob_store, container, exact)
    _rewrite(blob_store, container, train, exact_bytes)
    _rewrite(blob_store, container, exact, train_bytes)
    with pytest.raises(IntegrityError, match="is not the blob its manifest sealed"):
        download_folder(blob_store, container, DEK, tmp_path / "out", label=LABEL)
    assert not (tmp_path / "out" / "train.csv").exists() and not (tmp_path / "out" / "exact.bin").exists()


def test_deleted_blob(blob_store: BlobStore, container: str, dataset: Path, tmp_path: Path) -> None:
    _upload(blob_store, container, dataset)
    blob_store.delete(container, _blob(blob_store, container, "train.csv"))
    _assert_failing_file_not_written(blob_store, container, tmp_path / "out", "file 'train.csv' is missing")
