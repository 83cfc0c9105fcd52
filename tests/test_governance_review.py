"""What a party votes on, readable: the summary and the field-level diff (core.governance.review)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config.canonical import document_hash
from core.errors import InvalidInputError, NotFoundError
from core.governance import launcher
from core.governance.client import deploy_to_workspace
from core.governance.review import compare, read_regenerated, render, summarize, voted_document
from core.runtime.deployment import deployment_spec, policy_document
from core.workspace import Workspace
from tests.cli_runner import cleanroom
from tests.spec_support import build_parties, merged_view, ok


@pytest.fixture(scope="module")
def view(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return merged_view(build_parties(tmp_path_factory.mktemp("W")))


def test_summary_names_parties_assets_applications_policy_and_hash_without_certificates(view: dict) -> None:
    spec = view["spec"]
    text = render(summarize(spec))
    provider = next(p for p in spec["parties"] if p["persona"] == "provider")
    assert f"provider  member {provider['member_id'][:12]}" in text
    assert f"datasource model  owner provider ({provider['member_id'][:12]})\n      store local /" in text
    assert "trainer  owner hoster (" in text and "entrypoint containers/trainer" in text
    assert "command python -m trainer --epochs 1" in text and "cpu 2.0  memory 4.0 GiB" in text
    assert "mount model -> /mnt/model  read-only" in text
    assert "mount trained-model -> /mnt/output  write-only" in text
    assert "inbound POST /infer" in text and "outbound denied" in text
    assert "telemetry enabled -> datasink consumer-telemetry, owner consumer (" in text and "logging off" in text
    assert f"document sha256 {view['specHash']}" in text, "the hash every party recomputes"
    assert "BEGIN CERTIFICATE" not in text and provider["member_cert"][40:80] not in text


def test_deployment_spec_and_policy_summaries_state_the_policy_hash(view: dict) -> None:
    spec = deployment_spec("finetune-1", view["spec"])
    policy = policy_document(spec)
    names = {p["member_id"]: p["persona"] for p in view["spec"]["parties"]}
    spec_text = render(summarize(spec, names))
    assert f"policy hash {policy['policy_hash']} (what its clean room must attest)" in spec_text
    assert f"contract hash {view['specHash']}" in spec_text and "owner hoster (" in spec_text
    policy_text = render(summarize(policy, names))
    assert f"policy hash {policy['policy_hash']} (recomputed" in policy_text
    assert "mount training-data -> /mnt/data  read-only" in policy_text
    forged = {**policy, "policy_hash": "0" * 64}
    assert "policy hash INVALID" in render(summarize(forged, names)), "a stated hash is never taken on trust"


def test_identical_only_when_canonical_json_is_equal(view: dict) -> None:
    spec = view["spec"]
    same = json.loads(json.dumps(spec, indent=4))  # other whitespace and order: the same document
    assert compare(spec, same).identical
    assert compare(spec, same).lines() == [f"identical: both documents hash to {document_hash(spec)}"]


def test_field_level_diff_lines_up_named_things_by_name(view: dict) -> None:
    spec = view["spec"]
    changed = json.loads(json.dumps(spec))
    changed["applications"][0]["cpu"] = 8.0
    changed["network_policy"]["allow_all_outbound"] = True
    changed["datasources"] = list(reversed(changed["datasources"]))  # order alone is a difference...
    diff = compare(spec, changed)
    assert not diff.identical
    paths = [change.path for change in diff.changes]
    assert "applications[trainer].cpu" in paths and "network_policy.allow_all_outbound" in paths
    assert not any(path.startswith("datasources") for path in paths), "...that field paths do not show"
    assert diff.lines()[0].startswith("DIFFERENT: voted ")
    assert "~ applications[trainer].cpu: voted 2.0, yours 8.0" in diff.lines()
    del changed["applications"][0]["memory_gb"]
    assert "- applications[trainer].memory_gb: 4.0  (only in the voted document)" in compare(spec, changed).lines()


def test_voted_document_is_the_contract_data_for_set_contract() -> None:
    contract = {"id": "c1", "data": {"applications": []}, "version": "v1"}
    assert voted_document({"action": "set_contract", "args": {"contract_id": "c1"}}, contract) == contract["data"]
    assert voted_document(
        {"action": "set_clean_room_policy", "args": {"contract_id": "c1", "data": {"p": 1}}}, None
    ) == {"p": 1}
    assert voted_document({"action": "enable_telemetry", "args": {"contract_id": "c1"}}, None) == {"contract_id": "c1"}


def test_regenerated_file_is_unwrapped_and_bad_files_are_one_line_errors(view: dict, tmp_path: Path) -> None:
    wrapped = tmp_path / "spec.json"
    wrapped.write_text(json.dumps(view))
    assert read_regenerated(wrapped) == view["spec"]
    with pytest.raises(NotFoundError, match="does not exist"):
        read_regenerated(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InvalidInputError, match="not a readable JSON document"):
        read_regenerated(broken)


# -- `contract show` / `proposal show` against a real governance service ---------------------------
@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("C")
    ws = build_parties(root)
    state = root / "governance"
    launcher.create(state, [Workspace.open(path).identity.cert_pem for path in ws.values()])
    info = launcher.start(state)
    try:
        for path in ws.values():
            deploy_to_workspace(Workspace.open(path), info.endpoint, info.service_cert_pem)
        spec_file = root / "spec.json"
        spec_file.write_text(ok("config", "view", "--configs", *ws.values(), "--output", "json").stdout)
        ok("-w", ws["hoster"], "governance", "contract", "create", "--id", "finetune-1", "--data", f"@{spec_file}")
        version = ok(
            "-w", ws["hoster"], "governance", "contract", "show", "--id", "finetune-1", "--query", "version"
        ).stdout.strip()
        ok("-w", ws["hoster"], "governance", "contract", "propose", "--id", "finetune-1", "--version", version)
        yield {**ws, "spec": spec_file}
    finally:
        launcher.stop(state)


def test_contract_show_is_a_readable_summary_and_json_stays_raw(consortium: dict[str, Path]) -> None:
    shown = ok("-w", consortium["consumer"], "governance", "contract", "show", "--id", "finetune-1").stdout
    assert "state" in shown and "Proposed" in shown and "what a ballot accepts" in shown
    assert "datasource model  owner provider (" in shown and "cpu 2.0  memory 4.0 GiB" in shown
    assert "mount trained-model -> /mnt/output  write-only" in shown
    assert "BEGIN CERTIFICATE" not in shown, "certificates are summarised as persona and short id"
    raw = json.loads(
        ok("-w", consortium["consumer"], "governance", "contract", "show", "--id", "finetune-1", "-o", "json").stdout
    )
    assert raw["data"]["parties"][0]["member_cert"].startswith("-----BEGIN CERTIFICATE-----")


def test_contract_and_proposal_show_diff_say_identical_or_name_the_fields(
    consortium: dict[str, Path], tmp_path: Path
) -> None:
    consumer, spec = consortium["consumer"], consortium["spec"]
    same = ok("-w", consumer, "governance", "contract", "show", "--id", "finetune-1", "--diff", spec).stdout
    assert "identical: both documents hash to" in same
    proposal_id = ok(
        "-w", consumer, "governance", "contract", "show", "--id", "finetune-1", "--query", "proposalId"
    ).stdout.strip()
    assert (
        "identical"
        in ok("-w", consumer, "governance", "proposal", "show", "--proposal-id", proposal_id, "--diff", spec).stdout
    )
    tampered = json.loads(spec.read_text())
    tampered["spec"]["applications"][0]["memory_gb"] = 64.0
    other = tmp_path / "mine.json"
    other.write_text(json.dumps(tampered))
    differs = ok("-w", consumer, "governance", "proposal", "show", "--proposal-id", proposal_id, "--diff", other).stdout
    assert "DIFFERENT" in differs and "~ applications[trainer].memory_gb: voted 4.0, yours 64.0" in differs
    assert (
        ok(
            "-w",
            consumer,
            "governance",
            "proposal",
            "show",
            "--proposal-id",
            proposal_id,
            "--diff",
            other,
            "-o",
            "json",
            "--query",
            "identical",
        ).stdout.strip()
        == "false"
    )
    ok("-w", consortium["hoster"], "governance", "proposal", "vote", "--proposal-id", proposal_id, "--action", "accept")
    shown = ok("-w", consumer, "governance", "proposal", "show", "--proposal-id", proposal_id).stdout
    assert "consumer · not yet, hoster ✔ accept, provider · not yet" in shown and "trainer  owner hoster (" in shown
    missing = cleanroom(
        "-w", consumer, "governance", "contract", "show", "--id", "finetune-1", "--diff", tmp_path / "nope.json"
    )
    assert missing.code != 0 and len(missing.stderr.strip().splitlines()) == 1 and "does not exist" in missing.stderr
