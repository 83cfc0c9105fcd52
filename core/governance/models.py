"""The governance vocabulary: states, actions, votes, options, and the errors the service maps to HTTP.

Names follow CCF and the Azure clean-room governance service, so a reader who knows those
recognises every state; the JSON the service returns uses their camelCase field names.
"""

from __future__ import annotations

import re
from typing import Any

from core.config.canonical import document_hash
from core.errors import ConflictError, InvalidInputError


class ProposalState:
    OPEN = "Open"
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    WITHDRAWN = "Withdrawn"
    FAILED = "Failed"      # accepted, but applying it raised
    DROPPED = "Dropped"    # superseded or invalidated before it closed

    CLOSED = frozenset({ACCEPTED, REJECTED, WITHDRAWN, FAILED, DROPPED})


class ContractState:
    DRAFT = "Draft"
    PROPOSED = "Proposed"
    ACCEPTED = "Accepted"


class MemberStatus:
    ACCEPTED = "Accepted"  # voted in by set_member; may not vote until it activates
    ACTIVE = "Active"


class Vote:
    ACCEPT = "accept"
    REJECT = "reject"
    ALL = (ACCEPT, REJECT)


class Action:
    SET_CONTRACT = "set_contract"
    SET_DEPLOYMENT_SPEC = "set_deployment_spec"
    SET_CLEAN_ROOM_POLICY = "set_clean_room_policy"
    ENABLE_CA = "enable_ca"
    ENABLE_LOGGING = "enable_logging"
    DISABLE_LOGGING = "disable_logging"
    ENABLE_TELEMETRY = "enable_telemetry"
    DISABLE_TELEMETRY = "disable_telemetry"
    SET_MEMBER = "set_member"

    ALL = (SET_CONTRACT, SET_DEPLOYMENT_SPEC, SET_CLEAN_ROOM_POLICY, ENABLE_CA, ENABLE_LOGGING,
           DISABLE_LOGGING, ENABLE_TELEMETRY, DISABLE_TELEMETRY, SET_MEMBER)
    # action -> (runtime option, value) for the proposal-governed options
    OPTION_ACTIONS = {
        ENABLE_LOGGING: ("logging", "enabled"), DISABLE_LOGGING: ("logging", "disabled"),
        ENABLE_TELEMETRY: ("telemetry", "enabled"), DISABLE_TELEMETRY: ("telemetry", "disabled"),
    }


# contract document kinds set by proposals: (kind stored, action that sets it)
DOCUMENT_ACTIONS = {"deployment_spec": Action.SET_DEPLOYMENT_SPEC,
                    "clean_room_policy": Action.SET_CLEAN_ROOM_POLICY}
RUNTIME_OPTIONS = ("execution", "logging", "telemetry")
EVENT_CATEGORIES = ("audit", "telemetry", "logging")
# ``attestation_type`` claims of services acting beside the clean room (the key service recording
# releases): they vouch for an event, never for a workload, so they get no secrets or certificates
SERVICE_ATTESTATION_TYPES = frozenset({"key-service"})

_CONTRACT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_contract_id(contract_id: str) -> str:
    if not isinstance(contract_id, str) or not _CONTRACT_ID.match(contract_id):
        raise InvalidInputError(f"contract id {contract_id!r} is not valid",
                                hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return contract_id


class StaleVersionError(ConflictError):
    """The caller's version token is not the current one (HTTP 412): someone else edited first."""


def policy_hash_of(policy: dict[str, Any]) -> str:
    """The measurement an attested clean room must present for an accepted clean-room policy.

    The runtime's policy document is ``{"policy": {...}, "policy_hash": H(policy)}``: the hash is
    always recomputed, never taken on trust, and a document whose stated hash disagrees is
    refused. Any other document is itself the measured policy and its canonical hash counts.
    """
    inner = policy.get("policy")
    if isinstance(inner, dict):
        recomputed = document_hash(inner)
        stated = policy.get("policy_hash")
        if stated is not None and stated != recomputed:
            raise InvalidInputError("clean-room policy states a policy_hash that is not the hash of its policy",
                                    hint="re-generate it with `cleanroom governance deployment generate`")
        return recomputed
    return document_hash(policy)
