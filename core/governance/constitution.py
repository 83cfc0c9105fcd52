"""The default constitution: which proposals are valid, when they pass, and what passing does.

Like CCF's JavaScript constitution it has three parts, kept pure of HTTP and SQL so the rules
can be read in one place:

* ``validate(action, args, state)``: refuse a malformed or pointless proposal up front;
* ``resolve(ballots, active_members)``: accepted when every *active* member has accepted,
  rejected as soon as any member rejects (a veto), otherwise still open;
* ``apply(action, args, state, proposal_id)``: make the accepted proposal take effect. If it
  raises, the proposal ends ``Failed`` and nothing it did is kept.

``state`` is the service's transaction object (``core.governance.state.GovernanceState``); the
constitution calls only its small read/write methods listed in ``ConstitutionState``.
"""

from __future__ import annotations

from typing import Any, Protocol

from core.config.canonical import document_hash
from core.config.merge import SPEC_FIELDS, parse_contract_spec
from core.crypto.identity import load_certificate, member_id_of
from core.errors import ConflictError, InvalidInputError, NotFoundError
from core.governance.client_apps import check_registration
from core.governance.model_registry import check_name
from core.governance.models import (
    ACTIONS,
    OPTION_ACTIONS,
    Action,
    ContractState,
    ProposalState,
    StaleVersionError,
    Vote,
    check_contract_id,
)
from core.keys.measurement import policy_hash_of


class ConstitutionState(Protocol):
    def contract(self, contract_id: str) -> dict[str, Any] | None: ...
    def member(self, member_id: str) -> dict[str, Any] | None: ...
    def mark_contract_accepted(self, contract_id: str, contract_hash: str) -> None: ...
    def set_document(self, contract_id: str, kind: str, data: dict[str, Any], proposal_id: str) -> None: ...
    def set_option(self, contract_id: str, option: str, status: str) -> None: ...
    def enable_ca(self, contract_id: str, proposal_id: str) -> None: ...
    def add_member(self, cert_pem: str, name: str, data: dict[str, Any]) -> None: ...
    def check_privacy_declarations(self, contract_id: str, data: dict[str, Any]) -> None: ...
    def register_privacy(self, contract_id: str, data: dict[str, Any]) -> None: ...
    def check_privacy_raise(self, dataset: str, epsilon_total: float) -> None: ...
    def raise_privacy_budget(self, dataset: str, epsilon_total: float, proposal_id: str) -> None: ...
    def check_traffic_split(self, contract_id: str, split: object) -> dict[str, int]: ...
    def set_traffic_split(self, contract_id: str, split: object, proposal_id: str) -> None: ...
    def check_model_publish(self, model: str, version: str) -> None: ...
    def check_served_models(self, data: dict[str, Any]) -> None: ...
    def publish_model_version(self, model: str, version: str, proposal_id: str) -> None: ...
    def client_app(self, name: str) -> dict[str, Any] | None: ...
    def register_client_app(self, app: dict[str, Any], proposal_id: str) -> None: ...


def _contract_id(args: dict[str, Any]) -> str:
    if "contract_id" not in args:
        raise InvalidInputError("proposal args need a contract_id", hint="pass --contract-id")
    return check_contract_id(args["contract_id"])


def _accepted_contract(args: dict[str, Any], state: ConstitutionState, action: str) -> dict[str, Any]:
    contract_id = _contract_id(args)
    contract = state.contract(contract_id)
    if contract is None:
        raise NotFoundError(
            f"contract '{contract_id}' does not exist", hint="create it with `cleanroom governance contract create`"
        )
    if contract["state"] != ContractState.ACCEPTED:
        raise ConflictError(
            f"contract '{contract_id}' is {contract['state']}, so {action} cannot be proposed yet",
            hint="get the contract accepted first (`cleanroom governance contract vote`)",
        )
    return contract


def check_contract_data(data: object) -> None:
    """Refuse contract data the runtime would act on unless it is a valid clean-room spec.

    Why here: the runtime turns an accepted contract's spec into routes, mounts and asset
    names; validated only by the CLI that built it, a member sending the document directly
    could put a prefix route (``POST /*``) or a path-like asset name in front of voters and the
    runtime. So a document carrying any field the runtime reads (applications, datasources,
    datasinks, network_policy, logging, telemetry, schema_version) with a non-empty value must
    pass the same pydantic models as ``cleanroom config view`` plus the consistency merging
    guarantees. A document without them is an opaque draft: with no applications, no
    deployment spec can be generated from it (``core.runtime.deployment.deployment_spec``).
    """
    if not isinstance(data, dict):
        raise InvalidInputError(
            "contract data must be a JSON object", hint="pass the merged spec from `cleanroom config view` as --data"
        )
    if any(data.get(key) not in (None, [], {}) for key in SPEC_FIELDS):
        parse_contract_spec(data, source="contract data")


def validate(action: object, args: object, state: ConstitutionState) -> None:
    """Refuse a proposal that could never apply. Raises a CleanroomError naming the fix."""
    if not isinstance(action, str) or action not in ACTIONS:
        raise InvalidInputError(f"proposal action {action!r} is not known", hint=f"use one of: {', '.join(Action)}")
    if not isinstance(args, dict):
        raise InvalidInputError("proposal args must be a JSON object", hint="pass the args as {...}")
    if action == Action.SET_CONTRACT:
        contract_id = _contract_id(args)
        contract = state.contract(contract_id)
        if contract is None:
            raise NotFoundError(
                f"contract '{contract_id}' does not exist", hint="create it with `cleanroom governance contract create`"
            )
        if contract["state"] == ContractState.ACCEPTED:
            raise ConflictError(
                f"contract '{contract_id}' is already accepted and immutable",
                hint="create a new contract id for a changed contract",
            )
        if contract["state"] == ContractState.PROPOSED:
            raise ConflictError(
                f"contract '{contract_id}' is already proposed ({contract['proposalId']})",
                hint="vote on that proposal, or withdraw it first",
            )
        if args.get("version") != contract["version"]:
            raise StaleVersionError(
                f"contract '{contract_id}' version {args.get('version')!r} is not the current one",
                hint="run `cleanroom governance contract show` and propose its current version",
            )
        check_contract_data(contract["data"])  # drafts stored before validation existed
        state.check_privacy_declarations(contract_id, contract["data"])
        state.check_served_models(contract["data"])  # a registry version it mounts must be servable
    elif action in (Action.SET_DEPLOYMENT_SPEC, Action.SET_CLEAN_ROOM_POLICY):
        _accepted_contract(args, state, action)
        if not isinstance(args.get("data"), dict):
            raise InvalidInputError(
                f"{action} needs the document as a JSON object in 'data'",
                hint="pass the file produced by `cleanroom governance deployment generate`",
            )
        if action == Action.SET_CLEAN_ROOM_POLICY:
            policy_hash_of(args["data"])
        else:
            state.check_served_models(args["data"])
    elif action == Action.ENABLE_CA or action in OPTION_ACTIONS:
        _accepted_contract(args, state, action)
    elif action == Action.SET_PRIVACY_BUDGET:
        dataset, epsilon_total = _privacy_budget_args(args)
        state.check_privacy_raise(dataset, epsilon_total)
    elif action == Action.SET_TRAFFIC_SPLIT:
        state.check_traffic_split(_contract_id(args), args.get("split"))
    elif action == Action.PUBLISH_MODEL_VERSION:
        state.check_model_publish(*_model_version_args(args))
    elif action == Action.REGISTER_CLIENT_APP:
        check_registration(args, state)
    elif action == Action.SET_MEMBER:
        cert = load_certificate(args.get("cert", ""))
        if state.member(member_id_of(cert)) is not None:
            raise ConflictError(f"member {member_id_of(cert)[:16]}… is already in the consortium", hint="nothing to do")


def _privacy_budget_args(args: dict[str, Any]) -> tuple[str, float]:
    """A raise names a dataset as OWNER/NAME (the id every party sees) and a finite epsilon_total."""
    dataset, epsilon_total = args.get("dataset"), args.get("epsilon_total")
    if not isinstance(dataset, str) or "/" not in dataset:
        raise InvalidInputError(
            f"set_privacy_budget needs a dataset as OWNER/NAME, not {dataset!r}",
            hint="see `cleanroom governance privacy show` for dataset ids",
        )
    if isinstance(epsilon_total, bool) or not isinstance(epsilon_total, int | float) or not 0 < epsilon_total < 1e6:
        raise InvalidInputError(
            f"set_privacy_budget epsilon_total {epsilon_total!r} is not a positive number",
            hint="pass --epsilon-total X",
        )
    return dataset, float(epsilon_total)


def _model_version_args(args: dict[str, Any]) -> tuple[str, str]:
    """A publish names the registry's model and one of its versions (``core.governance.model_registry``)."""
    return check_name("model name", args.get("model")), check_name("model version", args.get("version"))


def resolve(ballots: dict[str, str], active_members: set[str]) -> str:
    """Open, Accepted or Rejected from the ballots cast so far (only active members count)."""
    votes = {member: vote for member, vote in ballots.items() if member in active_members}
    if any(vote == Vote.REJECT for vote in votes.values()):
        return ProposalState.REJECTED
    if active_members and all(votes.get(member) == Vote.ACCEPT for member in active_members):
        return ProposalState.ACCEPTED
    return ProposalState.OPEN


def apply(action: str, args: dict[str, Any], state: ConstitutionState, proposal_id: str) -> None:
    """Make an accepted proposal take effect (within the ballot's transaction)."""
    if action == Action.SET_CONTRACT:
        contract = state.contract(args["contract_id"])
        if contract is None or contract["version"] != args["version"]:
            raise ConflictError("the contract changed after it was proposed", hint="propose it again")
        state.check_served_models(contract["data"])  # again: a version may be unpublished while the vote ran
        state.mark_contract_accepted(args["contract_id"], document_hash(contract["data"]))
        state.register_privacy(args["contract_id"], contract["data"])
    elif action == Action.SET_DEPLOYMENT_SPEC:
        state.set_document(args["contract_id"], "deployment_spec", args["data"], proposal_id)
    elif action == Action.SET_CLEAN_ROOM_POLICY:
        state.set_document(args["contract_id"], "clean_room_policy", args["data"], proposal_id)
    elif action == Action.ENABLE_CA:
        state.enable_ca(args["contract_id"], proposal_id)
    elif action in OPTION_ACTIONS:
        option, status = OPTION_ACTIONS[action]
        state.set_option(args["contract_id"], option, status)
    elif action == Action.SET_PRIVACY_BUDGET:
        state.raise_privacy_budget(*_privacy_budget_args(args), proposal_id)
    elif action == Action.SET_TRAFFIC_SPLIT:
        state.set_traffic_split(args["contract_id"], args["split"], proposal_id)
    elif action == Action.PUBLISH_MODEL_VERSION:
        state.publish_model_version(*_model_version_args(args), proposal_id)
    elif action == Action.REGISTER_CLIENT_APP:  # checked again: a member or contract may be gone
        state.register_client_app(check_registration(args, state), proposal_id)
    elif action == Action.SET_MEMBER:
        state.add_member(args["cert"], str(args.get("name", "")), dict(args.get("member_data", {})))
