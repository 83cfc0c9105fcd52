"""`--backend aci` for `cleanroom deployment start|status|logs|stop`.

One decorator per verb adds the Azure options and, when ``--backend aci`` is chosen, runs the
Confidential Container Instances path (``core.runtime.aci``) instead of the local runtime, so the
local verbs keep their own code and signatures untouched. Like the local verbs, the ACI path
returns its data (``tui.output``) rather than printing it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from core.errors import InvalidInputError
from tui.output import Result, Stream, camel_keys, stderr_console


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--subscription",
        default=None,
        help="Azure subscription id for --backend aci (default: $AZURE_SUBSCRIPTION_ID).",
    )(f)
    f = click.option("--resource-group", default=None, help="Resource group of the container group (--backend aci).")(f)
    return click.option(
        "--backend",
        type=click.Choice(["local", "aci"]),
        default="local",
        show_default=True,
        help="local: this machine's sandboxed runtime; aci: a confidential container group on Azure.",
    )(f)


def _start_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--allow-debug-policy",
        is_flag=True,
        help="(aci) Deploy with no ccePolicy. NOT confidential: no key will be released to it.",
    )(f)
    f = click.option(
        "--cce-policy-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="(aci) File with the base64 ccePolicy from `az confcom acipolicygen`.",
    )(f)
    f = click.option("--location", default=None, help="(aci) Azure region, e.g. westeurope.")(f)
    return click.option(
        "--template",
        "template_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="(aci) cleanroom-aci-template.json from `governance deployment generate --backend aci`.",
    )(f)


def _deployment(resource_group: str | None, subscription: str | None) -> Any:
    from core.runtime.aci import AciDeployment

    if not resource_group:
        raise InvalidInputError("--backend aci needs --resource-group", hint="pass --resource-group RG")
    return AciDeployment(resource_group, subscription_id=subscription)


def _status_result(status: Any) -> Result:
    def render(console: Console) -> None:
        console.print(
            f"[bold]{status.name}[/]: provisioning {status.provisioning_state}, state {status.state}"
            + (f", ip {status.ip_address}" if status.ip_address else "")
        )
        table = Table(title="containers")
        for column in ("name", "state", "exit code"):
            table.add_column(column)
        for container in status.containers:
            table.add_row(container["name"], str(container["state"]), str(container.get("exit_code") or ""))
        console.print(table)

    return Result(camel_keys(asdict(status)), render=render)


def _start(
    contract_id: str,
    deployment: Any,
    template_file: Path | None,
    location: str | None,
    cce_policy_file: Path | None,
    allow_debug_policy: bool,
) -> Result:
    from core.runtime.aci import container_group_name, secret_env_names

    if template_file is None or location is None:
        raise InvalidInputError(
            "--backend aci start needs --template FILE and --location REGION",
            hint="write the template with `cleanroom governance deployment generate --backend aci`",
        )
    try:
        template = json.loads(template_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(
            f"ACI template {template_file} cannot be read as JSON ({exc})",
            hint="re-generate it with `cleanroom governance deployment generate --backend aci`",
        ) from None
    cce_policy = cce_policy_file.read_text().strip() if cce_policy_file else None
    err_console = stderr_console()
    if allow_debug_policy:
        err_console.print(
            "[bold red]WARNING: --allow-debug-policy: the container group has no ccePolicy. "
            "It is not a clean room and its attestation will not release any key.[/]"
        )
    secrets = {name: os.environ[name] for name in secret_env_names(template) if name in os.environ}
    with err_console.status(f"deploying {container_group_name(contract_id)} to Azure…"):
        status = deployment.start(
            template,
            location=location,
            cce_policy=cce_policy,
            name=container_group_name(contract_id),
            secrets=secrets,
            allow_debug_policy=allow_debug_policy,
        )
    return _status_result(status)


def aci_backend(verb: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add --backend/--resource-group/--subscription (and start's Azure options) to a deployment verb."""

    def decorate(callback: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(callback)
        def run(*args: Any, backend: str, resource_group: str | None, subscription: str | None, **kwargs: Any) -> Any:
            azure = {
                k: kwargs.pop(k)
                for k in ("template_file", "location", "cce_policy_file", "allow_debug_policy")
                if k in kwargs
            }
            if backend != "aci":
                return callback(*args, **kwargs)
            from core.runtime.aci import container_group_name

            deployment = _deployment(resource_group, subscription)
            contract_id = kwargs["contract_id"]
            name = container_group_name(contract_id)
            if verb == "start":
                return _start(contract_id, deployment, **azure)
            if verb == "status":
                return _status_result(deployment.status(name))
            if verb == "logs":
                return Stream(
                    (
                        {"container": container["name"], "log": deployment.logs(name, container["name"])}
                        for container in deployment.status(name).containers
                    ),
                    lambda item: f"== {item['container']} ==\n{item['log']}",
                )
            if verb == "stop":
                deployment.stop(name)
                return _status_result(deployment.status(name))
            raise ValueError(f"no ACI mapping for deployment {verb}")

        with_options = _common(run)
        return _start_options(with_options) if verb == "start" else with_options

    return decorate


def generate_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """`governance deployment generate` options for the ACI template and the SKR policy."""
    f = click.option(
        "--kek-vault",
        "kek_vaults",
        multiple=True,
        metavar="MEMBER=URL",
        help="(aci) Where the runtime sidecar asks for MEMBER's KEK (repeat per data owner).",
    )(f)
    f = click.option(
        "--cce-policy",
        "cce_policy_file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="(aci) base64 ccePolicy from `az confcom acipolicygen` for the written "
        "template; the policy to vote then carries it and its host data.",
    )(f)
    f = click.option(
        "--maa-endpoint",
        default=None,
        help="(aci) MAA endpoint the Key Vault release policy trusts, e.g. sharedeus.eus.attest.azure.net.",
    )(f)
    f = click.option(
        "--identity-client-id",
        default=None,
        metavar="GUID",
        help="(aci) Client id of --identity (`az identity show --query clientId`).",
    )(f)
    f = click.option(
        "--identity",
        "identity_id",
        default=None,
        metavar="RESOURCE_ID",
        help="(aci) User-assigned managed identity the group runs as; the sidecar reaches "
        "--storage-account stores with it (AZURE_CLIENT_ID).",
    )(f)
    f = click.option(
        "--runtime-image",
        default=None,
        help="(aci) Runtime sidecar image (default: cleanroom-console/runtime of this version).",
    )(f)
    return click.option(
        "--backend",
        type=click.Choice(["local", "aci"]),
        default="local",
        show_default=True,
        help="aci: also write the confidential container group ARM template (and, with "
        "--cce-policy and --maa-endpoint, the SKR policy).",
    )(f)


def _identity(identity_id: str | None, identity_client_id: str | None) -> Any:
    """The group's user-assigned managed identity (None without --identity); both flags or neither."""
    from core.runtime.aci import ManagedIdentity

    if bool(identity_id) != bool(identity_client_id):
        raise InvalidInputError(
            "--identity and --identity-client-id go together",
            hint="pass both, from `az identity show --ids RESOURCE_ID --query '[id,clientId]'`",
        )
    return ManagedIdentity(identity_id, identity_client_id) if identity_id and identity_client_id else None


def check_aci_flags(
    backend: str,
    *,
    maa_endpoint: str | None,
    cce_policy_file: Path | None,
    kek_vaults: tuple[str, ...],
    identity_id: str | None = None,
    identity_client_id: str | None = None,
    **_: Any,
) -> None:
    """The Azure flags on their own, before governance is asked anything."""
    from core.keys.skr import ACIPOLICYGEN_HINT, cce_policy_host_data, maa_authority

    if backend != "aci":
        if cce_policy_file or maa_endpoint or kek_vaults or identity_id or identity_client_id:
            raise InvalidInputError(
                "--cce-policy, --maa-endpoint, --kek-vault and --identity are for --backend aci",
                hint="add --backend aci",
            )
        return
    _identity(identity_id, identity_client_id)
    if maa_endpoint:
        maa_authority(maa_endpoint)
        if cce_policy_file is None:
            raise InvalidInputError(
                "no SKR policy without the real ccePolicy: the template still has the "
                "placeholder, whose host data no SEV-SNP group reports",
                hint=ACIPOLICYGEN_HINT,
            )
    _vaults(kek_vaults)
    if cce_policy_file is not None:
        cce_policy_host_data(cce_policy_file.read_text())
        if not maa_endpoint:
            raise InvalidInputError(
                "a deployable template needs --maa-endpoint (where the runtime sidecar attests)",
                hint="add --maa-endpoint sharedeus.eus.attest.azure.net (or your own MAA)",
            )


def check_aci_spec(
    contract_id: str,
    contract_data: dict[str, Any],
    *,
    cce_policy_file: Path | None,
    kek_vaults: tuple[str, ...],
    **_: Any,
) -> None:
    """Before anything is written: the template must be buildable, and a deployable one (with the
    real ccePolicy) needs every data owner's vault, or the sidecar could release no key."""
    from core.runtime.aci import aci_template
    from core.runtime.deployment import deployment_spec

    spec = deployment_spec(contract_id, contract_data)
    aci_template(spec)  # images, stores and names an Azure clean room can use
    if cce_policy_file is None:
        return
    owners = sorted({m["owner"] for app in spec["applications"] for m in app["mounts"]} - set(_vaults(kek_vaults)))
    if owners:
        raise InvalidInputError(
            f"no --kek-vault for data owner(s) {', '.join(owners)}: the runtime sidecar "
            "could not get their KEKs released",
            hint=f"add --kek-vault {owners[0]}=https://NAME.vault.azure.net",
        )


def _vaults(kek_vaults: tuple[str, ...]) -> dict[str, str]:
    from core.keys.skr import check_kek_vault

    vaults = {}
    for item in kek_vaults:
        member, _, url = item.partition("=")
        if not member or not url:
            raise InvalidInputError(
                f"--kek-vault {item!r} is not MEMBER=URL",
                hint="e.g. --kek-vault m-provider=https://provider-kv.vault.azure.net",
            )
        check_kek_vault(url)
        vaults[member] = url
    return vaults


def write_aci_artifacts(
    summary: dict[str, Any],
    *,
    governance: Any,
    runtime_image: str | None,
    maa_endpoint: str | None,
    cce_policy_file: Path | None,
    kek_vaults: tuple[str, ...],
    identity_id: str | None = None,
    identity_client_id: str | None = None,
) -> dict[str, Any]:
    """Add the ARM template (and, with the ccePolicy, the policy to vote and the SKR policy)
    next to the deployment spec `write_deployment` wrote; ``governance`` is where the sidecar
    reports (endpoint and pinned service certificate)."""
    from core.crypto.secret_file import write_public_file
    from core.keys.skr import ACIPOLICYGEN_HINT, policy_bytes, release_policy_for_clean_room_policy
    from core.runtime.aci import RUNTIME_SIDECAR_IMAGE, write_aci_template
    from core.runtime.deployment import load_document, policy_document
    from core.runtime.sidecar import sidecar_environment

    spec_path = Path(summary["deployment_spec"])
    spec = load_document(spec_path, "deployment spec")
    cce_policy = cce_policy_file.read_text().strip() if cce_policy_file else None
    sidecar_env = sidecar_environment(
        governance_url=governance.endpoint,
        governance_cert_pem=governance.service_cert_pem,
        maa_endpoint=maa_endpoint,
        kek_vaults=_vaults(kek_vaults),
    )
    template = write_aci_template(
        spec,
        spec_path.parent,
        runtime_image=runtime_image or RUNTIME_SIDECAR_IMAGE,
        cce_policy=cce_policy,
        sidecar_env=sidecar_env,
        identity=_identity(identity_id, identity_client_id),
    )
    result = {**summary, "aci_template": str(template)}
    if identity_id:
        result["identity"] = identity_id
    if cce_policy is None:
        result["next_step"] = (
            ACIPOLICYGEN_HINT.replace("cleanroom-aci-template.json", str(template))
            + " to `governance deployment generate` again, then propose the policy"
        )
        return result
    document = policy_document(spec, cce_policy=cce_policy)
    write_public_file(Path(summary["policy"]), (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    result["host_data"] = document["host_data"]
    if maa_endpoint:
        skr_path = spec_path.parent / "cleanroom-skr-policy.json"
        write_public_file(skr_path, policy_bytes(release_policy_for_clean_room_policy(document, maa_endpoint)) + b"\n")
        result["skr_policy"] = str(skr_path)
    return result
