"""State names are enums in core whose values are the wire format: renaming a member must not
change a byte of what governance stores, signs or returns, or of the runtime's events."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import cbor2

from core.config.canonical import canonical_json
from core.governance.model_registry import ModelStatus
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


# Every state a comparison could spell by hand: the values are read from the enum classes, so a
# state added to one is guarded from the day it exists.
STATE_ENUMS = (ProposalState, ContractState, MemberStatus, ModelStatus, DeploymentState, ApplicationState, OptionStatus)
STATE_VALUES = {member.value for enum in STATE_ENUMS for member in enum}
SCANNED = ("core", "tui")
# (file, comparison as ast.unparse prints it) -> why its literal is no state; keep this tiny
NOT_A_STATE: dict[tuple[str, str], str] = {}
ROOT = Path(__file__).resolve().parent.parent


def _literals(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _state_comparisons(root: Path) -> dict[tuple[str, str], str]:
    """(file, comparison) -> 'file:line: literal' for every ==, !=, in, not in against a state value."""
    found: dict[tuple[str, str], str] = {}
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=relative)):
                if not isinstance(node, ast.Compare):
                    continue
                operands = [node.left, *node.comparators]
                for index, op in enumerate(node.ops):
                    if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                        continue
                    for literal in _literals(operands[index]) + _literals(operands[index + 1]):
                        if literal in STATE_VALUES:
                            found[(relative, ast.unparse(node))] = f"{relative}:{node.lineno}: {literal!r}"
    return found


def test_no_comparison_spells_a_state_by_hand() -> None:
    found = _state_comparisons(ROOT)
    bare = [where for key, where in sorted(found.items()) if key not in NOT_A_STATE]
    assert not bare, "compare with the enum member, not its string: " + "; ".join(bare)
    stale = sorted(set(NOT_A_STATE) - set(found))
    assert not stale, f"allowlisted comparisons no longer in the source, remove them: {stale}"


def test_the_scan_names_each_bare_state_by_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "tui").mkdir()
    (tmp_path / "core" / "governance").mkdir(parents=True)
    (tmp_path / "core" / "governance" / "votes.py").write_text(
        "def f(c, s, v):\n"
        "    if c['state'] != 'Accepted':\n"
        "        return s in ('x', 'verified')\n"
        "    return v == 'accept' or s == ContractState.ACCEPTED or s < 'running'\n"
    )
    found = _state_comparisons(tmp_path)
    # 'accept' is a vote, not a state; ordering comparisons are no state tests; the member passes
    assert sorted(found.values()) == [
        "core/governance/votes.py:2: 'Accepted'",
        "core/governance/votes.py:3: 'verified'",
    ]
