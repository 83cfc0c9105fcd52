"""The step bodies of the endpoints scenario: an application registered, scoring, blue/green, refusals.

Like ``operations``, each body performs exactly its step's lines through each line's persona's
own engine; the application's calls are ``core.scenario.endpoints_client``'s, parsed from the
narrated line with that module's own parser. What is particular here: the application's token
comes from governance's ``/oauth2/token`` by client credentials and a private_key_jwt assertion
(the docs' stock authlib client for ``POST /score``, `governance app token` for the rest); a
split or a rollback counts only once the ingress applied it (its ``traffic_split`` event, which
any member reads), never from the moment governance accepted it; and every figure in the
summary is what the ingress or governance answered, so a refusal that did not happen fails the
step instead of being reported.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from core.errors import ConflictError, IntegrityError, NotFoundError, ServiceUnavailableError
from core.governance.models import Action, ProposalState
from core.runtime.usage import USAGE_EVENT
from core.scenario import endpoints_client
from core.scenario.operations import OPERATIONS, _persona, perform_each
from core.scenario.steps import Invocation, Perform, Reporter, Step

if TYPE_CHECKING:
    from core.engine import PersonaEngine
    from core.scenario.run import Scenario

PROJECT_ROOT = Path(__file__).resolve().parents[2]
APPLIED_WITHIN_S = 30.0  # the ingress polls governance every second
USAGE_WITHIN_S = 30.0  # the stopping ingress hands its last minute to governance
TRAFFIC_EVENT = "traffic_split"


def _results(scenario: Scenario) -> dict[str, Any]:
    found: dict[str, Any] = scenario.state.results.setdefault("endpoints", {})
    return found


def _line(step: Step, *prefix: str) -> Invocation:
    """The step's one ``cleanroom`` line whose verb starts with ``prefix`` (a name argument, as
    in `app revoke scorer`, is part of the verb)."""
    found = [i for i in step.invocations if i.verb[: len(prefix)] == prefix]
    if len(found) != 1:
        raise IntegrityError(
            f"step '{step.key}' runs `{' '.join(prefix)}` {len(found)} times, not once",
            hint="fix the scenario definition",
        )
    return found[0]


def _calls(step: Step) -> list[Invocation]:
    """The step's `python -m core.scenario.endpoints_client` lines, in order."""
    return [i for i in step.invocations if i.program == "python" and i.args[:2] == ("-m", endpoints_client.__name__)]


def _token(scenario: Scenario, step: Step) -> str:
    """`export APP_TOKEN=$(cleanroom -w W/consumer governance app token ... NAME)`: the access
    token the application holds for the step's calls."""
    line = _line(step, "governance", "app", "token")
    answer = scenario.engine(_persona(line)).app_token(
        line.args[-1], scenario.path(line.value("--key")), line.value("--contract")
    )
    return str(answer["access_token"])


def _perform_call(
    scenario: Scenario, line: Invocation, ingress: str, token: str, *, since: float | None = None
) -> dict[str, Any]:
    """One narrated call, parsed by the client's own parser; ``URL`` is the ingress the clean
    room announced, ``W/...`` a path under the scenario root."""
    arguments = endpoints_client.parser().parse_args(list(line.args[2:]))
    arguments.ingress = ingress
    arguments.ingress_ca = scenario.path(str(arguments.ingress_ca))
    return endpoints_client.run(arguments, token, since=since)


def _ingress(scenario: Scenario, persona: str, contract_id: str, reporter: Reporter) -> str:
    """The ingress URL the clean room announced in its attested ``running`` event, as ``persona``
    reads it (`event list --id C`). An interrupted run stopped the clean room with its services:
    the hoster's start line is done again first, as the runner does for an evaluation."""
    status = scenario.deployment_status(contract_id)
    if status is None or not status.alive:
        reporter.note(f"the clean room of '{contract_id}' stopped with the interrupted run; starting it again")
        for candidate in scenario.steps:
            for line in candidate.invocations_of("deployment", "start"):
                if line.value("--contract-id") == contract_id:
                    OPERATIONS[line.verb](scenario, line, reporter)
    return scenario.engine(persona).ingress_endpoint(contract_id)


def _listed_ingress(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`event list --id C`: the ingress URL the step's line reads."""
    line = _line(step, "governance", "contract", "event", "list")
    return _ingress(scenario, _persona(line), line.value("--id"), reporter)


# -- the application's registration and the members' votes ---------------------------------------
def register_application(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`governance app register ... --generate-key K`: the proposal, and the application's private
    key written to the consumer's workspace only once the proposal exists."""
    register = _line(step, "governance", "app", "register")
    engine = scenario.engine(_persona(register))
    name = register.value("--name")
    contracts, routes = register.values("--contract"), register.values("--route")
    limit = int(register.value("--rate-limit"))
    record: dict[str, Any] = {
        "name": name,
        "owner": engine.persona,
        "contracts": contracts,
        "routes": routes,
        "rateLimitPerMinute": limit,
    }
    _results(scenario)["application"] = record
    registered = any(app["name"] == name for app in engine.client_apps())
    if registered or _open_proposals(engine, Action.REGISTER_CLIENT_APP, name=name):
        return f"'{name}' is already proposed"
    proposal = engine.register_client_app(
        name,
        contracts=contracts,
        routes=routes,
        rate_limit_per_minute=limit,
        generate_key=scenario.path(register.value("--generate-key")),
    )
    record["proposalId"] = proposal["proposalId"]
    key = register.value("--generate-key")
    return f"proposal {proposal['proposalId'][:8]} registers '{name}'; its private key is in {key}"


def _open_proposals(engine: PersonaEngine, action: str, **subject: str) -> list[dict[str, Any]]:
    """The open proposals of ``action`` whose arguments name ``subject`` (an app, a contract)."""
    return [
        proposal
        for proposal in engine.list_proposals(state=ProposalState.OPEN)
        if proposal["action"] == action
        and all(proposal.get("args", {}).get(key) == value for key, value in subject.items())
    ]


def vote_on(action: str, **subject: str) -> Perform:
    """`proposal list --state Open`, then `proposal vote --proposal-id ID --action accept` on the
    open ``action`` proposal naming ``subject`` this member has not voted on yet (ID)."""

    def perform(scenario: Scenario, step: Step, reporter: Reporter) -> str:
        vote = _line(step, "governance", "proposal", "vote")
        engine = scenario.engine(_persona(vote))
        _line(step, "governance", "proposal", "list")
        cast = []
        for proposal in _open_proposals(engine, action, **subject):
            if engine.member_id in proposal.get("ballots", {}):
                continue
            after = engine.vote(proposal["proposalId"], accept=True)
            cast.append(f"{action} {proposal['proposalId'][:8]} -> {after.state}")
        return "; ".join(cast) if cast else "nothing open to vote on"

    return perform


# -- scoring ----------------------------------------------------------------------------------------
def stock_client() -> ModuleType:
    """``docs/oauth2_client.py``, the application team's own script (it imports nothing of cleanroom)."""
    script = PROJECT_ROOT / "docs" / "oauth2_client.py"
    if not script.is_file():
        raise NotFoundError(f"{script} does not exist", hint="run the endpoints scenario from a source checkout")
    spec = importlib.util.spec_from_file_location("oauth2_client", script)
    if spec is None or spec.loader is None:
        raise NotFoundError(f"{script} cannot be loaded", hint="run the endpoints scenario from a source checkout")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise NotFoundError(
            f"the stock OAuth2 client needs {(exc.name or 'authlib').split('.')[0]}, which is not installed",
            hint="pip install 'authlib>=1.3,<2'",
        ) from exc
    return module


def _stock_score(scenario: Scenario, line: Invocation, ingress: str) -> dict[str, Any]:
    """`python docs/oauth2_client.py --workspace W --app A --key K --contract C --ingress URL
    --ingress-ca CA --data JSON`, as its ``main`` runs it: its own token, then ``POST /score``."""
    import json

    client = stock_client()
    endpoint, service_cert = client.governance_of(scenario.path(line.value("--workspace")))
    key_pem = scenario.path(line.value("--key")).read_bytes()
    token = client.fetch_token(endpoint, service_cert, line.value("--app"), key_pem, line.value("--contract"))
    records = json.loads(line.value("--data"))
    answer = client.score(ingress, scenario.path(line.value("--ingress-ca")), token["access_token"], records)
    return {
        "client": f"{line.args[0]} (authlib, client credentials with private_key_jwt)",
        "tokenType": token.get("token_type"),
        "expiresIn": token.get("expires_in"),
        "scope": token.get("scope"),
        "records": records,
        "answer": answer,
    }


def score(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`ca show > CA`, `event list` (URL), the application's token, both versions ready, the stock
    client's ``POST /score``, then the OIP v2 calls."""
    show = _line(step, "governance", "ca", "show")
    ca_pem = scenario.engine(_persona(show)).ca_certificate(show.value("--contract-id"))
    if not ca_pem or show.stdout is None:
        raise NotFoundError(f"contract '{show.value('--contract-id')}' has no CA certificate", hint="vote the CA first")
    scenario.path(show.stdout).write_text(ca_pem)
    ingress = _listed_ingress(scenario, step, reporter)
    token = _token(scenario, step)
    ready, oip = _calls(step)
    reporter.note(f"the application waits for {ingress} (TLS pinned to the contract's CA)")
    results = _results(scenario)
    results["ready"] = _perform_call(scenario, ready, ingress, token)
    (stock,) = [i for i in step.invocations if i.program == "python" and i.args[0].endswith("oauth2_client.py")]
    results["score"] = _stock_score(scenario, stock, ingress)
    results["openInference"] = _perform_call(scenario, oip, ingress, token)
    infer = results["openInference"]["infer"]
    if infer["status"] != 200 or results["openInference"]["metadata"]["status"] != 200:
        raise ServiceUnavailableError(
            f"OIP v2 answered {infer['status']}: {infer['body']}", hint="see `cleanroom deployment logs`"
        )
    predictions = results["score"]["answer"].get("predictions")
    return (
        f"POST /score by the stock client: {predictions}; "
        f"OIP v2 infer by {infer['servedBy']} (model version {infer['body'].get('model_version')})"
    )


# -- blue/green ---------------------------------------------------------------------------------------
def propose_split(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`traffic propose --contract C --split A=P,...`, unless it is open or already applies."""
    from core.governance.traffic import parse_split

    line = _line(step, "governance", "traffic", "propose")
    contract_id, split = line.value("--contract"), parse_split(line.value("--split"))
    engine = scenario.engine(_persona(line))
    if engine.traffic(contract_id).get("split") == split or _open_proposals(
        engine, Action.SET_TRAFFIC_SPLIT, contract_id=contract_id
    ):
        return "already proposed"
    proposal = engine.propose_traffic_split(contract_id, split)
    return f"proposal {proposal['proposalId'][:8]} (split {line.value('--split')}) is {proposal['proposalState']}"


def _wait_applied(engine: PersonaEngine, contract_id: str, version: int) -> float:
    """Seconds until the clean room reports (a ``traffic_split`` event) that its ingress follows
    split ``version`` or a later one."""
    started = time.monotonic()
    while True:
        applied = [int(e.data.get("version", -1)) for e in engine.all_events(contract_id) if e.kind == TRAFFIC_EVENT]
        if applied and max(applied) >= version:
            return round(time.monotonic() - started, 3)
        if time.monotonic() - started > APPLIED_WITHIN_S:
            raise ServiceUnavailableError(
                f"the ingress of '{contract_id}' did not apply traffic split version {version} "
                f"within {APPLIED_WITHIN_S:.0f} s",
                hint="see `cleanroom deployment logs`",
            )
        time.sleep(0.2)


def _shares(served: dict[str, int]) -> dict[str, float]:
    total = sum(served.values())
    return {name: round(100.0 * count / total, 2) for name, count in served.items()} if total else {}


def observe_split(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`traffic show` (the voted split and its version), `event list` until the ingress applied
    it, then the application's requests: unpinned, then pinned by header."""
    show = _line(step, "governance", "traffic", "show")
    contract_id = show.value("--contract")
    feed = scenario.engine(_persona(show)).traffic(contract_id)
    if not feed.get("split"):
        raise ServiceUnavailableError(
            f"no traffic split of '{contract_id}' is accepted yet", hint="every member must accept the proposal"
        )
    applied = _wait_applied(scenario.engine(_persona(show)), contract_id, int(feed["version"]))
    ingress, token = _listed_ingress(scenario, step, reporter), _token(scenario, step)
    unpinned, pinned = (_perform_call(scenario, line, ingress, token) for line in _calls(step))
    results = _results(scenario)
    results["split"] = {
        "voted": feed["split"],
        "version": feed["version"],
        "appliedAfterSeconds": applied,
        **unpinned,
        "observedPercent": _shares(unpinned["servedBy"]),
    }
    results["pinned"] = pinned
    strays = {name: n for name, n in pinned["servedBy"].items() if name != pinned["pin"]}
    if strays or pinned["statuses"] != {"200": pinned["requests"]}:
        raise IntegrityError(
            f"requests pinned to '{pinned['pin']}' were answered {pinned['statuses']}, served by {pinned['servedBy']}",
            hint="the ingress must honour X-Cleanroom-Version",
        )
    return (
        f"{unpinned['requests']} requests served {unpinned['servedBy']} ({results['split']['observedPercent']} % "
        f"of a voted {feed['split']}); {pinned['requests']} pinned to {pinned['pin']}: {pinned['servedBy']}"
    )


def rollback(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`traffic rollback --contract C --to A` on one member's signature, `event list` until the
    ingress applied it, then the application's requests: every one must land on A."""
    line = _line(step, "governance", "traffic", "rollback")
    contract_id, target = line.value("--contract"), line.value("--to")
    engine = scenario.engine(_persona(line))
    feed = engine.traffic(contract_id)
    if feed.get("rolledBackTo") != target:
        feed = engine.rollback_traffic(contract_id, target)
    applied = _wait_applied(
        scenario.engine(_persona(_line(step, "governance", "contract", "event", "list"))), contract_id, feed["version"]
    )
    (call,) = _calls(step)
    observed = _perform_call(scenario, call, _listed_ingress(scenario, step, reporter), _token(scenario, step))
    _results(scenario)["rollback"] = {
        "by": engine.persona,
        "to": target,
        "version": feed["version"],
        "appliedAfterSeconds": applied,
        **observed,
    }
    if set(observed["servedBy"]) != {target}:
        raise IntegrityError(
            f"after the rollback to '{target}' requests were served by {observed['servedBy']}",
            hint="the ingress must follow the rollback",
        )
    return f"rolled back to {target} by {engine.persona} alone; {observed['requests']} requests: {observed['servedBy']}"


# -- refusals and usage -------------------------------------------------------------------------------
def burst(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """The application's token, then its burst: past its voted limit it must meet 429 with Retry-After."""
    (call,) = _calls(step)
    token_line = _line(step, "governance", "app", "token")
    ingress = _ingress(scenario, _persona(token_line), token_line.value("--contract"), reporter)
    seen = _perform_call(scenario, call, ingress, _token(scenario, step))
    limit = _results(scenario).get("application", {}).get("rateLimitPerMinute")
    _results(scenario)["rateLimit"] = {"limitPerMinute": limit, **seen}
    if not seen["statuses"].get("429") or not seen["retryAfterSeconds"]:
        raise IntegrityError(
            f"{seen['requests']} requests at once were answered {seen['statuses']}: no 429 with Retry-After",
            hint=f"the ingress must hold the application to its voted {limit} requests a minute",
        )
    return f"{seen['requests']} requests at once: {seen['statuses']}; Retry-After {seen['retryAfterSeconds']} s"


def revoke(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """The token the application holds, then `app revoke NAME` by one member alone, then the
    application's calls until the ingress refuses that token (timed from the revocation)."""
    token_line, revoke_line = _line(step, "governance", "app", "token"), _line(step, "governance", "app", "revoke")
    name, contract_id = revoke_line.args[-1], token_line.value("--contract")
    member = scenario.engine(_persona(revoke_line))
    if any(app["name"] == name and app.get("status") == "revoked" for app in member.client_apps()):
        raise ConflictError(
            f"'{name}' was revoked before the refusal of its token was measured (an interrupted run)",
            hint="run the scenario again in a new --workspace",
        )
    ingress = _ingress(scenario, _persona(token_line), contract_id, reporter)
    token = _token(scenario, step)
    member.revoke_client_app(name)
    revoked_at = time.monotonic()
    (call,) = _calls(step)
    refused = _perform_call(scenario, call, ingress, token, since=revoked_at)
    _results(scenario)["revocation"] = {"by": member.persona, "application": name, **refused}
    return f"'{name}' revoked by {member.persona} alone; its token got {refused['status']} after {refused['seconds']} s"


def usage(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`deployment stop` (the ingress hands governance its last minute of usage), then `event list`
    of the ``usage`` records: the application's requests, rows and refusals by status."""
    stop = _line(step, "deployment", "stop")
    stopped = perform_each(scenario, dataclasses.replace(step, invocations=(stop,)), reporter)
    events = _line(step, "governance", "contract", "event", "list")
    engine, contract_id = scenario.engine(_persona(events)), events.value("--id")
    caller = f"app:{_results(scenario).get('application', {}).get('name')}"
    started = time.monotonic()
    while True:
        records = [e.data for e in engine.all_events(contract_id) if e.kind == USAGE_EVENT]
        mine = [r["callers"][caller] for r in records if caller in r.get("callers", {})]
        if mine or time.monotonic() - started > USAGE_WITHIN_S:
            break
        time.sleep(0.2)
    if not mine:
        raise NotFoundError(
            f"governance holds no usage record of '{caller}' for '{contract_id}'",
            hint="the ingress reports usage every minute and when it stops",
        )
    refusals: dict[str, int] = {}
    for counts in mine:
        for status, count in counts.get("refusals", {}).items():
            refusals[status] = refusals.get(status, 0) + int(count)
    total = {
        "caller": caller,
        "records": len(records),
        "requests": sum(int(c.get("requests", 0)) for c in mine),
        "rows": sum(int(c.get("rows", 0)) for c in mine),
        "refusals": dict(sorted(refusals.items())),
    }
    _results(scenario)["usage"] = total
    return f"{stopped}; {caller}: {total['requests']} requests, {total['rows']} rows, refusals {total['refusals']}"
