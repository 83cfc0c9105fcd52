"""How a contract names the model version its onboarding clean room verifies.

The onboarding application's voted env carries the model, the version and both hashes the
registry holds (the names are ``core.onboarding.workload_env``'s, which containers/onboarding
reads), so every member sees which bytes the clean room verifies, and governance takes a status
only from a contract naming that version.
Kept apart from the registry's rules so the runtime can find an onboarding application without
loading the governance ledger code.
"""

from __future__ import annotations

from typing import Any

from core.onboarding.workload_env import (
    ONBOARD_MODEL_ENV,
    ONBOARD_PACKAGE_HASH_ENV,
    ONBOARD_VERSION_ENV,
    ONBOARD_WRAPPER_HASH_ENV,
)


def onboarding_env(name: str, version: str, package_hash: str, wrapper_hash: str) -> dict[str, str]:
    """The voted env of an onboarding application: which version it verifies, pinned by both hashes."""
    return {
        ONBOARD_MODEL_ENV: name,
        ONBOARD_VERSION_ENV: version,
        ONBOARD_PACKAGE_HASH_ENV: package_hash,
        ONBOARD_WRAPPER_HASH_ENV: wrapper_hash,
    }


def onboarding_targets(contract_data: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(model, version): (packageHash, wrapperHash)}`` the contract's (or spec's) applications onboard."""
    targets: dict[tuple[str, str], tuple[str, str]] = {}
    for app in contract_data.get("applications") or []:
        env = app.get("env") if isinstance(app, dict) else None
        if isinstance(env, dict) and ONBOARD_MODEL_ENV in env and ONBOARD_VERSION_ENV in env:
            key = (str(env[ONBOARD_MODEL_ENV]), str(env[ONBOARD_VERSION_ENV]))
            targets[key] = (str(env.get(ONBOARD_PACKAGE_HASH_ENV, "")), str(env.get(ONBOARD_WRAPPER_HASH_ENV, "")))
    return targets
