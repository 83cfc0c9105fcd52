"""`cleanroom config ...`: build this party's config fragment and keys; view merged specs.

Verbs follow `az cleanroom config`: init, add-datasource, add-datasink, set-logging,
set-telemetry, add-application, set-network-policy, view.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from core.config.cli_values import parse_mount, parse_ports, split_list
from core.config.fragment import (
    AzureBlobStoreSpec,
    LocalStoreSpec,
    PrivacyBudget,
    PrivateTraining,
    parse_model,
    parse_store_spec,
)
from core.config.merge import MergedSpec, merge_paths
from core.config.party import add_application, add_data_asset, init_party, set_export, set_network_policy
from core.config.summary_policy import parse_summary_policy
from core.errors import InvalidInputError
from core.storage.locator import local_store_spec
from core.workspace import Workspace
from tui.output import Result, verb_output


def _workspace(ctx: click.Context) -> Workspace:
    return Workspace.open(ctx.obj["workspace"])


def _store_option(store_path: Path | None, store_json: str | None) -> LocalStoreSpec | AzureBlobStoreSpec | None:
    if store_path is not None and store_json is not None:
        raise InvalidInputError("--store-path and --store both given", hint="pass only one of them")
    if store_path is not None:
        return local_store_spec(store_path)
    if store_json is None:
        return None
    try:
        document = json.loads(store_json)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"--store is not a JSON object ({exc.msg})", hint='e.g. --store \'{"kind": "local", "path": "/srv/store"}\''
        ) from None
    return parse_store_spec(document, source="--store")


def _azure_store_option(
    storage_account: str | None, connection_string_env: str | None, container: str | None
) -> AzureBlobStoreSpec | None:
    """`--storage-account URL | --connection-string-env VAR`: the Azure Blob store of an asset."""
    if storage_account is None and connection_string_env is None:
        if container is not None:
            raise InvalidInputError(
                "--container needs --storage-account or --connection-string-env",
                hint="it names the Azure Blob container of the asset",
            )
        return None
    if storage_account is not None and connection_string_env is not None:
        raise InvalidInputError(
            "--storage-account and --connection-string-env both given",
            hint="pass one: the account URL (signs in with az login / managed identity) "
            "or the NAME of a variable holding a connection string",
        )
    if storage_account is not None and not storage_account.startswith("https://"):
        raise InvalidInputError(
            f"--storage-account {storage_account!r} is not an https URL",
            hint="e.g. --storage-account https://ACCOUNT.blob.core.windows.net "
            "(for azurite use --connection-string-env)",
        )
    if connection_string_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", connection_string_env):
        raise InvalidInputError(
            f"--connection-string-env {connection_string_env!r} is not a variable name",
            hint="pass the NAME of the variable (e.g. PROVIDER_STORAGE_CS), never its value",
        )
    if container is not None:
        from core.storage.azure_blob import azure_container_name

        if azure_container_name(container) != container:
            raise InvalidInputError(
                f"--container {container!r} is not a valid Azure container name",
                hint="use 3-63 lowercase letters, digits and single hyphens",
            )
    return AzureBlobStoreSpec(
        account_url=storage_account, connection_string_env=connection_string_env, container=container
    )


@click.group()
def config() -> None:
    """Build this party's config fragment and keys, and view merged specs.

    \b
    Example:
      cleanroom -w W/consumer config init --persona consumer
      cleanroom -w W/consumer config add-datasource --name training-data
      cleanroom -w W/consumer config view
    """


@config.command("init")
@click.option("--persona", required=True, help="This party's role: hoster, provider, consumer, or another name.")
@click.option("--name", default=None, help="Member name in the certificate (default: the persona).")
@click.option(
    "--store-path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local blob store folder for this party (default: <workspace>/store).",
)
@verb_output
@click.pass_context
def init(ctx: click.Context, persona: str, name: str | None, store_path: Path | None) -> Result:
    """Create a persona workspace: member identity (P-384 + certificate), KEK (RSA-3072) and an empty fragment.

    Private keys are written 0600. Refuses to overwrite an existing workspace.

    \b
    Example:
      cleanroom --workspace W/consumer config init --persona consumer
    """
    workspace = init_party(ctx.obj["workspace"], persona, name=name, store_dir=store_path)
    member_id = workspace.identity.member_id
    return Result(
        {"workspace": str(workspace.root), "persona": persona, "memberId": member_id},
        text=f"created workspace {workspace.root} for persona {persona} (member id {member_id[:16]}…)",
    )


def _asset_command(kind: str) -> click.Command:
    @click.option("--name", required=True, help=f"The {kind} name (3-63 lowercase letters, digits, hyphens).")
    @click.option(
        "--store-path",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Local blob store folder (default: the workspace's store).",
    )
    @click.option(
        "--store",
        "store_json",
        default=None,
        metavar="JSON",
        help='Store spec as JSON, e.g. {"kind": "azure_blob", "account_url": ..., "container": ...}.',
    )
    @click.option(
        "--storage-account",
        default=None,
        metavar="URL",
        help="Azure Blob account URL; signs in with DefaultAzureCredential (az login, managed identity).",
    )
    @click.option(
        "--connection-string-env",
        default=None,
        metavar="VAR",
        help="Name of an environment variable holding an Azure Storage connection string.",
    )
    @click.option("--container", default=None, help="Azure Blob container (default: the asset name).")
    @verb_output
    @click.pass_context
    def command(
        ctx: click.Context,
        name: str,
        store_path: Path | None,
        store_json: str | None,
        storage_account: str | None,
        connection_string_env: str | None,
        container: str | None,
        epsilon_total: float | None = None,
        delta: float | None = None,
        privacy_unit: str | None = None,
    ) -> Result:
        workspace = _workspace(ctx)
        store = _store_option(store_path, store_json)
        azure = _azure_store_option(storage_account, connection_string_env, container)
        if store is not None and azure is not None:
            raise InvalidInputError("--store-path/--store and the Azure flags both given", hint="pass only one store")
        privacy = _privacy_budget(epsilon_total, delta, privacy_unit)
        fragment = add_data_asset(workspace, kind, name, azure or store, privacy=privacy)
        asset = fragment.datasource(name) if kind == "datasource" else fragment.datasink(name)
        budget = (
            f"; privacy budget epsilon {privacy.epsilon_total:g}, delta {privacy.delta:g}, person column "
            f"{privacy.privacy_unit}"
            if privacy
            else ""
        )
        document: dict[str, object] = {
            "kind": kind,
            "name": name,
            "store": asset.store.kind,
            "container": asset.container,
        }
        if kind == "datasource":  # a datasink never has a budget: no key rather than a null to explain
            document["privacy"] = _camel_budget(privacy)
        return Result(
            document,
            text=f"added {kind} {name} ({asset.store.kind} store, new DEK wrapped by this party's KEK){budget}",
        )

    if kind == "datasource":
        command = click.option(
            "--privacy-unit",
            default=None,
            metavar="COLUMN",
            help="Privacy budget: the column naming the person a row belongs to.",
        )(command)
        command = click.option(
            "--delta", type=float, default=None, help="Privacy budget: delta, in (0, 1), e.g. 1e-5."
        )(command)
        command = click.option(
            "--epsilon-total",
            type=float,
            default=None,
            help="Privacy budget: lifetime epsilon of this datasource over every run and contract.",
        )(command)

    mount = "read-only" if kind == "datasource" else "write-only"
    example_name = "training-data" if kind == "datasource" else "consumer-output"
    budget = (
        """
    A datasource may declare a differential-privacy budget (--epsilon-total, --delta and
    --privacy-unit, all three or none): only private training may then read it, and governance
    charges every run against it, across runs and contracts.
"""
        if kind == "datasource"
        else ""
    )
    budget_example = (
        f"""
      cleanroom -w W/texts config add-{kind} --name texts \\
          --epsilon-total 10 --delta 1e-5 --privacy-unit person_id"""
        if kind == "datasource"
        else ""
    )
    command.__doc__ = f"""Declare a {kind} owned by this party and create its DEK.

    A {kind} is a named encrypted folder in a blob store, mounted {mount} in the clean room.
    Its random 256-bit DEK is stored only wrapped by this party's KEK (keys/deks/).
{budget}
    \b
    Example:
      cleanroom -w W/consumer config add-{kind} --name {example_name}
      cleanroom -w W/consumer config add-{kind} --name {example_name} \\
          --storage-account https://consumerstore.blob.core.windows.net{budget_example}
    """
    return click.command(f"add-{kind}")(command)


def _voted_section_text(path: Path, option: str, hint: str) -> str:
    """The text of a voted section's file (``--private-training``, ``--summary-policy``), read
    now so a missing or unreadable file is named here rather than at contract time."""
    try:
        return path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"{option} file {path} does not exist", hint=hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"{option} file {path} is not readable ({exc})", hint="fix the file and retry"
        ) from None


def _private_training(path: Path | None) -> dict[str, object] | None:
    """The ``private_training`` section from its JSON file, validated now."""
    if path is None:
        return None
    text = _voted_section_text(path, "--private-training", "write the private_training JSON first")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"--private-training file {path} is not readable JSON ({exc})", hint="fix the file and retry"
        ) from None
    return parse_model(PrivateTraining, document, source=f"--private-training file {path}").model_dump(mode="json")


def _summary_policy(path: Path | None) -> dict[str, object] | None:
    """The summariser's voted output caps from their JSON file, validated now."""
    if path is None:
        return None
    hint = 'write {"max_sentences": 3, "max_ratio": 0.3, "max_document_bytes": 100000} to it'
    text = _voted_section_text(path, "--summary-policy", hint)
    return parse_summary_policy(text, f"--summary-policy file {path}").model_dump(mode="json")


def _privacy_budget(epsilon_total: float | None, delta: float | None, privacy_unit: str | None) -> PrivacyBudget | None:
    given = [value is not None for value in (epsilon_total, delta, privacy_unit)]
    if not any(given):
        return None
    if not all(given):
        raise InvalidInputError(
            "--epsilon-total, --delta and --privacy-unit declare one privacy budget together",
            hint="give all three or none, e.g. --epsilon-total 10 --delta 1e-5 --privacy-unit person_id",
        )
    return parse_model(
        PrivacyBudget,
        {"epsilon_total": epsilon_total, "delta": delta, "privacy_unit": privacy_unit},
        source="privacy budget",
    )


def _camel_budget(budget: PrivacyBudget | None) -> dict[str, object] | None:
    if budget is None:
        return None
    return {"epsilonTotal": budget.epsilon_total, "delta": budget.delta, "privacyUnit": budget.privacy_unit}


config.add_command(_asset_command("datasource"))
config.add_command(_asset_command("datasink"))


def _export_command(kind: str) -> click.Command:
    @click.option("--datasink", default=None, help=f"Datasink that receives the {kind} (declared if new).")
    @click.option("--disable", is_flag=True, help=f"Turn {kind} export off.")
    @verb_output
    @click.pass_context
    def command(ctx: click.Context, datasink: str | None, disable: bool) -> Result:
        if disable == (datasink is not None):
            raise InvalidInputError(
                f"set-{kind} needs exactly one of --datasink NAME or --disable",
                hint=f"e.g. cleanroom config set-{kind} --datasink {kind}-sink",
            )
        _, created = set_export(_workspace(ctx), kind, None if disable else datasink)
        state = "disabled" if disable else f"enabled into datasink {datasink}"
        return Result(
            {"export": kind, "enabled": not disable, "datasink": datasink, "datasinkAdded": created},
            text=(f"added datasink {datasink}; " if created else "") + f"{kind} {state}",
        )

    command.__doc__ = f"""Export the clean room's {kind} to one of this party's datasinks, or turn it off.

    Off by default. The export is visible only if the contract enables it; at most one party owns it.

    \b
    Example:
      cleanroom -w W/consumer config set-{kind} --datasink {kind}-sink
      cleanroom -w W/consumer config set-{kind} --disable
    """
    return click.command(f"set-{kind}")(command)


config.add_command(_export_command("logging"))
config.add_command(_export_command("telemetry"))


def _env(values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        if "=" not in value:
            raise InvalidInputError(
                f"--env {value!r} is not NAME=VALUE",
                hint="secret values go in --env-names and are supplied at deployment",
            )
        name, _, text = value.partition("=")
        pairs[name] = text
    return pairs


@config.command("add-application")
@click.option("--name", required=True, help="Application name.")
@click.option("--image", default=None, help="OCI image (Azure backend).")
@click.option(
    "--entrypoint", default=None, help="Workload the embedded runtime runs, e.g. containers/inference_server."
)
@click.option("--command", "command_line", default="", help="Command line, split like a shell would.")
@click.option(
    "--mounts",
    multiple=True,
    metavar="src=NAME,dst=PATH",
    help="Mount a datasource (read-only) or datasink (write-only); repeatable.",
)
@click.option("--ports", multiple=True, help="Port(s) the application listens on; repeatable or comma-separated.")
@click.option("--cpu", type=float, default=1.0, show_default=True, help="CPU cores.")
@click.option("--memory", type=float, default=2.0, show_default=True, help="Memory in GiB.")
@click.option("--env-names", multiple=True, help="Environment variable names supplied at deployment; comma-separated.")
@click.option(
    "--env",
    "env_values",
    multiple=True,
    metavar="NAME=VALUE",
    help="Non-secret environment value every party sees; repeatable.",
)
@click.option(
    "--private-training",
    "private_training_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE.json",
    help="Train with differential privacy: epsilon, delta, the join of budgeted datasources (voted).",
)
@click.option(
    "--summary-policy",
    "summary_policy_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE.json",
    help="A summariser's output caps: max_sentences, max_ratio, max_document_bytes (voted).",
)
@verb_output
@click.pass_context
def add_application_command(
    ctx: click.Context,
    name: str,
    image: str | None,
    entrypoint: str | None,
    command_line: str,
    mounts: tuple[str, ...],
    ports: tuple[str, ...],
    cpu: float,
    memory: float,
    env_names: tuple[str, ...],
    env_values: tuple[str, ...],
    private_training_file: Path | None,
    summary_policy_file: Path | None,
) -> Result:
    """Add an application (workload) this party brings to the clean room.

    Exactly one of --image or --entrypoint. Mounts may name another party's datasource;
    `config view --configs ...` checks them once all fragments are merged.

    \b
    Example:
      cleanroom -w W/hoster config add-application --name inference \\
        --entrypoint containers/inference_server --command "python -m server --port 8080" \\
        --mounts src=model,dst=/mnt/model --ports 8080 --cpu 2 --memory 4 --env-names MODEL_NAME
      cleanroom -w W/hoster config add-application --name dp-trainer --entrypoint containers/dp_trainer \\
        --command "python -m containers.dp_trainer --model-dir /mnt/remote/model --output-dir /mnt/remote/output" \\
        --mounts src=texts,dst=/mnt/remote/texts --mounts src=labels,dst=/mnt/remote/labels \\
        --private-training private-training.json
    """
    port_numbers = parse_ports(ports)
    try:
        command = shlex.split(command_line)
    except ValueError as exc:
        raise InvalidInputError(f"--command cannot be split ({exc})", hint="check its quotes") from None
    training = _private_training(private_training_file)
    summary_policy = _summary_policy(summary_policy_file)
    add_application(
        _workspace(ctx),
        name=name,
        image=image,
        entrypoint=entrypoint,
        command=command,
        mounts=[parse_mount(text) for text in mounts],
        ports=port_numbers,
        cpu=cpu,
        memory_gb=memory,
        env_names=split_list(env_names),
        env=_env(env_values),
        private_training=training,
        summary_policy=summary_policy,
    )
    return Result(
        {
            "application": name,
            "image": image,
            "entrypoint": entrypoint,
            "command": command,
            "mounts": [parse_mount(text) for text in mounts],
            "ports": port_numbers,
            "cpu": cpu,
            "memoryGb": memory,
            "envNames": split_list(env_names),
            "privateTraining": training,
            "summaryPolicy": summary_policy,
        },
        text=f"added application {name}"
        + (
            f" (private training: epsilon {training['epsilon']:g} per run, delta {training['delta']:g})"
            if training
            else ""
        ),
    )


@config.command("set-network-policy")
@click.option(
    "--allow",
    "routes",
    multiple=True,
    metavar='"METHOD /path"',
    help='Inbound route let through the ingress, e.g. "POST /infer"; repeatable.',
)
@click.option(
    "--allow-all-outbound",
    is_flag=True,
    default=False,
    help="Allow all outbound traffic (off by default: the clean room has no egress).",
)
@verb_output
@click.pass_context
def set_network_policy_command(ctx: click.Context, routes: tuple[str, ...], allow_all_outbound: bool) -> Result:
    """Set this party's network policy: inbound allow-list of routes, outbound denied by default.

    Replaces the previous policy. Merged specs take the union of routes; outbound is allowed
    only if a party asks for it, and every party sees that in the spec it votes on.

    \b
    Example:
      cleanroom -w W/hoster config set-network-policy --allow "POST /infer" --allow "GET /health"
    """
    fragment = set_network_policy(_workspace(ctx), inbound_allow=list(routes), allow_all_outbound=allow_all_outbound)
    policy = fragment.network_policy
    inbound = ", ".join(policy.inbound_allow) or "nothing"
    return Result(
        {"inboundAllow": list(policy.inbound_allow), "allowAllOutbound": policy.allow_all_outbound},
        text=f"inbound allowed: {inbound}; outbound: {'allowed' if policy.allow_all_outbound else 'denied'}",
    )


@config.command("view", context_settings={"ignore_unknown_options": False})
@click.option(
    "--configs",
    "configs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Workspace folders or fragment JSON files to merge (default: this workspace).",
)
@click.argument("more_configs", nargs=-1, type=click.Path(path_type=Path), metavar="")
@click.option(
    "--application",
    "applications",
    multiple=True,
    help="Keep only this application and the assets it mounts (repeatable): one contract's spec.",
)
@verb_output
@click.pass_context
def view(
    ctx: click.Context, configs: tuple[Path, ...], more_configs: tuple[Path, ...], applications: tuple[str, ...]
) -> Result:
    """Merge config fragments into one clean-room spec and show it with its SHA-256.

    Duplicate names across parties are an error. The hash is over canonical JSON, so every
    party computes the same one for the same fragments, in any order.

    \b
    Example:
      cleanroom -w W/consumer config view
      cleanroom config view --configs W/hoster W/provider W/consumer --output json
      cleanroom config view --configs W/hoster W/provider W/consumer --application trainer --output json
    """
    if more_configs and not configs:
        raise InvalidInputError("fragments given without --configs", hint="use --configs A B C")
    paths = [*configs, *more_configs] or [_workspace(ctx).root]
    spec = merge_paths(paths)
    if applications:
        spec = spec.for_applications(applications)
    return Result(
        {"specHash": spec.spec_hash, "spec": spec.document(), "unresolvedMounts": spec.unresolved_mounts()},
        render=lambda console: _render_spec(console, spec),
    )


def _render_spec(console: Console, spec: MergedSpec) -> None:
    personas = {party.member_id: party.persona for party in spec.parties}
    parties = Table(title="parties")
    for column in ("persona", "member id"):
        parties.add_column(column)
    for party in spec.parties:
        parties.add_row(party.persona, party.member_id[:16] + "…")
    console.print(parties)

    assets = Table(title="datasources and datasinks")
    for column in ("kind", "name", "owner", "store", "container", "privacy budget", "pinned upload"):
        assets.add_column(column)
    for kind, items in (("datasource", spec.datasources), ("datasink", spec.datasinks)):
        for asset in items:
            where = (
                getattr(asset.store, "path", None)
                or getattr(asset.store, "account_url", None)
                or f"${getattr(asset.store, 'connection_string_env', '')}"
            )
            assets.add_row(
                kind,
                asset.name,
                personas.get(asset.owner, asset.owner[:12]),
                f"{asset.store.kind}: {where}",
                asset.container,
                f"ε {asset.privacy.epsilon_total:g}, δ {asset.privacy.delta:g}, by {asset.privacy.privacy_unit}"
                if asset.privacy
                else "",
                asset.content_hash[:19] + "…" if asset.content_hash else "",
            )
    if spec.datasources or spec.datasinks:
        console.print(assets)

    apps = Table(title="applications")
    for column in ("name", "owner", "runs", "command", "mounts", "ports", "cpu", "memory GiB", "env names"):
        apps.add_column(column)
    for app in spec.applications:
        apps.add_row(
            app.name,
            personas.get(app.owner, app.owner[:12]),
            f"image {app.image}" if app.image else f"entrypoint {app.entrypoint}",
            shlex.join(app.command),
            "\n".join(f"{m.source} -> {m.target}" for m in app.mounts),
            ", ".join(map(str, app.ports)),
            f"{app.cpu:g}",
            f"{app.memory_gb:g}",
            ", ".join(app.env_names),
        )
    if spec.applications:
        console.print(apps)
    for app in spec.applications:
        if app.private_training is not None:
            training, join = app.private_training, app.private_training.join
            console.print(
                f"[bold]private training[/] {app.name}: ε {training.epsilon:g} per run x {join.max_rows_per_key} "
                f"rows per person, δ {training.delta:g}, accountant {training.accountant}; join on {join.key}: "
                + ", ".join(f"{source.how} {source.datasource}/{source.file}" for source in join.sources)
                + f"; at least {join.min_rows} rows",
                highlight=False,
            )

    for kind, setting in (("logging", spec.logging), ("telemetry", spec.telemetry)):
        state = (
            f"enabled -> datasink {setting.datasink} ({personas.get(setting.owner or '', '?')})"
            if setting.enabled
            else "disabled"
        )
        console.print(f"[bold]{kind}[/]: {state}")
    policy = spec.network_policy
    console.print(
        f"[bold]inbound allowed[/]: {', '.join(policy.inbound_allow) or 'nothing'}; "
        f"[bold]outbound[/]: {'ALLOWED' if policy.allow_all_outbound else 'denied'}"
    )
    for dangling in spec.unresolved_mounts():
        console.print(f"[yellow]unresolved mount[/] {dangling} (add the owner's fragment with --configs)")
    console.print(f"[bold]spec sha256[/]: {spec.spec_hash}")


@config.command("wrap-deks")
@click.option("--contract-id", required=True, help="The contract whose clean room may use this party's DEKs.")
@click.option(
    "--kek-vault",
    default=None,
    metavar="URL",
    help="Create the KEK in this Key Vault premium / managed HSM, released by SKR (Azure backend).",
)
@click.option("--maa-endpoint", default=None, help="MAA endpoint the SKR policy trusts (with --kek-vault).")
@verb_output
@click.pass_context
def wrap_deks_verb(ctx: click.Context, contract_id: str, kek_vault: str | None, maa_endpoint: str | None) -> Result:
    """Wrap this party's DEKs for a contract's clean room and store them as contract secrets.

    Creates (once) this party's KEK for the contract in the key service, bound to the release
    policy "this contract + its accepted clean-room policy", re-wraps the DEKs of every
    datasource/datasink this party owns in the contract to it, and puts them in governance.

    With --kek-vault the KEK is created in Azure Key Vault instead, exportable only under a secure
    key release policy requiring SEV-SNP attestation of the accepted clean-room policy hash.

    \b
    Example:
      cleanroom -w W/provider config wrap-deks --contract-id inference-initial
      cleanroom -w W/provider config wrap-deks --contract-id inference-initial \\
          --kek-vault https://provider-kv.vault.azure.net --maa-endpoint sharedeus.eus.attest.azure.net
    """
    from core.engine import PersonaEngine

    workspace = _workspace(ctx)
    if (kek_vault is None) != (maa_endpoint is None):
        raise InvalidInputError(
            "--kek-vault and --maa-endpoint go together",
            hint="pass both to keep the KEK in Key Vault, or neither for the key service",
        )
    with PersonaEngine(workspace) as engine:
        if kek_vault is not None:
            result = engine.wrap_deks_to_vault(contract_id, kek_vault, str(maa_endpoint))
        else:
            result = engine.wrap_deks(contract_id)
    return Result(
        {"contractId": result.contract_id, "kekFingerprint": result.kek_fingerprint, "assets": result.assets},
        text=f"wrapped {len(result.assets)} DEK(s) for contract {contract_id} "
        f"to KEK {result.kek_fingerprint[:16]}…: {', '.join(result.assets)}",
    )
