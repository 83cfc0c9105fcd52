"""AzureBlobStore against a real azurite on loopback: blocks, resume, etags, errors."""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from core.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
)
from core.storage.azure_blob import AzureBlobStore, azure_container_name
from core.storage.blobstore import BlobStore
from tests.azurite import Azurite, AzuriteUnavailable, start_azurite

MiB = 1024 * 1024


@pytest.fixture
def store(azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch) -> AzureBlobStore:
    monkeypatch.setenv("CLEANROOM_TEST_AZURE_CS", azurite_server.connection_string)
    # Small blocks so "large" blobs stay cheap on a shared 2-core machine.
    return AzureBlobStore.from_connection_string_env("CLEANROOM_TEST_AZURE_CS", block_size=1 * MiB, concurrency=4)


@pytest.fixture
def container(store: AzureBlobStore) -> str:
    name = f"ds-{uuid.uuid4().hex[:12]}"
    store.ensure_container(name)
    return name


def _payload(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes (distinct blocks, so block ids really differ)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 128
        counter += 1
    return bytes(out[:size])


class FailingSource(io.RawIOBase):
    """A source that dies after ``limit`` bytes, like a disk error or a killed pipe mid-upload."""

    def __init__(self, data: bytes, limit: int) -> None:
        self._data = io.BytesIO(data)
        self._limit = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._data.tell() >= self._limit:
            raise OSError("source went away mid-upload")
        view = memoryview(buffer)[: self._limit - self._data.tell()]
        return self._data.readinto(view)


def test_store_satisfies_the_blobstore_protocol(store: AzureBlobStore) -> None:
    assert isinstance(store, BlobStore)
    assert store.describe().startswith("http://127.0.0.1:")


def test_put_read_list_delete_round_trip(store: AzureBlobStore, container: str) -> None:
    info = store.put(container, "dir/a.bin", io.BytesIO(b"alpha"), length=5)
    store.put(container, "dir/b.bin", io.BytesIO(b"bravo!"))
    store.put(container, "other.txt", io.BytesIO(b""))
    assert (info.name, info.size) == ("dir/a.bin", 5) and info.etag
    with store.open_read(container, "dir/a.bin") as reader:
        assert reader.read() == b"alpha"
    listed = {b.name: b for b in store.list(container)}
    assert {n: b.size for n, b in listed.items()} == {"dir/a.bin": 5, "dir/b.bin": 6, "other.txt": 0}
    assert listed["dir/a.bin"].etag == info.etag
    assert [b.name for b in store.list(container, prefix="dir/")] == ["dir/a.bin", "dir/b.bin"]
    store.delete(container, "dir/a.bin")
    assert [b.name for b in store.list(container)] == ["dir/b.bin", "other.txt"]
    assert store.container_exists(container)
    assert not store.container_exists(f"absent-{uuid.uuid4().hex[:8]}")


def test_ensure_container_is_idempotent(store: AzureBlobStore, container: str) -> None:
    store.ensure_container(container)
    assert store.container_exists(container)


def test_large_blob_goes_up_as_concurrent_blocks(store: AzureBlobStore, container: str) -> None:
    data = _payload(21 * MiB + 123)
    outcome = store.put_resumable(container, "model/weights.bin", io.BytesIO(data))
    assert (outcome.blocks_staged, outcome.blocks_reused) == (22, 0)
    assert outcome.info.size == len(data)
    with store.open_read(container, "model/weights.bin") as reader:
        assert hashlib.sha256(reader.read()).digest() == hashlib.sha256(data).digest()
    assert [(b.name, b.size) for b in store.list(container)] == [("model/weights.bin", len(data))]


def test_progress_callback_counts_every_byte(store: AzureBlobStore, container: str) -> None:
    data = _payload(10 * MiB)
    seen: list[int] = []
    store.put_resumable(container, "p.bin", io.BytesIO(data), on_bytes=seen.append)
    assert sum(seen) == len(data)


def test_interrupted_upload_is_invisible_and_resumes(store: AzureBlobStore, container: str) -> None:
    data = _payload(16 * MiB, seed=1)
    with pytest.raises(OSError, match="mid-upload"):
        store.put(container, "train.bin", FailingSource(data, limit=11 * MiB + 10))
    # Readers see nothing: only uncommitted blocks exist.
    with pytest.raises(NotFoundError):
        store.open_read(container, "train.bin")
    assert list(store.list(container)) == []

    outcome = store.put_resumable(container, "train.bin", io.BytesIO(data))
    assert outcome.blocks_reused >= 8, "blocks that arrived before the failure are re-used"
    assert outcome.blocks_reused + outcome.blocks_staged == 16
    with store.open_read(container, "train.bin") as reader:
        assert reader.read() == data


def test_interrupted_overwrite_keeps_the_old_version_and_retry_with_new_bytes_is_clean(
    store: AzureBlobStore, container: str
) -> None:
    old = _payload(12 * MiB, seed=2)
    store.put(container, "model.bin", io.BytesIO(old))
    new = _payload(12 * MiB, seed=3)
    with pytest.raises(OSError):
        store.put(container, "model.bin", FailingSource(new, limit=9 * MiB))
    with store.open_read(container, "model.bin") as reader:
        assert reader.read() == old
    changed = _payload(12 * MiB, seed=4)
    outcome = store.put_resumable(container, "model.bin", io.BytesIO(changed))
    assert outcome.blocks_reused == 0
    with store.open_read(container, "model.bin") as reader:
        assert reader.read() == changed


def test_etag_guards_overwrites(store: AzureBlobStore, container: str) -> None:
    first = store.put(container, "cfg.json", io.BytesIO(b"{}"))
    second = store.put(container, "cfg.json", io.BytesIO(b'{"v":2}'), if_match=first.etag)
    assert second.etag != first.etag
    with pytest.raises(ConflictError) as caught:
        store.put(container, "cfg.json", io.BytesIO(b'{"v":3}'), if_match=first.etag)
    message = str(caught.value)
    assert "\n" not in message and "cfg.json" in message and "retry" in message
    with store.open_read(container, "cfg.json") as reader:
        assert reader.read() == b'{"v":2}'


def test_etag_guard_on_a_deleted_blob_is_a_conflict(store: AzureBlobStore, container: str) -> None:
    info = store.put(container, "gone.bin", io.BytesIO(b"x"))
    store.delete(container, "gone.bin")
    with pytest.raises(ConflictError):
        store.put(container, "gone.bin", io.BytesIO(b"y"), if_match=info.etag)


class OverwrittenWhileRead(io.RawIOBase):
    """Source whose first read lets another writer replace the blob: the commit must refuse."""

    def __init__(self, data: bytes, rival: callable) -> None:  # type: ignore[valid-type]
        self._data = io.BytesIO(data)
        self._rival = rival

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._rival is not None:
            self._rival()
            self._rival = None
        return self._data.readinto(buffer)


def test_etag_is_checked_at_commit_of_a_block_upload(store: AzureBlobStore, container: str) -> None:
    base = store.put(container, "w.bin", io.BytesIO(b"base"))

    def rival() -> None:
        store.put(container, "w.bin", io.BytesIO(b"rival wins"))

    source = OverwrittenWhileRead(_payload(10 * MiB), rival)
    with pytest.raises(ConflictError, match="etag"):
        store.put(container, "w.bin", source, if_match=base.etag)
    with store.open_read(container, "w.bin") as reader:
        assert reader.read() == b"rival wins"


def test_missing_blob_and_container_are_not_found(store: AzureBlobStore, container: str) -> None:
    with pytest.raises(NotFoundError, match="blob '.*/nope.bin' does not exist"):
        store.open_read(container, "nope.bin")
    with pytest.raises(NotFoundError, match="nope.bin"):
        store.delete(container, "nope.bin")
    with pytest.raises(NotFoundError, match="nope.bin"):
        store.stat(container, "nope.bin")
    assert list(store.list("no-such-ds")) == [], "like the local store: never created = empty"


def test_stat_reports_size_and_etag(store: AzureBlobStore, container: str) -> None:
    info = store.put(container, "s.bin", io.BytesIO(b"12345"))
    assert store.stat(container, "s.bin") == info


@pytest.mark.parametrize("size", [10, 12 * MiB])
def test_length_mismatch_commits_nothing(store: AzureBlobStore, container: str, size: int) -> None:
    with pytest.raises(InvalidInputError, match="source gave .* bytes, expected"):
        store.put(container, "short.bin", io.BytesIO(_payload(size)), length=size + 1)
    assert list(store.list(container)) == []


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "x" * 1025])
def test_bad_blob_names_are_refused(store: AzureBlobStore, container: str, name: str) -> None:
    with pytest.raises(InvalidInputError, match="not a relative POSIX path"):
        store.put(container, name, io.BytesIO(b"x"))


def test_datasource_names_map_to_valid_stable_containers(store: AzureBlobStore) -> None:
    names = ["Model_Weights", "ab", "a--b", "x" * 80, "___", "rotten_tomatoes.v2"]
    mapped = [azure_container_name(n) for n in names]
    assert all(re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}", m) for m in mapped)
    assert len(set(mapped)) == len(names)
    assert azure_container_name("model-weights") == "model-weights"
    assert mapped == [azure_container_name(n) for n in names]
    store.ensure_container("Model_Weights")
    store.put("Model_Weights", "w", io.BytesIO(b"1"))
    assert [b.name for b in store.list("Model_Weights")] == ["w"]


def test_connection_string_env_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEANROOM_NO_SUCH_VAR", raising=False)
    with pytest.raises(InvalidInputError, match="CLEANROOM_NO_SUCH_VAR .* is not set"):
        AzureBlobStore.from_connection_string_env("CLEANROOM_NO_SUCH_VAR")
    monkeypatch.setenv("CLEANROOM_BAD_CS", "not a connection string")
    with pytest.raises(InvalidInputError, match="CLEANROOM_BAD_CS is not a storage connection"):
        AzureBlobStore.from_connection_string_env("CLEANROOM_BAD_CS")


def test_account_url_must_be_a_url() -> None:
    for url in ("mystorageaccount", "http://acct.blob.core.windows.net"):
        with pytest.raises(InvalidInputError, match="is not an https URL"):
            AzureBlobStore.from_account_url(url)


def test_unreachable_endpoint_is_service_unavailable(azurite_server: Azurite) -> None:
    closed = azurite_server.connection_string.replace(str(azurite_server.port), "9")  # discard port: closed
    service = BlobServiceClient.from_connection_string(closed, retry_total=0)
    with pytest.raises(ServiceUnavailableError, match="cannot reach the blob endpoint"):
        AzureBlobStore(service).container_exists("abc")


def test_store_options_are_validated(azurite_server: Azurite) -> None:
    service = BlobServiceClient.from_connection_string(azurite_server.connection_string)
    with pytest.raises(InvalidInputError, match="block size"):
        AzureBlobStore(service, block_size=0)


def test_azurite_stops_cleanly() -> None:
    try:
        server = start_azurite()
    except AzuriteUnavailable as exc:
        pytest.skip(f"azurite unavailable: {exc}")
    workdir = server.workdir
    server.stop()
    assert server.process.returncode is not None
    assert not os.path.exists(workdir)


def test_missing_azurite_install_is_a_reason_to_skip(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tests.azurite as harness

    monkeypatch.setattr(harness, "AZURITE_BIN", tmp_path / "absent" / "azurite-blob")
    with pytest.raises(AzuriteUnavailable, match="run scripts/bootstrap.sh"):
        start_azurite()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AzuriteUnavailable, match="node is not installed"):
        start_azurite()
