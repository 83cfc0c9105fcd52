"""Shared fixtures.

``blob_store`` is parametrised over every BlobStore backend, so storage, upload and download
tests run unchanged against each one. Add a backend by adding a factory to
``BLOB_STORE_FACTORIES`` (a name and a function of the pytest request returning a store).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from core.storage.blobstore import BlobStore
from core.storage.local import LocalBlobStore


def _local_store(request: pytest.FixtureRequest) -> BlobStore:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return LocalBlobStore(tmp_path / "store")


BLOB_STORE_FACTORIES: dict[str, Callable[[pytest.FixtureRequest], BlobStore]] = {
    "local": _local_store,
}


@pytest.fixture(params=list(BLOB_STORE_FACTORIES))
def blob_store(request: pytest.FixtureRequest) -> BlobStore:
    return BLOB_STORE_FACTORIES[request.param](request)


@pytest.fixture
def container() -> str:
    """A container name no other test uses (stores may be shared across a session)."""
    return f"ds-{uuid.uuid4().hex[:12]}"
