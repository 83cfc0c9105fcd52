"""One output layer for every verb: `-o table|json`, `--query` (JMESPath) and `-w` after the verb
everywhere, write verbs that say what they did in JSON too, piped output that is not wrapped,
`--version`, and NO_COLOR."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from core.errors import InvalidInputError, NotFoundError
from tests.cli_runner import cleanroom
from tui.cli import cli
from tui.output import OutputFormat, camel

ROOT = Path(__file__).resolve().parent.parent
# The one verb that prints no result: `console` takes over the terminal until the operator quits
# it, and what it did is the state it leaves (the ledger, the scenario's demo.json), not a document.
NOT_RESULT_VERBS = {"cleanroom console"}
COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;)")


def _leaves(command: click.Command, path: list[str], ctx: click.Context):
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from _leaves(sub, [*path, name], click.Context(sub, info_name=name, parent=ctx))
    else:
        yield " ".join(path), command


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed entry point's code in a child process: stdout is a pipe, as in `| grep`."""
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def hoster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hoster workspace deep enough in the file system that its store path passes 80 columns, with
    a datasource and an application whose mount names another party's datasource."""
    root = tmp_path_factory.mktemp("output") / ("a-folder-with-a-long-name-" * 3) / "hoster"
    assert cleanroom("config", "init", "--persona", "hoster", "-w", root).code == 0
    for name in ("inference-code", "inference-config"):
        assert cleanroom("-w", root, "config", "add-datasource", "--name", name).code == 0
    added = cleanroom(
        "-w",
        root,
        "config",
        "add-application",
        "--name",
        "inference",
        "--entrypoint",
        "containers/inference_server",
        "--mounts",
        "src=model,dst=/mnt/model",
    )
    assert added.code == 0, added.stderr
    return root


def test_every_verb_takes_output_json_query_and_workspace_after_it() -> None:
    root = click.Context(cli, info_name="cleanroom")
    missing: dict[str, list[str]] = {}
    leaves = dict(_leaves(cli, ["cleanroom"], root))
    assert len(leaves) >= 58
    for path, command in leaves.items():
        if path in NOT_RESULT_VERBS:
            continue
        params = {param.name: param for param in command.params}
        lacks = [flag for flag, name in (("-o/--output", "output"), ("--query", "query")) if name not in params]
        if "output" in params and (
            not isinstance(params["output"].type, OutputFormat) or "-o" not in params["output"].opts
        ):
            lacks.append("-o table|json")
        if not any("-w" in param.opts for param in command.params if isinstance(param, click.Option)):
            lacks.append("-w")
        if lacks:
            missing[path] = lacks
    assert missing == {}


def test_write_verbs_say_what_they_did_in_json(tmp_path: Path) -> None:
    workspace = tmp_path / "consumer"
    created = cleanroom("config", "init", "--persona", "consumer", "-w", workspace, "-o", "json")
    assert created.code == 0, created.stderr
    document = json.loads(created.stdout)
    assert document["persona"] == "consumer" and document["workspace"] == str(workspace.resolve())
    assert len(document["memberId"]) == 64
    added = json.loads(cleanroom("-w", workspace, "config", "add-datasink", "--name", "results", "-o", "json").stdout)
    assert added == {"kind": "datasink", "name": "results", "store": "local", "container": "results"}
    policy = cleanroom("-w", workspace, "config", "set-network-policy", "--allow", "POST /infer", "-o", "json")
    assert json.loads(policy.stdout) == {"inboundAllow": ["POST /infer"], "allowAllOutbound": False}
    said = cleanroom("-w", workspace, "config", "set-telemetry", "--datasink", "telemetry-sink")
    assert said.stdout == "added datasink telemetry-sink; telemetry enabled into datasink telemetry-sink\n"


def test_query_is_jmespath_over_the_json_output(hoster: Path) -> None:
    names = cleanroom("config", "view", "-w", hoster, "--query", "spec.datasources[].name")
    assert names.code == 0, names.stderr
    assert json.loads(names.stdout) == ["inference-code", "inference-config"]
    spec_hash = cleanroom("config", "view", "-w", hoster, "--query", "specHash")
    assert re.fullmatch(r"[0-9a-f]{64}\n", spec_hash.stdout)  # a string prints bare, for $(...)
    quoted = cleanroom("config", "view", "-w", hoster, "--query", "specHash", "-o", "json")
    assert json.loads(quoted.stdout) == spec_hash.stdout.strip()
    listed = cleanroom("datasource", "list", "-w", hoster, "--query", "[?!uploaded].name | [1]")
    assert listed.stdout == "inference-config\n"


def test_a_bad_or_empty_query_is_one_line_naming_the_fix(hoster: Path) -> None:
    dotted = cleanroom("config", "view", "-w", hoster, "--query", "spec.datasources.0")
    assert dotted.code == InvalidInputError.exit_code and dotted.stdout == ""
    assert dotted.stderr.count("\n") == 1 and "try --query 'spec.datasources[0]'" in dotted.stderr
    nothing = cleanroom("config", "view", "-w", hoster, "--query", "spec.noSuchField")
    assert nothing.code == NotFoundError.exit_code and nothing.stdout == ""
    assert nothing.stderr == (
        "error: --query spec.noSuchField matches nothing; run the verb with -o json to see "
        "the fields (JMESPath, e.g. proposalIds[0])\n"
    )


def test_an_unknown_output_format_is_one_line(hoster: Path) -> None:
    refused = cleanroom("datasource", "list", "-w", hoster, "-o", "yaml")
    assert refused.code == InvalidInputError.exit_code
    assert (
        refused.stderr == "error: --output 'yaml' is not table or json; pass -o table (for people) or -o json "
        "(for scripts)\n"
    )


def test_model_prepare_output_became_output_dir(tmp_path: Path) -> None:
    moved = cleanroom("model", "prepare", "--output", tmp_path / "model")
    assert moved.code == InvalidInputError.exit_code and not (tmp_path / "model").exists()
    assert moved.stderr.count("\n") == 1
    assert "the model folder is now --output-dir DIR" in moved.stderr


def test_piped_output_is_not_wrapped_at_80_columns(hoster: Path) -> None:
    listed = _run("-w", hoster, "datasource", "list", env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    store = str(hoster.resolve() / "store")
    row = next(line for line in listed.stdout.splitlines() if "inference-code" in line)
    assert store in row and len(row) > 80
    view = _run("-w", hoster, "config", "view", env={"COLUMNS": "80"})
    assert any(len(line) > 80 for line in view.stdout.splitlines())


def test_no_color_is_honoured(hoster: Path) -> None:
    """`config view` colours an unresolved mount; NO_COLOR removes every colour (rich honours it)."""
    coloured = _run("-w", hoster, "config", "view", env={"FORCE_COLOR": "1"})
    assert coloured.returncode == 0 and COLOUR.search(coloured.stdout)
    plain = _run("-w", hoster, "config", "view", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert plain.returncode == 0 and "unresolved mount" in plain.stdout
    assert not COLOUR.search(plain.stdout)


def test_version() -> None:
    shown = cleanroom("--version")
    assert shown.code == 0
    assert shown.stdout == f"cleanroom, version {importlib.metadata.version('cleanroom-console')}\n"


def test_workspace_after_the_verb_is_the_same_as_before(hoster: Path) -> None:
    before = cleanroom("-w", hoster, "datasource", "list", "-o", "json")
    after = cleanroom("datasource", "list", "-o", "json", "-w", hoster)
    assert before.code == after.code == 0 and json.loads(after.stdout) == json.loads(before.stdout)
    assert [row["name"] for row in json.loads(after.stdout)] == ["inference-code", "inference-config"]


def test_camel_case_is_the_one_json_key_style() -> None:
    assert [camel(k) for k in ("exit_codes", "state", "policy_hash", "aci_template")] == [
        "exitCodes",
        "state",
        "policyHash",
        "aciTemplate",
    ]
