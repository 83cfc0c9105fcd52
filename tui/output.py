"""One output layer for every `cleanroom` verb: verbs return what they found or did, this prints it.

A verb decorated with :func:`verb_output` returns data (a :class:`Result`, a :class:`Stream` or a
plain JSON-able value) instead of printing. The decorator adds the same three options to every
verb, so scripts can rely on them everywhere, as they can on `az`:

- ``-o/--output table|json``: ``table`` for people (a verb's own rendering, a one-line summary
  for writes, or a generic table), ``json`` for scripts: exactly one JSON document on stdout
  (JSON Lines for ``--follow`` streams). Keys are camelCase, as `az` and the governance API use,
  at every level a verb builds; a document it prints on someone's behalf (a contract, a config,
  a signed proposal or checkpoint) keeps its own keys, so what is shown is what was signed.
- ``--query EXPR``: a JMESPath expression applied to that JSON document. A string or number
  result prints bare (so ``$(cleanroom ... --query version)`` works, like `az ... -o tsv`);
  anything else prints as JSON. A query that matches nothing is an error, not an empty line.
- ``-w/--workspace DIR`` after the verb, as well as before it.

Output on a terminal fits the terminal; piped output is never wrapped (a table or a long hash
reaches ``grep`` whole). Progress and notes go to stderr. ``NO_COLOR`` turns colour off (rich
honours it in every Console created here).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import click
import jmespath  # type: ignore[import-untyped]
from jmespath.exceptions import JMESPathError  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from core.errors import InvalidInputError, NotFoundError

OUTPUT_FORMATS = ("table", "json")
# Piped output: wide enough that no table cell or line is ever folded.
UNWRAPPED_WIDTH = 1 << 20


@dataclass(frozen=True)
class Result:
    """What a verb found or did.

    ``document`` is what ``-o json`` prints and ``--query`` searches. For people, ``render``
    (given the stdout console) draws the verb's own view; else ``text`` is a one-line summary
    (what a write verb did); else the document is drawn as a generic table under ``title``,
    with ``columns`` (for a list of rows) in that order."""

    document: Any
    text: str | None = None
    render: Callable[[Console], None] | None = None
    title: str | None = None
    columns: Sequence[str] | None = None


@dataclass(frozen=True)
class Stream:
    """Items that arrive over time (``--follow``): each is printed as it comes, as one JSON line
    with ``-o json`` (after ``--query``), else as ``line(item)``."""

    items: Iterable[Any]
    line: Callable[[Any], str]


def stdout_console() -> Console:
    """The console a verb's result goes to: the terminal's width on a terminal, unbounded when
    piped or redirected (rich would otherwise fold everything at 80 columns)."""
    console = Console()
    if console.is_terminal:
        return console
    return Console(width=UNWRAPPED_WIDTH)


def stderr_console() -> Console:
    """Where progress, spinners, warnings and notes go, so stdout stays the result alone."""
    return Console(stderr=True)


def camel(name: str) -> str:
    """``exit_codes`` -> ``exitCodes``: the one JSON key style of the CLI."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(document: Mapping[str, Any]) -> dict[str, Any]:
    """The same mapping with camelCase top-level keys. Only the top level: nested values may be
    user data (a contract's spec, per-application exit codes) whose keys are not ours to rename,
    so whoever builds a nested object spells its keys in camelCase there (tests/test_cli_output.py
    runs the verbs and finds any that do not)."""
    return {camel(key): value for key, value in document.items()}


# -- printing -------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def generic_table(document: Any, *, title: str | None = None, columns: Sequence[str] | None = None) -> Table | None:
    """A list of rows as columns, a mapping as field/value rows; None for anything else."""
    if isinstance(document, list) and all(isinstance(row, Mapping) for row in document):
        keys = list(columns or dict.fromkeys(key for row in document for key in row))
        table = Table(title=title)
        for key in keys:
            table.add_column(key, overflow="fold")
        for row in document:
            table.add_row(*(_cell(row.get(key)) for key in keys))
        return table
    if isinstance(document, Mapping):
        table = Table(title=title, show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for key, value in document.items():
            table.add_row(str(key), _cell(value))
        return table
    return None


def _print_table(result: Result) -> None:
    document = result.document
    if result.render is not None:
        result.render(stdout_console())
    elif result.text is not None:
        click.echo(result.text)
    elif document is None:
        return
    elif document == []:
        click.echo(f"no {result.title or 'results'}")
    elif _scalar(document):
        click.echo(document)
    elif isinstance(document, list) and all(_scalar(item) for item in document):
        for item in document:
            click.echo(item)
    else:
        table = generic_table(document, title=result.title, columns=result.columns)
        if table is None:
            click.echo(_json(document))
        else:
            stdout_console().print(table)


def _search(expression: Any, query: str, document: Any) -> Any:
    found = expression.search(document)
    if found is None:
        raise NotFoundError(
            f"--query {query} matches nothing",
            hint="run the verb with -o json to see the fields (JMESPath, e.g. proposalIds[0])",
        )
    return found


def emit(result: Any, output: str, query: str | None) -> None:
    """Print what a verb returned, as ``--output`` and ``--query`` ask."""
    expression = compile_query(query) if query else None
    if isinstance(result, Stream):
        for item in result.items:
            if expression is not None:
                item = _search(expression, str(query), item)
            if output == "json":
                click.echo(json.dumps(item, sort_keys=True, default=str))
            elif expression is None:
                click.echo(result.line(item))
            else:
                click.echo(item if _scalar(item) else json.dumps(item, sort_keys=True, default=str))
        return
    if not isinstance(result, Result):
        result = Result(result)
    if expression is not None:
        found = _search(expression, str(query), result.document)
        click.echo(found if output == "table" and _scalar(found) else _json(found))
        return
    if output == "json":
        click.echo(_json(result.document))
        return
    _print_table(result)


# -- options --------------------------------------------------------------------------------------
def compile_query(query: str) -> Any:
    """A JMESPath expression, or a one-line error (the old dotted index ``a.0`` gets its fix)."""
    try:
        return jmespath.compile(query)
    except JMESPathError as exc:
        fix = re.sub(r"\.(\d+)\b", r"[\1]", query)
        raise InvalidInputError(
            f"--query {query!r} is not a JMESPath expression ({str(exc).splitlines()[0]})",
            hint=f"try --query '{fix}'"
            if fix != query
            else "see https://jmespath.org, e.g. --query \"[?state=='Open'].proposalId\"",
        ) from None


def _check_query(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        compile_query(value)  # a bad expression fails before the verb does anything
    return value


def _workspace_after_verb(ctx: click.Context, _: click.Parameter, value: Path | None) -> None:
    """``cleanroom VERB ... -w DIR``: the same as ``cleanroom -w DIR VERB ...``."""
    if value is not None:
        ctx.ensure_object(dict)["workspace"] = value


class OutputFormat(click.Choice):
    """``table`` or ``json``; anything else is a one-line error naming the fix (``renamed``, for a
    verb whose ``--output`` used to take a folder)."""

    def __init__(self, renamed: str | None = None) -> None:
        super().__init__(OUTPUT_FORMATS)
        self.renamed = renamed

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value not in OUTPUT_FORMATS:
            raise InvalidInputError(
                f"--output {value!r} is not table or json",
                hint=self.renamed or "pass -o table (for people) or -o json (for scripts)",
            )
        return value


Verb = Callable[..., Any]


@overload
def verb_output(function: Verb) -> Verb: ...
@overload
def verb_output(*, renamed_output: str | None = None) -> Callable[[Verb], Verb]: ...
def verb_output(function: Verb | None = None, *, renamed_output: str | None = None) -> Verb | Callable[[Verb], Verb]:
    """Decorate a verb that returns its data: add ``-o/--output``, ``--query`` and ``-w`` and print
    the result. ``renamed_output`` is the fix named when ``--output`` is given something other than
    a format, for a verb whose ``--output`` used to mean something else."""

    def decorate(verb: Verb) -> Verb:
        @functools.wraps(verb)
        def run(*args: Any, output: str, query: str | None, **kwargs: Any) -> None:
            emit(verb(*args, **kwargs), output, query)

        run = click.option(
            "--workspace",
            "-w",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            expose_value=False,
            callback=_workspace_after_verb,
            help="The persona workspace to act as (the same as before the verb).",
        )(run)
        run = click.option(
            "--query",
            default=None,
            metavar="JMESPATH",
            callback=_check_query,
            help="JMESPath over the JSON output, e.g. proposalIds[0]; strings print bare.",
        )(run)
        return click.option(
            "--output",
            "-o",
            type=OutputFormat(renamed_output),
            default="table",
            show_default=True,
            help="table for people, json for scripts (one document on stdout).",
        )(run)

    return decorate(function) if function is not None else decorate
