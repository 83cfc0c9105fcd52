"""Shared fixtures.

``blob_store`` is parametrised over every BlobStore backend, so storage, upload and download
tests run unchanged against each one. Add a backend by adding a factory to
``BLOB_STORE_FACTORIES`` (a name and a function of the pytest request returning a store).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.storage.blobstore import BlobStore
from core.storage.local import LocalBlobStore
from tests.azurite import Azurite, AzuriteUnavailable, start_azurite


def _local_store(request: pytest.FixtureRequest) -> BlobStore:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return LocalBlobStore(tmp_path / "store")


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[Azurite]:
    """One azurite (blob service, in memory, loopback) for the whole run; skips saying why if
    it cannot start (no node, not bootstrapped)."""
    try:
        server = start_azurite()
    except AzuriteUnavailable as exc:
        pytest.skip(f"azurite unavailable: {exc}")
    yield server
    server.stop()


def _azurite_store(request: pytest.FixtureRequest) -> BlobStore:
    """An AzureBlobStore on the session's azurite; the ``container`` fixture keeps tests apart."""
    from azure.storage.blob import BlobServiceClient

    from core.storage.azure_blob import AzureBlobStore

    server: Azurite = request.getfixturevalue("azurite_server")
    return AzureBlobStore(BlobServiceClient.from_connection_string(server.connection_string))


BLOB_STORE_FACTORIES: dict[str, Callable[[pytest.FixtureRequest], BlobStore]] = {
    "local": _local_store,
    "azurite": _azurite_store,
}


@pytest.fixture(params=list(BLOB_STORE_FACTORIES))
def blob_store(request: pytest.FixtureRequest) -> BlobStore:
    return BLOB_STORE_FACTORIES[request.param](request)


@pytest.fixture
def container() -> str:
    """A container name no other test uses (stores may be shared across a session)."""
    return f"ds-{uuid.uuid4().hex[:12]}"


# The longest files, longest first (measured: the quick demo ~200 s, the quick DP join ~150 s, the
# onboarding scenario ~40 s on two quiet cores); each starts on its own worker at once.
LONGEST_FILES = ("test_demo.py", "test_dp_scenario.py", "test_onboard_scenario.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding a `smoke` test (the real model end to end, minutes each) run first, then the
    other files, most tests first; a file's own tests keep their order.

    Under pytest-xdist (`make test` runs `-n 4 --dist loadfile --no-loadscope-reorder`) a file is
    one unit of work, handed out in this order: a long end-to-end file handed out last would run
    alone on one worker after the others have finished, so the suite's wall time would be its tail.
    """
    heavy = {item.path for item in items if item.get_closest_marker("smoke")}
    longest = {name: rank for rank, name in enumerate(LONGEST_FILES)}
    per_file: dict[Path, int] = {}
    for item in items:
        per_file[item.path] = per_file.get(item.path, 0) + 1
    first_seen = {path: index for index, path in enumerate(per_file)}
    items.sort(
        key=lambda item: (
            item.path not in heavy,
            longest.get(item.path.name, len(longest)),
            -per_file[item.path],
            first_seen[item.path],
        )
    )
