"""The `--backend local|aci` options of the deployment verbs, and how an Azure clean room is shown.

What each backend does lives in ``core.runtime.backend`` (and the ACI template and SKR artifacts
in ``core.runtime.aci_artifacts``); this module only declares the click options that choose and
configure a backend and draws an ACI container group's status for people.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from core.runtime.backend import BACKEND_NAMES, StartOptions
from tui.output import Result, camel_keys, stderr_console

F = TypeVar("F", bound=Callable[..., Any])


def backend_options(f: F) -> F:
    """--backend, and the resource group and subscription of --backend aci, for every deployment verb."""
    f = click.option(
        "--subscription",
        default=None,
        help="Azure subscription id for --backend aci (default: $AZURE_SUBSCRIPTION_ID).",
    )(f)
    f = click.option("--resource-group", default=None, help="Resource group of the container group (--backend aci).")(f)
    return click.option(
        "--backend",
        type=click.Choice(BACKEND_NAMES),
        default="local",
        show_default=True,
        help="local: this machine's sandboxed runtime; aci: a confidential container group on Azure.",
    )(f)


def aci_start_options(f: F) -> F:
    """`deployment start`'s options for --backend aci."""
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


class AciView:
    """How `deployment start|status|logs|stop --backend aci` show a container group."""

    def starting(self, contract_id: str, options: StartOptions) -> str:
        from core.runtime.aci import container_group_name  # the Azure SDK loads only for --backend aci

        if options.allow_debug_policy:
            stderr_console().print(
                "[bold red]WARNING: --allow-debug-policy: the container group has no ccePolicy. "
                "It is not a clean room and its attestation will not release any key.[/]"
            )
        return f"deploying {container_group_name(contract_id)} to Azure…"

    def started(self, contract_id: str, status: dict[str, Any]) -> Result:
        return self._group(status)

    def status(self, ctx: click.Context, contract_id: str, status: dict[str, Any]) -> Result:
        return self._group(status)

    def log_line(self, record: dict[str, Any]) -> str:
        return f"== {record['container']} ==\n{record['log']}"

    def stopping(self, contract_id: str) -> str | None:
        return None

    def stopped(self, contract_id: str, status: dict[str, Any]) -> Result:
        return self._group(status)

    @staticmethod
    def _group(status: dict[str, Any]) -> Result:
        def render(console: Console) -> None:
            console.print(
                f"[bold]{status['name']}[/]: provisioning {status['provisioning_state']}, state {status['state']}"
                + (f", ip {status['ip_address']}" if status.get("ip_address") else "")
            )
            table = Table(title="containers")
            for column in ("name", "state", "exit code"):
                table.add_column(column)
            for container in status["containers"]:
                table.add_row(container["name"], str(container["state"]), str(container.get("exitCode") or ""))
            console.print(table)

        return Result(camel_keys(status), render=render)


def generate_options(f: F) -> F:
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
        type=click.Choice(BACKEND_NAMES),
        default="local",
        show_default=True,
        help="aci: also write the confidential container group ARM template (and, with "
        "--cce-policy and --maa-endpoint, the SKR policy).",
    )(f)
