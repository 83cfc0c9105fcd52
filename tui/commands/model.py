"""`cleanroom model ...`: the provider prepares a model for the clean room."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from tui.output import Result, stderr_console, verb_output

if TYPE_CHECKING:
    from core.engine import PersonaEngine


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
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder from `cleanroom model prepare` (its onnx/ is used) or an ONNX folder with tokenizer.json; "
    "omit it to prepare --base and package it in one step.",
)
@click.option(
    "--base",
    default=None,
    metavar="NAME|HUB-ID|PATH",
    help="Without --from-model: the base model to prepare (as `model prepare --base`); default the offline "
    "all-MiniLM-L6-v2, which makes the shipped MiniLM classifier package.",
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
def package_init(from_model: Path | None, base: str | None, task: str, output_dir: Path) -> Result:
    """Write a model package from a prepared ONNX classifier, then check it.

    \b
    Example:
      cleanroom model package init --from-model ./prepared --output-dir ./pkg
    Example (the shipped MiniLM classifier, offline):
      cleanroom model package init --output-dir ./minilm-package
    """
    from core.errors import InvalidInputError
    from core.onboarding.package import check_package
    from core.onboarding.scaffold import scaffold_package

    if from_model is not None:
        if base is not None:
            raise InvalidInputError("--base applies only without --from-model", hint="give one of them")
        created = scaffold_package(from_model, output_dir, task=task)
    elif task != "text-classification":
        raise InvalidInputError(
            f"--task {task!r} needs --from-model", hint="a prepared base is packaged as text-classification only"
        )
    else:
        from core.ml.classifier_package import build_classifier_package

        with stderr_console().status("preparing model") as status:
            created = build_classifier_package(output_dir, base=base, on_stage=lambda stage: status.update(stage))
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


# -- the model registry (governance): onboard, list, show, versions, publish, unpublish, delete ----
def _engine(ctx: click.Context) -> PersonaEngine:
    from core.engine import PersonaEngine
    from core.workspace import Workspace

    return PersonaEngine(Workspace.open(ctx.obj["workspace"]))


@model.command("onboard")
@click.option(
    "--package",
    "package_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The model package folder (`cleanroom model package init` writes one).",
)
@click.option("--name", required=True, help="The model's name in the registry (unique; you become its owner).")
@click.option("--version", "version", required=True, help="This version's name, e.g. 1 or 2026-12-03.")
@click.option("--description", default="", help="What the model does, for the other members.")
@verb_output
@click.pass_context
def onboard(ctx: click.Context, package_dir: Path, name: str, version: str, description: str) -> Result:
    """Check a package locally and register it as a new version (status created).

    Only the clean room moves it further (downloaded, scanning, ... verified): run the onboarding
    clean room with the commands this verb prints. Exits 2, registering nothing, if the package
    fails its check.

    \b
    Example:
      cleanroom -w W/provider model onboard --package ./pkg --name minilm --version 1 \\
          --description "sentiment classifier"
    """
    from core.governance.onboarding_contract import onboarding_env
    from core.onboarding.package import check_package
    from core.onboarding.package_digest import package_sha256

    report = check_package(package_dir)
    if not report.ok:
        _refuse(report.document(), f"model package '{package_dir}' fails its check; nothing was registered")
    package_hash = package_sha256(package_dir)
    with _engine(ctx) as engine:
        shown = engine.onboard_model(
            name, version, package_hash=package_hash, wrapper_hash=report.source_sha256, description=description
        )
    env = onboarding_env(name, version, package_hash, report.source_sha256)
    source, contract = f"{name}-package", f"onboard-{name}-{version}"
    steps = [
        f"cleanroom -w W/provider config add-datasource --name {source}",
        f"cleanroom -w W/provider datasource upload --name {source} --dataset-folder {package_dir}",
        f"cleanroom -w W/hoster config add-application --name onboard-{name} --entrypoint containers/onboarding "
        f'--command "python -m containers.onboarding --package-dir /mnt/remote/package" '
        f"--mounts src={source},dst=/mnt/remote/package " + " ".join(f"--env {k}={v}" for k, v in env.items()),
        f"cleanroom config view --configs W/hoster W/provider --output json > {contract}.json",
        f"cleanroom -w W/hoster governance contract create --id {contract} --data @{contract}.json",
        f"cleanroom -w W/hoster governance contract propose --id {contract} --version "
        f"$(cleanroom -w W/hoster governance contract show --id {contract} --query version)",
        f"every member: cleanroom -w W/<member> governance contract vote --id {contract} --proposal-id "
        f"$(cleanroom -w W/<member> governance contract show --id {contract} --query proposalId) --action accept",
        f"cleanroom -w W/hoster governance deployment generate --contract-id {contract} ..., then propose and vote "
        "its deployment spec and clean-room policy as for any clean room",
        f"cleanroom -w W/hoster deployment start --contract-id {contract}   (then: cleanroom model show {name})",
    ]
    document = {"model": shown, "version": version, "packageHash": package_hash, "wrapperHash": report.source_sha256}
    document["nextSteps"] = steps

    def render(console: Console) -> None:
        console.print(
            f"registered {name} version {version}: created (package {package_hash[:16]}…, wrapper "
            f"{report.source_sha256[:16]}…). Next, verify it in an onboarding clean room:",
            markup=False,
        )
        for step in steps:
            console.print(f"  {step}", markup=False, soft_wrap=True)

    return Result(document, render=render)


@model.command("list")
@verb_output
@click.pass_context
def model_list(ctx: click.Context) -> Result:
    """Every model in the registry with its owner and each version's status.

    \b
    Example:
      cleanroom -w W/consumer model list --query "[].name"
    """
    from tui.model_statuses import status_label

    with _engine(ctx) as engine:
        models = engine.models()
    rows = [
        {
            "name": m["name"],
            "owner": m["owner"][:16] + "…",
            "versions": ", ".join(
                f"{v} {status_label(d['status'])}{' (published)' if d['published'] else ''}"
                for v, d in m["versions"].items()
            ),
            "description": m["description"],
        }
        for m in models
    ]
    return Result(models, render=lambda console: _render_rows(console, rows, "model registry"))


@model.command("show")
@click.argument("name")
@verb_output
@click.pass_context
def model_show(ctx: click.Context, name: str) -> Result:
    """One model: owner, description, and each version's status with its details and history.

    \b
    Example:
      cleanroom -w W/provider model show minilm --query "versions.\\"1\\".status"
    """
    with _engine(ctx) as engine:
        shown = engine.model(name)
    return Result(shown, render=lambda console: _render_model(console, shown))


@model.command("versions")
@click.argument("name")
@verb_output
@click.pass_context
def model_versions(ctx: click.Context, name: str) -> Result:
    """A model's versions: status, why (details), published, and the pinned hashes.

    \b
    Example:
      cleanroom -w W/provider model versions minilm -o json
    """
    from tui.model_statuses import details_line, status_label

    with _engine(ctx) as engine:
        shown = engine.model(name)
    rows = [
        {"version": v} | d | {"statusLabel": status_label(d["status"]), "why": details_line(d["details"])}
        for v, d in shown["versions"].items()
    ]
    table = [
        {
            "version": r["version"],
            "status": r["statusLabel"],
            "details": r["why"],
            "published": "yes" if r["published"] else "no",
            "package": r["packageHash"][:16] + "…",
            "wrapper": r["wrapperHash"][:16] + "…",
        }
        for r in rows
    ]
    document = [{k: v for k, v in r.items() if k not in ("statusLabel", "why")} for r in rows]
    return Result(document, render=lambda console: _render_rows(console, table, f"versions of {name}"))


@model.command("publish")
@click.argument("name")
@click.option("--version", "version", required=True, help="The verified version to publish.")
@verb_output
@click.pass_context
def model_publish(ctx: click.Context, name: str, version: str) -> Result:
    """Propose publishing a verified version: every member must accept (`governance proposal vote`).

    \b
    Example:
      cleanroom -w W/provider model publish minilm --version 1 --query proposalId
    """
    with _engine(ctx) as engine:
        proposal = engine.propose_publish_model(name, version)
    return Result(
        proposal,
        text=f"proposed publishing {name} version {version} ({proposal['proposalId']}); every member must "
        "accept it with `cleanroom governance proposal vote`",
    )


@model.command("unpublish")
@click.argument("name")
@click.option("--version", "version", required=True, help="The published version to take off publication.")
@verb_output
@click.pass_context
def model_unpublish(ctx: click.Context, name: str, version: str) -> Result:
    """Take a version off publication: any member may, alone (ledgered).

    \b
    Example:
      cleanroom -w W/consumer model unpublish minilm --version 1
    """
    with _engine(ctx) as engine:
        shown = engine.unpublish_model(name, version)
    return Result(shown, text=f"unpublished {name} version {version}")


@model.command("delete")
@click.argument("name")
@click.option("--version", "version", default=None, help="Delete only this version (default: the whole model).")
@verb_output
@click.pass_context
def model_delete(ctx: click.Context, name: str, version: str | None) -> Result:
    """Delete a model or one version: its owner only, and never while a version is published.

    \b
    Example:
      cleanroom -w W/provider model delete minilm --version 1
    """
    with _engine(ctx) as engine:
        deleted = engine.delete_model(name, version)
    return Result(deleted, text=f"deleted {name}" + (f" version {version}" if version else ""))


def _render_rows(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    from tui.output import generic_table

    table = generic_table(rows, title=title)
    console.print(table if table is not None else f"{title}: none")


def _render_model(console: Console, shown: dict[str, Any]) -> None:
    from tui.model_statuses import details_line, status_label

    console.print(f"{shown['name']} (owner {shown['owner'][:16]}…): {shown['description']}", markup=False)
    for version, data in shown["versions"].items():
        published = ", published" if data["published"] else ""
        console.print(f"version {version}: {status_label(data['status'])}{published}", markup=False)
        for entry in data["history"]:
            findings = entry["details"].get("findings") or []
            why = f"{len(findings)} finding(s):" if findings else details_line(entry["details"])
            console.print(f"  {entry['status']:<18} {entry['writer'][:24]:<24} {why}", markup=False, soft_wrap=True)
            for finding in findings:  # every scan finding, one per line: what the provider must fix
                console.print(f"    {finding}", markup=False, soft_wrap=True)
        _render_results(console, version, data)


def _render_results(console: Console, version: str, data: dict[str, Any]) -> None:
    """The version's regression result and recorded load test, drawn as their own verbs draw them."""
    from tui.commands.model_tests import _render_loadtest, _render_regression

    regression = data.get("regression")
    if regression is not None:
        console.print(
            f"version {version} regression against version {regression['baselineVersion']} "
            f"(contract {regression['contractId']}, written by its clean room):",
            markup=False,
        )
        _render_regression(console, regression)
    loadtest = data.get("loadtest")
    if loadtest is not None:
        console.print(
            f"version {version} load test through contract {loadtest['contractId']} "
            f"(recorded by {loadtest['writer'][:16]}…):",
            markup=False,
        )
        _render_loadtest(console, loadtest)


from tui.commands import model_tests  # noqa: E402  (the load and regression tests join this group)

model_tests.register(model)
