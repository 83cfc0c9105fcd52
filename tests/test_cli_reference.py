"""docs/cli.md is generated from the command tree; it must match the code that ships."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    generator = _generator()
    assert (ROOT / "docs" / "cli.md").read_text() == generator.render(), (
        "docs/cli.md is stale: run `python scripts/cli_reference.py`"
    )


def test_every_verb_has_an_example() -> None:
    generator = _generator()
    import click

    from tui.cli import cli

    missing = []
    for path, command, _ctx in generator._walk(cli, ["cleanroom"], click.Context(cli, info_name="cleanroom")):
        if isinstance(command, click.Group):
            continue
        if "example" not in (command.help or "").lower():
            missing.append(" ".join(path))
    assert missing == [], f"verbs without an Example in --help: {missing}"
