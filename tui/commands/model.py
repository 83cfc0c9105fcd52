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
    """Prepare, package and scan models for the clean room (safetensors + ONNX only).

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


# -- model packages and the vulnerability scan ----------------------------------------------------
@model.group("package")
def package() -> None:
    """Scaffold and check a model package (model/, src/inference.py, requirements, settings).

    \b
    Example:
      cleanroom model prepare --output-dir ./prepared
      cleanroom model package init --from-model ./prepared --task text-classification --output-dir ./pkg
      cleanroom model package check ./pkg
    """


@package.command("init")
@click.option(
    "--from-model",
    "from_model",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder from `cleanroom model prepare` (its onnx/ is used) or an ONNX folder with tokenizer.json.",
)
@click.option("--task", default="text-classification", show_default=True, help="The task the wrapper serves.")
@click.option(
    "--output-dir",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The package folder to create (new or empty).",
)
@verb_output
def package_init(from_model: Path, task: str, output_dir: Path) -> Result:
    """Write a model package from a prepared ONNX classifier, then check it.

    \b
    Example:
      cleanroom model package init --from-model ./prepared --output-dir ./pkg
    """
    from core.onboarding.package import check_package
    from core.onboarding.scaffold import scaffold_package

    created = scaffold_package(from_model, output_dir, task=task)
    report = check_package(created)
    document = report.document()
    if not report.ok:
        _refuse(document, f"model package '{created}' was written but does not pass its check")
    return Result(
        document,
        text=f"wrote model package {created} (wrapper {report.wrapper_class}, source sha256 "
        f"{report.source_sha256[:16]}…); it passes the check",
    )


@package.command("check")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@verb_output
def package_check(folder: Path) -> Result:
    """Check a model package: the allow-list scan, requirements pinned by hash, settings.yml and
    the wrapper class. Exits 2 with one line per finding if anything is wrong; runs no package code.

    \b
    Example (the digest a contract pins for the wrapper code):
      cleanroom model package check ./pkg --query sourceSha256
    """
    from core.onboarding.package import check_package

    report = check_package(folder)
    document = report.document()
    if not report.ok:
        _refuse(document, f"model package '{folder}' fails its check")
    return Result(document, render=lambda console: _render_check(console, document))


@model.command("scan")
@click.argument("path", type=click.Path(path_type=Path))
@verb_output
def scan(path: Path) -> Result:
    """Scan a model package, a model folder or one file with the allow-list scanner.

    Any pickle-bearing file is vulnerable (raw pickles, torch zips, numpy object arrays);
    safetensors headers and ONNX models are validated; links and special files are refused.
    Exits 2 with one line per finding.

    \b
    Example:
      cleanroom model scan ./provider/model -o json --query 'findings[].line'
    """
    import os

    from core.errors import NotFoundError
    from core.onboarding.package import is_package
    from core.onboarding.scan import scan_folder

    if not os.path.lexists(path):
        raise NotFoundError(f"'{path}' does not exist", hint="pass a model package, model folder or file")
    report = scan_folder(path, package=path.is_dir() and not path.is_symlink() and is_package(path))
    document = report.document()
    if report.vulnerable:
        _refuse(document, f"'{path}' is vulnerable")
    return Result(document, render=lambda console: _render_scan(console, document))


def _refuse(document: dict[str, Any], summary: str) -> None:
    """Print the report as asked (-o/--query), each finding on its own line, then fail."""
    from core.errors import InvalidInputError
    from tui.output import emit

    params = click.get_current_context().params
    findings = document["findings"]

    def render(console: Console) -> None:
        for finding in findings:
            console.print(finding["line"], markup=False, soft_wrap=True)

    emit(Result(document, render=render), params.get("output", "table"), params.get("query"))
    raise InvalidInputError(f"{summary}: {len(findings)} finding(s)", hint="fix each finding listed above")


def _render_scan(console: Console, document: dict[str, Any]) -> None:
    table = Table(title=f"scanned {document['root']}: no findings")
    table.add_column("file")
    table.add_column("kind")
    table.add_column("bytes", justify="right")
    table.add_column("sha256")
    for entry in document["files"]:
        table.add_row(entry["path"], entry["kind"], f"{entry['size']:,}", entry["sha256"][:16] + "…")
    console.print(table)


def _render_check(console: Console, document: dict[str, Any]) -> None:
    _render_scan(console, document)
    console.print(
        f"task {document['task']}, python {document['python']}, wrapper {document['wrapperClass']}, "
        f"source sha256 {document['sourceSha256']}",
        markup=False,
    )
    for note in document["notes"]:
        console.print(f"note: {note}", markup=False)
