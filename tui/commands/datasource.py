"""`cleanroom datasource ...` and `cleanroom datasink ...`: move encrypted folders in and out of stores.

Upload encrypts on the way out and download decrypts on the way in, so plaintext never reaches
a store. Bars (bytes, rate, ETA) go to stderr; summaries and JSON go to stdout.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from core.config.party import party_fragment
from core.datasource import AssetStatus, download_asset, list_assets, upload_datasource
from core.workspace import Workspace
from tui.output import Result, camel_keys, verb_output
from tui.progress import transfer_progress


def _workspace(ctx: click.Context) -> Workspace:
    return Workspace.open(ctx.obj["workspace"])


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return str(count)


@click.group()
def datasource() -> None:
    """Encrypt and upload, or download and decrypt, this party's datasources.

    \b
    Example:
      cleanroom -w W/consumer datasource upload --name training-data --dataset-folder ./data
      cleanroom -w W/consumer datasource download --name training-data --target-folder ./out
    """


@click.group()
def datasink() -> None:
    """Download and decrypt this party's datasinks (outputs the clean room sealed to it).

    \b
    Example:
      cleanroom -w W/provider datasink download --name trained-model --target-folder ./trained
    """


@datasource.command("upload")
@click.option("--name", required=True, help="Datasource name from this workspace's config.")
@click.option(
    "--dataset-folder",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder whose files are encrypted and uploaded (recursively).",
)
@verb_output
@click.pass_context
def upload(ctx: click.Context, name: str, dataset_folder: Path) -> Result:
    """Encrypt every file of a folder with the datasource's DEK and upload it.

    Files are sealed in 1 MiB AES-256-GCM chunks; a sealed manifest lists them so that
    download detects missing or swapped files. Readers switch to the new upload only once
    every file is stored. The SHA-256 of the uploaded ciphertext is pinned in this party's
    config (content_hash): a contract created after the upload names exactly this data, and
    the clean room refuses any other (upload before the contract is created).

    \b
    Example:
      cleanroom -w W/consumer datasource upload --name training-data --dataset-folder ./data
    """
    workspace = _workspace(ctx)
    with transfer_progress(f"upload {name}") as progress:
        manifest = upload_datasource(workspace, name, dataset_folder, progress=progress)
    pinned = party_fragment(workspace).datasource(name).content_hash
    return Result(
        {
            "datasource": name,
            "files": len(manifest.files),
            "plaintextBytes": manifest.total_bytes,
            "contentHash": pinned,
        },
        text=f"uploaded {len(manifest.files)} files ({_size(manifest.total_bytes)}) to datasource {name}, encrypted;"
        f" pinned {pinned} in this party's config",
    )


def _download_command(kind: str) -> click.Command:
    @click.option("--name", required=True, help=f"{kind.capitalize()} name from this workspace's config.")
    @click.option(
        "--target-folder",
        required=True,
        type=click.Path(path_type=Path),
        help="Folder the decrypted files are written to (created if missing).",
    )
    @verb_output
    @click.pass_context
    def command(ctx: click.Context, name: str, target_folder: Path) -> Result:
        workspace = _workspace(ctx)
        with transfer_progress(f"download {name}") as progress:
            manifest = download_asset(workspace, kind, name, target_folder, progress=progress)
        return Result(
            {
                kind: name,
                "files": len(manifest.files),
                "plaintextBytes": manifest.total_bytes,
                "targetFolder": str(target_folder),
            },
            text=f"decrypted {len(manifest.files)} files ({_size(manifest.total_bytes)}) "
            f"of {kind} {name} into {target_folder}",
        )

    example = (
        "cleanroom -w W/consumer datasource download --name training-data --target-folder ./out"
        if kind == "datasource"
        else "cleanroom -w W/provider datasink download --name trained-model --target-folder ./trained"
    )
    command.__doc__ = f"""Download the {kind} and decrypt it into a folder, byte for byte.

    Every chunk is authenticated. Each file is written under a temporary name and renamed
    only after its last chunk verifies: a tampered, truncated or reordered blob fails with
    an error naming the file, and its plaintext is never written.

    \b
    Example:
      {example}
    """
    return click.command("download")(command)


def _render_assets(console: Console, kind: str, statuses: list[AssetStatus]) -> None:
    if not statuses:
        console.print(f"no {kind}s yet: declare one with `cleanroom config add-{kind} --name NAME`", highlight=False)
        return
    table = Table(title=f"{kind}s")
    for column in ("name", "location", "uploaded", "files", "size"):
        table.add_column(column)
    for status in statuses:
        table.add_row(
            status.name,
            status.location,
            "yes" if status.uploaded else "no",
            str(status.files),
            _size(status.plaintext_bytes),
        )
    console.print(table)


def _list_command(kind: str) -> click.Command:
    @verb_output
    @click.pass_context
    def command(ctx: click.Context) -> Result:
        statuses = list_assets(_workspace(ctx), kind)
        return Result(
            [camel_keys(asdict(status)) for status in statuses],
            render=lambda console: _render_assets(console, kind, statuses),
        )

    command.__doc__ = f"""List this party's {kind}s, where they are stored and what their current upload holds.

    \b
    Example:
      cleanroom -w W/consumer {kind} list --output json
    """
    return click.command("list")(command)


datasource.add_command(_download_command("datasource"))
datasource.add_command(_list_command("datasource"))
datasink.add_command(_download_command("datasink"))
datasink.add_command(_list_command("datasink"))
