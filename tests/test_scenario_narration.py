"""What the scenario narrates is what it runs: every narrated `cleanroom` line parses with the
real command tree, and the lines that build a party's fragment do, run through the CLI, what
the step bodies do.

The scenario's steps are ``cleanroom`` invocations (argv lists); narration and execution are
both rendered from them. These tests hold that promise against the CLI the operators really
type into: an unknown option, a missing required option or a verb that does not exist fails
here, and a step body that read an option differently from the CLI would leave a different
fragment from the one the narrated command leaves.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest

from core.config.party import party_fragment
from core.runtime.deployment import write_deployment
from core.scenario import THREE_PERSONAS, Invocation, Reporter, Scenario, Step
from core.scenario.operations import OPERATIONS, contract_document, perform_each
from core.scenario.steps import SERVICES_HOME
from core.workspace import Workspace
from tests.cli_runner import cleanroom
from tui.cli import cli

NARRATED = [(step, invocation) for step in THREE_PERSONAS.steps for invocation in step.invocations]
# the verbs that change only the persona's own workspace: cheap to run twice, through both paths
FRAGMENT_VERBS = {
    ("config", "init"),
    ("config", "add-datasource"),
    ("config", "add-datasink"),
    ("config", "add-application"),
    ("config", "set-network-policy"),
}


def parse(argv: list[str]) -> click.Context:
    """Resolve ``argv`` down the real command tree the way the console script does, parsing
    each level's options (click raises on an unknown option or a missing required one)."""
    command: click.Command = cli
    ctx = command.make_context("cleanroom", list(argv))
    while isinstance(command, click.Group):
        words = [*ctx._protected_args, *ctx.args]
        name, sub, rest = command.resolve_command(ctx, words)
        assert sub is not None and name is not None, f"no verb {words[:1]} under {ctx.command_path}"
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return ctx


@pytest.mark.parametrize(
    ("step", "invocation"),
    [pytest.param(s, i, id=f"{s.key}:{' '.join(i.verb)}") for s, i in NARRATED if i.program == "cleanroom"],
)
def test_every_narrated_command_parses_with_the_real_command_tree(step: Step, invocation: Invocation) -> None:
    ctx = parse(invocation.argv())
    assert ctx.command_path.split()[1:] == list(invocation.verb)
    assert not ctx.args, f"`{invocation.narration()}` leaves {ctx.args} unparsed"
    if invocation.persona is not None:
        assert ctx.find_root().params["workspace"] == Path(f"W/{invocation.persona}")


@pytest.mark.parametrize("invocation", [i for _, i in NARRATED], ids=lambda i: i.narration()[:60])
def test_every_narrated_line_reads_back_as_the_argv_it_runs(invocation: Invocation) -> None:
    line = invocation.narration()
    if invocation.export:
        prefix = f"export {invocation.export}=$("
        assert line.startswith(prefix) and line.endswith(")")
        line = line[len(prefix) : -1]
    words = shlex.split(line)
    if invocation.services:
        assert words.pop(0) == f"CLEANROOM_HOME={SERVICES_HOME}"
    if invocation.stdout:
        assert words[-2:] == [">", invocation.stdout]
        words = words[:-2]
    assert words == [invocation.program, *invocation.argv()]


def test_every_step_body_has_an_operation_for_what_it_narrates() -> None:
    """A plain step runs each of its invocations by verb; none may name a verb nothing performs."""
    for step in THREE_PERSONAS.steps:
        if step.perform is perform_each:
            for invocation in step.invocations:
                assert invocation.program == "cp" or invocation.verb in OPERATIONS, (step.key, invocation.verb)


def test_the_deployment_files_narrated_are_the_files_generate_writes(tmp_path: Path) -> None:
    """Builds the three fragments twice: once by running the narrated lines through the CLI,
    once through the step bodies; both must agree, and `deployment generate` on the result
    writes the very files the narrated proposals name."""
    by_cli, by_steps = tmp_path / "cli", tmp_path / "steps"
    scenario = Scenario.open(by_steps, quick=True)
    for step in THREE_PERSONAS.steps:
        lines = [i for i in step.invocations if i.verb in FRAGMENT_VERBS]
        for invocation in lines:
            argv = [str(by_cli / word[2:]) if word.startswith("W/") else word for word in invocation.argv()]
            outcome = cleanroom(*argv)
            assert outcome.code == 0, (invocation.narration(), outcome.stderr)
        if lines and len(lines) == len(step.invocations):
            perform_each(scenario, step, Reporter())
        elif lines:  # a step that also uploads: only its fragment lines here
            perform_each(
                scenario, Step(step.key, step.phase, step.persona, step.title, tuple(lines), perform_each), Reporter()
            )
    for persona in THREE_PERSONAS.personas:
        mine, theirs = (party_fragment(Workspace.open(root / persona)) for root in (by_steps, by_cli))
        # the same applications, field for field (each root has its own member, so its own owner id)
        assert [a.model_dump(exclude={"owner"}) for a in mine.applications] == [
            a.model_dump(exclude={"owner"}) for a in theirs.applications
        ], persona
        assert mine.network_policy == theirs.network_policy, persona
        assert [a.name for a in mine.datasources] == [a.name for a in theirs.datasources], persona
        assert [a.name for a in mine.datasinks] == [a.name for a in theirs.datasinks], persona
    trainer = next(a for a in party_fragment(scenario.workspace("hoster")).applications if a.name == "trainer")
    assert (trainer.cpu, trainer.memory_gb) == (2.0, 4.0)  # what the narrated command says, not a default

    for step in THREE_PERSONAS.steps:
        if not step.key.endswith(":propose-deployment"):
            continue
        contract_id = step.invocation("governance", "deployment", "generate").value("--contract-id")
        view = next(s for s in THREE_PERSONAS.steps if s.key == f"{contract_id}:propose").invocation("config", "view")
        folder = tmp_path / "generated" / contract_id
        write_deployment(contract_id, contract_document(scenario, view), folder)
        for verb, option in (
            (("governance", "deployment", "template", "propose"), "--template-file"),
            (("governance", "deployment", "policy", "propose"), "--policy-file"),
        ):
            named = step.invocation(*verb).value(option)
            assert (tmp_path / "generated" / named).is_file(), f"{step.key} proposes {named}; generate never writes it"


def test_a_step_reading_an_option_its_line_lacks_is_a_one_line_error() -> None:
    from core.errors import InvalidInputError

    line = Invocation(("config", "add-datasource", "--name", "x"), persona="provider")
    with pytest.raises(InvalidInputError, match=r"gives --store 0 times, not once"):
        line.value("--store")


def test_the_parse_refuses_what_the_cli_would_refuse() -> None:
    """The check above is only worth something if a drifted line fails it."""
    with pytest.raises(click.NoSuchOption):
        parse(["-w", "W/hoster", "config", "add-application", "--name", "x", "--gpus", "1"])
    with pytest.raises(click.MissingParameter):
        parse(["-w", "W/hoster", "governance", "ca", "generate-key"])
    with pytest.raises(click.UsageError, match="No such command"):
        parse(["-w", "W/hoster", "governance", "contract", "frobnicate"])


def test_every_isolation_proof_narrates_the_proof_command_it_performs() -> None:
    """The attacks are no `cleanroom` verb: each is a `python -m core.scenario isolation` line,
    parsed here with that module's own parser, and the step's body reads its attempts from them."""
    from core.scenario.__main__ import parser
    from core.scenario.proofs import ATTEMPTS

    proofs = [s for s in THREE_PERSONAS.steps if s.key.startswith("isolation:")]
    assert [s.persona for s in proofs] == list(THREE_PERSONAS.personas)
    for step in proofs:
        assert all(i.program == "python" for i in step.invocations), step.key
        attempts = []
        for invocation in step.invocations:
            args = parser().parse_args(invocation.argv()[2:])  # after `-m core.scenario`
            assert invocation.argv()[:2] == ["-m", "core.scenario"]
            assert (args.verb, str(args.root), args.persona) == ("isolation", "W", step.persona)
            attempts.append(args.attempt)
        expected = set(ATTEMPTS) if step.persona == "hoster" else {"secret", "release", "decrypt"}
        assert set(attempts) == expected, step.key
    with pytest.raises(SystemExit):
        parser().parse_args(["isolation", "--root", "W", "--persona", "consumer", "--attempt", "nope"])


def test_a_proof_a_persona_cannot_mount_is_refused_and_a_root_without_a_scenario_named(tmp_path: Path) -> None:
    import subprocess
    import sys

    from core.errors import InvalidInputError
    from core.scenario.proofs import isolation_checks

    scenario = Scenario.open(tmp_path / "root", quick=True)
    with pytest.raises(InvalidInputError, match="consumer cannot attempt stores/mounts"):
        isolation_checks(scenario, "consumer", ["stores"])
    with pytest.raises(InvalidInputError, match="hoster cannot attempt x"):
        isolation_checks(scenario, "hoster", ["x"])
    ran = subprocess.run(
        [
            *(sys.executable, "-m", "core.scenario", "isolation", "--root", tmp_path / "none"),
            *("--persona", "consumer", "--attempt", "secret"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
    )
    assert ran.returncode == 3 and ran.stdout == ""
    assert ran.stderr == f"error: {tmp_path / 'none'} holds no scenario; pass the folder `cleanroom demo -w` ran in\n"
    assert not (tmp_path / "none").exists()


def test_the_training_config_write_is_narrated_and_its_body_writes_that_file(tmp_path: Path) -> None:
    step = next(s for s in THREE_PERSONAS.steps if s.key == "upload-training-assets")
    (write,) = [i for i in step.invocations if i.program == "write"]
    assert write.narration() == "write W/provider/training-config/training_config.json"
    names = [i.narration() for i in step.invocations]
    upload = (
        "cleanroom -w W/provider datasource upload --name training-config --dataset-folder W/provider/training-config"
    )
    assert names.index(write.narration()) < names.index(upload)  # written before it is uploaded


def test_the_cli_and_the_step_bodies_read_mounts_and_ports_alike(tmp_path: Path) -> None:
    """One parser (core.config.cli_values) for `config add-application` and the steps that
    perform its narrated lines: the same refusal, word for word."""
    from core.errors import InvalidInputError

    scenario = Scenario.open(tmp_path / "root", quick=True)
    init = Invocation(("config", "init", "--persona", "hoster"), persona="hoster")
    OPERATIONS[init.verb](scenario, init, Reporter())
    for option, value, message in (
        ("--mounts", "src=model", "--mounts 'src=model' is not 'src=<datasource>,dst=<path>'"),
        ("--ports", "80,http", "--ports 80,http are not numbers"),
    ):
        line = Invocation(
            ("config", "add-application", "--name", "a", "--entrypoint", "e", "--command", "c", option, value),
            persona="hoster",
        )
        typed = cleanroom(*[str(tmp_path / "root" / w[2:]) if w.startswith("W/") else w for w in line.argv()])
        assert typed.code == InvalidInputError.exit_code and message in typed.stderr
        with pytest.raises(InvalidInputError) as refused:
            OPERATIONS[line.verb](scenario, line, Reporter())
        assert typed.stderr == f"error: {refused.value.one_line()}\n"
    assert party_fragment(scenario.workspace("hoster")).applications == []
