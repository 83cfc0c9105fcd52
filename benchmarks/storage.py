"""Datasource upload/download throughput: Azure Blob (azurite on loopback) vs the local folder.

Both backends run the same engine in the same process: ``core.storage.transfer`` seals a folder
file by file (AES-256-GCM STREAM) into a container and downloads + verifies it back, which is what
`cleanroom datasource upload/download` does. The raw store path (``put`` / ``open_read`` of the
same bytes, no crypto) is measured too, so a slow engine and a slow store can be told apart.

Targets and why: azurite is a single-process Node.js emulator speaking HTTP on loopback, the
local store is a folder on disk; azurite will never match a file copy, and its speed says little
about Azure's. What the targets guard is our Azure path: block uploads in parallel and chunked
streaming downloads must keep the emulator within an order of magnitude of the disk (ratio
>= 0.1 both ways for the engine), which a serial or whole-blob-in-memory implementation misses.

Usage: python benchmarks/storage.py [--quick]   (256 MiB datasource; --quick: 32 MiB)
The last line is one JSON object with the figures, the targets and targets_met.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from core.storage.azure_blob import AzureBlobStore  # noqa: E402
from core.storage.blobstore import BlobStore  # noqa: E402
from core.storage.local import LocalBlobStore  # noqa: E402
from core.storage.transfer import download_folder, upload_folder  # noqa: E402
from tests.azurite import AzuriteUnavailable, start_azurite  # noqa: E402

MiB = 1024 * 1024
FILE_SIZE = 32 * MiB  # a datasource of several shards, as training data usually is
TARGET_RATIO = 0.1


def make_datasource(folder: Path, total: int) -> None:
    """Incompressible shards (no store can cheat with compression or dedup)."""
    folder.mkdir(parents=True)
    index = 0
    while total > 0:
        size = min(FILE_SIZE, total)
        (folder / f"shard-{index:03d}.bin").write_bytes(os.urandom(size))
        total -= size
        index += 1


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def measure(store: BlobStore, source: Path, work: Path, size: int) -> dict[str, float]:
    """MiB/s for engine upload/download and raw put/get of one shard-sized blob stream."""
    dek = os.urandom(32)
    container = f"bench-{os.urandom(4).hex()}"
    target = work / f"out-{container}"
    up = timed(lambda: upload_folder(store, container, dek, source, label="bench"))
    down = timed(lambda: download_folder(store, container, dek, target, label="bench"))
    if folder_digest(target) != folder_digest(source):
        raise SystemExit(f"download from {store.describe()} differs from the source")
    shutil.rmtree(target)
    raw_container = f"raw-{container}"
    store.ensure_container(raw_container)
    shards = sorted(source.iterdir())

    def raw_put() -> None:
        for shard in shards:
            with shard.open("rb") as handle:
                store.put(raw_container, shard.name, handle, length=shard.stat().st_size)

    def raw_get() -> None:
        for shard in shards:
            with store.open_read(raw_container, shard.name) as handle:
                while handle.read(4 * MiB):
                    pass

    raw_up = timed(raw_put)
    raw_down = timed(raw_get)
    for name in [i.name for i in store.list(container)]:
        store.delete(container, name)
    for shard in shards:
        store.delete(raw_container, shard.name)
    mib = size / MiB
    return {
        "upload_mib_s": mib / up,
        "download_mib_s": mib / down,
        "raw_put_mib_s": mib / raw_up,
        "raw_get_mib_s": mib / raw_down,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB instead of 256 MiB")
    args = parser.parse_args()
    size = (32 if args.quick else 256) * MiB
    try:
        azurite = start_azurite()
    except AzuriteUnavailable as exc:
        print(json.dumps({"error": f"azurite unavailable: {exc}", "targets_met": False}))
        return 1
    work = Path(tempfile.mkdtemp(prefix="cleanroom-bench-storage-"))
    try:
        source = work / "datasource"
        make_datasource(source, size)
        local = measure(LocalBlobStore(work / "store"), source, work, size)
        azure = measure(
            AzureBlobStore(BlobServiceClient.from_connection_string(azurite.connection_string)), source, work, size
        )
    finally:
        azurite.stop()
        shutil.rmtree(work, ignore_errors=True)

    ratios = {key.replace("_mib_s", "_ratio"): azure[key] / local[key] for key in local}
    print(f"datasource: {size // MiB} MiB in {FILE_SIZE // MiB} MiB shards, sealed with AES-256-GCM")
    print(f"{'measure':<16}{'local MiB/s':>14}{'azurite MiB/s':>16}{'azurite/local':>16}")
    for key in local:
        label = key.replace("_mib_s", "")
        print(f"{label:<16}{local[key]:>14.1f}{azure[key]:>16.1f}{ratios[key.replace('_mib_s', '_ratio')]:>16.2f}")
    targets = {"upload_ratio_min": TARGET_RATIO, "download_ratio_min": TARGET_RATIO}
    met = ratios["upload_ratio"] >= TARGET_RATIO and ratios["download_ratio"] >= TARGET_RATIO
    print(
        json.dumps(
            {
                "benchmark": "storage",
                "datasource_mib": size // MiB,
                "local": {k: round(v, 1) for k, v in local.items()},
                "azurite": {k: round(v, 1) for k, v in azure.items()},
                "ratios": {k: round(v, 3) for k, v in ratios.items()},
                "targets": targets,
                "targets_met": met,
            },
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
