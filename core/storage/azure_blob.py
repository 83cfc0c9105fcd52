"""Azure Blob Storage behind the BlobStore protocol.

Large blobs go up as blocks (Put Block, several in flight) and become visible only when the
block list is committed, so a reader never sees half a blob: an interrupted upload leaves only
uncommitted blocks, which readers cannot see and Azure discards after a week. Block ids are
derived from each block's index and SHA-256, so putting the same bytes again re-uses the blocks
that already arrived (a resume) and a changed source simply stages new ones (a clean retry).
ETags guard overwrites: ``if_match`` is checked by the service at commit time.

Container names on Azure are 3-63 characters of lowercase letters, digits and single hyphens;
datasource names are freer, so names that Azure would refuse map to a valid name plus a short
hash of the original (stable, so the same datasource always lands in the same container).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient, ExponentialRetry

from core.errors import (
    AccessDeniedError,
    CleanroomError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
)
from core.storage.blobstore import BlobInfo

MiB = 1024 * 1024
# One Put Blob request up to this size: atomic by itself and cheaper than blocks.
SINGLE_PUT_LIMIT = 8 * MiB
DEFAULT_BLOCK_SIZE = 4 * MiB
DEFAULT_CONCURRENCY = 4
MAX_BLOCKS = 50_000  # Azure's limit per blob
_CONTAINER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


@dataclass(frozen=True)
class UploadOutcome:
    """What a put did: the committed blob, and how many blocks were sent vs re-used."""

    info: BlobInfo
    blocks_staged: int
    blocks_reused: int


def azure_container_name(container: str) -> str:
    """The Azure container that holds ``container``: itself if valid, else a stable valid name."""
    if _CONTAINER_RE.match(container):
        return container
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", container.lower())).strip("-")
    digest = hashlib.sha256(container.encode()).hexdigest()[:10]
    return f"{cleaned[:52]}-{digest}" if cleaned else f"c-{digest}"


def _block_id(index: int, data: bytes) -> str:
    """Same length for every block (Azure requires it) and determined by position + content."""
    return base64.b64encode(f"{index:06d}-{hashlib.sha256(data).hexdigest()[:32]}".encode()).decode()


class AzureBlobStore:
    """A BlobStore on one Azure storage account (or azurite)."""

    def __init__(
        self,
        service: BlobServiceClient,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if block_size <= 0 or concurrency <= 0:
            raise InvalidInputError(
                "Azure blob block size and concurrency must be positive",
                hint="pass block_size >= 1 and concurrency >= 1",
            )
        self._service = service
        self.block_size = block_size
        self.concurrency = concurrency

    # -- construction from a datasource's store spec -------------------------------------
    @classmethod
    def from_account_url(cls, account_url: str, **options: Any) -> AzureBlobStore:
        """Sign in the way the operator already is (az login, managed identity, env vars).

        https only: Azure tokens are never sent in clear text (azurite takes a connection string).
        """
        if not account_url.startswith("https://"):
            raise InvalidInputError(
                f"storage account {account_url!r} is not an https URL",
                hint="pass --storage-account https://ACCOUNT.blob.core.windows.net "
                "(for azurite use --connection-string-env)",
            )
        from core.azure_credential import default_credential

        return cls(
            BlobServiceClient(account_url, credential=default_credential(), retry_policy=_retry_policy()), **options
        )

    @classmethod
    def from_connection_string_env(cls, variable: str, **options: Any) -> AzureBlobStore:
        """The connection string stays in the environment; the config names only the variable."""
        value = os.environ.get(variable, "")
        if not value:
            raise InvalidInputError(
                f"environment variable {variable} holding the storage connection string is not set",
                hint=f"export {variable}='DefaultEndpointsProtocol=...;AccountName=...;...'",
            )
        try:
            service = BlobServiceClient.from_connection_string(value, retry_policy=_retry_policy())
        except ValueError as exc:
            raise InvalidInputError(
                f"environment variable {variable} is not a storage connection string ({exc})",
                hint="copy it from the storage account's Access keys",
            ) from exc
        return cls(service, **options)

    # -- BlobStore --------------------------------------------------------------------------
    def describe(self) -> str:
        return self._service.url.rstrip("/")

    def ensure_container(self, container: str) -> None:
        with self._translated(container):
            try:
                self._container(container).create_container()
            except ResourceExistsError:
                pass

    def container_exists(self, container: str) -> bool:
        with self._translated(container):
            return bool(self._container(container).exists())

    def put(
        self, container: str, name: str, source: BinaryIO, *, length: int | None = None, if_match: str | None = None
    ) -> BlobInfo:
        return self.put_resumable(container, name, source, length=length, if_match=if_match).info

    def put_resumable(
        self,
        container: str,
        name: str,
        source: BinaryIO,
        *,
        length: int | None = None,
        if_match: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> UploadOutcome:
        """Upload ``source``; blocks already staged by an interrupted put of the same bytes are re-used.

        ``on_bytes`` is called with each number of bytes sent or re-used (for progress bars).
        """
        blob = self._blob(container, name)
        conditions = self._match(if_match)
        block_size = self.block_size
        if length is not None:
            block_size = max(block_size, -(-length // MAX_BLOCKS))
        with self._translated(container, name):
            if if_match is not None:
                # Fail before sending gigabytes; the commit below re-checks atomically.
                try:
                    current = _etag(blob.get_blob_properties().etag)
                except ResourceNotFoundError:
                    current = None  # deleted since it was read: a conflict, as Azure says (412)
                if current != _etag(if_match):
                    raise ResourceModifiedError(message="etag differs")
            first = _read_full(source, max(SINGLE_PUT_LIMIT, block_size) + 1)
            if len(first) <= SINGLE_PUT_LIMIT:
                _check_length(container, name, len(first), length)
                result = blob.upload_blob(first, overwrite=True, **conditions)
                if on_bytes:
                    on_bytes(len(first))
                return UploadOutcome(BlobInfo(name, len(first), _etag(result["etag"])), 1, 0)
            staged, reused, size, block_ids = self._stage_blocks(blob, first, source, block_size, on_bytes)
            _check_length(container, name, size, length)  # before commit: nothing becomes visible
            result = blob.commit_block_list([BlobBlock(block_id=b) for b in block_ids], **conditions)
            return UploadOutcome(BlobInfo(name, size, _etag(result["etag"])), staged, reused)

    def open_read(self, container: str, name: str) -> BinaryIO:
        with self._translated(container, name):
            downloader = self._blob(container, name).download_blob()
        return io.BufferedReader(
            _ChunkReader(downloader.chunks(), self, container, name), buffer_size=DEFAULT_BLOCK_SIZE
        )

    def stat(self, container: str, name: str) -> BlobInfo:
        with self._translated(container, name):
            props = self._blob(container, name).get_blob_properties()
        return BlobInfo(name, int(props.size), _etag(props.etag))

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        """Like the local store, a container that was never created lists as empty."""
        with self._translated(container):
            try:
                for item in self._container(container).list_blobs(name_starts_with=prefix or None):
                    yield BlobInfo(item.name, int(item.size), _etag(item.etag))
            except ResourceNotFoundError:
                return

    def delete(self, container: str, name: str) -> None:
        with self._translated(container, name):
            self._blob(container, name).delete_blob(delete_snapshots="include")

    # -- internals --------------------------------------------------------------------------
    def _container(self, container: str):  # type: ignore[no-untyped-def]
        return self._service.get_container_client(azure_container_name(container))

    def _blob(self, container: str, name: str):  # type: ignore[no-untyped-def]
        _check_blob_name(name)
        return self._container(container).get_blob_client(name)

    @staticmethod
    def _match(if_match: str | None) -> dict[str, Any]:
        if if_match is None:
            return {}
        return {"etag": f'"{_etag(if_match)}"', "match_condition": MatchConditions.IfNotModified}

    def _stage_blocks(
        self, blob: Any, first: bytes, source: BinaryIO, block_size: int, on_bytes: Callable[[int], None] | None
    ) -> tuple[int, int, int, builtins.list[str]]:
        # (``builtins.list``: in this class ``list`` is the BlobStore method listing blobs)
        """Stage every block, at most ``concurrency`` in flight (memory stays bounded)."""
        already = self._uncommitted_blocks(blob)
        block_ids: list[str] = []
        staged = reused = size = 0
        pending: set[Future[None]] = set()
        lock = threading.Lock()

        def send(block_id: str, data: bytes) -> None:
            blob.stage_block(block_id, data, length=len(data))
            if on_bytes:
                with lock:
                    on_bytes(len(data))

        buffer = first
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="azure-blob-put") as pool:
            try:
                while buffer:
                    data, buffer = buffer[:block_size], buffer[block_size:]
                    if len(buffer) < block_size:
                        buffer += _read_full(source, block_size - len(buffer))
                    block_id = _block_id(len(block_ids), data)
                    block_ids.append(block_id)
                    size += len(data)
                    if already.get(block_id) == len(data):
                        reused += 1
                        if on_bytes:
                            on_bytes(len(data))
                        continue
                    if len(pending) >= self.concurrency:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()
                    pending.add(pool.submit(send, block_id, data))
                    staged += 1
                for future in pending:
                    future.result()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        return staged, reused, size, block_ids

    @staticmethod
    def _uncommitted_blocks(blob: Any) -> dict[str, int]:
        try:
            _committed, uncommitted = blob.get_block_list("uncommitted")
        except ResourceNotFoundError:
            return {}
        return {block.id: int(block.size) for block in uncommitted}

    @contextmanager
    def _translated(self, container: str, name: str | None = None) -> Iterator[None]:
        """SDK exceptions become one-line CleanroomErrors that name the blob and the fix."""
        where = f"{container}/{name}" if name else container
        try:
            yield
        except CleanroomError:
            raise
        except ResourceModifiedError as exc:
            raise ConflictError(
                f"blob '{where}' in {self.describe()} changed since it was read (etag mismatch)",
                hint="read it again and retry with the new etag",
            ) from exc
        except ResourceNotFoundError as exc:
            code = str(getattr(exc, "error_code", "") or "")
            thing = f"container '{container}'" if "Container" in code or name is None else f"blob '{where}'"
            raise NotFoundError(
                f"{thing} does not exist in {self.describe()}", hint="check the name, or upload it first"
            ) from exc
        except ClientAuthenticationError as exc:
            raise AccessDeniedError(
                f"{self.describe()} refused the credentials for '{where}'",
                hint="sign in with `az login` or check the connection string and its role "
                "(Storage Blob Data Contributor)",
            ) from exc
        except ServiceRequestError as exc:
            raise ServiceUnavailableError(
                f"cannot reach the blob endpoint {self.describe()} ({type(exc).__name__})",
                hint="check the storage account URL and the network, or start azurite",
            ) from exc
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise ConflictError(
                    f"blob '{where}' in {self.describe()} changed since it was read (etag mismatch)",
                    hint="read it again and retry with the new etag",
                ) from exc
            if exc.status_code in (401, 403):
                raise AccessDeniedError(
                    f"{self.describe()} denied access to '{where}'",
                    hint="grant the identity Storage Blob Data Contributor on the account",
                ) from exc
            error_code = getattr(exc, "error_code", None)  # set from the response; not declared by azure-core
            if exc.status_code == 400 and str(error_code) in ("InvalidResourceName", "OutOfRangeInput"):
                raise InvalidInputError(
                    f"'{where}' is not a valid Azure blob name",
                    hint="use 1-1024 characters without trailing dots or slashes",
                ) from exc
            raise ServiceUnavailableError(
                f"{self.describe()} failed on '{where}': HTTP {exc.status_code} {error_code or exc.reason}",
                hint="retry; the upload resumes where it stopped",
            ) from exc


def _retry_policy() -> ExponentialRetry:
    """Transient faults are retried a few times within seconds; the SDK's default (15 s base,
    cubic growth) keeps a CLI silent for over a minute on a wrong or unreachable account."""
    return ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3, random_jitter_range=1)


def _etag(value: str) -> str:
    """The SDK returns etags quoted from writes and bare from listings; callers see them bare."""
    return str(value).strip('"')


def _check_length(container: str, name: str, size: int, length: int | None) -> None:
    if length is not None and size != length:
        raise InvalidInputError(
            f"blob {container}/{name}: source gave {size} bytes, expected {length}",
            hint="the source changed while uploading; retry",
        )


def _check_blob_name(name: str) -> None:
    """Blob names are relative POSIX paths; '.'/'..' segments would be collapsed by URL handling."""
    parts = name.split("/")
    if (
        not name
        or len(name) > 1024
        or name.startswith("/")
        or "\\" in name
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise InvalidInputError(
            f"blob name {name!r} is not a relative POSIX path",
            hint="use names like 'dir/file.bin' without '.', '..' or empty segments (at most 1024 characters)",
        )


def _read_full(source: BinaryIO, size: int) -> bytes:
    """Read exactly ``size`` bytes unless the source ends first (streams may return short reads)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = source.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


class _ChunkReader(io.RawIOBase):
    """A raw stream over the SDK's chunk iterator, so callers read a blob like a file.

    The SDK pins later range reads to the etag of the first response, so a blob overwritten
    mid-download fails loudly instead of mixing two versions.
    """

    def __init__(self, chunks: Iterator[bytes], store: AzureBlobStore, container: str, name: str) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._store = store
        self._container = container
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        while not self._pending:
            with self._store._translated(self._container, self._name):
                chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count
