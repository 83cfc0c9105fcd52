"""A party's datasources and datasinks as operations: upload, download, list.

Binds the three things a transfer needs, each from its own place: the asset's store spec (the
config fragment), its DEK (the workspace's ``keys/``), and the store itself (the locator). Front
ends call these with a plain progress callback and render it however they like.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config.fragment import DataAsset
from core.config.party import party_fragment, pin_upload
from core.crypto.kek import dek_for
from core.errors import NotFoundError
from core.storage.locator import open_store
from core.storage.transfer import (
    Manifest,
    TransferProgress,
    content_hash,
    download_folder,
    read_manifest,
    upload_folder,
)
from core.workspace import Workspace

KINDS = ("datasource", "datasink")


@dataclass(frozen=True)
class AssetStatus:
    """What ``datasource list`` shows: where an asset lives and what its current upload holds."""

    kind: str
    name: str
    location: str
    uploaded: bool
    files: int
    plaintext_bytes: int


def _asset(workspace: Workspace, kind: str, name: str) -> DataAsset:
    fragment = party_fragment(workspace)
    return fragment.datasource(name) if kind == "datasource" else fragment.datasink(name)


def upload_datasource(
    workspace: Workspace, name: str, folder: Path, *, progress: TransferProgress | None = None
) -> Manifest:
    """Encrypt every file of ``folder`` with the datasource's DEK, upload it to its store, and pin
    the upload's ciphertext hash in the fragment (``content_hash``): a contract proposed after
    this names exactly these blobs, and the runtime refuses any others."""
    asset = _asset(workspace, "datasource", name)
    dek = dek_for(workspace.keys_dir, name)
    store = open_store(asset.store)
    manifest = upload_folder(store, asset.container, dek, folder, label=f"datasource '{name}'", progress=progress)
    pin_upload(workspace, name, content_hash(store, asset.container))
    return manifest


def download_asset(
    workspace: Workspace, kind: str, name: str, target: Path, *, progress: TransferProgress | None = None
) -> Manifest:
    """Download and decrypt a datasource or datasink into ``target``, file by file, atomically per file."""
    asset = _asset(workspace, kind, name)
    dek = dek_for(workspace.keys_dir, name)
    return download_folder(
        open_store(asset.store), asset.container, dek, target, label=f"{kind} '{name}'", progress=progress
    )


def list_assets(workspace: Workspace, kind: str) -> list[AssetStatus]:
    """Every datasource (or datasink) in the party's fragment, with its current upload if any."""
    fragment = party_fragment(workspace)
    statuses = []
    for asset in fragment.datasources if kind == "datasource" else fragment.datasinks:
        store = open_store(asset.store)
        location = f"{store.describe().rstrip('/')}/{asset.container}"
        try:
            manifest = read_manifest(
                store, asset.container, dek_for(workspace.keys_dir, asset.name), label=f"{kind} '{asset.name}'"
            )
        except NotFoundError:
            statuses.append(AssetStatus(kind, asset.name, location, False, 0, 0))
            continue
        statuses.append(AssetStatus(kind, asset.name, location, True, len(manifest.files), manifest.total_bytes))
    return statuses
