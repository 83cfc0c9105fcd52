"""Deployment spec and clean-room policy: what exactly will run for a contract, and its hash.

``governance deployment generate`` turns a contract's merged spec (the voted config
fragments) into two documents the parties then vote on:

* the **deployment spec**: every application with its image/entrypoint, command, mounts
  (resolved to datasource/datasink owners and stores), voted environment, names of the
  variables supplied at deployment, its unix socket when it serves, and the network policy
  and export (logging/telemetry) settings;
* the **clean-room policy**: the measured subset of the spec (``core.keys.measurement``) and
  its SHA-256. The key service releases KEKs only to a workload attesting this hash.

The runtime adds two variables to every application and they are part of the measured
``env``: ``CLEANROOM_TELEMETRY_FILE`` (where a workload appends JSON-lines progress) and,
for an application that serves, ``CLEANROOM_UDS``, which only *names* the spec's socket. An
application with ``private_training`` also gets ``CLEANROOM_PRIVATE_TRAINING`` (its voted job,
:func:`private_training_job`), and the section itself stays in the spec, where governance reads
the epsilon it charges. ``CLEANROOM_LOSS_TELEMETRY`` is set at launch, not measured: it follows
the ``loss_telemetry`` runtime option, which members vote on after the deployment.

A serving workload does not bind ``CLEANROOM_UDS``: the local runtime binds and listens on the
unix socket itself, before the workload starts and outside the sandbox (in a 0700 directory no
sandbox mounts), and hands the listening socket in as an inherited file descriptor whose number
is in ``CLEANROOM_LISTEN_FD`` (set at launch by ``core.runtime.sandbox``, not measured: it is a
descriptor number, not a choice). The workload serves on that fd (uvicorn:
``uvicorn.run(app, fd=int(os.environ["CLEANROOM_LISTEN_FD"]))``; socketserver: construct with
``bind_and_activate=False`` and set ``server.socket = socket.socket(fileno=fd)``). The ingress
connects only to the socket the runtime bound, so a socket the workload binds at
``CLEANROOM_UDS`` (or a link it plants there) is never reached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.config.canonical import canonical_json, document_hash
from core.config.summary_policy import SummaryPolicy
from core.crypto.secret_file import write_public_file
from core.errors import InvalidInputError
from core.keys.measurement import clean_room_policy, policy_hash
from core.keys.skr import aci_policy_fields

SPEC_VERSION = 1
RUN_DIR = "/run/cleanroom"
TELEMETRY_FILE = f"{RUN_DIR}/telemetry.jsonl"
PRIVATE_TRAINING_ENV = "CLEANROOM_PRIVATE_TRAINING"
LOSS_TELEMETRY_ENV = "CLEANROOM_LOSS_TELEMETRY"
DEPLOYMENT_SPEC_FILE = "deployment-spec.json"
POLICY_FILE = "clean-room-policy.json"


def private_training_job(training: dict[str, Any], mounts: list[dict[str, Any]]) -> str:
    """The job of a private training workload (``CLEANROOM_PRIVATE_TRAINING``): the voted
    ``private_training`` section plus where each mounted datasource is, as canonical JSON.

    It is in the spec's ``env``, so the measured policy shows the exact job every party votes
    on, and the Azure backend passes it like any voted variable."""
    located = {m["name"]: m["path"] for m in mounts if m["kind"] == "datasource"}
    return canonical_json({**training, "mounts": located}).decode()


def socket_path(application: str) -> str:
    """The socket a serving application's spec names (``CLEANROOM_UDS``): measured, so the spec
    says which application serves; the runtime serves it through ``CLEANROOM_LISTEN_FD``."""
    return f"{RUN_DIR}/{application}.sock"


def deployment_spec(contract_id: str, merged_spec: dict[str, Any]) -> dict[str, Any]:
    """The deployment spec for ``contract_id`` from its merged spec document."""
    if not isinstance(merged_spec, dict) or not merged_spec.get("applications"):
        raise InvalidInputError(
            f"contract '{contract_id}' has no applications to deploy",
            hint="the hoster adds one with `cleanroom config add-application` and the contract is created again",
        )
    assets = {asset["name"]: ("datasource", asset) for asset in merged_spec.get("datasources", [])}
    assets.update({asset["name"]: ("datasink", asset) for asset in merged_spec.get("datasinks", [])})
    applications = []
    for app in merged_spec["applications"]:
        if not app.get("command"):
            raise InvalidInputError(
                f"application '{app['name']}' has no command", hint="set --command when adding the application"
            )
        mounts = []
        for mount in app.get("mounts", []):
            if mount["source"] not in assets:
                raise InvalidInputError(
                    f"application '{app['name']}' mounts '{mount['source']}', which no party declares",
                    hint="add the owner's fragment to the contract",
                )
            kind, asset = assets[mount["source"]]
            mounts.append(
                {
                    "kind": kind,
                    "name": asset["name"],
                    "owner": asset["owner"],
                    "path": mount["target"],
                    "read_only": kind == "datasource",
                }
            )
        env = dict(app.get("env", {}))
        env["CLEANROOM_TELEMETRY_FILE"] = TELEMETRY_FILE
        if app.get("ports"):
            env["CLEANROOM_UDS"] = socket_path(app["name"])
        training = app.get("private_training")
        if training is not None:
            env[PRIVATE_TRAINING_ENV] = private_training_job(training, mounts)
        summary_policy = app.get("summary_policy")
        if summary_policy is not None:  # the caps the summariser enforces on what leaves
            env.update(SummaryPolicy.model_validate(summary_policy).to_env())
        applications.append(
            {
                "name": app["name"],
                "owner": app.get("owner"),
                "image": app.get("image"),
                "entrypoint": app.get("entrypoint"),
                "command": list(app["command"]),
                "mounts": mounts,
                "env": env,
                "env_names": sorted(app.get("env_names", [])),
                "ports": list(app.get("ports", [])),
                "socket": socket_path(app["name"]) if app.get("ports") else None,
                "cpu": app.get("cpu"),
                "memory_gb": app.get("memory_gb"),
                # only when set: the specs of contracts without private training stay as they were
                **({"private_training": training} if training is not None else {}),
                **({"summary_policy": summary_policy} if summary_policy is not None else {}),
            }
        )
    return {
        "schema_version": SPEC_VERSION,
        "contract_id": contract_id,
        "contract_hash": document_hash(merged_spec),
        "applications": sorted(applications, key=lambda a: a["name"]),
        "datasources": merged_spec.get("datasources", []),
        "datasinks": merged_spec.get("datasinks", []),
        "network_policy": merged_spec.get("network_policy", {}),
        "logging": merged_spec.get("logging", {"enabled": False}),
        "telemetry": merged_spec.get("telemetry", {"enabled": False}),
    }


def policy_document(spec: dict[str, Any], *, cce_policy: str | None = None) -> dict[str, Any]:
    """The clean-room policy proposal document: the measured policy and its hash.

    On Azure (``cce_policy`` given) the document also carries the ccePolicy and its SEV-SNP host
    data, so the parties vote on exactly what the hardware will report and Key Vault will check.
    """
    document = {"attestation_type": "virtual", "policy_hash": policy_hash(spec), "policy": clean_room_policy(spec)}
    if cce_policy is not None:
        document.update(aci_policy_fields(cce_policy))
    return document


def accepted_policy_hash(document: dict[str, Any] | None) -> str | None:
    """The hash a policy document stands for, recomputed (a stated hash is never trusted alone)."""
    if not isinstance(document, dict) or not isinstance(document.get("policy"), dict):
        return None
    recomputed = document_hash(document["policy"])
    return recomputed if document.get("policy_hash") == recomputed else None


def write_deployment(contract_id: str, merged_spec: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """Write the deployment spec and the policy into ``output_dir`` (atomically); return a summary."""
    spec = deployment_spec(contract_id, merged_spec)
    policy = policy_document(spec)
    spec_path, policy_path = output_dir / DEPLOYMENT_SPEC_FILE, output_dir / POLICY_FILE
    write_public_file(spec_path, (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode())
    write_public_file(policy_path, (json.dumps(policy, indent=2, sort_keys=True) + "\n").encode())
    return {
        "contract_id": contract_id,
        "deployment_spec": str(spec_path),
        "policy": str(policy_path),
        "policy_hash": policy["policy_hash"],
        "applications": [a["name"] for a in spec["applications"]],
    }


def load_document(path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidInputError(
            f"{what} file {path} does not exist", hint="create it with `cleanroom governance deployment generate`"
        ) from exc
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{what} file {path} is not valid JSON ({exc.msg})",
            hint="re-generate it with `cleanroom governance deployment generate`",
        ) from exc
    if not isinstance(document, dict):
        raise InvalidInputError(f"{what} file {path} is not a JSON object", hint="re-generate it")
    return document
