"""Opening the blob store a datasource's store spec points at.

Callers hold a store spec (from a config fragment) and get a ``BlobStore``; they never import a
backend. The Azure backend is imported only when a spec asks for it, so the local default
works without the ``azure`` extra installed.
"""

from __future__ import annotations

from pathlib import Path

from core.config.fragment import AzureBlobStoreSpec, LocalStoreSpec
from core.errors import InvalidInputError, ServiceUnavailableError
from core.storage.blobstore import BlobStore
from core.storage.local import LocalBlobStore


def local_store_spec(path: Path) -> LocalStoreSpec:
    return LocalStoreSpec(path=str(path.expanduser().resolve()))


def open_store(spec: LocalStoreSpec | AzureBlobStoreSpec) -> BlobStore:
    """The BlobStore for ``spec``; an unavailable backend is a one-line error, not an ImportError."""
    if isinstance(spec, LocalStoreSpec):
        return LocalBlobStore(Path(spec.path))
    if isinstance(spec, AzureBlobStoreSpec):
        try:
            from core.storage.azure_blob import AzureBlobStore
        except ImportError as exc:
            raise ServiceUnavailableError(
                f"the Azure Blob backend cannot be loaded ({exc.name} is missing)",
                hint="install the azure extra: pip install 'cleanroom-console[azure]'",
            ) from None
        if spec.account_url is not None:
            return AzureBlobStore.from_account_url(spec.account_url)
        return AzureBlobStore.from_connection_string_env(str(spec.connection_string_env))
    raise InvalidInputError(
        f"store kind {getattr(spec, 'kind', spec)!r} is not supported", hint="use 'local' or 'azure_blob'"
    )
