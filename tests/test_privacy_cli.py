"""`cleanroom governance privacy show|history|verify` and `privacy budget lower|propose-raise`,
run as the CLI (click, in process) against a real governance service on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from core.errors import AccessDeniedError, CleanroomError, IntegrityError
from core.governance import launcher
from core.governance.client import deploy_to_workspace
from core.workspace import Workspace
from tests.governance_support import Attester, Consortium
from tests.privacy_support import HOSTER, LABELS, TEXTS, CleanRoom, opacus_epsilon, private_contract
from tui.cli import cli

PERSONAS = ("hoster", "texts-provider", "labels-provider")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Three persona workspaces on one service; one recorded run and one crashed run on 'cli'."""
    root = tmp_path_factory.mktemp("privacy-cli")
    attester = Attester(root)
    workspaces = [Workspace.init(root / persona, persona) for persona in PERSONAS]
    launcher.create(
        root / "service", [w.identity.cert_pem for w in workspaces], window_seconds=60, attestation=attester.spec
    )
    gov = Consortium(root / "service", [w.identity for w in workspaces], launcher.start(root / "service"))
    for workspace in workspaces:
        deploy_to_workspace(workspace, gov.info.endpoint, gov.info.service_cert_pem)
    contract = private_contract(gov, root, "cli", ("cli-texts", "cli-labels"))
    finished = CleanRoom(gov, attester, "cli", contract["policy_hash"])
    finished.record(finished.reserve()["runId"])
    CleanRoom(gov, attester, "cli", contract["policy_hash"]).reserve()  # crashes: never records
    yield gov, {persona: w.root for persona, w in zip(PERSONAS, workspaces, strict=True)}, root
    gov.close()


def invoke(workspace: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["-w", str(workspace), "governance", "privacy", *args])
    if result.exception is not None and not isinstance(result.exception, CleanroomError):
        raise result.exception
    return result


def as_json(workspace: Path, *args: str) -> Any:
    result = invoke(workspace, *args, "-o", "json")
    assert result.exit_code == 0, result.exception
    return json.loads(result.stdout)


def test_show_prints_every_budget_for_scripts_and_people(world) -> None:
    gov, ws, _ = world
    rows = {row["name"]: row for row in as_json(ws["hoster"], "show")}
    spent = opacus_epsilon(1.1, 0.01, 500, 1e-6)
    texts = rows["cli-texts"]
    assert texts["ownerName"] == "texts-provider" and texts["owner"] == gov.members[TEXTS].member_id
    assert (texts["spent"], texts["reserved"], texts["left"]) == (
        pytest.approx(spent),
        pytest.approx(3.0),
        pytest.approx(7.0 - spent),
    )
    left = invoke(ws["labels-provider"], "show", "--query", "[?name=='cli-labels'].left | [0]")
    assert float(left.stdout) == pytest.approx(7.0 - spent)
    table = invoke(ws["hoster"], "show").stdout
    assert "cli-texts" in table and "texts-provider" in table and "privacy budgets" in table


def test_history_lists_entries_in_ledger_order(world) -> None:
    _, ws, _ = world
    history = as_json(ws["texts-provider"], "history", "--dataset", "cli-texts")
    assert [item["kind"] for item in history] == ["register", "reserve", "record", "reserve"]
    assert [item["seqno"] for item in history] == sorted(item["seqno"] for item in history)
    assert history[2]["status"] == "recorded"
    table = invoke(ws["texts-provider"], "history").stdout
    assert "privacy history" in table and "reserve" in table


def test_verify_replays_an_export_offline_and_matches_the_service(world) -> None:
    gov, ws, root = world
    export = root / "ledger.jsonl"
    gov.clients[HOSTER].export_ledger(export)
    report = as_json(ws["labels-provider"], "verify", "--file", str(export))
    assert report["ok"] and report["comparedWithService"] and report["recordsRecomputed"] == 1
    assert {d["name"] for d in report["datasets"]} >= {"cli-texts", "cli-labels"}
    fetched = as_json(ws["hoster"], "verify")  # exported from the service on the spot
    assert fetched["comparedWithService"] and fetched["datasets"] == report["datasets"]


def test_verify_without_a_service_prints_the_recomputed_budgets(world, tmp_path: Path) -> None:
    gov, _, _ = world
    export = tmp_path / "ledger.jsonl"
    gov.clients[HOSTER].export_ledger(export)
    outsider = Workspace.init(tmp_path / "auditor", "auditor").root  # no governance service deployed
    result = invoke(outsider, "verify", "--file", str(export), "-o", "json")
    assert result.exit_code == 0, result.exception
    assert json.loads(result.stdout)["comparedWithService"] is False
    assert "no service to compare with" in result.stderr


def test_verify_refuses_a_tampered_export(world, tmp_path: Path) -> None:
    gov, ws, _ = world
    export = tmp_path / "ledger.jsonl"
    gov.clients[HOSTER].export_ledger(export)
    lines = export.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"kind": "privacy.record"' in line)
    lines[index] = lines[index].replace('"privacy.record"', '"privacy.refuse"')
    export.write_text("\n".join(lines) + "\n")
    result = invoke(ws["hoster"], "verify", "--file", str(export))
    assert isinstance(result.exception, IntegrityError)
    assert "was altered" in str(result.exception)


def test_owner_lowers_its_budget_and_others_cannot(world) -> None:
    gov, ws, _ = world
    dataset = f"{gov.members[LABELS].member_id}/cli-labels"
    refused = invoke(ws["texts-provider"], "budget", "lower", "--dataset", dataset, "--epsilon-total", "9")
    assert isinstance(refused.exception, AccessDeniedError) and "only the owner" in str(refused.exception)
    lowered = invoke(ws["labels-provider"], "budget", "lower", "--dataset", "cli-labels", "--epsilon-total", "9")
    assert lowered.exit_code == 0, lowered.exception
    assert "lowered 'cli-labels' to epsilon 9" in lowered.stdout
    assert {r["name"]: r for r in as_json(ws["hoster"], "show")}["cli-labels"]["epsilonTotal"] == 9.0


def test_propose_raise_by_name_passes_when_every_member_accepts(world) -> None:
    gov, ws, _ = world
    proposal = as_json(ws["hoster"], "budget", "propose-raise", "--dataset", "cli-texts", "--epsilon-total", "12")
    assert proposal["action"] == "set_privacy_budget" and proposal["proposalState"] == "Open"
    assert proposal["args"] == {"dataset": f"{gov.members[TEXTS].member_id}/cli-texts", "epsilon_total": 12.0}
    for client in gov.clients:
        client.vote(proposal["proposalId"], "accept")
    assert {r["name"]: r for r in as_json(ws["hoster"], "show")}["cli-texts"]["epsilonTotal"] == 12.0
