"""How a contract names the two model versions its regression clean room compares, and the gate.

The regression application's voted env carries the model, the candidate and the baseline
versions with the package hash the registry holds for each, and the gate as JSON
(containers/regression reads the same names and refuses mounted bytes of any other hash), so
every member sees which bytes are compared under which rules, and governance writes a
candidate's ``regression`` result only for a contract naming exactly those two versions.
Kept apart from the registry's rules so the runtime can find a regression application without
loading the governance ledger code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.config.canonical import canonical_json

MODEL_ENV = "CLEANROOM_REGRESSION_MODEL"
CANDIDATE_ENV = "CLEANROOM_REGRESSION_CANDIDATE_VERSION"
CANDIDATE_HASH_ENV = "CLEANROOM_REGRESSION_CANDIDATE_SHA256"
BASELINE_ENV = "CLEANROOM_REGRESSION_BASELINE_VERSION"
BASELINE_HASH_ENV = "CLEANROOM_REGRESSION_BASELINE_SHA256"
GATE_ENV = "CLEANROOM_REGRESSION_GATE"
ENV_NAMES = (MODEL_ENV, CANDIDATE_ENV, CANDIDATE_HASH_ENV, BASELINE_ENV, BASELINE_HASH_ENV, GATE_ENV)


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
        MODEL_ENV: name,
        CANDIDATE_ENV: candidate[0],
        CANDIDATE_HASH_ENV: candidate[1],
        BASELINE_ENV: baseline[0],
        BASELINE_HASH_ENV: baseline[1],
        GATE_ENV: canonical_json(gate).decode(),
    }


def regression_targets(contract_data: dict[str, Any]) -> dict[tuple[str, str], RegressionTarget]:
    """``{(model, candidate version): target}`` the contract's (or spec's) applications compare."""
    targets: dict[tuple[str, str], RegressionTarget] = {}
    for app in contract_data.get("applications") or []:
        env = app.get("env") if isinstance(app, dict) else None
        if not isinstance(env, dict) or not all(key in env for key in ENV_NAMES):
            continue
        try:
            gate = json.loads(str(env[GATE_ENV]))
        except json.JSONDecodeError:
            gate = None
        target = RegressionTarget(
            model=str(env[MODEL_ENV]),
            candidate_version=str(env[CANDIDATE_ENV]),
            candidate_hash=str(env[CANDIDATE_HASH_ENV]),
            baseline_version=str(env[BASELINE_ENV]),
            baseline_hash=str(env[BASELINE_HASH_ENV]),
            gate=gate if isinstance(gate, dict) else None,
        )
        targets[(target.model, target.candidate_version)] = target
    return targets
