"""The `cleanroom` command line. Verbs mirror `az cleanroom`.

Verb groups live in ``tui.commands.*`` and are imported only when invoked, so
``cleanroom --help`` and the light verbs start without importing torch or the TUI.
Verbs return their data and ``tui.output`` prints it, so ``-o table|json``, ``--query`` and
``-w`` after the verb mean the same everywhere. Every ``CleanroomError`` becomes one line on
stderr and its exit code (``core.errors``; 130 for Ctrl-C); nothing else escapes as a
traceback unless ``CLEANROOM_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import click

from core.errors import CleanroomError

# verb -> "module:attribute"; the order is the order `--help` lists them in.
VERBS: dict[str, str] = {
    "up": "tui.commands.services:up",
    "down": "tui.commands.services:down",
    "config": "tui.commands.config:config",
    "datasource": "tui.commands.datasource:datasource",
    "datasink": "tui.commands.datasource:datasink",
    "governance": "tui.commands.governance:governance",
    "deployment": "tui.commands.deployment:deployment",
    "model": "tui.commands.model:model",
    "infer": "tui.commands.infer:infer",
    "summarise": "tui.commands.summarise:summarise",
    "demo": "tui.commands.demo:demo",
    "console": "tui.commands.console:console",
}

SHORT_HELP: dict[str, str] = {
    "up": "Start the embedded default's services on loopback.",
    "down": "Stop the embedded default's services.",
    "config": "Build this party's config fragment and keys.",
    "datasource": "Encrypt and upload, or download and decrypt, a datasource.",
    "datasink": "Download and decrypt a sealed datasink.",
    "governance": "Contracts, proposals, ballots, CA, events and the ledger.",
    "deployment": "Start, watch and stop a clean room for an accepted contract.",
    "model": "Prepare, package and scan models for the clean room.",
    "infer": "Evaluate a dataset against a clean-room inference endpoint.",
    "summarise": "Read the summaries sealed to you, or summarise one document.",
    "demo": "Run the three-persona scenario end to end.",
    "console": "Open the multi-persona terminal console.",
}


class LazyVerbs(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [verb for verb in VERBS if self._available(verb)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = VERBS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(verb, SHORT_HELP.get(verb, "")) for verb in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    @staticmethod
    def _available(verb: str) -> bool:
        module_name = VERBS[verb].split(":")[0]
        return importlib.util.find_spec(module_name) is not None


@click.group(cls=LazyVerbs, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CLEANROOM_WORKSPACE",
    default=Path("."),
    show_default=True,
    help="The persona workspace to act as (env CLEANROOM_WORKSPACE).",
)
@click.version_option(package_name="cleanroom-console")
@click.pass_context
def cli(ctx: click.Context, workspace: Path) -> None:
    """Multi-party ML clean rooms, governed by signed votes.

    Every verb takes -o table|json, --query JMESPATH and -w DIR (also after the verb);
    docs/cli.md lists exit codes, log locations and shell completion. NO_COLOR=1 turns colour off.

    \b
    Example (a consumer encrypts and uploads its training data):
      cleanroom -w W/consumer config init --persona consumer
      cleanroom -w W/consumer config add-datasource --name training-data
      cleanroom -w W/consumer datasource upload --name training-data --dataset-folder ./data
    """
    ctx.ensure_object(dict)
    ctx.obj["workspace"] = workspace


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="cleanroom", standalone_mode=False)
    except CleanroomError as exc:
        if os.environ.get("CLEANROOM_DEBUG") == "1":
            raise
        click.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
