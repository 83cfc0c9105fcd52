"""How a contract names the two model versions its regression clean room compares, and the gate.

The regression application's voted env carries the model, the candidate and the baseline
versions with the package hash the registry holds for each, and the gate as JSON (the names are
``core.onboarding.workload_env``'s; containers/regression reads them and refuses mounted bytes
of any other hash), so every member sees which bytes are compared under which rules, and governance writes a
candidate's ``regression`` result only for a contract naming exactly those two versions.
Kept apart from the registry's rules so the runtime can find a regression application without
loading the governance ledger code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.config.canonical import canonical_json
from core.onboarding.workload_env import (
    REGRESSION_BASELINE_ENV,
    REGRESSION_BASELINE_HASH_ENV,
    REGRESSION_CANDIDATE_ENV,
    REGRESSION_CANDIDATE_HASH_ENV,
    REGRESSION_ENV_NAMES,
    REGRESSION_GATE_ENV,
    REGRESSION_MODEL_ENV,
)


@dataclass(frozen=True)
class RegressionTarget:
    """What one regression application compares: both versions pinned by package hash, and the gate."""

    model: str
    candidate_version: str
    candidate_hash: str
    baseline_version: str
    baseline_hash: str
    gate: dict[str, Any] | None  # None when the env's gate is not a JSON object: no result is then taken


def regression_env(
    name: str, candidate: tuple[str, str], baseline: tuple[str, str], gate: dict[str, Any]
) -> dict[str, str]:
    """The voted env of a regression application: ``candidate`` and ``baseline`` are (version,
    packageHash) as the registry holds them; the gate is canonical JSON, so one gate has one text."""
    return {
        REGRESSION_MODEL_ENV: name,
        REGRESSION_CANDIDATE_ENV: candidate[0],
        REGRESSION_CANDIDATE_HASH_ENV: candidate[1],
        REGRESSION_BASELINE_ENV: baseline[0],
        REGRESSION_BASELINE_HASH_ENV: baseline[1],
        REGRESSION_GATE_ENV: canonical_json(gate).decode(),
    }


def regression_targets(contract_data: dict[str, Any]) -> dict[tuple[str, str], RegressionTarget]:
    """``{(model, candidate version): target}`` the contract's (or spec's) applications compare."""
    targets: dict[tuple[str, str], RegressionTarget] = {}
    for app in contract_data.get("applications") or []:
        env = app.get("env") if isinstance(app, dict) else None
        if not isinstance(env, dict) or not all(key in env for key in REGRESSION_ENV_NAMES):
            continue
        try:
            gate = json.loads(str(env[REGRESSION_GATE_ENV]))
        except json.JSONDecodeError:
            gate = None
        target = RegressionTarget(
            model=str(env[REGRESSION_MODEL_ENV]),
            candidate_version=str(env[REGRESSION_CANDIDATE_ENV]),
            candidate_hash=str(env[REGRESSION_CANDIDATE_HASH_ENV]),
            baseline_version=str(env[REGRESSION_BASELINE_ENV]),
            baseline_hash=str(env[REGRESSION_BASELINE_HASH_ENV]),
            gate=gate if isinstance(gate, dict) else None,
        )
        targets[(target.model, target.candidate_version)] = target
    return targets
