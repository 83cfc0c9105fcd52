"""Measuring a deployment: the clean-room policy and its hash.

The policy lists, for a reader, what decides what runs and what it can touch: each
application's image/entrypoint, command, mounts, its voted non-secret environment (names and
values), the NAMES of the variables supplied at deployment (their values are secrets and are
not in the spec at all) and ports, plus the network policy. It also carries
``deployment_spec_sha256``, the hash of the canonical JSON of the WHOLE deployment spec, so
everything a key release depends on is measured: asset owners and stores, datasinks, logging
and telemetry export settings, resources. A spec that differs from the accepted one in any
field measures differently and gets no key (a hoster editing where outputs or logs go is
refused exactly like one editing the command). The spec is generated deterministically from
the contract (no timestamps), so re-generating it does not invalidate votes.
"""

from __future__ import annotations

from typing import Any

from core.config.canonical import document_hash
from core.errors import InvalidInputError

POLICY_VERSION = 2  # 2: the whole deployment spec is measured (deployment_spec_sha256)


def _application_policy(app: Any) -> dict[str, Any]:
    if not isinstance(app, dict) or not app.get("name"):
        raise InvalidInputError(
            "deployment spec has an application without a name",
            hint="re-generate it with `cleanroom governance deployment generate`",
        )
    name = app["name"]
    command = app.get("command")
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        raise InvalidInputError(
            f"application '{name}' has no command list in the deployment spec",
            hint="re-generate it with `cleanroom governance deployment generate`",
        )
    mounts = app.get("mounts", [])
    if not isinstance(mounts, list):
        raise InvalidInputError(f"application '{name}' mounts must be a list", hint="re-generate the spec")
    return {
        "name": name,
        "image": app.get("image"),
        "entrypoint": app.get("entrypoint"),
        "command": command,
        "mounts": sorted(
            (
                {
                    "kind": m.get("kind"),
                    "name": m.get("name"),
                    "path": m.get("path"),
                    "read_only": bool(m.get("read_only", m.get("kind") == "datasource")),
                    "owner": m.get("owner"),
                }
                for m in mounts
            ),
            key=lambda m: (str(m["path"]), str(m["name"])),
        ),
        "env": dict(sorted(app.get("env", {}).items())),
        "env_names": sorted(app.get("env_names", [])),
        "ports": sorted(app.get("ports", [])),
        "socket": app.get("socket"),
    }


def clean_room_policy(deployment_spec: dict[str, Any]) -> dict[str, Any]:
    """Derive the clean-room policy document from a deployment spec."""
    if not isinstance(deployment_spec, dict) or not deployment_spec.get("contract_id"):
        raise InvalidInputError(
            "deployment spec has no contract_id", hint="re-generate it with `cleanroom governance deployment generate`"
        )
    apps = deployment_spec.get("applications")
    if not isinstance(apps, list) or not apps:
        raise InvalidInputError(
            f"deployment spec for contract '{deployment_spec['contract_id']}' has no applications",
            hint="add one with `cleanroom config add-application` and re-generate",
        )
    return {
        "version": POLICY_VERSION,
        "contract_id": deployment_spec["contract_id"],
        "applications": sorted((_application_policy(a) for a in apps), key=lambda a: a["name"]),
        "network_policy": deployment_spec.get("network_policy", {}),
        "deployment_spec_sha256": document_hash(deployment_spec),
    }


def policy_hash(deployment_spec: dict[str, Any]) -> str:
    """The measurement: SHA-256 of the canonical clean-room policy of ``deployment_spec``."""
    return document_hash(clean_room_policy(deployment_spec))


def policy_hash_of(policy: dict[str, Any]) -> str:
    """The measurement an attested clean room must present for an accepted clean-room policy.

    The runtime's policy document is ``{"policy": {...}, "policy_hash": H(policy)}``: the hash is
    always recomputed, never taken on trust, and a document whose stated hash disagrees is
    refused. Any other document is itself the measured policy and its canonical hash counts.
    """
    inner = policy.get("policy")
    if isinstance(inner, dict):
        recomputed = document_hash(inner)
        stated = policy.get("policy_hash")
        if stated is not None and stated != recomputed:
            raise InvalidInputError(
                "clean-room policy states a policy_hash that is not the hash of its policy",
                hint="re-generate it with `cleanroom governance deployment generate`",
            )
        return recomputed
    return document_hash(policy)
