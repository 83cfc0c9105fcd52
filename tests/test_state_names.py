"""State names are enums in core whose values are the wire format: renaming a member must not
change a byte of what governance stores, signs or returns, or of the runtime's events."""

from __future__ import annotations

import json

import cbor2

from core.config.canonical import canonical_json
from core.governance.models import (
    ACTIONS,
    OPTION_ACTIONS,
    VOTES,
    Action,
    ContractState,
    MemberStatus,
    OptionStatus,
    ProposalState,
    Vote,
)
from core.keys.release import KeyReleaseEvent
from core.runtime.lifecycle import LIFECYCLE_EVENTS, LIVE_STATES, ApplicationState, DeploymentState, LifecycleEvent

# the values as CCF, the ledger and the events have always spelled them
WIRE = {
    ProposalState: ["Open", "Accepted", "Rejected", "Withdrawn", "Failed", "Dropped"],
    ContractState: ["Draft", "Proposed", "Accepted"],
    MemberStatus: ["Accepted", "Active"],
    Vote: ["accept", "reject"],
    Action: [
        "set_contract",
        "set_deployment_spec",
        "set_clean_room_policy",
        "enable_ca",
        "enable_logging",
        "disable_logging",
        "enable_telemetry",
        "disable_telemetry",
        "enable_loss_telemetry",
        "disable_loss_telemetry",
        "set_member",
        "set_privacy_budget",
        "set_traffic_split",
        "publish_model_version",
        "register_client_app",
    ],
    OptionStatus: ["enabled", "disabled"],
    LifecycleEvent: ["deploying", "attested", "keys_released", "running", "stopping", "exited", "sealed", "failed"],
    DeploymentState: ["starting", "running", "exited", "failed", "lost"],
    ApplicationState: ["deploying", "attested", "keys_released", "running", "stopped", "exited", "failed"],
    KeyReleaseEvent: ["key_released", "key_release_refused"],
}


def test_values_are_the_wire_names() -> None:
    assert {enum: [member.value for member in enum] for enum in WIRE} == WIRE


def test_members_encode_exactly_as_their_plain_strings() -> None:
    document = {"state": ProposalState.OPEN, "ballots": {"m": Vote.ACCEPT}, "type": LifecycleEvent.KEYS_RELEASED}
    plain = {"state": "Open", "ballots": {"m": "accept"}, "type": "keys_released"}
    assert canonical_json(document) == canonical_json(plain)
    assert json.dumps(document) == json.dumps(plain)
    assert cbor2.dumps(document, canonical=True) == cbor2.dumps(plain, canonical=True)
    assert f"{ContractState.ACCEPTED}" == "Accepted"


def test_plain_strings_from_json_compare_and_look_up_as_members() -> None:
    read_back = json.loads(json.dumps({"state": ProposalState.WITHDRAWN, "vote": "reject", "status": "running"}))
    assert read_back["state"] == ProposalState.WITHDRAWN
    assert read_back["vote"] in VOTES and "maybe" not in VOTES
    assert read_back["status"] in LIVE_STATES and "exited" not in LIVE_STATES
    assert "sealed" in LIFECYCLE_EVENTS and "key_released" not in LIFECYCLE_EVENTS
    assert "set_contract" in ACTIONS and "drop_table" not in ACTIONS
    assert OPTION_ACTIONS["enable_logging"] == ("logging", "enabled")
