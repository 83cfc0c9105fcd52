"""`cleanroom summarise`: the party that receives summaries reads them, or sends one document to a served summariser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from core.engine import PersonaEngine
from core.errors import InvalidInputError
from core.summaries import SummarySet
from tui.output import Result, camel_keys, verb_output

MAX_FILE_BYTES = 64 * 1024 * 1024  # the largest max_document_bytes a policy may vote


@click.group("summarise")
def summarise() -> None:
    """Summaries of another party's documents: only the summaries ever reach you.

    \b
    Example (the summaries a batch run sealed to your datasink):
      cleanroom -w W/reader summarise show --contract summarisation
    Example (one document to a contract that serves POST /summarize):
      cleanroom -w W/reader summarise send --contract summarise-api --file letter.txt -o json
    """


@summarise.command("show")
@click.option("--contract", "contract_id", required=True, help="The contract whose summariser writes your datasink.")
@click.option("--datasink", default=None, help="Your datasink to read, when the contract seals summaries to several.")
@verb_output
@click.pass_context
def show(ctx: click.Context, contract_id: str, datasink: str | None) -> Result:
    """Decrypt your summaries and list them with the method that made them, each re-checked
    against the caps the contract voted (sentences and ratio of summary to document).

    The sink is decrypted into a private temporary folder that is removed before this returns.

    \b
    Example:
      cleanroom -w W/reader summarise show --contract summarisation
      cleanroom -w W/reader summarise show --contract summarisation -o json --query "summaries[].ratio"
    """
    from core.summaries import read_summaries

    engine = PersonaEngine.open(ctx.obj["workspace"])
    try:
        received = read_summaries(engine, contract_id, datasink=datasink)
    finally:
        engine.close()
    return Result(received.as_dict(), render=lambda console: _render(console, received))


def _render(console: Console, received: SummarySet) -> None:
    policy = received.sink.policy
    table = Table(
        title=f"summaries in '{received.sink.datasink}' of '{received.contract_id}' ({received.method})",
        caption=f"caps: {policy['max_sentences']} sentences, ratio {policy['max_ratio']}, "
        f"{policy['max_document_bytes']} bytes per document",
    )
    for column in ("document", "sentences", "ratio / cap", "within caps", "summary"):
        table.add_column(column, no_wrap=column != "summary")
    for item in received.summaries:
        table.add_row(*item.against_caps(policy), item.summary)
    console.print(table)
    for refusal in received.refused:
        console.print(f"refused {refusal['id']}: {refusal['refused']}")


@summarise.command("send")
@click.option("--contract", "contract_id", required=True, help="The contract whose clean room serves POST /summarize.")
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A UTF-8 text document.",
)
@click.option("--id", "document_id", default=None, help="The id the summary carries (default: the file name).")
@verb_output
@click.pass_context
def send(ctx: click.Context, contract_id: str, path: Path, document_id: str | None) -> Result:
    """Send one document to the contract's summariser through its TLS ingress (pinned to the
    contract's CA, with a token governance issues to you) and print the capped summary.

    \b
    Example:
      cleanroom -w W/reader summarise send --contract summarise-api --file letter.txt
    """
    from core.summaries import send_document

    text = _document_text(path)
    engine = PersonaEngine.open(ctx.obj["workspace"])
    try:
        answer = send_document(engine, contract_id, text, document_id or path.name)
    finally:
        engine.close()
    return Result(camel_keys(answer), render=lambda console: _render_one(console, answer))


def _document_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InvalidInputError(
            f"document {path} is {size} bytes, more than any voted cap allows", hint="split it into smaller documents"
        )
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"document {path} is not UTF-8 text (bad byte at offset {exc.start})", hint="save it as UTF-8"
        ) from None


def _render_one(console: Console, answer: dict[str, Any]) -> None:
    console.print(
        f"{answer.get('id')}: {answer.get('sentences')} sentence(s), ratio {answer.get('ratio')} "
        f"({answer.get('method')})"
    )
    console.print(str(answer.get("summary", "")))
