"""Scenarios: collaborations acted out for real, step by step, by the personas' own operators.

A scenario is data (``steps.ScenarioDefinition``): its personas, phases and steps, each step
the ``cleanroom`` command lines one persona types, performed by a body that reads exactly
those lines (``operations``, ``proofs``) through the persona's own engine. The runner
(``run.Scenario``) keeps the state of one scenario root, resumes an interrupted run, and
drives ``cleanroom demo`` and the console alike. The reference scenario is
``three_personas``; a new one (a DP join, summarisation, onboarding) is a module that builds a
``ScenarioDefinition`` from its steps, plus the bodies only it needs, and one line in
``SCENARIOS`` naming it for ``cleanroom demo --scenario`` and the console.
"""

from collections.abc import Callable
from importlib import import_module

from core.errors import InvalidInputError
from core.scenario.proofs import KIND_DECRYPT, KIND_MOUNTS, KIND_RELEASE, KIND_SECRET, KIND_STORES
from core.scenario.run import Scenario, open_embedded_scenario, scenario_root
from core.scenario.state import LOCK_FILE, REFERENCE_SCENARIO, STATE_FILE, RunStatus, ScenarioState
from core.scenario.steps import Invocation, Phase, Reporter, ScenarioDefinition, Step
from core.scenario.three_personas import (
    BASE_CONTRACT,
    FINETUNED_CONTRACT,
    PERSONAS,
    THREE_PERSONAS,
    TRAINING_CONTRACT,
    build_steps,
)


def _definition(module: str, name: str) -> Callable[[], ScenarioDefinition]:
    """A factory that imports ``core.scenario.<module>`` only when its scenario is asked for: a
    scenario's bodies may import what others never need (pyarrow, opacus), and listing the
    names must not pay for them."""

    def load() -> ScenarioDefinition:
        definition: ScenarioDefinition = getattr(import_module(f"core.scenario.{module}"), name)
        return definition

    return load


# The scenarios `cleanroom demo --scenario NAME` and `cleanroom console --scenario NAME` play.
SCENARIOS: dict[str, Callable[[], ScenarioDefinition]] = {
    REFERENCE_SCENARIO: _definition("three_personas", "THREE_PERSONAS"),
    "dp-join": _definition("dp_join", "DP_JOIN"),
    "summarise": _definition("summarise", "SUMMARISE"),
    "onboard": _definition("onboard", "ONBOARD"),
    "endpoints": _definition("endpoints", "ENDPOINTS"),
}
# What help lists: the shipped scenarios, fixed here, so a scenario registered later (a test's, a
# plugin's) is playable but never changes the documented choices.
SHIPPED_SCENARIOS: tuple[str, ...] = tuple(SCENARIOS)


def scenario_definition(name: str) -> ScenarioDefinition:
    """The definition registered as ``name``; an unknown name is a one-line error listing them."""
    factory = SCENARIOS.get(name)
    if factory is None:
        raise InvalidInputError(f"scenario '{name}' does not exist", hint=f"choose one of {', '.join(SCENARIOS)}")
    return factory()


__all__ = [
    "BASE_CONTRACT",
    "FINETUNED_CONTRACT",
    "KIND_DECRYPT",
    "KIND_MOUNTS",
    "KIND_RELEASE",
    "KIND_SECRET",
    "KIND_STORES",
    "LOCK_FILE",
    "PERSONAS",
    "REFERENCE_SCENARIO",
    "SCENARIOS",
    "SHIPPED_SCENARIOS",
    "STATE_FILE",
    "THREE_PERSONAS",
    "TRAINING_CONTRACT",
    "Invocation",
    "Phase",
    "Reporter",
    "RunStatus",
    "Scenario",
    "ScenarioDefinition",
    "ScenarioState",
    "Step",
    "build_steps",
    "open_embedded_scenario",
    "scenario_definition",
    "scenario_root",
]
