"""Datasource upload and download: a folder sealed file by file into a container, and back.

Container layout::

    manifest.sealed                 the upload manifest, sealed with the DEK (JSON inside)
    data/<upload-id>/<file path>    one encrypted blob per file (``core.crypto.envelope``)

Why a manifest, sealed: per-blob authentication cannot notice a *missing* blob or two valid
blobs swapped between names. The manifest lists every file with its size and its blob's
header (whose nonce prefix is random per blob), so download detects deletion and swapping too.
Why an upload id: a new upload writes beside the old one and only the manifest write switches
readers over, so an interrupted upload never leaves a mix of old and new files. The runtime
seals datasinks with the same :func:`upload_folder`, so ``datasink download`` is the same code.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.crypto.envelope import (DEFAULT_CHUNK_SIZE, SealingReader, decrypt_bytes,
                                  decrypt_to_path, encrypt_bytes, encrypted_size)
from core.errors import CleanroomError, IntegrityError, InvalidInputError, NotFoundError
from core.storage.blobstore import BlobStore
from core.storage.local import check_blob_name

MANIFEST_BLOB = "manifest.sealed"
DATA_PREFIX = "data/"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class TransferStatus:
    """A progress snapshot; front ends render it (rich bars in the CLI, widgets in the console)."""

    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    current: str


TransferProgress = Callable[[TransferStatus], None]


@dataclass(frozen=True)
class ManifestEntry:
    path: str     # relative POSIX path of the file inside the dataset folder
    size: int     # plaintext bytes
    header: str   # hex of the blob's envelope header (binds blob to path)


@dataclass(frozen=True)
class Manifest:
    upload_id: str
    files: tuple[ManifestEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def blob_name(self, entry: ManifestEntry) -> str:
        return f"{DATA_PREFIX}{self.upload_id}/{entry.path}"

    def to_bytes(self) -> bytes:
        return json.dumps({"version": MANIFEST_VERSION, "upload_id": self.upload_id,
                           "files": [entry.__dict__ for entry in self.files]},
                          sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, label: str) -> "Manifest":
        try:
            document = json.loads(data)
            files = tuple(ManifestEntry(path=check_blob_name(str(item["path"])), size=int(item["size"]),
                                        header=str(item["header"])) for item in document["files"])
            if document["version"] != MANIFEST_VERSION:
                raise ValueError(f"version {document['version']}")
            return cls(upload_id=str(document["upload_id"]), files=files)
        except (ValueError, KeyError, TypeError, InvalidInputError) as exc:
            raise IntegrityError(f"{label} is not a readable manifest ({exc})",
                                 hint="re-upload the dataset") from None


def dataset_files(folder: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, file) for every regular file under ``folder``, sorted."""
    folder = folder.expanduser()
    if not folder.exists():
        raise NotFoundError(f"dataset folder {folder} does not exist", hint="pass an existing --dataset-folder")
    if not folder.is_dir():
        raise InvalidInputError(f"dataset folder {folder} is not a folder", hint="pass a folder, not a file")
    files = sorted((path.relative_to(folder).as_posix(), path)
                   for path in folder.rglob("*") if path.is_file())
    if not files:
        raise InvalidInputError(f"dataset folder {folder} has no files", hint="put the dataset's files in it")
    return files


def read_manifest(store: BlobStore, container: str, dek: bytes, *, label: str) -> Manifest:
    """The current manifest; NotFoundError when nothing has been uploaded yet."""
    if not store.container_exists(container) or not any(
            info.name == MANIFEST_BLOB for info in store.list(container, MANIFEST_BLOB)):
        raise NotFoundError(f"{label} has no uploaded data in {store.describe()}",
                            hint="upload it first with `cleanroom datasource upload`")
    with store.open_read(container, MANIFEST_BLOB) as handle:
        sealed = handle.read()
    return Manifest.from_bytes(decrypt_bytes(dek, sealed, label=f"manifest of {label}"),
                               label=f"manifest of {label}")


def upload_folder(store: BlobStore, container: str, dek: bytes, folder: Path, *,
                  label: str, progress: TransferProgress | None = None,
                  chunk_size: int = DEFAULT_CHUNK_SIZE) -> Manifest:
    """Seal every file of ``folder`` into ``container``; readers switch over only when all are stored."""
    files = dataset_files(folder)
    sizes = [path.stat().st_size for _, path in files]
    total = sum(sizes)
    store.ensure_container(container)
    previous = next((info for info in store.list(container, MANIFEST_BLOB) if info.name == MANIFEST_BLOB), None)
    upload_id = secrets.token_hex(8)
    entries: list[ManifestEntry] = []
    done = 0
    try:
        for index, ((relative, path), size) in enumerate(zip(files, sizes)):
            def advance(file_done: int, base: int = done, index: int = index, relative: str = relative) -> None:
                if progress is not None:
                    progress(TransferStatus(base + file_done, total, index, len(files), relative))

            with open(path, "rb") as source:
                reader = SealingReader(dek, source, chunk_size=chunk_size, progress=advance)
                store.put(container, f"{DATA_PREFIX}{upload_id}/{relative}", reader,
                          length=encrypted_size(size, chunk_size))
            entries.append(ManifestEntry(path=relative, size=size, header=reader.header.hex()))
            done += size
        manifest = Manifest(upload_id=upload_id, files=tuple(entries))
        store.put(container, MANIFEST_BLOB, io.BytesIO(encrypt_bytes(dek, manifest.to_bytes())),
                  if_match=previous.etag if previous else None)
    except BaseException:
        _delete_prefix(store, container, f"{DATA_PREFIX}{upload_id}/")
        raise
    if progress is not None:
        progress(TransferStatus(total, total, len(files), len(files), ""))
    stale = [info.name for info in store.list(container, DATA_PREFIX)
             if not info.name.startswith(f"{DATA_PREFIX}{upload_id}/")]
    for name in stale:
        store.delete(container, name)
    return manifest


def download_folder(store: BlobStore, container: str, dek: bytes, target: Path, *,
                    label: str, progress: TransferProgress | None = None) -> Manifest:
    """Decrypt every file of the current upload into ``target``, byte for byte.

    Each file is written under a temporary name and renamed only after its last chunk
    verifies; a file that fails is not written and the error names it. Files verified before
    the failure stay (each one is complete and authentic).
    """
    manifest = read_manifest(store, container, dek, label=label)
    target = target.expanduser()
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"target folder {target} is a file", hint="pass a folder for --target-folder")
    target.mkdir(parents=True, exist_ok=True)
    total, done = manifest.total_bytes, 0
    for index, entry in enumerate(manifest.files):
        def advance(file_done: int, base: int = done, index: int = index, entry: ManifestEntry = entry) -> None:
            if progress is not None:
                progress(TransferStatus(base + file_done, total, index, len(manifest.files), entry.path))

        file_label = f"{label} file '{entry.path}'"
        try:
            source = store.open_read(container, manifest.blob_name(entry))
        except NotFoundError:
            raise IntegrityError(f"{file_label} is missing from {store.describe()} (deleted after upload)",
                                 hint="re-upload the dataset") from None
        with source:
            decrypt_to_path(dek, source, target / entry.path, progress=advance, label=file_label,
                            expected_header=bytes.fromhex(entry.header))
        done += entry.size
    if progress is not None:
        progress(TransferStatus(total, total, len(manifest.files), len(manifest.files), ""))
    return manifest


def _delete_prefix(store: BlobStore, container: str, prefix: str) -> None:
    """Best-effort cleanup of an aborted upload; the original error is what the user needs to see."""
    try:
        for name in [info.name for info in store.list(container, prefix)]:
            store.delete(container, name)
    except (CleanroomError, OSError):
        pass

