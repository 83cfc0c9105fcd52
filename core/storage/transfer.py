"""Datasource upload and download: a folder sealed file by file into a container, and back.

Container layout::

    manifest.sealed                 the upload manifest, sealed with the DEK (JSON inside)
    data/<upload-id>/<file path>    one encrypted blob per file (``core.crypto.envelope``)

Why a manifest, sealed: per-blob authentication cannot notice a *missing* blob or two valid
blobs swapped between names. The manifest lists every file with its size and its blob's
header (whose nonce prefix is random per blob), so download detects deletion and swapping too.
Why an upload id: a new upload writes beside the old one and only the manifest write switches
readers over, so an interrupted upload never leaves a mix of old and new files. The runtime
seals datasinks with :func:`upload_untrusted_folder`, the same upload (so ``datasink download``
is the same code) over a folder a workload wrote: see there for why it walks differently.

Why a content hash of the ciphertext (:func:`content_hash`): a contract pins each datasource's
upload, so its owner cannot swap the data after the others voted. It is computed over the
sealed blobs, never the plaintext: a hash of low-entropy plaintext would let any reader of the
contract confirm a guessed dataset. The runtime checks it on a private copy of the blobs before
decrypting anything (:func:`pinned_copy`), so what is checked is what is decrypted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from core.crypto.envelope import (
    DEFAULT_CHUNK_SIZE,
    SealingReader,
    decrypt_bytes,
    decrypt_to_path,
    encrypt_bytes,
    encrypted_size,
)
from core.errors import CleanroomError, IntegrityError, InvalidInputError, NotFoundError
from core.storage.blobstore import BlobStore
from core.storage.local import LocalBlobStore, check_blob_name

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

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
    path: str  # relative POSIX path of the file inside the dataset folder
    size: int  # plaintext bytes
    header: str  # hex of the blob's envelope header (binds blob to path)


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
        return json.dumps(
            {
                "version": MANIFEST_VERSION,
                "upload_id": self.upload_id,
                "files": [entry.__dict__ for entry in self.files],
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, label: str) -> Manifest:
        try:
            document = json.loads(data)
            files = tuple(
                ManifestEntry(
                    path=check_blob_name(str(item["path"])), size=int(item["size"]), header=str(item["header"])
                )
                for item in document["files"]
            )
            if document["version"] != MANIFEST_VERSION:
                raise ValueError(f"version {document['version']}")
            return cls(upload_id=str(document["upload_id"]), files=files)
        except (ValueError, KeyError, TypeError, InvalidInputError) as exc:
            raise IntegrityError(f"{label} is not a readable manifest ({exc})", hint="re-upload the dataset") from None


def dataset_files(folder: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, file) for every regular file under ``folder``, sorted."""
    folder = folder.expanduser()
    if not folder.exists():
        raise NotFoundError(f"dataset folder {folder} does not exist", hint="pass an existing --dataset-folder")
    if not folder.is_dir():
        raise InvalidInputError(f"dataset folder {folder} is not a folder", hint="pass a folder, not a file")
    files = sorted((path.relative_to(folder).as_posix(), path) for path in folder.rglob("*") if path.is_file())
    if not files:
        raise InvalidInputError(f"dataset folder {folder} has no files", hint="put the dataset's files in it")
    return files


def read_manifest(store: BlobStore, container: str, dek: bytes, *, label: str) -> Manifest:
    """The current manifest; NotFoundError when nothing has been uploaded yet."""
    if not store.container_exists(container) or not any(
        info.name == MANIFEST_BLOB for info in store.list(container, MANIFEST_BLOB)
    ):
        raise NotFoundError(
            f"{label} has no uploaded data in {store.describe()}",
            hint="upload it first with `cleanroom datasource upload`",
        )
    with store.open_read(container, MANIFEST_BLOB) as handle:
        sealed = handle.read()
    return Manifest.from_bytes(decrypt_bytes(dek, sealed, label=f"manifest of {label}"), label=f"manifest of {label}")


def _open_dataset_file(path: Path) -> BinaryIO:
    """A party's own file (links followed); _upload reads it inside ``with``."""
    return open(path, "rb")


def _open_runtime_file(path: Path) -> BinaryIO:
    """A file the runtime wrote where no workload can (not a link, never a FIFO that blocks)."""
    return open(os.open(path, _FILE_FLAGS & ~os.O_NONBLOCK), "rb")


def upload_folder(
    store: BlobStore,
    container: str,
    dek: bytes,
    folder: Path,
    *,
    label: str,
    progress: TransferProgress | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Manifest:
    """Seal every file of ``folder`` into ``container``; readers switch over only when all are stored.

    For a party's own dataset folder: links are followed (a Hugging Face snapshot is links into
    its blob cache). A folder a workload wrote goes through :func:`upload_untrusted_folder`."""
    files = dataset_files(folder)
    sources = [_Source(relative, path.stat().st_size, partial(_open_dataset_file, path)) for relative, path in files]
    return _upload(store, container, dek, sources, progress=progress, chunk_size=chunk_size)


@dataclass(frozen=True)
class _Source:
    """One file to seal: its name in the dataset, its size, and how to open it for reading."""

    relative: str
    size: int
    open: Callable[[], AbstractContextManager[BinaryIO]]


def _upload(
    store: BlobStore,
    container: str,
    dek: bytes,
    files: list[_Source],
    *,
    progress: TransferProgress | None,
    chunk_size: int,
) -> Manifest:
    total = sum(source.size for source in files)
    store.ensure_container(container)
    previous = next((info for info in store.list(container, MANIFEST_BLOB) if info.name == MANIFEST_BLOB), None)
    upload_id = secrets.token_hex(8)
    entries: list[ManifestEntry] = []
    done = 0
    try:
        for index, source in enumerate(files):

            def advance(file_done: int, base: int = done, index: int = index, relative: str = source.relative) -> None:
                if progress is not None:
                    progress(TransferStatus(base + file_done, total, index, len(files), relative))

            with source.open() as handle:
                reader = SealingReader(dek, handle, chunk_size=chunk_size, progress=advance)
                # a SealingReader is a blocking binary stream (io.RawIOBase whose read never returns None)
                store.put(
                    container,
                    f"{DATA_PREFIX}{upload_id}/{source.relative}",
                    cast(BinaryIO, reader),
                    length=encrypted_size(source.size, chunk_size),
                )
            entries.append(ManifestEntry(path=source.relative, size=source.size, header=reader.header.hex()))
            done += source.size
        manifest = Manifest(upload_id=upload_id, files=tuple(entries))
        store.put(
            container,
            MANIFEST_BLOB,
            io.BytesIO(encrypt_bytes(dek, manifest.to_bytes())),
            if_match=previous.etag if previous else None,
        )
    except BaseException:
        _delete_prefix(store, container, f"{DATA_PREFIX}{upload_id}/")
        raise
    if progress is not None:
        progress(TransferStatus(total, total, len(files), len(files), ""))
    stale = [
        info.name
        for info in store.list(container, DATA_PREFIX)
        if not info.name.startswith(f"{DATA_PREFIX}{upload_id}/")
    ]
    for name in stale:
        store.delete(container, name)
    return manifest


# -- folders a workload wrote ---------------------------------------------------------------------
MAX_UNTRUSTED_DEPTH = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the walk must not block the open; fstat then refuses it
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UntrustedEntryError(InvalidInputError):
    """A folder a workload wrote holds something other than directories and regular files.

    The whole folder is refused (nothing of it is sealed): a link could name another party's
    key or the runtime's attestation key, a FIFO would block the runtime, a device or socket is
    not data, and a file with other hard links may be a host file linked in."""

    def __init__(self, label: str, entry: str, kind: str) -> None:
        self.entry = entry
        self.kind = kind
        super().__init__(
            f"{label} holds {entry!r}, a {kind}, so none of it is sealed",
            hint="a workload's outputs must be regular files and directories only",
        )


@dataclass(frozen=True)
class UntrustedFile:
    """A regular file found by the no-follow walk; ``identity`` is (st_dev, st_ino) at walk time."""

    relative: str
    size: int
    identity: tuple[int, int]


def _kind(mode: int, links: int = 1) -> str | None:
    """What a walk must refuse, or None for a directory or a lone regular file."""
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISREG(mode):
        return None if links == 1 else f"regular file with {links} hard links"
    for test, name in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "file of unknown type"


def untrusted_files(folder: Path, *, label: str) -> list[UntrustedFile]:
    """Every regular file under ``folder`` (sorted), walked without following anything.

    Each directory is opened relative to its parent's descriptor with O_NOFOLLOW, and entries
    are lstat'ed relative to it, so a path component swapped for a link during the walk is
    refused, never followed. Raises :class:`UntrustedEntryError` at the first entry that is not
    a directory or a regular file with one link."""
    found: list[UntrustedFile] = []
    try:
        root = os.open(folder, _DIR_FLAGS)
    except FileNotFoundError:  # a sink no workload mounted: nothing written
        return found
    stack: list[tuple[int, str, int]] = [(root, "", 0)]
    try:
        while stack:
            directory, prefix, depth = stack.pop()
            try:
                for name in sorted(os.listdir(directory)):
                    relative = f"{prefix}{name}"
                    info = os.stat(name, dir_fd=directory, follow_symlinks=False)
                    kind = _kind(info.st_mode, info.st_nlink)
                    if kind is not None:
                        raise UntrustedEntryError(label, relative, kind)
                    if stat.S_ISREG(info.st_mode):
                        found.append(UntrustedFile(relative, info.st_size, (info.st_dev, info.st_ino)))
                        continue
                    if depth + 1 >= MAX_UNTRUSTED_DEPTH:
                        raise UntrustedEntryError(label, relative, f"folder nested deeper than {MAX_UNTRUSTED_DEPTH}")
                    try:
                        child = os.open(name, _DIR_FLAGS, dir_fd=directory)
                    except OSError:  # swapped for a link (ELOOP/ENOTDIR) or removed since the lstat
                        raise UntrustedEntryError(label, relative, "entry that changed during the walk") from None
                    stack.append((child, f"{relative}/", depth + 1))
            finally:
                os.close(directory)
    finally:
        for directory, _prefix, _depth in stack:
            os.close(directory)
    return sorted(found, key=lambda file: file.relative)


@contextmanager
def open_untrusted(folder: Path, file: UntrustedFile, *, label: str) -> Iterator[BinaryIO]:
    """``file`` opened for reading beneath ``folder``, component by component with O_NOFOLLOW,
    and checked (fstat on the descriptor that is read) to be the very regular file the walk saw;
    the reader stops at the size the walk saw, so a file growing meanwhile cannot overrun."""
    parts = file.relative.split("/")
    directory = os.open(folder, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=directory)
            except OSError:
                raise UntrustedEntryError(label, file.relative, "path that changed after the walk") from None
            os.close(directory)
            directory = child
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=directory)
        except OSError:
            raise UntrustedEntryError(label, file.relative, "path that changed after the walk") from None
    finally:
        os.close(directory)
    try:
        info = os.fstat(fd)
        kind = _kind(info.st_mode, info.st_nlink) or ("directory" if stat.S_ISDIR(info.st_mode) else None)
        if kind is None and (info.st_dev, info.st_ino) != file.identity:
            kind = "file replaced after the walk"
        if kind is not None:
            raise UntrustedEntryError(label, file.relative, kind)
        os.set_blocking(fd, True)
        raw = io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise
    with raw:
        yield _AtMost(raw, file.size)  # type: ignore[misc]


class _AtMost(io.RawIOBase):
    """Reads at most ``limit`` bytes of ``source``: the size the manifest promises."""

    def __init__(self, source: io.FileIO, limit: int) -> None:
        super().__init__()
        self._source = source
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        size = self._source.readinto(view) or 0
        self._left -= size
        return size


def upload_untrusted_folder(
    store: BlobStore,
    container: str,
    dek: bytes,
    folder: Path,
    *,
    label: str,
    extra_files: dict[str, Path] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Manifest | None:
    """Seal a folder a workload wrote (a datasink), plus the runtime's own ``extra_files``
    (relative name -> file in a folder no workload sees, e.g. application logs).

    Why not :func:`upload_folder`: it follows links, so a link planted in a datasink would seal
    a host file (another party's KEK, the attestation key) for the sink's owner. Here every
    entry is checked first (:func:`untrusted_files`; anything but directories and lone regular
    files refuses the whole folder) and each file is then read through the O_NOFOLLOW
    descriptor that :func:`open_untrusted` verified. None when there is nothing to seal."""
    files = untrusted_files(folder, label=label)
    extra = extra_files or {}
    taken = {file.relative for file in files}
    for relative in extra:
        if relative in taken:
            raise UntrustedEntryError(label, relative, "file named like the runtime's application log")
    sources = [_Source(file.relative, file.size, partial(open_untrusted, folder, file, label=label)) for file in files]
    for relative, path in sorted(extra.items()):
        fd = os.open(path, _FILE_FLAGS)
        try:
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        sources.append(_Source(relative, size, partial(_open_runtime_file, path)))
    if not sources:
        return None
    return _upload(
        store, container, dek, sorted(sources, key=lambda source: source.relative), progress=None, chunk_size=chunk_size
    )


def download_folder(
    store: BlobStore, container: str, dek: bytes, target: Path, *, label: str, progress: TransferProgress | None = None
) -> Manifest:
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
            raise IntegrityError(
                f"{file_label} is missing from {store.describe()} (deleted after upload)", hint="re-upload the dataset"
            ) from None
        with source:
            decrypt_to_path(
                dek,
                source,
                target / entry.path,
                progress=advance,
                label=file_label,
                expected_header=bytes.fromhex(entry.header),
            )
        done += entry.size
    if progress is not None:
        progress(TransferStatus(total, total, len(manifest.files), len(manifest.files), ""))
    return manifest


CONTENT_HASH_PREFIX = "sha256:"
_HASH_CHUNK = 1 << 20


def content_hash(store: BlobStore, container: str) -> str:
    """``sha256:<hex>`` of every blob of the container (the current upload: ``_upload`` removes
    the previous one's blobs), over the sorted blob names and each blob's own SHA-256."""
    blobs: dict[str, str] = {}
    for info in store.list(container):
        digest = hashlib.sha256()
        with store.open_read(container, info.name) as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
        blobs[info.name] = digest.hexdigest()
    return _combined(blobs)


def _combined(blobs: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(blobs):
        digest.update(f"{name}\0{blobs[name]}\n".encode())
    return CONTENT_HASH_PREFIX + digest.hexdigest()


class _Hashing(io.RawIOBase):
    """A read-through stream that hashes what passes, so a blob is copied and hashed in one read."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.read(len(view))
        view[: len(data)] = data
        self.digest.update(data)
        return len(data)


def pinned_copy(store: BlobStore, container: str, folder: Path, *, expected: str, label: str) -> LocalBlobStore:
    """A private local copy of the container's blobs, refused unless their content hash is ``expected``.

    Copying first and checking the copy closes the window in which an owner could swap blobs
    between a check on the original and the download: the runtime decrypts only the copy it
    hashed. IntegrityError (and nothing kept) on a mismatch."""
    copy = LocalBlobStore(folder)
    copy.ensure_container(container)
    blobs: dict[str, str] = {}
    for info in store.list(container):
        with store.open_read(container, info.name) as handle:
            reader = _Hashing(handle)
            copy.put(container, info.name, cast(BinaryIO, io.BufferedReader(reader, _HASH_CHUNK)))
        blobs[info.name] = reader.digest.hexdigest()
    actual = _combined(blobs)
    if actual != expected:
        raise IntegrityError(
            f"{label} differs from the upload pinned in the contract ({_short(expected)} != {_short(actual)})",
            hint="the owner re-uploads and the contract is voted again",
        )
    return copy


def _short(hash_text: str) -> str:
    return hash_text[: len(CONTENT_HASH_PREFIX) + 12] + "…"


def _delete_prefix(store: BlobStore, container: str, prefix: str) -> None:
    """Best-effort cleanup of an aborted upload; the original error is what the user needs to see."""
    try:
        for name in [info.name for info in store.list(container, prefix)]:
            store.delete(container, name)
    except (CleanroomError, OSError):
        pass
