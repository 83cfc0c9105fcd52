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


def test_the_exit_code_table_is_the_error_classes() -> None:
    """docs/cli.md's table lists each error class of core.errors with its own code and meaning,
    so a new class (or a changed code) reaches the docs on the next regeneration."""
    import re

    from core import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CleanroomError)]
    assert len({c.exit_code for c in classes}) == len(classes), "two error classes share an exit code"
    for error in classes:
        assert "meaning" in vars(error) and "\n" not in error.meaning, (
            f"{error.__name__} needs its own one-line meaning"
        )
    text = (ROOT / "docs" / "cli.md").read_text()
    table = text[text.index("| code | meaning |") :].split("\n\n")[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", table, re.MULTILINE))
    not_errors = {str(code): meaning for code, meaning in _generator().NOT_ERRORS.items()}
    assert rows == {str(c.exit_code): c.meaning for c in classes} | not_errors
