"""What a scenario is made of: the `cleanroom` command lines a persona runs, grouped into steps.

A step is one thing one persona does, written down as the ``cleanroom`` invocations a real
team would type for it. The invocations are data (argv lists), so the narration (``cleanroom
demo --show-commands``, ``--list-steps``, the console's palette) is rendered from the very
values the step executes with: a step body reads its arguments from its invocations
(``step.invocation("config", "add-application").value("--cpu")``) and never restates them, so
what is narrated cannot drift from what runs. ``tests/test_scenario_narration.py`` parses
every invocation with the real click command tree.

Narration names places the way the README walkthrough does: ``W/<persona>`` is a persona's
workspace folder and ``W/services`` the embedded services' CLEANROOM_HOME, both under the
scenario root; a step body maps those back to real paths (``Scenario.path``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import InvalidInputError

if TYPE_CHECKING:
    from core.scenario.run import Scenario

ROOT_NAME = "W"  # how narration names the scenario root
SERVICES_DIR = "services"
SERVICES_HOME = f"{ROOT_NAME}/{SERVICES_DIR}"
EVERY_PERSONA = "all"  # a step every party takes (each on its own)


def workspace_of(persona: str) -> str:
    """The persona's workspace as narration names it."""
    return f"{ROOT_NAME}/{persona}"


@dataclass(frozen=True)
class Invocation:
    """One command line: ``program`` and its argv, as typed (placeholders such as ``ID`` in
    capitals stand for values only known when the step runs, e.g. a proposal id).

    ``persona`` adds ``-w W/<persona>``; ``services`` prefixes ``CLEANROOM_HOME=W/services``
    (the verbs that drive the embedded runtime); ``stdout`` renders ``> FILE``; ``export``
    renders ``export VAR=$(...)``, how a secret such as a bearer token reaches the next command
    without appearing in any argv (``ps`` shows every user a command line)."""

    args: tuple[str, ...]
    persona: str | None = None
    services: bool = False
    stdout: str | None = None
    export: str | None = None
    program: str = "cleanroom"

    def argv(self) -> list[str]:
        """The arguments after the program name, exactly as the CLI receives them."""
        prefix = ["-w", workspace_of(self.persona)] if self.persona and self.program == "cleanroom" else []
        return [*prefix, *self.args]

    @property
    def verb(self) -> tuple[str, ...]:
        """The ``cleanroom`` command path: the leading words before the first option (another
        program's line has none)."""
        if self.program != "cleanroom":
            return ()
        words = []
        for word in self.args:
            if word.startswith("-"):
                break
            words.append(word)
        return tuple(words)

    def narration(self) -> str:
        """The line a team would type; ``shlex.split`` of it gives back ``argv()``."""
        line = shlex.join([self.program, *self.argv()])
        if self.services:
            line = f"CLEANROOM_HOME={SERVICES_HOME} {line}"
        if self.export:
            return f"export {self.export}=$({line})"
        return f"{line} > {self.stdout}" if self.stdout else line

    def values(self, option: str) -> list[str]:
        """Every value given to a repeatable ``option``, in order."""
        return [self.args[i + 1] for i, word in enumerate(self.args[:-1]) if word == option]

    def value(self, option: str) -> str:
        """The one value of ``option``; a step that reads an option its command line lacks is a bug."""
        found = self.values(option)
        if len(found) != 1:
            raise InvalidInputError(
                f"`{self.narration()}` gives {option} {len(found)} times, not once", hint="fix the scenario definition"
            )
        return found[0]

    def has(self, option: str) -> bool:
        return option in self.args


def cleanroom(
    persona: str | None, *args: str, services: bool = False, stdout: str | None = None, export: str | None = None
) -> Invocation:
    """A ``cleanroom`` command line run in ``persona``'s workspace (None: no workspace)."""
    return Invocation(tuple(args), persona=persona, services=services, stdout=stdout, export=export)


Perform = Callable[["Scenario", "Step", "Reporter"], str]


@dataclass(frozen=True)
class Step:
    """One thing one persona does: its invocations, and the body that performs exactly them.

    ``perform(scenario, step, reporter)`` returns a one-line summary; it reads every argument
    from ``invocations`` and makes up none of its own."""

    key: str
    phase: str
    persona: str  # a persona of the scenario, or EVERY_PERSONA
    title: str
    invocations: tuple[Invocation, ...]
    perform: Perform

    @property
    def commands(self) -> tuple[str, ...]:
        """The narrated command lines."""
        return tuple(invocation.narration() for invocation in self.invocations)

    def invocation(self, *verb: str) -> Invocation:
        """The step's one invocation of ``verb`` (e.g. ``("config", "add-application")``)."""
        found = [i for i in self.invocations if i.verb == verb]
        if len(found) != 1:
            raise InvalidInputError(
                f"step '{self.key}' runs `{' '.join(verb)}` {len(found)} times, not once",
                hint="fix the scenario definition",
            )
        return found[0]

    def invocations_of(self, *verb: str) -> list[Invocation]:
        return [i for i in self.invocations if i.verb == verb]


SERVICES_TITLE = "start governance and the key service on loopback"


def python_module(*args: str) -> Invocation:
    """``python -m MODULE ...``: a narrated line that runs one of the project's own modules."""
    return Invocation(("-m", *args), program="python")


def consortium_setup(personas: Sequence[str], perform: Perform) -> list[Step]:
    """The setup every scenario starts with: each persona's workspace, then the services on
    loopback knowing every workspace (``services-up``, the step a resumed run restarts)."""
    steps = [
        Step(
            f"init:{persona}",
            "setup",
            persona,
            "create its workspace: member identity and KEK",
            (cleanroom(persona, "config", "init", "--persona", persona),),
            perform,
        )
        for persona in personas
    ]
    up = cleanroom(None, "up", *(w for p in personas for w in ("--workspace-dirs", workspace_of(p))), services=True)
    steps.append(Step("services-up", "setup", "hoster", SERVICES_TITLE, (up,), perform))
    return steps


def consortium_step_keys(personas: Sequence[str]) -> frozenset[str]:
    """The keys of ``consortium_setup``'s steps: without them no persona can be opened."""
    return frozenset({*(f"init:{persona}" for persona in personas), "services-up"})


@dataclass(frozen=True)
class Phase:
    key: str
    title: str


@dataclass(frozen=True)
class ScenarioDefinition:
    """A scenario as data: its personas, phases, steps and the contracts it deploys.

    A new scenario is a module that builds one of these from its steps (see
    ``core.scenario.three_personas``); the runner (``core.scenario.run``) knows none of them."""

    name: str
    personas: tuple[str, ...]
    phases: tuple[Phase, ...]
    steps: tuple[Step, ...]
    contracts: tuple[str, ...]  # the clean rooms it may leave running: stopped with its services
    consortium_steps: frozenset[str]  # the steps without which no persona can be opened
    summarise: Callable[[Scenario], dict[str, object]] = field(default=lambda scenario: {})

    @property
    def phase_titles(self) -> dict[str, str]:
        return {phase.key: phase.title for phase in self.phases}


# -- progress reporting (plain callbacks; front ends render them) ---------------------------------
@dataclass
class Reporter:
    """What a front end hears. ``progress(phase_task, done, total, detail)`` drives one bar per
    long task (upload, evaluation, training); ``note`` is one narration line."""

    step_started: Callable[[Step], None] = lambda step: None
    step_finished: Callable[[Step, float, str], None] = lambda step, seconds, summary: None
    step_skipped: Callable[[Step], None] = lambda step: None
    progress: Callable[[str, float, float | None, str], None] = lambda task, done, total, detail: None
    note: Callable[[str], None] = lambda text: None
    # an evaluation's running score: (contract id, rows done, rows correct, rows in all)
    evaluation: Callable[[str, int, int, int], None] = lambda contract_id, done, correct, total: None
