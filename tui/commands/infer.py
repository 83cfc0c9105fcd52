"""`cleanroom infer`: the consumer evaluates its labelled dataset against a clean-room endpoint."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core.errors import InvalidInputError
from core.ml.evaluation import DEFAULT_BATCH_SIZE, EvaluationReport
from tui.output import Result, camel_keys, stderr_console, verb_output


@click.command("infer")
@click.option(
    "--dataset",
    required=True,
    metavar="FOLDER|PARQUET|rotten_tomatoes",
    help="Labelled data: a folder of <split>.parquet, one .parquet file, a datasets "
    "save_to_disk folder, or the vendored rotten_tomatoes.",
)
@click.option("--split", default="test", show_default=True, help="Which split to send.")
@click.option("--endpoint", required=True, help="The clean room's inference URL, https://HOST:PORT.")
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM of the clean room's CA; the endpoint's certificate must chain to it.",
)
@click.option(
    "--token",
    envvar="CLEANROOM_TOKEN",
    default=None,
    help="Bearer token for the endpoint. On the command line every local user can read it "
    "(ps, /proc): prefer env CLEANROOM_TOKEN or --token-file.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the bearer token from this file (yours, mode 0600) instead of --token.",
)
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=int, help="Texts per request.")
@click.option("--per-row", is_flag=True, help="One request per row, as the field's sample client does.")
@click.option("--limit", type=int, default=None, help="Send only the first N rows.")
@verb_output
def infer(
    dataset: str,
    split: str,
    endpoint: str,
    ca: Path | None,
    token: str | None,
    token_file: Path | None,
    batch_size: int,
    per_row: bool,
    limit: int | None,
) -> Result:
    """Send a labelled split to the endpoint and print Total rows, Correct and Accuracy
    (-o json adds per-class precision/recall and the confusion matrix).

    \b
    Example:
      export CLEANROOM_TOKEN=$(cleanroom -w W/consumer governance contract token --id C)
      cleanroom infer --dataset rotten_tomatoes --split test \\
        --endpoint https://127.0.0.1:8443 --ca W/consumer/ca.pem
    Example (the token in a file only you can read, never on a command line):
      (umask 077; cleanroom -w W/consumer governance contract token --id C > token)
      cleanroom infer --dataset ./data --endpoint https://127.0.0.1:8443 --ca ca.pem --token-file token
    Example (the sample's one-request-per-row protocol, JSON report):
      cleanroom infer --dataset ./data --endpoint https://127.0.0.1:8443 --ca ca.pem --per-row --output json
    """
    from core.ml.datasets import LabelledRows, load_split
    from core.ml.evaluation import EvaluationRun, InferenceClient

    if token_file is not None:
        token = read_token_file(token_file, also_given=token is not None)
    rows = load_split(dataset, split)
    if limit is not None:
        rows = LabelledRows(texts=rows.texts[:limit], labels=rows.labels[:limit])
    with InferenceClient(endpoint, ca=ca, token=token) as client:
        run = EvaluationRun(rows, client, batch_size=batch_size, per_row=per_row)
        columns = (
            TextColumn("[bold]inferring"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("accuracy {task.fields[accuracy]:.3f}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=stderr_console()) as bar:
            task = bar.add_task("infer", total=len(rows), accuracy=0.0)
            for progress in run:
                bar.update(task, completed=progress.done, accuracy=progress.accuracy)
        report = run.report()
    document = camel_keys(report.as_dict())
    document["confusionMatrix"] = camel_keys(document["confusionMatrix"])
    return Result(document, render=lambda console: _render(console, report))


def read_token_file(path: Path, *, also_given: bool) -> str:
    """The bearer token in ``path``: one line, in a regular file no other user can read.

    A token is a credential for the clean room's endpoint; a file group or world can read
    leaks it as surely as ``--token`` on a command line does."""
    import os
    import stat

    if also_given:
        raise InvalidInputError(
            "--token (or CLEANROOM_TOKEN) and --token-file both give a token", hint="pass only one of them"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read token file {path} ({exc.strerror})",
            hint="write it with `cleanroom governance contract token --id C > FILE`",
        ) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInputError(f"token file {path} is not a regular file", hint="pass the file holding the token")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or info.st_uid != os.getuid():
            raise InvalidInputError(
                f"token file {path} can be read by other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}, uid {info.st_uid})",
                hint=f"run `chmod 600 {path}` (it must be yours)",
            )
        text = handle.read(16_384).decode(errors="replace").strip()
    if not text or len(text.splitlines()) != 1:
        raise InvalidInputError(
            f"token file {path} does not hold one token line",
            hint="write it with `cleanroom governance contract token --id C > FILE`",
        )
    return text


def _render(console: Console, report: EvaluationReport) -> None:
    table = Table(show_header=False)
    table.add_row("Total rows", str(report.total))
    table.add_row("Correct", str(report.correct))
    table.add_row("Accuracy", f"{report.accuracy:.2%}")
    table.add_row("Requests", str(report.requests))
    table.add_row("Rows/s", f"{report.total / report.elapsed_s:.1f}" if report.elapsed_s else "-")
    table.add_row(
        "Model", f"{report.model.get('model_file', '?')} sha256 {str(report.model.get('model_sha256', '?'))[:16]}…"
    )
    console.print(table)
