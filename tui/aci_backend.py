"""`--backend aci` for `cleanroom deployment start|status|logs|stop`.

One decorator per verb adds the Azure options and, when ``--backend aci`` is chosen, runs the
Confidential Container Instances path (``core.runtime.aci``) instead of the local runtime, so the
local verbs keep their own code and signatures untouched.
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

console = Console()
err_console = Console(stderr=True)


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--subscription", default=None,
                     help="Azure subscription id for --backend aci (default: $AZURE_SUBSCRIPTION_ID).")(f)
    f = click.option("--resource-group", default=None, help="Resource group of the container group (--backend aci).")(f)
    return click.option("--backend", type=click.Choice(["local", "aci"]), default="local", show_default=True,
                        help="local: this machine's sandboxed runtime; aci: a confidential container group on Azure.")(f)


def _start_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--allow-debug-policy", is_flag=True,
                     help="(aci) Deploy with no ccePolicy. NOT confidential: no key will be released to it.")(f)
    f = click.option("--cce-policy-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
                     help="(aci) File with the base64 ccePolicy from `az confcom acipolicygen`.")(f)
    f = click.option("--location", default=None, help="(aci) Azure region, e.g. westeurope.")(f)
    return click.option("--template", "template_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="(aci) cleanroom-aci-template.json from `governance deployment generate --backend aci`.")(f)


def _deployment(resource_group: str | None, subscription: str | None) -> Any:
    from core.runtime.aci import AciDeployment

    if not resource_group:
        raise InvalidInputError("--backend aci needs --resource-group", hint="pass --resource-group RG")
    return AciDeployment(resource_group, subscription_id=subscription)


def _print_status(status: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(asdict(status), sort_keys=True))
        return
    console.print(f"[bold]{status.name}[/]: provisioning {status.provisioning_state}, state {status.state}"
                  + (f", ip {status.ip_address}" if status.ip_address else ""))
    table = Table(title="containers")
    for column in ("name", "state", "exit code"):
        table.add_column(column)
    for container in status.containers:
        table.add_row(container["name"], str(container["state"]), str(container.get("exit_code") or ""))
    console.print(table)


def _start(contract_id: str, output: str, deployment: Any, template_file: Path | None, location: str | None,
           cce_policy_file: Path | None, allow_debug_policy: bool) -> None:
    from core.runtime.aci import container_group_name, secret_env_names

    if template_file is None or location is None:
        raise InvalidInputError("--backend aci start needs --template FILE and --location REGION",
                                hint="write the template with `cleanroom governance deployment generate --backend aci`")
    try:
        template = json.loads(template_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"ACI template {template_file} cannot be read as JSON ({exc})",
                                hint="re-generate it with `cleanroom governance deployment generate --backend aci`") from None
    cce_policy = cce_policy_file.read_text().strip() if cce_policy_file else None
    if allow_debug_policy:
        err_console.print("[bold red]WARNING: --allow-debug-policy: the container group has no ccePolicy. "
                          "It is not a clean room and its attestation will not release any key.[/]")
    secrets = {name: os.environ[name] for name in secret_env_names(template) if name in os.environ}
    with console.status(f"deploying {container_group_name(contract_id)} to Azure…"):
        status = deployment.start(template, location=location, cce_policy=cce_policy,
                                  name=container_group_name(contract_id), secrets=secrets,
                                  allow_debug_policy=allow_debug_policy)
    _print_status(status, output)


def aci_backend(verb: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add --backend/--resource-group/--subscription (and start's Azure options) to a deployment verb."""

    def decorate(callback: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(callback)
        def run(*args: Any, backend: str, resource_group: str | None, subscription: str | None,
                **kwargs: Any) -> Any:
            azure = {k: kwargs.pop(k) for k in ("template_file", "location", "cce_policy_file",
                                                 "allow_debug_policy") if k in kwargs}
            if backend != "aci":
                return callback(*args, **kwargs)
            from core.runtime.aci import container_group_name

            deployment = _deployment(resource_group, subscription)
            contract_id, output = kwargs["contract_id"], kwargs.get("output", "table")
            name = container_group_name(contract_id)
            if verb == "start":
                return _start(contract_id, output, deployment, **azure)
            if verb == "status":
                return _print_status(deployment.status(name), output)
            if verb == "logs":
                for container in deployment.status(name).containers:
                    text = deployment.logs(name, container["name"])
                    if output == "json":
                        click.echo(json.dumps({"container": container["name"], "log": text}, sort_keys=True))
                    else:
                        console.rule(container["name"])
                        console.print(text, highlight=False, markup=False)
                return None
            if verb == "stop":
                deployment.stop(name)
                return _print_status(deployment.status(name), output)
            raise ValueError(f"no ACI mapping for deployment {verb}")

        run = _common(run)
        return _start_options(run) if verb == "start" else run

    return decorate


def generate_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """`governance deployment generate` options for the ACI template and the SKR policy."""
    f = click.option("--maa-endpoint", default=None,
                     help="(aci) MAA endpoint the Key Vault release policy trusts, e.g. sharedeus.eus.attest.azure.net.")(f)
    f = click.option("--runtime-image", default=None,
                     help="(aci) Runtime sidecar image (default: cleanroom-console/runtime of this version).")(f)
    return click.option("--backend", type=click.Choice(["local", "aci"]), default="local", show_default=True,
                        help="aci: also write the confidential container group ARM template (and the SKR policy "
                             "with --maa-endpoint).")(f)


def write_aci_artifacts(summary: dict[str, Any], *, runtime_image: str | None,
                        maa_endpoint: str | None) -> dict[str, Any]:
    """Add the ARM template (and SKR policy) next to the deployment spec `write_deployment` wrote."""
    from core.crypto.secret_file import write_public_file
    from core.keys.skr import policy_bytes, release_policy_for_deployment
    from core.runtime.aci import RUNTIME_SIDECAR_IMAGE, write_aci_template
    from core.runtime.deployment import load_document

    spec_path = Path(summary["deployment_spec"])
    spec = load_document(spec_path, "deployment spec")
    template = write_aci_template(spec, spec_path.parent, runtime_image=runtime_image or RUNTIME_SIDECAR_IMAGE)
    result = {**summary, "aci_template": str(template)}
    if maa_endpoint:
        skr_path = spec_path.parent / "cleanroom-skr-policy.json"
        write_public_file(skr_path, policy_bytes(release_policy_for_deployment(spec, maa_endpoint)) + b"\n")
        result["skr_policy"] = str(skr_path)
    return result
