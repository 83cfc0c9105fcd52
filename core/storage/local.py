"""The local-folder blob store: the embedded default, one directory per container.

Layout: ``<root>/<container>/<blob name>``, where a blob name is a relative POSIX path.
A put streams into ``<root>/.partial/`` (same filesystem) and is renamed into place, so a reader
sees the old blob or the new one, never half of one. The etag is inode-mtime-size: every put
creates a new inode, so any overwrite changes the etag without hashing the whole blob.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from core.errors import ConflictError, InvalidInputError, NotFoundError
from core.names import check_name
from core.storage.blobstore import BlobInfo

PARTIAL_DIR = ".partial"
_COPY_BUFFER = 1 << 20


def _etag(stat: os.stat_result) -> str:
    return f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"


def check_blob_name(name: str) -> str:
    """A relative POSIX path with no empty, '.' or '..' parts: it can never leave its container."""
    path = PurePosixPath(name)
    if (
        not name
        or name != str(path)
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in path.parts)
        or "\\" in name
        or "\x00" in name
    ):
        raise InvalidInputError(
            f"blob name {name!r} is not a relative path inside its container",
            hint="use names like 'train/part-0.parquet'",
        )
    return name


class LocalBlobStore:
    """A BlobStore in a local folder; safe for several processes writing the same container."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalBlobStore({self.describe()})"

    def describe(self) -> str:
        return self.root.as_uri()

    # -- containers --------------------------------------------------------------------------
    def _container_dir(self, container: str) -> Path:
        return self.root / check_name("container", container)

    def ensure_container(self, container: str) -> None:
        self._container_dir(container).mkdir(parents=True, exist_ok=True)

    def container_exists(self, container: str) -> bool:
        return self._container_dir(container).is_dir()

    def _existing_container(self, container: str) -> Path:
        path = self._container_dir(container)
        if not path.is_dir():
            raise NotFoundError(
                f"container '{container}' does not exist in {self.describe()}", hint="upload the datasource first"
            )
        return path

    # -- blobs -------------------------------------------------------------------------------
    def _blob_path(self, container: str, name: str) -> Path:
        return self._existing_container(container) / check_blob_name(name)

    @contextmanager
    def _locked(self, container: str) -> Iterator[None]:
        """Serialise check-then-rename for ``if_match`` across processes."""
        lock_path = self.root / PARTIAL_DIR / f"{container}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put(
        self, container: str, name: str, source: BinaryIO, *, length: int | None = None, if_match: str | None = None
    ) -> BlobInfo:
        target = self._blob_path(container, name)
        partial = self.root / PARTIAL_DIR
        partial.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=partial, prefix=f"{container}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                shutil.copyfileobj(source, handle, _COPY_BUFFER)
                handle.flush()
                os.fsync(handle.fileno())
            written = os.stat(tmp).st_size
            if length is not None and written != length:
                raise InvalidInputError(
                    f"blob {container}/{name}: source gave {written} bytes, expected {length}",
                    hint="the source changed while uploading; retry",
                )
            with self._locked(container):
                if if_match is not None:
                    current = _etag(target.stat()) if target.is_file() else None
                    if current != if_match:
                        raise ConflictError(
                            f"blob {container}/{name} changed since it was read (etag {current}, expected {if_match})",
                            hint="re-read it and retry",
                        )
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            return BlobInfo(name=name, size=written, etag=_etag(target.stat()))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open_read(self, container: str, name: str) -> BinaryIO:
        path = self._blob_path(container, name)
        try:
            return open(path, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(
                f"blob {container}/{name} does not exist in {self.describe()}", hint="upload the datasource again"
            ) from None

    def stat(self, container: str, name: str) -> BlobInfo:
        path = self._blob_path(container, name)
        if not path.is_file():
            raise NotFoundError(f"blob {container}/{name} does not exist in {self.describe()}")
        stat = path.stat()
        return BlobInfo(name=name, size=stat.st_size, etag=_etag(stat))

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        base = self._container_dir(container)
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                name = path.relative_to(base).as_posix()
                if name.startswith(prefix):
                    stat = path.stat()
                    yield BlobInfo(name=name, size=stat.st_size, etag=_etag(stat))

    def delete(self, container: str, name: str) -> None:
        path = self._blob_path(container, name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise NotFoundError(f"blob {container}/{name} does not exist in {self.describe()}") from None
        base = self._container_dir(container)
        parent = path.parent
        while parent != base:  # prune empty folders so list() and the disk stay tidy
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
