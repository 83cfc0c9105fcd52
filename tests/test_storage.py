"""The BlobStore protocol, against every backend in the ``blob_store`` fixture."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from core.errors import ConflictError, InvalidInputError, NotFoundError
from core.storage.blobstore import BlobStore
from core.storage.local import LocalBlobStore


def test_implements_the_protocol(blob_store: BlobStore) -> None:
    assert isinstance(blob_store, BlobStore)
    assert blob_store.describe()


def test_put_read_list_delete(blob_store: BlobStore, container: str) -> None:
    assert not blob_store.container_exists(container)
    assert list(blob_store.list(container)) == []
    blob_store.ensure_container(container)
    assert blob_store.container_exists(container)
    payload = os.urandom(3 * 1024 * 1024 + 5)
    info = blob_store.put(container, "train/part-0.bin", io.BytesIO(payload), length=len(payload))
    blob_store.put(container, "b.txt", io.BytesIO(b"hello"))
    assert info.size == len(payload) and info.etag
    with blob_store.open_read(container, "train/part-0.bin") as handle:
        assert handle.read() == payload
    names = sorted(item.name for item in blob_store.list(container))
    assert names == ["b.txt", "train/part-0.bin"]
    assert [item.name for item in blob_store.list(container, "train/")] == ["train/part-0.bin"]
    blob_store.delete(container, "train/part-0.bin")
    with pytest.raises(NotFoundError, match="part-0.bin"):
        blob_store.open_read(container, "train/part-0.bin")
    assert [item.name for item in blob_store.list(container)] == ["b.txt"]


def test_overwrite_changes_the_etag_and_if_match_guards_it(blob_store: BlobStore, container: str) -> None:
    blob_store.ensure_container(container)
    first = blob_store.put(container, "m", io.BytesIO(b"one"))
    second = blob_store.put(container, "m", io.BytesIO(b"two"), if_match=first.etag)
    assert second.etag != first.etag
    with pytest.raises(ConflictError, match="changed since it was read"):
        blob_store.put(container, "m", io.BytesIO(b"three"), if_match=first.etag)
    with blob_store.open_read(container, "m") as handle:
        assert handle.read() == b"two"


def test_length_mismatch_stores_nothing(blob_store: BlobStore, container: str) -> None:
    blob_store.ensure_container(container)
    with pytest.raises(InvalidInputError):
        blob_store.put(container, "short", io.BytesIO(b"abc"), length=10)
    assert [item.name for item in blob_store.list(container)] == []


@pytest.mark.parametrize("name", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_names_cannot_escape_the_container(tmp_path: Path, name: str) -> None:
    store = LocalBlobStore(tmp_path / "store")
    store.ensure_container("ds-one")
    with pytest.raises(InvalidInputError):
        store.put("ds-one", name, io.BytesIO(b"x"))
    assert not (tmp_path / "escape").exists()


def test_local_store_leaves_no_partial_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    store.ensure_container("ds-one")

    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
            raise OSError("disk went away")

    with pytest.raises(OSError):
        store.put("ds-one", "x", Failing())
    assert list(store.list("ds-one")) == []
    assert [p.name for p in (tmp_path / "store" / ".partial").iterdir() if p.suffix == ".tmp"] == []
