"""The BlobStore protocol: the only storage surface callers see.

Blobs are addressed by a container (one per datasource/datasink) and a blob name (a relative
POSIX path of the original file). Writes are whole-blob and atomic from a reader's view: a
reader never sees a half-written blob. The local folder and Azure Blob implement the same
protocol so callers never change when a datasource moves to Azure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    etag: str


@runtime_checkable
class BlobStore(Protocol):
    """A flat namespace of containers holding named blobs."""

    def describe(self) -> str:
        """Human-readable location, e.g. ``file:///…/store`` or ``https://acct.blob…``."""
        ...

    def ensure_container(self, container: str) -> None: ...

    def container_exists(self, container: str) -> bool: ...

    def put(
        self, container: str, name: str, source: BinaryIO, *, length: int | None = None, if_match: str | None = None
    ) -> BlobInfo:
        """Stream ``source`` into a blob atomically; ``if_match`` guards overwrites by etag."""
        ...

    def open_read(self, container: str, name: str) -> BinaryIO:
        """A readable stream of the blob's bytes; raises NotFoundError if absent."""
        ...

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]: ...

    def delete(self, container: str, name: str) -> None: ...
