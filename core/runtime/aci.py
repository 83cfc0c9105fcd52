"""The Azure runtime: a confidential container group (ACI, AMD SEV-SNP) for an accepted deployment.

``aci_template`` turns a deployment spec (the same document the parties voted on; see
``core.keys.measurement``) into an ARM template: the workload containers, the clean-room runtime
as a sidecar that fetches encrypted blobs, obtains the KEK by secure key release and shares
plaintext with the workloads through in-memory ``emptyDir`` volumes, sku ``Confidential``, and a
``ccePolicy`` parameter. ``container_group`` builds the SDK's ``ContainerGroup`` from the
template, refusing anything the SDK's models do not carry exactly (so a typo cannot silently
drop a mount or a port), and ``AciDeployment`` maps start/status/logs/stop onto the SDK.

The ccePolicy is the confidential computing enforcement policy (a Rego document, base64) that
``az confcom acipolicygen`` derives from the template. SEV-SNP reports its SHA-256 as HOST_DATA,
which is what the Key Vault release policy checks (``core.keys.skr``). Generation is two-step:
without a ccePolicy the template carries a placeholder (the input of that tool, not deployable);
with the tool's output (``cce_policy``) it carries that ccePolicy and its host data, the same
value the voted clean-room policy document and the SKR policy carry.

Workload containers start with the sidecar, before their datasources are decrypted, so each
command is wrapped: it waits for ``/run/cleanroom/ready`` (written by the sidecar once every
datasource is in place; ``failed`` makes it give up) and records its exit code in
``/run/cleanroom/exit-<container>``, which is how the sidecar knows when to seal the datasinks.
The template cannot carry ``CLEANROOM_LOSS_TELEMETRY`` (members vote ``loss_telemetry`` after the
template is measured), so the sidecar writes what governance says beside ``ready`` and the wrapper
exports it to a private training workload, as the local runtime sets it at launch.
The sidecar writes ``stop`` for a stop (SIGTERM of the sidecar: ACI stop), and ``kill`` then
``stop`` for the kill switch; the wrapper checks for them every 0.2 s, sends the command SIGTERM,
and SIGKILLs it if it is still there after the grace: 10 s for a stop (a last checkpoint), 0.5 s
once ``kill`` is there, so the kill switch wins within 2 s on Azure as it does locally.

Deployment spec fields used (per application): ``name``, ``image``, ``command``, ``env`` (voted
names and values), ``env_names`` (secrets: securestring parameters, values given at deployment),
``ports``, ``mounts`` ({kind, name, path, owner}), and the Azure-only ``cpu`` (cores, default 1)
and ``memory_gb`` (default 2), which are not measured.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from azure.core.exceptions import (
    ClientAuthenticationError,
    DeserializationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.mgmt.containerinstance.models import ContainerGroup

from core.crypto.secret_file import write_public_file
from core.errors import (
    AccessDeniedError,
    CleanroomError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
)
from core.keys.measurement import policy_hash
from core.keys.skr import CCE_POLICY_PLACEHOLDER, cce_policy_host_data
from core.runtime.deployment import LOSS_TELEMETRY_ENV, PRIVATE_TRAINING_ENV, RUN_DIR

ARM_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
ACI_API_VERSION = "2023-05-01"
ACI_TEMPLATE_FILE = "cleanroom-aci-template.json"
RUNTIME_SIDECAR_IMAGE = "cleanroom-console/runtime:0.1.0"
RUNTIME_SIDECAR_NAME = "cleanroom-runtime"
SIDECAR_MOUNT_ROOT = "/mnt/cleanroom"
RUN_VOLUME = "cleanroom-run"
READY_FILE = "ready"
FAILED_FILE = "failed"
EXIT_FILE_PREFIX = "exit-"
STOP_FILE = "stop"  # the sidecar asks the workloads to stop: SIGTERM, SIGKILL after WRAPPER_STOP_GRACE_SECONDS
KILL_FILE = "kill"  # ... because of the kill switch: the grace is WRAPPER_KILL_GRACE_SECONDS
# The voted loss_telemetry option, as the sidecar read it from governance: it writes exactly one of
# these before `ready`, and the wrapper tells a private training workload (CLEANROOM_LOSS_TELEMETRY=1)
# only when "on" is there and "off" is not, so a name a workload plants cannot turn loss on.
LOSS_TELEMETRY_ON_FILE = "loss-telemetry-on"
LOSS_TELEMETRY_OFF_FILE = "loss-telemetry-off"
WRAPPER_POLL_SECONDS = 0.2
WRAPPER_KILL_GRACE_SECONDS = 0.5  # with the sidecar's poll of the kill switch: gone within 2 s
WRAPPER_STOP_GRACE_SECONDS = 10  # a normal stop: time for a last checkpoint, as in the local runtime
_TICK_SECONDS = 0.1  # the grace is counted in ticks of this length
# $0 is the container name, "$@" the voted command (passed as arguments, never re-parsed). The
# command runs in the background so that `stop`/`kill` and SIGTERM reach it; the loop around
# `wait` outlasts a wait interrupted by the trap. A watcher checks for `stop` or `kill` every
# 0.2 s, sends the command SIGTERM, and SIGKILLs it when it is still there after the grace
# (cut to the kill switch's if `kill` appears during a normal stop's). The grace is counted in
# ticks of 0.1 s; an image whose `sleep` takes whole seconds only gets 1 s ticks (1 s polls, a
# 10 s or 1 s grace). Only existence is tested (`-e`): nothing in the run volume, which every
# workload can write, is opened, so a FIFO planted at a name cannot block the watcher.
WAIT_FOR_DATA = (
    f'r={RUN_DIR}; while [ ! -e "$r/{READY_FILE}" ]; do [ -e "$r/{FAILED_FILE}" ] && exit 70; sleep 1; done; '
    f'[ -n "${PRIVATE_TRAINING_ENV}" ] && [ -e "$r/{LOSS_TELEMETRY_ON_FILE}" ] && '
    f'[ ! -e "$r/{LOSS_TELEMETRY_OFF_FILE}" ] && export {LOSS_TELEMETRY_ENV}=1; '
    "\"$@\" & pid=$!; trap 'kill -TERM $pid 2>/dev/null' TERM; "
    f"( if sleep {_TICK_SECONDS} 2>/dev/null; then p={WRAPPER_POLL_SECONDS} t={_TICK_SECONDS} "
    f"g={round(WRAPPER_STOP_GRACE_SECONDS / _TICK_SECONDS)} k={round(WRAPPER_KILL_GRACE_SECONDS / _TICK_SECONDS)}; "
    f"else p=1 t=1 g={WRAPPER_STOP_GRACE_SECONDS} k=1; fi; "
    f'while [ ! -e "$r/{STOP_FILE}" ] && [ ! -e "$r/{KILL_FILE}" ]; do '
    "kill -0 $pid 2>/dev/null || exit 0; sleep $p; done; "
    "kill -TERM $pid 2>/dev/null; "
    f'while kill -0 $pid 2>/dev/null; do [ -e "$r/{KILL_FILE}" ] && [ $g -gt $k ] && g=$k; '
    "[ $g -gt 0 ] || { kill -KILL $pid 2>/dev/null; exit 0; }; sleep $t; g=$((g-1)); done ) & "
    "wait $pid; code=$?; while kill -0 $pid 2>/dev/null; do wait $pid; code=$?; done; "
    f'echo "$code" > "$r/{EXIT_FILE_PREFIX}$0"; exit "$code"'
)
DEFAULT_CPU = 1.0
DEFAULT_MEMORY_GB = 2.0
_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_IDENTITY_RE = re.compile(
    rf"^/subscriptions/{_GUID}/resourceGroups/[-\w.()]{{1,90}}/providers/"
    r"Microsoft\.ManagedIdentity/userAssignedIdentities/[-\w]{3,128}$",
    re.IGNORECASE,
)
_PARAMETER_RE = re.compile(r"^\[parameters\('([A-Za-z0-9_]+)'\)\]$")


@dataclass(frozen=True)
class ManagedIdentity:
    """A user-assigned managed identity the container group runs as.

    Stores named by account URL (``--storage-account``) are reached with DefaultAzureCredential;
    inside the group that is this identity, selected by ``AZURE_CLIENT_ID`` in the sidecar's
    environment. The client id must be known when the template is generated: the ccePolicy
    measures the sidecar's environment, so it cannot be an ARM ``reference()`` resolved later.
    """

    resource_id: str
    client_id: str

    def __post_init__(self) -> None:
        if not _IDENTITY_RE.match(self.resource_id):
            raise InvalidInputError(
                f"{self.resource_id!r} is not a user-assigned managed identity resource id",
                hint="pass --identity /subscriptions/SUB/resourceGroups/RG/providers/"
                "Microsoft.ManagedIdentity/userAssignedIdentities/NAME (`az identity show --query id`)",
            )
        if not re.fullmatch(_GUID, self.client_id):
            raise InvalidInputError(
                f"identity client id {self.client_id!r} is not a GUID",
                hint="pass --identity-client-id from `az identity show --query clientId`",
            )


def _resource_name(text: str) -> str:
    """ACI names: lowercase letters, digits and '-', at most 63 characters."""
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")[:63].strip("-")
    if not _NAME_RE.match(name):
        raise InvalidInputError(
            f"{text!r} cannot be turned into an Azure container name",
            hint="use letters, digits and '-' in application and datasource names",
        )
    return name


def _secret_parameter(env_name: str) -> str:
    """Secret env values are securestring parameters: given at deployment, never in the template."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env_name):
        raise InvalidInputError(
            f"environment variable name {env_name!r} is not valid",
            hint="use letters, digits and '_' (not starting with a digit)",
        )
    return f"secret_{env_name}"


def container_group_name(contract_id: str) -> str:
    """The container group a contract deploys as (the template's default name)."""
    return _resource_name(f"cleanroom-{contract_id}")


def secret_env_names(template: dict[str, Any]) -> list[str]:
    """Secret environment variables the template needs values for at deployment."""
    return sorted(
        name[len("secret_") :]
        for name, declared in template.get("parameters", {}).items()
        if declared.get("type") == "securestring"
    )


def _volume_name(mount: dict[str, Any]) -> str:
    return _resource_name(f"{mount.get('kind', 'mount')}-{mount.get('name', '')}")


def _container(app: dict[str, Any]) -> dict[str, Any]:
    name = _resource_name(str(app["name"]))
    if not app.get("image"):
        raise InvalidInputError(
            f"application '{app['name']}' has no container image for ACI",
            hint="set its image (REGISTRY/IMAGE:TAG) before generating and voting the deployment spec",
        )
    properties: dict[str, Any] = {
        "image": app["image"],
        "command": ["/bin/sh", "-c", WAIT_FOR_DATA, name, *app["command"]],
        "resources": {
            "requests": {
                "cpu": float(app.get("cpu") or DEFAULT_CPU),
                "memoryInGB": float(app.get("memory_gb") or DEFAULT_MEMORY_GB),
            }
        },
    }
    env = [{"name": k, "value": str(v)} for k, v in sorted(app.get("env", {}).items())]
    env += [
        {"name": k, "secureValue": f"[parameters('{_secret_parameter(k)}')]"} for k in sorted(app.get("env_names", []))
    ]
    if env:
        properties["environmentVariables"] = env
    if app.get("ports"):
        properties["ports"] = [{"port": int(p), "protocol": "TCP"} for p in sorted(app["ports"])]
    properties["volumeMounts"] = [
        {
            "name": _volume_name(m),
            "mountPath": m["path"],
            "readOnly": bool(m.get("read_only", m.get("kind") == "datasource")),
        }
        for m in app.get("mounts", [])
    ] + [{"name": RUN_VOLUME, "mountPath": RUN_DIR, "readOnly": False}]
    return {"name": name, "properties": properties}


def _azure_store(spec: dict[str, Any], mount: dict[str, Any]) -> dict[str, Any]:
    """Where the sidecar fetches a mount's sealed blobs: it must be Azure Blob, not a local folder."""
    kind, name = mount.get("kind"), mount.get("name")
    assets = {a.get("name"): a for a in spec.get(f"{kind}s", []) if isinstance(a, dict)}
    store = assets.get(name, {}).get("store")
    if not isinstance(store, dict):
        raise InvalidInputError(
            f"{kind} '{name}' is mounted but has no store in the deployment spec",
            hint="re-generate it with `cleanroom governance deployment generate`",
        )
    if store.get("kind") != "azure_blob":
        raise InvalidInputError(
            f"{kind} '{name}' lives in a {store.get('kind')} store that an Azure clean room cannot reach",
            hint=f"declare it with `cleanroom config add-{kind} --name {name} --storage-account URL` "
            "and upload it again",
        )
    return {
        "account_url": store.get("account_url"),
        "container": store.get("container") or name,
        "connection_string_env": store.get("connection_string_env"),
    }


def _store_secret_names(plan: list[dict[str, Any]]) -> list[str]:
    """Connection strings of stores reached by connection string: the sidecar needs their values
    (secure values given at deployment). Stores named by account URL need none (managed identity)."""
    return sorted({str(p["store"]["connection_string_env"]) for p in plan if p["store"].get("connection_string_env")})


def _sidecar(
    spec: dict[str, Any],
    measured: str,
    image: str,
    volumes: dict[str, dict[str, Any]],
    applications: list[str],
    extra_env: dict[str, str],
) -> dict[str, Any]:
    """The runtime: decrypts datasources into the shared volumes and seals datasinks out of them."""
    plan = [
        {
            "volume": v,
            "kind": m.get("kind"),
            "name": m.get("name"),
            "owner": m.get("owner"),
            "path": f"{SIDECAR_MOUNT_ROOT}/{v}",
            "store": _azure_store(spec, m),
        }
        for v, m in sorted(volumes.items())
    ]
    env = [
        {"name": "CLEANROOM_CONTRACT_ID", "value": str(spec["contract_id"])},
        {"name": "CLEANROOM_POLICY_HASH", "value": measured},
        {"name": "CLEANROOM_MOUNT_PLAN", "value": json.dumps(plan, sort_keys=True, separators=(",", ":"))},
        {"name": "CLEANROOM_APPLICATIONS", "value": json.dumps(applications, separators=(",", ":"))},
    ]
    env += [{"name": k, "value": v} for k, v in sorted(extra_env.items())]
    env += [{"name": k, "secureValue": f"[parameters('{_secret_parameter(k)}')]"} for k in _store_secret_names(plan)]
    properties: dict[str, Any] = {
        "image": image,
        "command": ["python", "-m", "core.runtime.sidecar"],
        "environmentVariables": env,
        "resources": {"requests": {"cpu": 0.5, "memoryInGB": 1.0}},
    }
    properties["volumeMounts"] = [
        {"name": v, "mountPath": f"{SIDECAR_MOUNT_ROOT}/{v}", "readOnly": False} for v in [*sorted(volumes), RUN_VOLUME]
    ]
    return {"name": RUNTIME_SIDECAR_NAME, "properties": properties}


BLUE_GREEN_HINT = (
    "deploy it with --backend local (its ingress applies the voted split), or give --backend aci "
    "a contract with one serving application"
)


def refuse_blue_green(contract_id: str, serving: list[str]) -> None:
    """A contract serving several applications is blue/green: the local runtime puts them behind
    one TLS ingress that follows the members' voted traffic split (``core.runtime.traffic_split``).
    A container group has no such ingress (each serving port is published on the group's IP as
    is), so it could not honour the split, the pin header or a rollback: refused before any file
    is written or any group deployed, rather than deployed without the voted routing."""
    if len(serving) > 1:
        raise InvalidInputError(
            f"contract '{contract_id}' serves {len(serving)} applications ({', '.join(serving)}) behind one "
            "endpoint with a voted traffic split (blue/green), which --backend aci cannot route",
            hint=BLUE_GREEN_HINT,
        )


def _serving_containers(template: dict[str, Any]) -> list[str]:
    """The workload containers of a template that publish a port (the runtime sidecar publishes none).
    Anything malformed counts as nothing here: ``container_group`` refuses it with its path."""
    try:
        containers = template["resources"][0]["properties"]["containers"]
        return [str(c["name"]) for c in containers if c.get("properties", {}).get("ports")]
    except (KeyError, IndexError, TypeError, AttributeError):
        return []


def aci_template(
    deployment_spec: dict[str, Any],
    *,
    runtime_image: str = RUNTIME_SIDECAR_IMAGE,
    cce_policy: str | None = None,
    sidecar_env: dict[str, str] | None = None,
    identity: ManagedIdentity | None = None,
) -> dict[str, Any]:
    """The ARM template for ``deployment_spec`` as a confidential container group.

    It is what `az deployment group create --template-file` and `az confcom acipolicygen`
    take; :func:`container_group` builds the SDK model from the very same document.
    ``cce_policy`` is that tool's output (None: the placeholder); ``sidecar_env`` is where the
    runtime sidecar reaches governance and key release (``core.runtime.sidecar``); ``identity``
    is the user-assigned managed identity the group (so the sidecar's storage calls) runs as.
    """
    host_data = cce_policy_host_data(cce_policy) if cce_policy is not None else None
    measured = policy_hash(deployment_spec)  # validates the spec the same way as the local runtime
    apps = deployment_spec["applications"]
    refuse_blue_green(str(deployment_spec["contract_id"]), [str(a["name"]) for a in apps if a.get("ports")])
    names = [_resource_name(str(a["name"])) for a in apps]
    if RUNTIME_SIDECAR_NAME in names or len(set(names)) != len(names):
        raise InvalidInputError(
            f"application names clash in the container group (after lowercasing, or with '{RUNTIME_SIDECAR_NAME}')",
            hint="rename the applications so they are distinct",
        )
    volumes: dict[str, dict[str, Any]] = {}
    for app in apps:
        for mount in app.get("mounts", []):
            volumes.setdefault(_volume_name(mount), mount)
    containers = [_container(a) for a in apps]
    extra_env = dict(sidecar_env or {})
    if identity is not None:
        extra_env["AZURE_CLIENT_ID"] = identity.client_id
    containers.append(
        _sidecar(deployment_spec, measured, runtime_image, volumes, [c["name"] for c in containers], extra_env)
    )
    ports = sorted({int(p) for a in apps for p in a.get("ports", [])})
    properties: dict[str, Any] = {
        "sku": "Confidential",
        "confidentialComputeProperties": {"ccePolicy": "[parameters('ccePolicy')]"},
        "containers": containers,
        "osType": "Linux",
        "restartPolicy": "Never",
    }
    properties["volumes"] = [{"name": v, "emptyDir": {}} for v in [*sorted(volumes), RUN_VOLUME]]
    if ports:
        properties["ipAddress"] = {"type": "Public", "ports": [{"port": p, "protocol": "TCP"} for p in ports]}
    contract = str(deployment_spec["contract_id"])
    bound = {"host_data": host_data} if host_data else {}
    return {
        "$schema": ARM_SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {"cleanroom": {"contract_id": contract, "policy_hash": measured, **bound}},
        "parameters": {
            **{
                _secret_parameter(e["name"]): {"type": "securestring"}
                for c in containers
                for e in c["properties"].get("environmentVariables", [])
                if "secureValue" in e
            },
            "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
            "containerGroupName": {"type": "string", "defaultValue": container_group_name(contract)},
            "ccePolicy": {
                "type": "string",
                "defaultValue": cce_policy.strip() if cce_policy else CCE_POLICY_PLACEHOLDER,
                "metadata": {"description": "base64 Rego from `az confcom acipolicygen`"},
            },
        },
        "resources": [
            {
                "type": "Microsoft.ContainerInstance/containerGroups",
                "apiVersion": ACI_API_VERSION,
                "name": "[parameters('containerGroupName')]",
                "location": "[parameters('location')]",
                "tags": {
                    "cleanroom-contract": contract,
                    "cleanroom-policy-hash": measured,
                    **({"cleanroom-host-data": host_data} if host_data else {}),
                },
                **(
                    {"identity": {"type": "UserAssigned", "userAssignedIdentities": {identity.resource_id: {}}}}
                    if identity is not None
                    else {}
                ),
                "properties": properties,
            }
        ],
        "outputs": {
            "policyHash": {"type": "string", "value": measured},
            **({"hostData": {"type": "string", "value": host_data}} if host_data else {}),
        },
    }


def write_aci_template(
    deployment_spec: dict[str, Any],
    output_dir: Path,
    *,
    runtime_image: str = RUNTIME_SIDECAR_IMAGE,
    cce_policy: str | None = None,
    sidecar_env: dict[str, str] | None = None,
    identity: ManagedIdentity | None = None,
) -> Path:
    """Write the ARM template next to the deployment spec (atomically) and return its path."""
    path = output_dir / ACI_TEMPLATE_FILE
    template = aci_template(
        deployment_spec, runtime_image=runtime_image, cce_policy=cce_policy, sidecar_env=sidecar_env, identity=identity
    )
    write_public_file(path, (json.dumps(template, indent=2, sort_keys=True) + "\n").encode())
    return path


def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, parameters) for v in value]
    if isinstance(value, str):
        match = _PARAMETER_RE.match(value)
        if match:
            return parameters[match.group(1)]
    return value


def container_group(
    template: dict[str, Any],
    *,
    location: str,
    cce_policy: str | None = None,
    name: str | None = None,
    secrets: dict[str, str] | None = None,
) -> tuple[str, ContainerGroup]:
    """The SDK model the template describes, checked to carry every property exactly.

    ``secrets`` gives the values of the spec's ``env_names`` (sent as ACI secure values).
    """
    declared = template.get("parameters", {})
    secrets = secrets or {}
    wanted = secret_env_names(template)
    missing = [n for n in wanted if n not in secrets]
    if missing:
        raise InvalidInputError(
            f"no value for the secret environment variable(s) {', '.join(missing)}",
            hint="export them where `cleanroom deployment start --backend aci` runs (values are not measured)",
        )
    values = {
        **{_secret_parameter(n): secrets[n] for n in wanted},
        "location": location,
        "containerGroupName": name or declared["containerGroupName"]["defaultValue"],
        "ccePolicy": cce_policy if cce_policy is not None else declared["ccePolicy"]["defaultValue"],
    }
    resource = _resolve(template["resources"][0], values)
    body = {k: v for k, v in resource.items() if k not in ("type", "apiVersion", "name")}
    try:
        group = ContainerGroup.deserialize(body)
    except DeserializationError as exc:
        raise InvalidInputError(
            f"ACI template does not fit the ContainerGroup model ({exc})",
            hint="use the types the ContainerGroup API expects",
        ) from exc
    _check_round_trip(body, group.serialize())
    return values["containerGroupName"], group


def _check_round_trip(expected: Any, actual: Any, path: str = "containerGroup") -> None:
    """Anything the SDK model dropped or changed is a template error, named by its path."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            raise InvalidInputError(
                f"ACI template {path} is not an object for the SDK", hint="fix the template property"
            )
        for key, value in expected.items():
            if key not in actual and value not in ({}, []):
                raise InvalidInputError(
                    f"ACI template property {path}.{key} is not an ACI property",
                    hint="check its spelling against the ContainerGroup API",
                )
            _check_round_trip(value, actual.get(key, value), f"{path}.{key}")
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            raise InvalidInputError(
                f"ACI template {path} did not survive the SDK model", hint="fix the template property"
            )
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _check_round_trip(e, a, f"{path}[{index}]")
    elif expected != actual:
        # Values are not echoed: they may be secure environment values.
        raise InvalidInputError(
            f"ACI template {path} changed in the SDK model ({type(expected).__name__} became {type(actual).__name__})",
            hint="use the type the ContainerGroup API expects",
        )


@dataclass
class GroupStatus:
    name: str
    provisioning_state: str
    state: str
    containers: list[dict[str, Any]]
    ip_address: str | None


class AciDeployment:
    """start/status/logs/stop of clean-room container groups in one resource group."""

    def __init__(
        self,
        resource_group: str,
        *,
        subscription_id: str | None = None,
        credential: Any | None = None,
        client: Any | None = None,
    ) -> None:
        if not resource_group:
            raise InvalidInputError("no resource group given for the ACI backend", hint="pass --resource-group RG")
        self.resource_group = resource_group
        if client is None:
            subscription = subscription_id or os.environ.get("AZURE_SUBSCRIPTION_ID", "")
            if not subscription:
                raise InvalidInputError(
                    "no Azure subscription for the ACI backend",
                    hint="export AZURE_SUBSCRIPTION_ID=... or pass --subscription",
                )
            from azure.mgmt.containerinstance import ContainerInstanceManagementClient

            if credential is None:
                from core.azure_credential import default_credential

                credential = default_credential()
            client = ContainerInstanceManagementClient(credential, subscription)
        self._client = client

    def start(
        self,
        template: dict[str, Any],
        *,
        location: str,
        cce_policy: str | None = None,
        name: str | None = None,
        secrets: dict[str, str] | None = None,
        allow_debug_policy: bool = False,
    ) -> GroupStatus:
        """Deploy and wait for provisioning. Refuses the placeholder ccePolicy, and a ccePolicy
        other than the one the template (and so the vote) is bound to.

        ``allow_debug_policy`` deploys without a ccePolicy (ACI then enforces nothing): the
        hardware still attests, but its HOST_DATA will not match any accepted SKR policy.
        """
        # a template written by hand or before blue/green was refused at generation
        contract = template.get("metadata", {}).get("cleanroom", {}).get("contract_id")
        refuse_blue_green(str(contract or name or "?"), _serving_containers(template))
        policy = cce_policy.strip() if cce_policy is not None else None
        if policy is None and not allow_debug_policy:
            policy = template.get("parameters", {}).get("ccePolicy", {}).get("defaultValue")
        if not allow_debug_policy and (policy is None or policy == CCE_POLICY_PLACEHOLDER):
            raise InvalidInputError(
                "the ACI template still has the ccePolicy placeholder",
                hint="generate it with `az confcom acipolicygen -a template.json` and pass --cce-policy",
            )
        bound = template.get("metadata", {}).get("cleanroom", {}).get("host_data")
        if policy and bound and cce_policy_host_data(policy) != bound:
            raise InvalidInputError(
                f"the ccePolicy given is not the one the template is bound to (host data {bound[:12]}…)",
                hint="deploy with the ccePolicy the parties voted, or generate and vote again",
            )
        group_name, group = container_group(
            template, location=location, cce_policy=policy or "", name=name, secrets=secrets
        )
        if allow_debug_policy and not policy:
            group.confidential_compute_properties = None
        with self._translated(group_name):
            self._client.container_groups.begin_create_or_update(self.resource_group, group_name, group).result()
        return self.status(group_name)

    def status(self, name: str) -> GroupStatus:
        with self._translated(name):
            group = self._client.container_groups.get(self.resource_group, name)
        containers = []
        for container in group.containers:
            current = getattr(getattr(container, "instance_view", None), "current_state", None)
            containers.append(
                {
                    "name": container.name,
                    "state": getattr(current, "state", None) or "Unknown",
                    "exitCode": getattr(current, "exit_code", None),  # Azure's own key, as `-o json` prints it
                }
            )
        view = getattr(group, "instance_view", None)
        return GroupStatus(
            name=name,
            provisioning_state=str(group.provisioning_state or "Unknown"),
            state=str(getattr(view, "state", None) or "Unknown"),
            containers=containers,
            ip_address=getattr(group.ip_address, "ip", None),
        )

    def logs(self, name: str, container: str, *, tail: int | None = None) -> str:
        with self._translated(f"{name}/{container}"):
            return str(self._client.containers.list_logs(self.resource_group, name, container, tail=tail).content or "")

    def stop(self, name: str) -> None:
        with self._translated(name):
            self._client.container_groups.stop(self.resource_group, name)

    def delete(self, name: str) -> None:
        with self._translated(name):
            self._client.container_groups.begin_delete(self.resource_group, name).result()

    def _translated(self, what: str) -> _AzureErrors:
        return _AzureErrors(f"container group '{what}' in resource group '{self.resource_group}'")


class _AzureErrors:
    """SDK exceptions as one-line CleanroomErrors naming the group and the fix."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> Literal[False]:  # never swallows: an error passes through or is translated
        if exc is None or isinstance(exc, CleanroomError):
            return False
        translate: dict[type[BaseException], Callable[[], CleanroomError]] = {
            ResourceNotFoundError: lambda: NotFoundError(
                f"{self.what} does not exist", hint="check the name with `cleanroom deployment status`"
            ),
            ClientAuthenticationError: lambda: AccessDeniedError(
                f"Azure refused the credentials for {self.what}",
                hint="sign in with `az login` (needs Contributor on the resource group)",
            ),
            ServiceRequestError: lambda: ServiceUnavailableError(
                f"cannot reach Azure Resource Manager for {self.what}", hint="check the network"
            ),
        }
        for cls, make in translate.items():
            if isinstance(exc, cls):
                raise make() from exc
        if isinstance(exc, HttpResponseError):
            message = " ".join(str(getattr(exc, "message", "") or exc).split())[:300]
            raise InvalidInputError(
                f"Azure rejected {self.what}: {message}", hint="fix the template or the resource group and retry"
            ) from exc
        return False
