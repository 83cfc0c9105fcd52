"""How an inference contract names the registry model version it mounts.

An inference application that serves a registry version carries its name, version and package
hash in its voted env. Governance refuses to propose, accept or deploy such a contract unless
the version is verified, public and, when a regression gate was voted for it, passed it; the
runtime checks the same again at start (the version may have been unpublished since) and hashes
the decrypted mount before any workload starts. An application without these names mounts a
plain model asset (the three-persona, private-training and summarisation scenarios do): the
registry rule does not apply to it, and docs/threat-model.md says so.
"""

from __future__ import annotations

from typing import Any

MODEL_ENV = "CLEANROOM_SERVE_MODEL"
VERSION_ENV = "CLEANROOM_SERVE_VERSION"
PACKAGE_HASH_ENV = "CLEANROOM_SERVE_PACKAGE_SHA256"
MOUNT_ENV = "CLEANROOM_SERVE_MOUNT"  # the mount target holding the package, hashed by the runtime at start


def serving_env(name: str, version: str, package_hash: str, mount: str) -> dict[str, str]:
    """The voted env of an application serving a registry version mounted at ``mount``."""
    return {MODEL_ENV: name, VERSION_ENV: version, PACKAGE_HASH_ENV: package_hash, MOUNT_ENV: mount}


def serving_targets(contract_data: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(model, version): (packageHash, mount target)}`` the contract's (or spec's) applications serve."""
    targets: dict[tuple[str, str], tuple[str, str]] = {}
    for app in contract_data.get("applications") or []:
        env = app.get("env") if isinstance(app, dict) else None
        if isinstance(env, dict) and (MODEL_ENV in env or VERSION_ENV in env):
            key = (str(env.get(MODEL_ENV, "")), str(env.get(VERSION_ENV, "")))
            targets[key] = (str(env.get(PACKAGE_HASH_ENV, "")), str(env.get(MOUNT_ENV, "")))
    return targets
