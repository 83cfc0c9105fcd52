"""Write docs/cli.md from the `cleanroom` command tree itself, so the reference never drifts.

Run `python scripts/cli_reference.py` after changing a verb; tests/test_cli_reference.py fails
while docs/cli.md differs from what this would write.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui.cli import cli  # noqa: E402

TARGET = ROOT / "docs" / "cli.md"


def _walk(command: click.Command, path: list[str], ctx: click.Context):
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name], click.Context(sub, info_name=name, parent=ctx))


def render() -> str:
    # A fixed width: help text must not depend on the terminal that regenerates it.
    root_ctx = click.Context(cli, info_name="cleanroom", terminal_width=100, max_content_width=100,
                             **cli.context_settings)
    parts = [
        "# `cleanroom` CLI reference\n",
        "Generated from the command tree by `scripts/cli_reference.py`; do not edit by hand.",
        "Every verb also answers `--help`.\n",
    ]
    for path, command, ctx in _walk(cli, ["cleanroom"], root_ctx):
        title = " ".join(path)
        parts.append(f"## `{title}`\n")
        with ctx:
            help_text = command.get_help(ctx)
        parts.append("```text\n" + help_text.rstrip() + "\n```\n")
    return "\n".join(parts)


def main() -> None:
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
