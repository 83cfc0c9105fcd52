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

from core import errors  # noqa: E402
from tui.cli import cli  # noqa: E402

TARGET = ROOT / "docs" / "cli.md"

# the exit codes that are no error class: success, and click's Abort (tui.cli.main exits 130)
NOT_ERRORS = {0: "done", 130: "interrupted (Ctrl-C)"}

CONVENTIONS = """## Conventions every verb shares

**Output.** Every verb (but `console` and `demo`) takes `-o/--output table|json` and `--query`.
`table` is for people; `json` prints exactly one JSON document on stdout (`--follow` streams print
one JSON document per line), with camelCase keys, and write verbs print what they did (the
proposal they opened, the contract version they created, the files they wrote). `--query` is a
[JMESPath](https://jmespath.org) expression over that JSON: a string or number prints bare, for
`$(...)`, anything else as JSON; a query that matches nothing is an error (exit 3).

```sh
cleanroom -w W/consumer governance proposal list --query "[?proposalState=='Open'].proposalId"
cleanroom -w W/consumer governance deployment policy show --contract-id C --query 'proposalIds[0]'
```

Progress, spinners and warnings go to stderr. Piped or redirected output is never wrapped (rich
would fold tables at 80 columns); on a terminal, output fits the terminal. `NO_COLOR=1` turns
colour off.

**Workspace.** `-w/--workspace DIR` (env `CLEANROOM_WORKSPACE`) goes before or after the verb:
`cleanroom -w W/hoster governance contract list` is `cleanroom governance contract list -w W/hoster`.

**Services' home.** The embedded services keep their state in `$CLEANROOM_HOME` (default
`~/.cleanroom`). The `deployment` verbs find the home of the services a workspace was deployed to
(from the governance certificate the workspace pins), and say which `CLEANROOM_HOME` to set when
they cannot.

**Exit codes.** Every error is one line on stderr, `error: <what>; <how to fix it>`:

{exit_codes}
`CLEANROOM_DEBUG=1` shows the traceback behind an error.

**Logs.** Under the services' home: `governance/service.log`, `keys/service.log`, and per
deployment `runtime/deployments/<contract>/runtime.log` (JSON lines: lifecycle, refusals,
telemetry; `cleanroom deployment logs`) and `runtime.err` (the runtime process's own stderr).
Application output is not logged on the host: it goes to the logging datasink, and only when the
contract enables logging. `cleanroom demo` keeps its services' home in `<demo folder>/services`.

**Sandbox.** The local runtime runs workloads under bubblewrap, which needs unprivileged user
namespaces: `unshare --user --map-root-user true` must succeed for the user who runs
`cleanroom deployment start` (on Debian `sysctl kernel.unprivileged_userns_clone=1`; on Ubuntu
24.04 and later an AppArmor profile for `bwrap` or `sysctl
kernel.apparmor_restrict_unprivileged_userns=0`; in a container, a seccomp profile that allows
`clone(CLONE_NEWUSER)`).

**Shell completion** (click's own):

```sh
eval "$(_CLEANROOM_COMPLETE=bash_source cleanroom)"    # in ~/.bashrc
eval "$(_CLEANROOM_COMPLETE=zsh_source cleanroom)"     # in ~/.zshrc
_CLEANROOM_COMPLETE=fish_source cleanroom > ~/.config/fish/completions/cleanroom.fish
```
"""


def exit_codes() -> dict[int, str]:
    """Each exit code and its meaning, from the error classes of core.errors (one class per code)
    and the codes that are no error."""
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CleanroomError)]
    return dict(sorted({**NOT_ERRORS, **{c.exit_code: c.meaning for c in classes}}.items()))


def exit_code_table() -> str:
    rows = [f"| {code} | {meaning} |" for code, meaning in exit_codes().items()]
    return "\n".join(["| code | meaning |", "| --- | --- |", *rows]) + "\n"


def _walk(command: click.Command, path: list[str], ctx: click.Context):
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name], click.Context(sub, info_name=name, parent=ctx))


def render() -> str:
    # A fixed width: help text must not depend on the terminal that regenerates it.
    root_ctx = click.Context(
        cli, info_name="cleanroom", terminal_width=100, max_content_width=100, **cli.context_settings
    )
    parts = [
        "# `cleanroom` CLI reference\n",
        "Generated from the command tree by `scripts/cli_reference.py`; do not edit by hand.",
        "Every verb also answers `--help`.\n",
        CONVENTIONS.replace("{exit_codes}", exit_code_table()),
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
