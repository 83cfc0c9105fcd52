"""`cleanroom model ...`: the provider prepares a model for the clean room."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table


@click.group("model")
def model() -> None:
    """Prepare models for the clean room (PyTorch safetensors + ONNX).

    \b
    Example:
      cleanroom model prepare --output ./model
    """


@model.command("prepare")
@click.option("--base", default=None, metavar="NAME|HUB-ID|PATH",
              help="Base model: a local safetensors folder, a hub id (online only), or omit for "
                   "the offline all-MiniLM-L6-v2 shipped with cleanroom-console.")
@click.option("--output", "output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to create: it receives pytorch/ and onnx/.")
@click.option("--max-length", default=128, show_default=True, type=int,
              help="Tokens the inference server keeps per text (longer texts are truncated).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the new classification head.")
@click.option("--output-format", "--format", "output_format", type=click.Choice(["table", "json"]),
              default="table", show_default=True, help="How to print the written files.")
def prepare(base: str | None, output: Path, max_length: int, seed: int, output_format: str) -> None:
    """Write OUTPUT/pytorch (safetensors + tokenizer + 2-label config) and OUTPUT/onnx
    (model.onnx, int8 model.int8.onnx, tokenizer). Pickle checkpoints (.bin/.pt/.pkl) are refused.

    \b
    Example (offline default base):
      cleanroom model prepare --output ./provider/model
    Example (a hub model, online users):
      cleanroom model prepare --base distilbert-base-uncased --output ./provider/model
    """
    from core.ml.datasets import sha256_file
    from core.ml.model_preparation import prepare as prepare_model

    console = Console(stderr=True)
    with console.status("preparing model") as status:
        prepared = prepare_model(base, output, max_length=max_length, seed=seed,
                                 on_stage=lambda stage: status.update(stage))
    files = [{"path": str(p.relative_to(prepared.output)), "bytes": p.stat().st_size,
              "sha256": sha256_file(p)} for p in prepared.files]
    if output_format == "json":
        click.echo(json.dumps({"base": prepared.base, "output": str(prepared.output), "files": files}))
        return
    table = Table(title=f"prepared {prepared.output} from {prepared.base}")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("sha256")
    for entry in files:
        table.add_row(entry["path"], f"{entry['bytes']:,}", entry["sha256"][:16] + "…")
    Console().print(table)
