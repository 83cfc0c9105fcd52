"""`cleanroom model ...`: the provider prepares a model for the clean room."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tui.output import Result, stderr_console, verb_output


@click.group("model")
def model() -> None:
    """Prepare models for the clean room (PyTorch safetensors + ONNX).

    \b
    Example:
      cleanroom model prepare --output-dir ./model
    """


@model.command("prepare")
@click.option(
    "--base",
    default=None,
    metavar="NAME|HUB-ID|PATH",
    help="Base model: a local safetensors folder, a hub id (online only), or omit for "
    "the offline all-MiniLM-L6-v2 shipped with cleanroom-console.",
)
@click.option(
    "--output-dir",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to create: it receives pytorch/ and onnx/.",
)
@click.option(
    "--max-length",
    default=128,
    show_default=True,
    type=int,
    help="Tokens the inference server keeps per text (longer texts are truncated).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the new classification head.")
@verb_output(renamed_output="the model folder is now --output-dir DIR (--output chooses table or json)")
def prepare(base: str | None, output_dir: Path, max_length: int, seed: int) -> Result:
    """Write OUTPUT_DIR/pytorch (safetensors + tokenizer + 2-label config) and OUTPUT_DIR/onnx
    (model.onnx, int8 model.int8.onnx, tokenizer). Pickle checkpoints (.bin/.pt/.pkl) are refused.

    \b
    Example (offline default base):
      cleanroom model prepare --output-dir ./provider/model
    Example (a hub model, online users):
      cleanroom model prepare --base distilbert-base-uncased --output-dir ./provider/model
    """
    from core.ml.datasets import sha256_file
    from core.ml.model_preparation import prepare as prepare_model

    with stderr_console().status("preparing model") as status:
        prepared = prepare_model(
            base, output_dir, max_length=max_length, seed=seed, on_stage=lambda stage: status.update(stage)
        )
    files = [
        {"path": str(p.relative_to(prepared.output)), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in prepared.files
    ]
    document = {"base": prepared.base, "outputDir": str(prepared.output), "files": files}
    return Result(document, render=lambda console: _render(console, document))


def _render(console: Console, document: dict[str, Any]) -> None:
    table = Table(title=f"prepared {document['outputDir']} from {document['base']}")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("sha256")
    for entry in document["files"]:
        table.add_row(entry["path"], f"{entry['bytes']:,}", entry["sha256"][:16] + "…")
    console.print(table)
