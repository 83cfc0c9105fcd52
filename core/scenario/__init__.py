"""Scenarios: collaborations acted out for real, step by step, by the personas' own operators.

A scenario is data (``steps.ScenarioDefinition``): its personas, phases and steps, each step
the ``cleanroom`` command lines one persona types, performed by a body that reads exactly
those lines (``operations``, ``proofs``) through the persona's own engine. The runner
(``run.Scenario``) keeps the state of one scenario root, resumes an interrupted run, and
drives ``cleanroom demo`` and the console alike. The reference scenario is
``three_personas``; a new one (a DP join, summarisation, onboarding) is a module that builds a
``ScenarioDefinition`` from its steps, plus the bodies only it needs.
"""

from core.scenario.proofs import KIND_DECRYPT, KIND_MOUNTS, KIND_RELEASE, KIND_SECRET, KIND_STORES
from core.scenario.run import Scenario, open_embedded_scenario
from core.scenario.state import LOCK_FILE, STATE_FILE, RunStatus, ScenarioState
from core.scenario.steps import Invocation, Phase, Reporter, ScenarioDefinition, Step
from core.scenario.three_personas import (
    BASE_CONTRACT,
    FINETUNED_CONTRACT,
    PERSONAS,
    THREE_PERSONAS,
    TRAINING_CONTRACT,
    build_steps,
)

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
]
