"""The governance vocabulary: states, actions, votes, options, and the errors the service maps to HTTP.

Names follow CCF and the Azure clean-room governance service, so a reader who knows those
recognises every state; the JSON the service returns uses their camelCase field names.
"""

from __future__ import annotations

import re
from enum import StrEnum

from core.errors import ConflictError, InvalidInputError


class ProposalState(StrEnum):
    """A proposal's state, as CCF names it. The values are the wire format and the ledger's, so
    they never change; members compare equal to the plain strings read back from JSON."""

    OPEN = "Open"
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    WITHDRAWN = "Withdrawn"
    FAILED = "Failed"  # accepted, but applying it raised
    DROPPED = "Dropped"  # superseded or invalidated before it closed


class ContractState(StrEnum):
    """Draft -> Proposed -> Accepted; an update of a proposed contract goes back to Draft."""

    DRAFT = "Draft"
    PROPOSED = "Proposed"
    ACCEPTED = "Accepted"


class MemberStatus(StrEnum):
    ACCEPTED = "Accepted"  # voted in by set_member; may not vote until it activates
    ACTIVE = "Active"


class Vote(StrEnum):
    """A ballot: accept or reject (any reject vetoes under the default constitution)."""

    ACCEPT = "accept"
    REJECT = "reject"


class Action(StrEnum):
    """What a proposal asks governance to do."""

    SET_CONTRACT = "set_contract"
    SET_DEPLOYMENT_SPEC = "set_deployment_spec"
    SET_CLEAN_ROOM_POLICY = "set_clean_room_policy"
    ENABLE_CA = "enable_ca"
    ENABLE_LOGGING = "enable_logging"
    DISABLE_LOGGING = "disable_logging"
    ENABLE_TELEMETRY = "enable_telemetry"
    DISABLE_TELEMETRY = "disable_telemetry"
    ENABLE_LOSS_TELEMETRY = "enable_loss_telemetry"
    DISABLE_LOSS_TELEMETRY = "disable_loss_telemetry"
    SET_MEMBER = "set_member"
    SET_PRIVACY_BUDGET = "set_privacy_budget"
    SET_TRAFFIC_SPLIT = "set_traffic_split"  # blue/green: voted; a rollback by one member needs none
    PUBLISH_MODEL_VERSION = "publish_model_version"  # every member votes; unpublishing needs one
    REGISTER_CLIENT_APP = "register_client_app"  # every member votes; any member revokes alone


class OptionStatus(StrEnum):
    """A runtime option's status (execution, logging, telemetry, loss_telemetry)."""

    ENABLED = "enabled"
    DISABLED = "disabled"


# Membership tests on plain strings from requests: StrEnum members hash like their values.
VOTES = frozenset(Vote)
ACTIONS = frozenset(Action)
# action -> (runtime option, status) for the proposal-governed options
OPTION_ACTIONS: dict[str, tuple[str, OptionStatus]] = {
    Action.ENABLE_LOGGING: ("logging", OptionStatus.ENABLED),
    Action.DISABLE_LOGGING: ("logging", OptionStatus.DISABLED),
    Action.ENABLE_TELEMETRY: ("telemetry", OptionStatus.ENABLED),
    Action.DISABLE_TELEMETRY: ("telemetry", OptionStatus.DISABLED),
    # per-step loss is a function of the data: shown only when every member (each data owner) voted it
    Action.ENABLE_LOSS_TELEMETRY: ("loss_telemetry", OptionStatus.ENABLED),
    Action.DISABLE_LOSS_TELEMETRY: ("loss_telemetry", OptionStatus.DISABLED),
}


# contract document kinds set by proposals: (kind stored, action that sets it)
DOCUMENT_ACTIONS = {"deployment_spec": Action.SET_DEPLOYMENT_SPEC, "clean_room_policy": Action.SET_CLEAN_ROOM_POLICY}
RUNTIME_OPTIONS = ("execution", "logging", "telemetry", "loss_telemetry")
# the options a proposal sets (execution is the kill switch, set by any member alone)
VOTED_OPTIONS = ("logging", "telemetry", "loss_telemetry")
EVENT_CATEGORIES = ("audit", "telemetry", "logging")
# ``attestation_type`` claims of services acting beside the clean room (the key service recording
# releases): they vouch for an event, never for a workload, so they get no secrets or certificates
SERVICE_ATTESTATION_TYPES = frozenset({"key-service"})

_CONTRACT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_contract_id(contract_id: str) -> str:
    if not isinstance(contract_id, str) or not _CONTRACT_ID.match(contract_id):
        raise InvalidInputError(
            f"contract id {contract_id!r} is not valid",
            hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return contract_id


class StaleVersionError(ConflictError):
    """The caller's version token is not the current one (HTTP 412): someone else edited first."""
