"""The step bodies scenarios are built from: each performs its step's invocations.

Every body reads what it does from the step's ``cleanroom`` invocations (names, folders,
contract ids, the application's command line, cpu and memory, the routes it allows) and adds
no argument of its own, so the narrated command lines are the program. Placeholders in
capitals (``ID``, ``VERSION``, ``URL``) are the values only known when the step runs; the body
finds them the way an operator would (the open proposal, the contract's version, the
ingress the clean room announced).

Each body acts with the step persona's own workspace and keys, and reaches the services only
through that persona's engine (``core.engine``, the one code that talks to governance): what
a separate organisation could do.
Each checks what already exists first, so a half-done step can be done again.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.config.canonical import document_hash
from core.config.cli_values import parse_mount, parse_ports
from core.config.fragment import PrivacyBudget
from core.config.merge import merge_fragments
from core.config.party import add_application, add_data_asset, init_party, party_fragment, set_network_policy
from core.crypto.secret_file import write_public_file
from core.engine import Contract, Proposal
from core.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError, ServiceUnavailableError
from core.governance.models import ContractState, ProposalState
from core.runtime.lifecycle import DeploymentState, LifecycleEvent
from core.scenario.steps import Invocation, Reporter, Step
from core.workspace import Workspace

if TYPE_CHECKING:
    from core.scenario.run import Scenario

Operation = Callable[["Scenario", Invocation, Reporter], str]
# Only bounds a runtime that hangs while alive: a run whose clean room ended is seen at once. A full
# private run (two DP-SGD epochs over 8,530 rows) outlasted one hour on two busy cores and was given up
# on while it trained, so the bound is far above any full run measured here.
TRAINING_TIMEOUT_S = 6 * 3600.0
# the lifecycle events worth a narration line while a training run is followed
NARRATED_EVENTS = frozenset(
    {
        LifecycleEvent.KEYS_RELEASED,
        LifecycleEvent.RUNNING,
        LifecycleEvent.EXITED,
        LifecycleEvent.SEALED,
        LifecycleEvent.FAILED,
    }
)


def _persona(invocation: Invocation) -> str:
    if invocation.persona is None:
        raise InvalidInputError(f"`{invocation.narration()}` names no workspace", hint="fix the scenario definition")
    return invocation.persona


# -- config verbs: what `cleanroom config ...` does to the persona's own fragment -----------------
def _config_init(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    persona = _persona(invocation)
    directory = scenario.workspace_dir(persona)
    if not (directory / "workspace.json").is_file():
        if directory.exists():
            shutil.rmtree(directory)  # a half-created workspace from an interrupted run holds no asset
        init_party(directory, invocation.value("--persona"))
    workspace = scenario.workspace(persona)
    return f"member {workspace.identity.member_id[:16]}, KEK and config fragment in {directory}"


def _add_asset(kind: str) -> Operation:
    def operation(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
        workspace = scenario.workspace(_persona(invocation))
        name = invocation.value("--name")
        fragment = party_fragment(workspace)
        existing = fragment.datasources if kind == "datasource" else fragment.datasinks
        if all(asset.name != name for asset in existing):
            add_data_asset(workspace, kind, name, privacy=_privacy_budget(invocation))
        return f"{kind} '{name}' declared (only {workspace.persona} holds its DEK)" if kind == "datasink" else ""

    return operation


def _privacy_budget(invocation: Invocation) -> PrivacyBudget | None:
    """`--epsilon-total E --delta D --privacy-unit COLUMN`, when the line declares a budget."""
    if not invocation.has("--epsilon-total"):
        return None
    return PrivacyBudget(
        epsilon_total=float(invocation.value("--epsilon-total")),
        delta=float(invocation.value("--delta")),
        privacy_unit=invocation.value("--privacy-unit"),
    )


def _add_application(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    """`config add-application`: every field from its options; cpu and memory take the CLI's
    defaults (the fragment model's) when the command line leaves them out."""
    workspace = scenario.workspace(_persona(invocation))
    name = invocation.value("--name")
    fields: dict[str, Any] = {
        "entrypoint": invocation.value("--entrypoint"),
        "command": shlex.split(invocation.value("--command")),
        "mounts": [parse_mount(text) for text in invocation.values("--mounts")],
        "ports": parse_ports(invocation.values("--ports")),
    }
    if invocation.has("--cpu"):
        fields["cpu"] = float(invocation.value("--cpu"))
    if invocation.has("--memory"):
        fields["memory_gb"] = float(invocation.value("--memory"))
    if invocation.has("--private-training"):
        fields["private_training"] = json.loads(scenario.path(invocation.value("--private-training")).read_text())
    if invocation.has("--env"):  # NAME=VALUE, voted in clear (an onboarding application's pinned hashes)
        fields["env"] = {name: value for name, _, value in (text.partition("=") for text in invocation.values("--env"))}
    if invocation.has("--summary-policy"):
        fields["summary_policy"] = json.loads(scenario.path(invocation.value("--summary-policy")).read_text())
    if all(app.name != name for app in party_fragment(workspace).applications):
        add_application(workspace, name=name, **fields)
    reads = ", ".join(f"'{m['source']}' at {m['target']}" for m in fields["mounts"])
    return f"application '{name}' mounts {reads}"


def _set_network_policy(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    routes = invocation.values("--allow")
    set_network_policy(
        scenario.workspace(_persona(invocation)),
        inbound_allow=routes,
        allow_all_outbound=invocation.has("--allow-all-outbound"),
    )
    outbound = "allowed" if invocation.has("--allow-all-outbound") else "none"
    return f"inbound: {', '.join(routes)}; outbound: {outbound}"


def _wrap_deks(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    persona = _persona(invocation)
    wrapped = scenario.engine(persona).wrap_deks(invocation.value("--contract-id"))
    return f"DEKs of {', '.join(wrapped.assets)} wrapped to {persona}'s contract KEK {wrapped.kek_fingerprint[:16]}"


# -- data ------------------------------------------------------------------------------------------
def _upload(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    persona = _persona(invocation)
    name = invocation.value("--name")
    task = f"{persona}: encrypt + upload '{name}'"
    from core.datasource import upload_datasource

    manifest = upload_datasource(
        scenario.workspace(persona),
        name,
        scenario.path(invocation.value("--dataset-folder")),
        progress=lambda s: reporter.progress(task, s.bytes_done, s.bytes_total, s.current),
    )
    return f"'{name}': {len(manifest.files)} files, {manifest.total_bytes / 1e6:.1f} MB sealed with its DEK"


def _download_datasink(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    """`datasink download`: decrypted into a partial folder first, so an interrupted download
    never leaves a half-written target a resumed run would take for done."""
    from core.datasource import download_asset

    persona = _persona(invocation)
    name = invocation.value("--name")
    target = scenario.path(invocation.value("--target-folder"))
    if not target.is_dir():
        partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:6]}")
        task = f"{persona}: download + decrypt '{name}'"
        try:
            download_asset(
                scenario.workspace(persona),
                "datasink",
                name,
                partial,
                progress=lambda s: reporter.progress(task, s.bytes_done, s.bytes_total, s.current),
            )
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return f"decrypted {', '.join(sorted(p.name for p in target.iterdir()))} into {target}"


def _copy(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    """`cp FILE... FOLDER/` of the vendored dataset into a persona's folder (nothing is overwritten)."""
    from core.ml.datasets import VENDORED_DIR

    *sources, destination = invocation.args
    folder = scenario.path(destination)
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        target = folder / source.rsplit("/", 1)[-1]
        if not target.is_file():
            write_public_file(target, (VENDORED_DIR / source).read_bytes())
    return f"{', '.join(s.rsplit('/', 1)[-1] for s in sources)} in {folder}"


def _model_prepare(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    from core.ml.model_preparation import prepare

    output = scenario.path(invocation.value("--output-dir"))
    if (output / "onnx").is_dir() and (output / "pytorch").is_dir():
        return f"already prepared in {output}"
    task = f"{_persona(invocation)}: model prepare (all-MiniLM-L6-v2, offline)"
    stages = ["loading base model", "writing pytorch/ (safetensors)", "exporting onnx/ (fp32 + int8)"]
    reporter.progress(task, 0, len(stages), "")

    def on_stage(name: str) -> None:
        reporter.progress(task, stages.index(name) if name in stages else 0, len(stages), name)

    prepared = prepare(None, output, on_stage=on_stage)
    reporter.progress(task, len(stages), len(stages), "done")
    return f"{len(prepared.files)} files: pytorch/ (safetensors) and onnx/ (fp32 + int8), fresh 2-label head"


# -- services and the runtime ----------------------------------------------------------------------
def _services_up(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    from core import embedded

    scenario.ensure_services(reporter)
    for persona in [directory.rsplit("/", 1)[-1] for directory in invocation.values("--workspace-dirs")]:
        scenario.engine(persona).ensure_active()
    records = embedded.load_records(scenario.services_home)
    return ", ".join(f"{name} {record['endpoint']}" for name, record in records.items())


def _deployment_start(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    contract_id = invocation.value("--contract-id")
    engine = scenario.engine(_persona(invocation))
    current = engine.deployment_status(contract_id)
    if current is None or not current.alive:
        reporter.note(f"{engine.persona} starts the clean room of '{contract_id}' (attest, key release, sandbox)")
    status = engine.start_deployment(contract_id)
    where = f", ingress {status.ingress}" if status.ingress else ""
    return f"clean room of '{contract_id}' {status.state} (pid {status.pid}){where}"


def _deployment_stop(scenario: Scenario, invocation: Invocation, reporter: Reporter) -> str:
    contract_id = invocation.value("--contract-id")
    try:
        status = scenario.engine(_persona(invocation)).stop_deployment(contract_id)
    except NotFoundError:
        return f"'{contract_id}' was not running"
    return f"'{contract_id}' {status.get('state')}; plaintext mounts removed"


OPERATIONS: dict[tuple[str, ...], Operation] = {
    ("config", "init"): _config_init,
    ("config", "add-datasource"): _add_asset("datasource"),
    ("config", "add-datasink"): _add_asset("datasink"),
    ("config", "add-application"): _add_application,
    ("config", "set-network-policy"): _set_network_policy,
    ("config", "wrap-deks"): _wrap_deks,
    ("datasource", "upload"): _upload,
    ("datasink", "download"): _download_datasink,
    ("model", "prepare"): _model_prepare,
    ("up",): _services_up,
    ("deployment", "start"): _deployment_start,
    ("deployment", "stop"): _deployment_stop,
}


def perform_each(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """The plain body: each invocation in order, by its verb (``cp`` copies the vendored data)."""
    summaries = []
    for invocation in step.invocations:
        operation = _copy if invocation.program == "cp" else OPERATIONS.get(invocation.verb)
        if operation is None:
            raise InvalidInputError(
                f"no operation performs `{' '.join(invocation.verb)}`",
                hint="give the step its own body, or add the verb to OPERATIONS",
            )
        summaries.append(operation(scenario, invocation, reporter))
    return "; ".join(summary for summary in summaries if summary)


# -- governance of one contract ---------------------------------------------------------------------
def contract_document(scenario: Scenario, view: Invocation) -> dict[str, Any]:
    """What ``config view --configs ... --application A --output json`` prints: the fragments
    merged, scoped to the applications this contract runs."""
    fragments = [party_fragment(Workspace.open(scenario.path(folder))) for folder in view.values("--configs")]
    return merge_fragments(fragments).for_applications(view.values("--application")).document()


def propose_contract(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`config view > C.json`, `contract create --data @C.json`, `contract propose --version VERSION`."""
    create = step.invocation("governance", "contract", "create")
    contract_id = create.value("--id")
    hoster = scenario.engine(_persona(create))
    try:
        current = hoster.contract(contract_id)
    except NotFoundError:
        current = hoster.create_contract(contract_id, contract_document(scenario, step.invocation("config", "view")))
    if current.state == ContractState.DRAFT:
        step.invocation("governance", "contract", "propose")  # VERSION: the version just read
        proposal_id = hoster.propose_contract(contract_id, current.version)["proposalId"]
        return (
            f"contract '{contract_id}' proposed ({proposal_id[:8]}); every party can recompute "
            f"its hash {document_hash(current.document)[:16]} from the three fragments"
        )
    return f"contract '{contract_id}' is already {current.state}"


# -- read-only lines: what each returns to the lines after it ----------------------------------------
Read = Callable[["Scenario", Invocation], Any]
DEPLOYMENT_ACTIONS = ("set_deployment_spec", "set_clean_room_policy")


def _contract_show(scenario: Scenario, invocation: Invocation) -> Contract:
    """`contract show --id C`: the contract (its state, version and document) as this party reads it."""
    return scenario.engine(_persona(invocation)).contract(invocation.value("--id"))


def _proposal_list(scenario: Scenario, invocation: Invocation) -> list[Proposal]:
    """`proposal list --contract-id C --state Open`: the proposals the party may vote on."""
    if invocation.value("--state") != ProposalState.OPEN:
        raise InvalidInputError(f"`{invocation.narration()}` lists no open proposals", hint="use --state Open")
    return scenario.engine(_persona(invocation)).open_proposals(invocation.value("--contract-id"))


def _regenerate(scenario: Scenario, invocation: Invocation) -> dict[str, dict[str, Any]]:
    """A voter's `deployment generate --contract-id C --output-dir mine`: the spec and policy it
    regenerates from the contract it accepted (what ``mine`` holds), by the proposal action they
    are compared with."""
    from core.runtime.deployment import deployment_spec, policy_document

    contract_id = invocation.value("--contract-id")
    spec = deployment_spec(contract_id, scenario.engine(_persona(invocation)).contract(contract_id).document)
    return {"set_deployment_spec": spec, "set_clean_room_policy": policy_document(spec)}


READS: dict[tuple[str, ...], Read] = {
    ("governance", "contract", "show"): _contract_show,
    ("governance", "proposal", "list"): _proposal_list,
    ("governance", "deployment", "generate"): _regenerate,
}


def _diff(proposal: Proposal, regenerated: dict[str, dict[str, Any]]) -> str | None:
    """`diff -r mine C`: the reason to reject a deployment proposal that is not what the voter
    regenerated (a hoster slipping in another command or mount), or None."""
    if proposal.content.get("data") == regenerated[proposal.action]:
        return None
    what = "deployment spec" if proposal.action == "set_deployment_spec" else "clean-room policy"
    return f"the {what} differs from the one regenerated from the accepted contract"


def vote_open(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """The step's lines in order: `contract show`, `deployment generate` and `proposal list` read
    what the vote needs; `diff -r mine C` compares each deployment proposal with the regenerated
    documents; `... vote --proposal-id ID --action accept` votes each open proposal of the contract
    this member has not voted on yet (ID), after that comparison. A step that would accept a
    deployment proposal without narrating the comparison is refused: it would vote unseen."""
    vote = next(i for i in step.invocations if i.verb[-1:] == ("vote",))
    persona = _persona(vote)
    contract_id = next(
        i.values("--id") or i.values("--contract-id")
        for i in step.invocations
        if i.values("--id") or i.values("--contract-id")
    )[0]
    if vote.value("--action") != "accept":
        raise InvalidInputError(f"step '{step.key}' votes {vote.value('--action')}", hint="scenario votes accept")
    read = {i.verb: READS[i.verb](scenario, i) for i in step.invocations if i.verb in READS}
    compares = any(i.program == "diff" for i in step.invocations)
    regenerated = read.get(("governance", "deployment", "generate")) if compares else None
    engine = scenario.engine(persona)
    listed = read.get(("governance", "proposal", "list"))
    cast = []
    for proposal in listed if listed is not None else engine.open_proposals(contract_id):
        if engine.member_id in proposal.ballots:
            continue
        if proposal.action in DEPLOYMENT_ACTIONS:
            if regenerated is None:
                raise InvalidInputError(
                    f"step '{step.key}' would accept {proposal.action} without comparing it",
                    hint="narrate `deployment generate --output-dir mine` and `diff -r mine C` before the vote",
                )
            reason = _diff(proposal, regenerated)
            if reason is not None:
                engine.vote(proposal.proposal_id, accept=False)
                raise IntegrityError(
                    f"{persona} rejected {proposal.action} on '{contract_id}': {reason}",
                    hint="the hoster must propose the document generated from the accepted contract",
                )
        after = engine.vote(proposal.proposal_id, accept=True)
        cast.append(f"{proposal.action} {proposal.proposal_id[:8]} -> {after.state}")
    return "; ".join(cast) if cast else "nothing open to vote on"


def propose_deployment(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`deployment generate`, then the proposals the step's invocations name: the deployment
    spec, the clean-room policy, and (if named) enabling the CA and the telemetry option."""
    from core.runtime.deployment import deployment_spec, policy_document

    generate = step.invocation("governance", "deployment", "generate")
    contract_id = generate.value("--contract-id")
    hoster = scenario.engine(_persona(generate))
    contract = hoster.contract(contract_id)
    if contract.state != ContractState.ACCEPTED:
        raise ConflictError(
            f"contract '{contract_id}' is {contract.state}, not Accepted",
            hint="every party must accept it first (`cleanroom governance proposal vote`)",
        )
    spec = deployment_spec(contract_id, contract.document)
    policy = policy_document(spec)
    open_actions = {p.action for p in hoster.open_proposals(contract_id)}
    proposed = []
    step.invocation("governance", "deployment", "template", "propose")
    if hoster.deployment_spec(contract_id) is None and "set_deployment_spec" not in open_actions:
        hoster.propose_deployment_spec(contract_id, spec)
        proposed.append("deployment spec")
    step.invocation("governance", "deployment", "policy", "propose")
    if hoster.clean_room_policy(contract_id) is None and "set_clean_room_policy" not in open_actions:
        hoster.propose_clean_room_policy(contract_id, policy)
        proposed.append(f"policy {policy['policy_hash'][:16]}")
    if (
        step.invocations_of("governance", "ca", "propose-enable")
        and not hoster.ca_enabled(contract_id)
        and "enable_ca" not in open_actions
    ):
        hoster.propose_enable_ca(contract_id)
        proposed.append("enable CA")
    for option in step.invocations_of("governance", "contract", "runtime-option", "set"):
        name = option.value("--option").replace("-", "_")  # the CLI's loss-telemetry is governance's loss_telemetry
        enable = option.value("--action") == "enable"
        if (
            hoster.runtime_option_enabled(contract_id, name) != enable
            and f"{'enable' if enable else 'disable'}_{name}" not in open_actions
        ):
            hoster.set_runtime_option(contract_id, name, enable=enable)
            proposed.append(f"{'enable' if enable else 'disable'} {name}")
    return "proposed " + ", ".join(proposed) if proposed else "already proposed"


def generate_ca(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`ca generate-key`, once every deployment proposal of the contract was accepted."""
    invocation = step.invocation("governance", "ca", "generate-key")
    contract_id = invocation.value("--contract-id")
    hoster = scenario.engine(_persona(invocation))
    missing = [
        what
        for what, ok in (
            ("deployment spec", hoster.deployment_spec(contract_id) is not None),
            ("clean-room policy", hoster.clean_room_policy(contract_id) is not None),
            ("CA", hoster.ca_enabled(contract_id)),
        )
        if not ok
    ]
    if missing:
        raise ConflictError(
            f"contract '{contract_id}': {', '.join(missing)} not accepted yet",
            hint="every party must vote on the open proposals",
        )
    if not hoster.ca_certificate(contract_id):
        hoster.generate_ca_key(contract_id)
    return f"CA certificate of '{contract_id}' published in governance"


# -- the clean room at work ---------------------------------------------------------------------------
def evaluate(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`ca show`, `event list` (the ingress URL), `contract token`, `infer --dataset D --endpoint
    URL --ca ca.crt`: the consumer's evaluation through the clean room's TLS ingress."""
    infer = step.invocation("infer")
    contract_id = step.invocation("governance", "contract", "token").value("--id")
    engine = scenario.engine(_persona(step.invocation("governance", "contract", "token")))
    task = f"{engine.persona}: evaluate the test rows on '{contract_id}'"

    def on_progress(done: int, correct: int, total: int) -> None:
        reporter.progress(task, done, total, f"accuracy {correct / done if done else 0.0:.3f}")
        reporter.evaluation(contract_id, done, correct, total)

    report = engine.run_evaluation(
        contract_id,
        on_progress,
        dataset=scenario.path(infer.value("--dataset")),
        split="test",
        on_wait=lambda endpoint: reporter.note(
            f"{engine.persona} waits for {endpoint} (TLS pinned to the contract's CA)"
        ),
    )
    scenario.state.results.setdefault("evaluation", {})[contract_id] = {
        "accuracy": round(report.accuracy, 6),
        "total_rows": report.total_rows,
        "correct": report.correct,
        "rows_per_s": report.rows_per_s,
        "endpoint": report.endpoint,
    }
    return f"accuracy {report.accuracy:.3f} on {report.total_rows} rows ({report.correct} correct)"


def train(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`deployment start`, then `event list --follow` until the training clean room ends:
    every party watches the telemetry it voted for."""
    start = step.invocation("deployment", "start")
    contract_id = start.value("--contract-id")
    hoster = scenario.engine(_persona(start))
    watcher = scenario.engine(_persona(step.invocation("governance", "contract", "event", "list")))
    # a contract that ran before (a second private run) has events of that run: follow this one's only
    seqno = max((event.seqno for event in watcher.all_events(contract_id)), default=0) + 1
    _deployment_start(scenario, start, reporter)
    task = "clean room: fine-tuning (telemetry events)"
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    last_eval: dict[str, Any] = {}
    steps = 0
    while True:
        for event in watcher.events(contract_id, seqno, wait=1.0):
            seqno = event.seqno + 1
            if event.kind == "telemetry" and event.data.get("event") == "step":
                steps = int(event.data.get("step", 0))
                reporter.progress(
                    task, steps, float(event.data.get("total_steps") or 0) or None, f"loss {event.data.get('loss')}"
                )
            elif event.kind == "telemetry" and event.data.get("event") == "eval":
                last_eval = event.data
                reporter.note(
                    f"telemetry: epoch {event.data.get('epoch')} validation accuracy {event.data.get('val_accuracy')}"
                )
            elif event.kind in NARRATED_EVENTS:
                reporter.note(f"event: {event.kind} {json.dumps(event.data, sort_keys=True)[:120]}")
        status = hoster.deployment_status(contract_id)
        if status is None or not status.alive:
            break
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(
                f"training of '{contract_id}' did not end within {TRAINING_TIMEOUT_S:.0f}s",
                hint=f"stop it with `cleanroom deployment stop --contract-id {contract_id}`",
            )
    failed_codes = [code for code in status.exit_codes.values() if code != 0] if status else []
    if status is None or status.state != DeploymentState.EXITED or failed_codes:
        raise ServiceUnavailableError(
            f"training of '{contract_id}' ended {status.state if status else 'unrecorded'} "
            f"(exit codes {status.exit_codes if status else {}}, {status.error if status else ''})",
            hint=f"see `cleanroom deployment logs --contract-id {contract_id}`",
        )
    if not status.sealed:
        raise NotFoundError("the trainer wrote nothing to its datasink", hint="see the deployment logs")
    scenario.state.results["training"] = {
        "steps": steps,
        "val_accuracy": last_eval.get("val_accuracy"),
        "sealed": status.sealed,
    }
    return f"{steps} steps; validation accuracy {last_eval.get('val_accuracy')}; sealed to {', '.join(status.sealed)}"
