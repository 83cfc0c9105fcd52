"""`cleanroom governance ...`: contracts, proposals, ballots, CA, events and the ledger.

Verbs mirror `az cleanroom governance`. Every write is signed with the workspace's member key;
the workspace must have been pointed at a service (`cleanroom up` or `governance client deploy`).
Every verb returns its data to ``tui.output``: `-o json` prints it (writes say what they did),
`--query` is JMESPath over it (e.g. `proposalIds[0]`), and a string result prints bare, as
`az ... --query X --output tsv` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from core import embedded
from core.crypto.secret_file import write_public_file
from core.engine import PersonaEngine, deploy_governance_client, deployed_service
from core.errors import ConflictError, InvalidInputError, NotFoundError, ServiceUnavailableError
from core.governance import launcher, ledger
from core.workspace import Workspace
from tui import vote_review
from tui.aci_backend import generate_options
from tui.commands.apps import app_group, keys_group
from tui.commands.privacy import privacy_group
from tui.commands.traffic import traffic_group
from tui.output import Result, Stream, camel_keys, generic_table, verb_output


# -- helpers ----------------------------------------------------------------------------------------
def _workspace(ctx: click.Context) -> Workspace:
    return Workspace.open(ctx.obj["workspace"])


def _engine(ctx: click.Context) -> PersonaEngine:
    return PersonaEngine(_workspace(ctx))


def _read_json(value: str, what: str) -> dict[str, Any]:
    """``value`` is inline JSON, ``@path`` or a path to a JSON file."""
    text = value
    candidate = Path(value[1:] if value.startswith("@") else value)
    if value.startswith("@") or (not value.lstrip().startswith("{") and candidate.is_file()):
        if not candidate.is_file():
            raise NotFoundError(f"{what} file {candidate} does not exist", hint="check the path")
        text = candidate.read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})",
            hint="pass a JSON object, @file or a file path",
        ) from exc
    if not isinstance(document, dict):
        raise InvalidInputError(f"{what} must be a JSON object", hint="wrap it in {...}")
    return document


def _read_pem(value: str) -> str:
    path = Path(value)
    if "-----BEGIN" in value:
        return value
    if not path.is_file():
        raise NotFoundError(f"certificate file {path} does not exist", hint="pass a PEM file path")
    return path.read_text()


def _proposal_summary(proposal: dict[str, Any]) -> dict[str, Any]:
    return {
        "proposalId": proposal["proposalId"],
        "action": proposal["action"],
        "state": proposal["proposalState"],
        "contractId": proposal.get("contractId") or "",
        "ballots": len(proposal.get("ballots", {})),
    }


def _proposed(result: dict[str, Any]) -> Result:
    """What a verb that opens a proposal did: the proposal (id and state) it opened."""
    return Result(result, text=f"proposal {result['proposalId']} ({result['proposalState']})")


@click.group("governance")
def governance() -> None:
    """Contracts, proposals, signed ballots, CA, events and the verifiable ledger.

    \b
    Example (the hoster proposes a contract; every party then votes):
      cleanroom -w W/hoster governance contract create --id inference-initial --data @spec.json
      cleanroom -w W/hoster governance contract propose --id inference-initial \\
          --version $(cleanroom -w W/hoster governance contract show --id inference-initial --query version)
    """


governance.add_command(privacy_group)
governance.add_command(app_group)
governance.add_command(keys_group)
governance.add_command(traffic_group)


# -- service ----------------------------------------------------------------------------------------
@governance.group("service")
def service() -> None:
    """Run a governance service on loopback (the embedded default)."""


STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Service state directory (default: $CLEANROOM_HOME/governance).",
)


def _state_dir(value: Path | None) -> Path:
    return (value or embedded.governance_state_dir(embedded.home())).expanduser().resolve()


@service.command("start")
@STATE_DIR
@click.option("--initial-member-cert", "certs", multiple=True, help="Founding member's certificate PEM file (repeat).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: a free one, kept across restarts).")
@click.option("--window-seconds", type=int, default=300, show_default=True, help="Freshness/replay window.")
@click.option("--checkpoint-every", type=int, default=100, show_default=True, help="Entries per signed checkpoint.")
@click.option(
    "--maa-endpoint",
    "maa_endpoints",
    multiple=True,
    help="MAA endpoint whose SEV-SNP tokens Azure clean rooms present (repeat); recorded in the config.",
)
@click.option("--maa-ca-file", default=None, help="CA bundle for reaching the MAA endpoint (default: system trust).")
@verb_output
def service_start(
    state_dir: Path | None,
    certs: tuple[str, ...],
    port: int | None,
    window_seconds: int,
    checkpoint_every: int,
    maa_endpoints: tuple[str, ...],
    maa_ca_file: str | None,
) -> Result:
    """Create (first time, with the consortium) and start the governance service.

    \b
    Example:
      cleanroom governance service start --initial-member-cert W/hoster/identity/member_cert.pem \\
          --initial-member-cert W/provider/identity/member_cert.pem \\
          --maa-endpoint sharedeus.eus.attest.azure.net
    """
    directory = _state_dir(state_dir)
    if maa_ca_file and not maa_endpoints:
        raise InvalidInputError("--maa-ca-file is only used to reach an MAA endpoint", hint="add --maa-endpoint HOST")
    if maa_endpoints:
        launcher.maa_settings(list(maa_endpoints), maa_ca_file)  # refuse bad flags before creating anything
    if not launcher.exists(directory):
        if not certs:
            raise InvalidInputError(
                f"no governance service in {directory} yet, and no founding members given",
                hint="pass --initial-member-cert PEM for each party",
            )
        launcher.create(
            directory,
            [_read_pem(c) for c in certs],
            port=port,
            window_seconds=window_seconds,
            checkpoint_every=checkpoint_every,
        )
    elif certs:
        raise InvalidInputError(
            f"the service in {directory} already has its consortium",
            hint="add members with `cleanroom governance member add --cert PEM`",
        )
    if (
        maa_endpoints
        and launcher.set_maa_endpoints(directory, list(maa_endpoints), maa_ca_file)
        and launcher.running_pid(directory) is not None
    ):
        raise ConflictError(
            f"the service in {directory} is running; the MAA endpoints apply at its next start",
            hint="run `cleanroom governance service stop`, then start it again",
        )
    info = launcher.start(directory)
    document = info.as_dict() | {
        "maaEndpoints": launcher.maa_endpoints(directory),
        "serviceCertFile": str(directory / launcher.IDENTITY_DIR / "service_cert.pem"),
    }
    return Result(document, title="governance service")


@service.command("stop")
@STATE_DIR
@verb_output
def service_stop(state_dir: Path | None) -> Result:
    """Stop the governance service (its state stays).

    \b
    Example:
      cleanroom governance service stop
    """
    directory = _state_dir(state_dir)
    stopped = launcher.stop(directory)
    return Result(
        {"stateDir": str(directory), "stopped": stopped}, text="stopped" if stopped else f"not running ({directory})"
    )


@service.command("status")
@STATE_DIR
@verb_output
def service_status(state_dir: Path | None) -> Result:
    """Show where the service listens, its pid and whether it answers.

    \b
    Example:
      cleanroom governance service status --output json
    """
    info = launcher.info(_state_dir(state_dir))
    document = info.as_dict() | {
        "healthy": info.pid is not None and launcher.healthy(info.endpoint, info.service_cert_pem)
    }
    return Result(document, title="governance service")


# -- client -----------------------------------------------------------------------------------------
@governance.group("client")
def client_group() -> None:
    """Point this workspace at a governance service."""


@client_group.command("deploy")
@click.option("--endpoint", required=True, help="https://127.0.0.1:PORT of the service.")
@click.option("--service-cert", required=True, help="The service certificate PEM file to pin.")
@verb_output
@click.pass_context
def client_deploy(ctx: click.Context, endpoint: str, service_cert: str) -> Result:
    """Record the service endpoint and pin its certificate in this workspace.

    \b
    Example:
      cleanroom -w W/consumer governance client deploy --endpoint https://127.0.0.1:8443 \\
          --service-cert ~/.cleanroom/governance/identity/service_cert.pem
    """
    workspace = _workspace(ctx)
    member = deploy_governance_client(workspace, endpoint, _read_pem(service_cert))
    me = workspace.identity.member_id
    status = member["status"] if member else "not a member yet (ask a member to `member add` you)"
    return Result(
        {
            "workspace": str(workspace.root),
            "endpoint": endpoint,
            "memberId": me,
            "memberStatus": member["status"] if member else None,
        },
        text=f"workspace {workspace.root} now uses {endpoint} (member {me[:16]}…: {status})",
    )


@client_group.command("show")
@verb_output
@click.pass_context
def client_show(ctx: click.Context) -> Result:
    """Show the governance endpoint this workspace uses and its member id.

    \b
    Example:
      cleanroom -w W/hoster governance client show
    """
    workspace = _workspace(ctx)
    settings = deployed_service(workspace)
    if not settings:
        raise NotFoundError(f"workspace {workspace.root} has no governance service", hint="run `cleanroom up`")
    return Result({"endpoint": settings["endpoint"], "memberId": workspace.identity.member_id})


# -- contracts --------------------------------------------------------------------------------------
@governance.group("contract")
def contract() -> None:
    """Create, propose and vote on contracts."""


@contract.command("create")
@click.option("--id", "contract_id", required=True, help="Contract id.")
@click.option("--data", required=True, help="Contract data: JSON, @file or a file (`config view --output json`).")
@click.option("--version", default=None, help="Current version, to update an existing Draft.")
@verb_output
@click.pass_context
def contract_create(ctx: click.Context, contract_id: str, data: str, version: str | None) -> Result:
    """Create a Draft contract (or update one with --version).

    \b
    Example:
      cleanroom config view --configs W/hoster W/provider --output json > spec.json
      cleanroom -w W/hoster governance contract create --id inference-initial --data @spec.json
    """
    document = _read_json(data, "contract data")
    with _engine(ctx) as engine:
        result = engine.write_contract(contract_id, document, version)
    return Result(
        {"id": contract_id, **result}, text=f"contract {contract_id}: {result['state']}, version {result['version']}"
    )


@contract.command("show")
@click.option("--id", "contract_id", required=True, help="Contract id.")
@click.option(
    "--diff",
    "diff_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Compare the contract's data with the spec you regenerated (`config view -o json`).",
)
@verb_output
@click.pass_context
def contract_show(ctx: click.Context, contract_id: str, diff_file: Path | None) -> Result:
    """Show a contract: state, version, proposalId, hash and a readable summary of its data
    (parties, assets, applications, network policy, logging/telemetry); -o json for the raw
    document. --diff FILE says "identical" or lists the fields that differ.

    \b
    Example:
      cleanroom -w W/provider governance contract show --id inference-initial --query proposalId
      cleanroom config view --configs W/hoster W/provider W/consumer -o json > spec.json
      cleanroom -w W/provider governance contract show --id inference-initial --diff spec.json
    """
    with _engine(ctx) as engine:
        return vote_review.contract_result(engine, contract_id, diff_file)


@contract.command("list")
@verb_output
@click.pass_context
def contract_list(ctx: click.Context) -> Result:
    """List contracts.

    \b
    Example:
      cleanroom -w W/hoster governance contract list --output json
    """
    with _engine(ctx) as engine:
        contracts = engine.list_contracts()
    return Result(contracts, columns=["id", "state", "version", "proposalId", "hash"], title="contracts")


@contract.command("propose")
@click.option("--id", "contract_id", required=True, help="Contract id.")
@click.option("--version", required=True, help="The version you reviewed (from `contract show`).")
@verb_output
@click.pass_context
def contract_propose(ctx: click.Context, contract_id: str, version: str) -> Result:
    """Open a set_contract proposal for the reviewed version.

    \b
    Example:
      cleanroom -w W/hoster governance contract propose --id inference-initial --version 3f2a...
    """
    with _engine(ctx) as engine:
        return _proposed(engine.propose_contract(contract_id, version))


def _voted(proposal_id: str, action: str, proposal: dict[str, Any]) -> Result:
    note = " (already cast)" if proposal.get("idempotent") else ""
    return Result(
        {"proposalId": proposal_id, "ballot": action} | proposal,
        text=f"voted {action}{note}; proposal {proposal_id[:16]}… is {proposal['proposalState']}",
    )


VOTE_ACTION = click.option("--action", type=click.Choice(["accept", "reject"]), required=True, help="Your ballot.")


@contract.command("vote")
@click.option("--id", "contract_id", required=True, help="Contract id.")
@click.option("--proposal-id", required=True, help="The contract's proposalId (from `contract show`).")
@VOTE_ACTION
@verb_output
@click.pass_context
def contract_vote(ctx: click.Context, contract_id: str, proposal_id: str, action: str) -> Result:
    """Vote on a contract's proposal.

    \b
    Example:
      cleanroom -w W/consumer governance contract vote --id inference-initial \\
          --proposal-id $(cleanroom -w W/consumer governance contract show --id inference-initial --query proposalId) \\
          --action accept
    """
    with _engine(ctx) as engine:
        return _voted(proposal_id, action, engine.vote_on_contract(contract_id, proposal_id, action))


@contract.command("withdraw")
@click.option("--id", "contract_id", required=True, help="Contract id.")
@verb_output
@click.pass_context
def contract_withdraw(ctx: click.Context, contract_id: str) -> Result:
    """Withdraw your open proposal of a contract (it returns to Draft).

    \b
    Example:
      cleanroom -w W/hoster governance contract withdraw --id inference-initial
    """
    with _engine(ctx) as engine:
        result = engine.withdraw_contract_proposal(contract_id)
    return Result(result, text=f"withdrew proposal {result['proposalId']}; contract {contract_id} is a Draft again")


@contract.command("token")
@click.option("--id", "--contract-id", "contract_id", required=True, help="Contract id.")
@verb_output
@click.pass_context
def contract_token(ctx: click.Context, contract_id: str) -> Result:
    """Get a bearer token (ES384 JWT, one hour) for the contract's clean-room ingress.

    Only a party the accepted contract names gets one; the ingress checks it against the
    governance JWKS and refuses a token of another contract. The table output is the bare JWT
    (for $(...)); -o json adds expiresAt, audience and issuer.

    \b
    Example (the consumer calls the running clean room):
      export CLEANROOM_TOKEN=$(cleanroom -w W/consumer governance contract token --id inference-initial)
      cleanroom infer --endpoint https://127.0.0.1:8443 --ca ca.pem --dataset D
    """
    with _engine(ctx) as engine:
        issued = engine.contract_token(contract_id)
    return Result({"contractId": contract_id, **issued}, text=issued["token"])


@contract.group("runtime-option")
def runtime_option() -> None:
    """The kill switch (execution) and the logging/telemetry options of a contract."""


OPTION = click.option(
    "--option",
    type=click.Choice(["execution", "logging", "telemetry", "loss-telemetry"]),
    required=True,
    callback=lambda _ctx, _param, value: value.replace("-", "_"),  # loss-telemetry is governance's loss_telemetry
    help="Which option (loss-telemetry: per-step loss of private training, which every member must vote).",
)


@runtime_option.command("get")
@click.option("--id", "contract_id", required=True, help="Contract id.")
@OPTION
@verb_output
@click.pass_context
def runtime_option_get(ctx: click.Context, contract_id: str, option: str) -> Result:
    """Show whether an option is enabled (and who disabled execution).

    \b
    Example:
      cleanroom -w W/consumer governance contract runtime-option get --id inference-initial --option execution
    """
    with _engine(ctx) as engine:
        return Result(engine.runtime_option(contract_id, option), title=f"{option} of {contract_id}")


@runtime_option.command("set")
@click.option("--id", "contract_id", required=True, help="Contract id.")
@OPTION
@click.option("--action", type=click.Choice(["enable", "disable"]), required=True, help="enable or disable.")
@verb_output
@click.pass_context
def runtime_option_set(ctx: click.Context, contract_id: str, option: str, action: str) -> Result:
    """Disable execution alone (kill switch) or re-enable it; logging/telemetry open a proposal.

    \b
    Example (any one member stops the clean room):
      cleanroom -w W/provider governance contract runtime-option set --id inference-initial \\
          --option execution --action disable
    """
    with _engine(ctx) as engine:
        result = engine.set_runtime_option(contract_id, option, enable=action == "enable")
    if option == "execution":
        waiting = ", ".join(m[:16] + "…" for m in result["disabledBy"]) or "nobody"
        return Result(result, text=f"execution of {contract_id} is {result['status']} (disabled by: {waiting})")
    return Result(result, text=f"proposal {result['proposalId']} ({result['action']}) is {result['proposalState']}")


@contract.group("event")
def event() -> None:
    """Events the clean room reported for a contract."""


@event.command("list")
@click.option("--id", "contract_id", required=True, help="Contract id.")
@click.option("--from-seqno", type=int, default=1, show_default=True, help="First event sequence number.")
@click.option("--follow", is_flag=True, help="Keep printing new events as they arrive (Ctrl-C stops).")
@verb_output
@click.pass_context
def event_list(ctx: click.Context, contract_id: str, from_seqno: int, follow: bool) -> Result | Stream:
    """List a contract's events (telemetry/logging only if the contract enabled them).

    \b
    Example:
      cleanroom -w W/consumer governance contract event list --id inference-initial --output json
    """
    if follow:
        return Stream(
            _follow_events(ctx, contract_id, from_seqno),
            lambda item: f"{item['seqno']:>5} {item['category']:<9} {item['type']:<20} {json.dumps(item['data'])}",
        )
    with _engine(ctx) as engine:
        result = engine.event_page(contract_id, from_seqno)
    return Result(
        result,
        render=lambda console: console.print(
            generic_table(
                result["events"], columns=["seqno", "category", "type", "data"], title=f"events of {contract_id}"
            )
        ),
    )


def _follow_events(ctx: click.Context, contract_id: str, from_seqno: int) -> Iterator[dict[str, Any]]:
    with _engine(ctx) as engine:
        yield from engine.stream_events(contract_id, from_seqno)


# -- proposals --------------------------------------------------------------------------------------
@governance.group("proposal")
def proposal() -> None:
    """Show, list, vote on and withdraw proposals."""


@proposal.command("show")
@click.option("--proposal-id", required=True, help="Proposal id.")
@click.option(
    "--diff",
    "diff_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Compare what a ballot accepts with the document you regenerated.",
)
@verb_output
@click.pass_context
def proposal_show(ctx: click.Context, proposal_id: str, diff_file: Path | None) -> Result:
    """Show a proposal: action, state, ballots by persona and a readable summary of what a ballot
    accepts (a set_contract's contract data, a proposed deployment spec or policy with its hash);
    -o json for the raw proposal. --diff FILE says "identical" or lists the fields that differ.

    \b
    Example:
      cleanroom -w W/hoster governance proposal show --proposal-id 4c1e... --output json
      cleanroom -w W/consumer governance proposal show --proposal-id 4c1e... --diff out/clean-room-policy.json
    """
    with _engine(ctx) as engine:
        return vote_review.proposal_result(engine, proposal_id, diff_file)


@proposal.command("list")
@click.option("--state", default=None, help="Only proposals in this state (Open, Accepted, ...).")
@click.option("--contract-id", default=None, help="Only proposals about this contract.")
@verb_output
@click.pass_context
def proposal_list(ctx: click.Context, state: str | None, contract_id: str | None) -> Result:
    """List proposals.

    \b
    Example:
      cleanroom -w W/consumer governance proposal list --state Open
    """
    with _engine(ctx) as engine:
        proposals = engine.list_proposals(state=state, contract_id=contract_id)
    return Result(
        proposals,
        render=lambda console: console.print(
            generic_table([_proposal_summary(p) for p in proposals], title="proposals")
        ),
    )


@proposal.command("vote")
@click.option("--proposal-id", required=True, help="Proposal id.")
@VOTE_ACTION
@verb_output
@click.pass_context
def proposal_vote(ctx: click.Context, proposal_id: str, action: str) -> Result:
    """Cast your signed ballot on a proposal.

    \b
    Example:
      cleanroom -w W/provider governance proposal vote --proposal-id 4c1e... --action accept
    """
    with _engine(ctx) as engine:
        return _voted(proposal_id, action, engine.cast_ballot(proposal_id, action))


@proposal.command("withdraw")
@click.option("--proposal-id", required=True, help="Proposal id.")
@verb_output
@click.pass_context
def proposal_withdraw(ctx: click.Context, proposal_id: str) -> Result:
    """Withdraw a proposal you made.

    \b
    Example:
      cleanroom -w W/hoster governance proposal withdraw --proposal-id 4c1e...
    """
    with _engine(ctx) as engine:
        result = engine.withdraw_proposal(proposal_id)
    return Result(
        {"proposalId": proposal_id} | result, text=f"proposal {proposal_id[:16]}… is {result['proposalState']}"
    )


# -- deployment template / policy -------------------------------------------------------------------
@governance.group("deployment")
def deployment() -> None:
    """Propose and show a contract's deployment spec (template) and clean-room policy."""


@deployment.group("template")
def template() -> None:
    """The deployment spec: what exactly runs."""


@deployment.group("policy")
def policy() -> None:
    """The clean-room policy: the measurement keys are released to."""


def _document_verbs(group: click.Group, kind: str, file_option: str, noun: str) -> None:
    @group.command(
        "propose",
        help=f"""Propose the {noun} of an accepted contract.

    \b
    Example:
      cleanroom -w W/hoster governance deployment {group.name} propose --contract-id inference-initial \\
          --{file_option} out/deployments/{"deployment-spec" if kind == "deployment_spec" else "clean-room-policy"}.json
    """,
    )
    @click.option("--contract-id", required=True, help="Contract id.")
    @click.option(f"--{file_option}", "document_file", required=True, help=f"The {noun} JSON file.")
    @verb_output
    @click.pass_context
    def propose(ctx: click.Context, contract_id: str, document_file: str) -> Result:
        document = _read_json(document_file, noun)
        with _engine(ctx) as engine:
            submit = engine.propose_deployment_spec if kind == "deployment_spec" else engine.propose_clean_room_policy
            return _proposed(submit(contract_id, document))

    @group.command(
        "show",
        help=f"""Show the accepted {noun} and the open proposals (proposalIds).

    \b
    Example:
      cleanroom -w W/consumer governance deployment {group.name} show --contract-id inference-initial \\
          --query 'proposalIds[0]'
    """,
    )
    @click.option("--contract-id", required=True, help="Contract id.")
    @verb_output
    @click.pass_context
    def show(ctx: click.Context, contract_id: str) -> Result:
        with _engine(ctx) as engine:
            reader = engine.deployment_spec_state if kind == "deployment_spec" else engine.clean_room_policy_state
            return Result(reader(contract_id), title=f"{noun} of {contract_id}")


_document_verbs(template, "deployment_spec", "template-file", "deployment spec")
_document_verbs(policy, "clean_room_policy", "policy-file", "clean-room policy")


@deployment.command("generate")
@click.option("--contract-id", required=True, help="Contract id (must exist; its merged spec is used).")
@click.option(
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write deployment-spec.json and clean-room-policy.json.",
)
@generate_options
@verb_output
@click.pass_context
def deployment_generate(
    ctx: click.Context, /, contract_id: str, output_dir: Path, backend: str, **aci_options: Any
) -> Result:
    """Write the deployment spec and clean-room policy (with its hash) of a contract, for proposal.

    \b
    Example:
      cleanroom -w W/hoster governance deployment generate --contract-id inference-initial \\
          --output-dir out/deployments
      cleanroom -w W/hoster governance deployment generate --contract-id inference-initial \\
          --output-dir out/deployments --backend aci --cce-policy out/deployments/cce-policy.b64 \\
          --maa-endpoint sharedeus.eus.attest.azure.net \\
          --kek-vault m-provider=https://provider-kv.vault.azure.net \\
          --identity "$(az identity show -g RG -n MI --query id -o tsv)" \\
          --identity-client-id 6c0a9f0e-3f5b-4f7e-9a43-4a9d8d1f2b7c
    """
    from core.runtime.backend import GenerateOptions, GovernedContract, generation_backend

    def governed() -> GovernedContract:
        with _engine(ctx) as engine:
            return engine.governed_contract(contract_id)

    summary = generation_backend(backend).generate(contract_id, governed, output_dir, GenerateOptions(**aci_options))
    return Result(camel_keys(summary), title=f"deployment of {contract_id}")


# -- CA ---------------------------------------------------------------------------------------------
@governance.group("ca")
def ca() -> None:
    """The contract's certificate authority (its key never leaves the service)."""


@ca.command("propose-enable")
@click.option("--contract-id", required=True, help="Contract id.")
@verb_output
@click.pass_context
def ca_propose_enable(ctx: click.Context, contract_id: str) -> Result:
    """Propose enabling the contract's CA.

    \b
    Example:
      cleanroom -w W/hoster governance ca propose-enable --contract-id inference-initial
    """
    with _engine(ctx) as engine:
        return _proposed(engine.propose_enable_ca(contract_id))


@ca.command("generate-key")
@click.option("--contract-id", required=True, help="Contract id.")
@verb_output
@click.pass_context
def ca_generate_key(ctx: click.Context, contract_id: str) -> Result:
    """Generate the contract's P-384 CA key (after enable_ca was accepted).

    \b
    Example:
      cleanroom -w W/hoster governance ca generate-key --contract-id inference-initial
    """
    with _engine(ctx) as engine:
        ca_state = engine.generate_ca_key(contract_id)
    return Result(
        ca_state, text=f"CA key generated for {contract_id}; fetch the certificate with `ca show --query caCert`"
    )


@ca.command("show")
@click.option("--contract-id", required=True, help="Contract id.")
@verb_output
@click.pass_context
def ca_show(ctx: click.Context, contract_id: str) -> Result:
    """Show the CA state, its certificate (caCert) and open enable_ca proposals (proposalIds).

    \b
    Example:
      cleanroom -w W/consumer governance ca show --contract-id inference-initial --query caCert > ca.crt
    """
    with _engine(ctx) as engine:
        return Result(engine.ca_state(contract_id), title=f"CA of {contract_id}")


# -- members ----------------------------------------------------------------------------------------
@governance.group("member")
def member() -> None:
    """The consortium's members."""


@member.command("add")
@click.option("--cert", required=True, help="The new member's certificate PEM file.")
@click.option("--name", default="", help="A display name.")
@verb_output
@click.pass_context
def member_add(ctx: click.Context, cert: str, name: str) -> Result:
    """Propose a new member (set_member); once accepted it runs `member activate`.

    \b
    Example:
      cleanroom -w W/hoster governance member add --cert W/auditor/identity/member_cert.pem --name auditor
    """
    cert_pem = _read_pem(cert)
    with _engine(ctx) as engine:
        return _proposed(engine.propose_member(cert_pem, name))


@member.command("activate")
@verb_output
@click.pass_context
def member_activate(ctx: click.Context) -> Result:
    """Activate your membership after the consortium accepted it.

    \b
    Example:
      cleanroom -w W/auditor governance member activate
    """
    with _engine(ctx) as engine:
        result = engine.activate_member()
    return Result(result, text=f"member {result['memberId'][:16]}… is {result['status']}")


@member.command("show")
@click.option("--id", "member_id", default=None, help="Member id (default: this workspace's).")
@verb_output
@click.pass_context
def member_show(ctx: click.Context, member_id: str | None) -> Result:
    """Show a member (default: you).

    \b
    Example:
      cleanroom -w W/consumer governance member show --query status
    """
    with _engine(ctx) as engine:
        return Result(engine.read_member(member_id), title="member")


@member.command("list")
@verb_output
@click.pass_context
def member_list(ctx: click.Context) -> Result:
    """List the consortium's members.

    \b
    Example:
      cleanroom -w W/consumer governance member list
    """
    with _engine(ctx) as engine:
        members = engine.list_members()
    return Result(members, columns=["memberId", "name", "status"], title="members")


# -- ledger -----------------------------------------------------------------------------------------
@governance.group("ledger")
def ledger_group() -> None:
    """Export the ledger, verify it offline, and get receipts."""


@ledger_group.command("export")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output file.")
@verb_output
@click.pass_context
def ledger_export(ctx: click.Context, path: Path) -> Result:
    """Export the whole ledger (JSON lines) for offline verification.

    \b
    Example:
      cleanroom -w W/consumer governance ledger export --file ledger.jsonl
    """
    with _engine(ctx) as engine:
        size = engine.export_ledger(path)
    return Result({"file": str(path), "bytes": size}, text=f"wrote {path} ({size} bytes)")


def _pinned_cert(ctx: click.Context, service_cert: str | None) -> str | None:
    if service_cert:
        return _read_pem(service_cert)
    try:
        settings = deployed_service(_workspace(ctx)) or {}
    except NotFoundError:
        return None
    return settings.get("service_cert_pem")


def _deployed(ctx: click.Context) -> bool:
    """Whether the workspace points at a governance service (so a signed head can be fetched)."""
    try:
        return deployed_service(_workspace(ctx)) is not None
    except NotFoundError:
        return False


def _against(ctx: click.Context, against: str | None, service_cert: str | None) -> ledger.SignedHead | None:
    """Resolve ``--against``: a head file, ``service``, ``none``, or (unset) the service when deployed."""
    if against is None:
        against = "service" if service_cert is None and _deployed(ctx) else "none"
    if against == "none":
        return None
    if against != "service":
        return ledger.load_signed_head(Path(against))
    try:
        with _engine(ctx) as engine:
            return engine.signed_head()
    except ServiceUnavailableError as exc:
        raise ServiceUnavailableError(
            f"cannot fetch the service's signed head to verify against ({exc.message})",
            hint="pass --against FILE (a head saved with `ledger head --file`) or --against none to verify offline",
        ) from exc


@ledger_group.command("head")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save the signed head here, to verify a later export against it.",
)
@verb_output
@click.pass_context
def ledger_head(ctx: click.Context, path: Path | None) -> Result:
    """Fetch the service's latest signed checkpoint (seqno, chain head, signature) and keep it.

    A head you saved proves how far the ledger had reached: `ledger verify --against FILE`
    then refuses an export that stops earlier (entries cut at a checkpoint boundary).

    \b
    Example:
      cleanroom -w W/consumer governance ledger head --file head.json
      cleanroom -w W/consumer governance ledger verify --file ledger.jsonl --against head.json
    """
    with _engine(ctx) as engine:
        head = engine.signed_head()
    if path is not None:
        write_public_file(path, (json.dumps(head.document(), indent=2, sort_keys=True) + "\n").encode())
    return Result(
        {
            "seqno": head.seqno,
            "fromSeqno": head.from_seqno,
            "chainHead": head.chain_head,
            "merkleRoot": head.merkle_root,
            "verified": True,
            "file": str(path) if path else None,
        },
        title=f"signed ledger head: entry {head.seqno}",
    )


@ledger_group.command("verify")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Export file.")
@click.option("--service-cert", default=None, help="Service certificate to check against (default: the pinned one).")
@click.option("--full", is_flag=True, help="Also re-check every member signature (slower).")
@click.option(
    "--against",
    default=None,
    metavar="FILE|service|none",
    help="Signed head the export must reach: a file from `ledger head --file` or a saved receipt, "
    "`service` (fetch it now) or `none`. Default: service if the workspace has one, else none.",
)
@verb_output
@click.pass_context
def ledger_verify(ctx: click.Context, path: Path, service_cert: str | None, full: bool, against: str | None) -> Result:
    """Verify an export: hash chain, digests, signed checkpoints, its end (and signatures).

    The export must end at a signed checkpoint and reach the signed head it is checked against,
    so a cut or extended export fails, saying how many entries could not be vouched for.

    \b
    Example:
      cleanroom -w W/consumer governance ledger verify --file ledger.jsonl
      cleanroom -w W/consumer governance ledger verify --file ledger.jsonl --against head.json --full
    """
    pinned = _pinned_cert(ctx, service_cert)
    if pinned is None:
        click.echo("warning: no pinned service certificate; trusting the one in the export", err=True)
    head = _against(ctx, against, service_cert)
    report = ledger.verify_export_file(path, expected_service_cert_pem=pinned, full=full, against=head)
    if head is None:  # after the checks, so that a failure stays one line
        click.echo(
            "warning: not checked against a signed head, so an export cut at a checkpoint boundary "
            "would pass; pass --against service or --against FILE (saved with `ledger head --file`)",
            err=True,
        )
    return Result(report.as_dict(), title=f"ledger {path.name}: OK")


@ledger_group.command("receipt")
@click.option("--seqno", type=int, required=True, help="Ledger entry sequence number.")
@verb_output
@click.pass_context
def ledger_receipt(ctx: click.Context, seqno: int) -> Result:
    """Fetch a receipt proving one entry, and check it against the pinned certificate.

    \b
    Example:
      cleanroom -w W/consumer governance ledger receipt --seqno 12 --output json > receipt.json
    """
    with _engine(ctx) as engine:
        receipt = engine.verified_receipt(seqno)
    return Result(receipt | {"verified": True}, title=f"receipt for entry {seqno} (verified)")
