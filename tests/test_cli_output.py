"""One output layer for every verb: `-o table|json`, `--query` (JMESPath) and `-w` after the verb
everywhere, write verbs that say what they did in JSON too, piped output that is not wrapped,
`--version`, and NO_COLOR."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

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
COLOUR_256 = re.compile(r"\x1b\[(?:[0-9;]*;)?[34]8;5;")


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


def _console_first_screen(workspace: Path, home: Path, *, no_color: bool) -> str:
    """What `cleanroom console` writes to a 24-bit-colour terminal until its first screen is
    drawn (its footer names the Quit key). The console is this test's own child: killed after."""
    import pty
    import select

    master, slave = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    env |= {"TERM": "xterm-256color", "COLORTERM": "truecolor", "CLEANROOM_HOME": str(home)}
    env["XDG_CONFIG_HOME"] = str(home / "config")  # not the operator's remembered theme
    if no_color:
        env["NO_COLOR"] = "1"
    console = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "console", "--workspace", str(workspace)],
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    screen = bytearray()
    try:
        while b"Quit" not in screen and select.select([master], [], [], 60)[0]:
            try:
                screen.extend(os.read(master, 65536))
            except OSError:  # the console exited: the assertion below shows what it wrote
                break
    finally:
        console.kill()
        console.wait()
        os.close(master)
    assert b"Quit" in screen, bytes(screen[-2000:])
    return screen.decode(errors="replace")


def _colours(screen: str) -> set[tuple[int, int, int]]:
    """Every 24-bit foreground and background colour an SGR sequence sets."""
    found = set()
    for params in re.findall(r"\x1b\[([0-9;]*)m", screen):
        for match in re.finditer(r"(?:^|;)[34]8;2;(\d+);(\d+);(\d+)", params):
            found.add((int(match[1]), int(match[2]), int(match[3])))
    return found


def test_the_console_honours_no_color(tmp_path: Path) -> None:
    """Textual's answer to NO_COLOR is monochrome: the same screen, every colour a grey (no hue
    the operator asked not to see). The same first screen without it has colours."""
    workspace = tmp_path / "hoster"
    assert cleanroom("config", "init", "--persona", "hoster", "-w", workspace).code == 0
    coloured = _colours(_console_first_screen(workspace, tmp_path / "home", no_color=False))
    assert any(len(set(rgb)) > 1 for rgb in coloured)
    plain = _console_first_screen(workspace, tmp_path / "home", no_color=True)
    assert _colours(plain) and all(len(set(rgb)) == 1 for rgb in _colours(plain))
    assert not COLOUR_256.search(plain)  # nor a palette colour, which would keep its hue
    helped = _run("console", "--help", env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert helped.returncode == 0 and "\x1b[" not in helped.stdout


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


# -- camelCase at every level of what a verb generates --------------------------------------------
# Subtrees that are someone's document, printed verbatim: renaming a key there would change what
# was signed, voted or configured. Paths are keys joined by '.', '[]' for each list item.
VERBATIM = {
    "data": "the contract document as its author wrote it",
    "[].data": "each contract document as its author wrote it (or event payload, in an event list)",
    "args": "the signed proposal's arguments (their keys are the governance wire format)",
    "[].args": "each signed proposal's arguments",
    "checkpoint": "the ledger's signed checkpoint, whose signature covers these keys",
    "spec": "the merged config fragments, whose keys are the clean-room spec's",
    "events[].data": "each event's payload as the clean room recorded it",
}
# verb -> the path of a mapping keyed by names (`up`: by service), not by fields: its keys are data
NAMED = {"up": ""}
SNAKE_KEY = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")


def _snake_keys(document: object, named: str | None, path: str = "") -> list[str]:
    """Paths of snake_case keys in ``document``, outside ``VERBATIM`` subtrees."""
    if path in VERBATIM:
        return []
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            where = f"{path}.{key}" if path else str(key)
            if path != named and SNAKE_KEY.match(str(key)):
                found.append(where)
            found += _snake_keys(value, named, path=f"{path}.{key}" if path else str(key))
    elif isinstance(document, list):
        for item in document:
            found += _snake_keys(item, named, path=f"{path}[]")
    return found


def test_the_snake_key_finder_skips_verbatim_documents_and_names() -> None:
    document = {"proposalId": "p", "args": {"contract_id": "c"}, "nested": [{"exit_code": 1, "ok": {"a_b": 2}}]}
    assert _snake_keys(document, None) == ["nested[].exit_code", "nested[].ok.a_b"]
    assert _snake_keys({"key_service": {"state_dir": "d"}}, "") == ["key_service.state_dir"]


def test_json_keys_are_camel_case_at_every_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real verbs against real embedded services: every key the CLI generates is camelCase, at any
    depth; the documents it prints on someone's behalf keep their keys."""
    from core.runtime.backend import AciBackend
    from tests.test_deployment_backend import _InMemoryGroups

    monkeypatch.setenv("CLEANROOM_HOME", str(tmp_path / "home"))
    workspaces = {p: tmp_path / p for p in ("hoster", "provider", "consumer")}
    for persona, root in workspaces.items():
        assert cleanroom("config", "init", "--persona", persona, "-w", root).code == 0
    offenders: dict[str, list[str]] = {}

    def verb(persona: str, command: str) -> Any:
        args = shlex.split(command.format(tmp=tmp_path))
        name = " ".join(itertools.takewhile(lambda arg: not arg.startswith("-"), args))
        ran = cleanroom("-w", workspaces[persona], *args, "-o", "json")
        assert ran.code == 0, f"{command}: {ran.stderr}"
        document = json.loads(ran.stdout)
        if snake := _snake_keys(document, NAMED.get(name)):
            offenders[name] = snake
        return document

    verb("hoster", "up --workspace-dirs {tmp}/hoster {tmp}/provider {tmp}/consumer")
    try:
        for command in (
            "config add-datasource --name inference-code",
            "config add-application --name inference --entrypoint containers/inference_server --ports 8000"
            " --mounts src=inference-code,dst=/mnt/code --command 'python -m server'",
            "config add-datasink --name results",
            "config set-network-policy --allow 'POST /infer'",
            "config set-logging --datasink log-sink",
            "datasource list",
            "datasink list",
            "governance service status",
            "governance member list",
            "governance member show",
        ):
            verb("hoster", command)
        (tmp_path / "merged.json").write_text(json.dumps(verb("hoster", "config view")["spec"]))
        (tmp_path / "spec.json").write_text(json.dumps({"purpose": "inference", "user_chosen_key": 1}))
        verb("hoster", "governance contract create --id c1 --data @{tmp}/spec.json")
        version = verb("hoster", "governance contract show --id c1")["version"]
        proposal_id = verb("hoster", f"governance contract propose --id c1 --version {version}")["proposalId"]
        verb("hoster", "governance proposal list")
        verb("hoster", f"governance proposal show --proposal-id {proposal_id}")
        for persona in workspaces:
            verb(persona, f"governance proposal vote --proposal-id {proposal_id} --action accept")
        for command in (
            "governance contract list",
            "governance contract event list --id c1",
            "governance contract runtime-option get --id c1 --option logging",
            "governance contract runtime-option set --id c1 --option execution --action disable",
            "governance contract token --id c1",
            "governance contract create --id c2 --data @{tmp}/merged.json",
            "governance deployment generate --contract-id c2 --output-dir {tmp}/deployment",
            "governance traffic show --contract c1",
            "governance privacy show",
            "governance privacy history",
            "governance app register --name scorer --contract c1 --route 'POST /infer' --rate-limit 60"
            " --generate-key {tmp}/scorer.pem",
            "governance app list",
            "governance ledger head",
            "governance ledger export --file {tmp}/ledger.json",
            "governance ledger verify --file {tmp}/ledger.json",
            "governance ledger receipt --seqno 1",
            "model list",
            "deployment status --contract-id c1",
        ):
            verb("hoster", command)
    finally:
        assert cleanroom("down").code == 0
    # Azure itself cannot run here: its container groups are the test double the backend tests use
    monkeypatch.setattr(AciBackend, "in_resource_group", staticmethod(lambda *_: AciBackend(_InMemoryGroups())))
    verb("hoster", "deployment status --contract-id c1 --backend aci --resource-group rg")
    verb("hoster", "demo --list-steps")
    assert offenders == {}
