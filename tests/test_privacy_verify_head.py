"""`cleanroom governance privacy verify --against`: a privacy-ledger export is checked against a
head the governance service signed, so an export cut at a checkpoint boundary (the last run's
spend missing), reordered or altered is refused in one line naming the first bad entry.

Run as the CLI (click, in process) against a real governance service on loopback; the exports
and heads are the service's own (``governance ledger export`` / ``governance ledger head``)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from core.errors import CleanroomError, IntegrityError, InvalidInputError, ServiceUnavailableError
from core.governance import launcher, ledger
from core.governance.client import deploy_to_workspace
from core.workspace import Workspace
from tests.governance_support import Attester, Consortium
from tests.privacy_support import CleanRoom, opacus_epsilon, private_contract
from tui.cli import cli

pytest.importorskip("opacus")

PERSONAS = ("hoster", "texts-provider", "labels-provider")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """One run reserved, a head saved (the service signs a checkpoint for it), then the run's
    record written and a second head saved: an export cut at the first head loses the record."""
    root = tmp_path_factory.mktemp("privacy-verify-head")
    attester = Attester(root)
    workspaces = [Workspace.init(root / persona, persona) for persona in PERSONAS]
    launcher.create(
        root / "service", [w.identity.cert_pem for w in workspaces], window_seconds=60, attestation=attester.spec
    )
    gov = Consortium(root / "service", [w.identity for w in workspaces], launcher.start(root / "service"))
    for workspace in workspaces:
        deploy_to_workspace(workspace, gov.info.endpoint, gov.info.service_cert_pem)
    contract = private_contract(gov, root, "head", ("head-texts", "head-labels"))
    run = CleanRoom(gov, attester, "head", contract["policy_hash"])
    run_id = run.reserve()["runId"]
    ws = {persona: w.root for persona, w in zip(PERSONAS, workspaces, strict=True)}
    before = _save_head(ws["labels-provider"], root / "head-before-record.json")
    run.record(run_id)
    after = _save_head(ws["labels-provider"], root / "head.json")
    export = root / "ledger.jsonl"
    gov.clients[0].export_ledger(export)
    yield {"gov": gov, "ws": ws, "root": root, "export": export, "before": before, "after": after}
    gov.close()


def _save_head(workspace: Path, path: Path) -> int:
    result = CliRunner().invoke(cli, ["-w", str(workspace), "governance", "ledger", "head", "--file", str(path)])
    assert result.exit_code == 0, result.output
    return int(json.loads(path.read_text())["checkpoint"]["to_seqno"])


def verify(workspace: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["-w", str(workspace), "governance", "privacy", "verify", *args, "-o", "json"])
    if result.exception is not None and not isinstance(result.exception, CleanroomError):
        raise result.exception
    return result


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _entry_index(lines: list[str], kind: str) -> int:
    return next(i for i, line in enumerate(lines) if json.loads(line).get("entry", {}).get("kind") == kind)


def _refused(result: Result, kind: type[CleanroomError], *fragments: str) -> str:
    """The refusal: a non-zero exit, the error kind, one line holding every fragment, and no
    budgets printed (nothing verified is reported)."""
    assert result.exit_code != 0 and isinstance(result.exception, kind), result.output
    message = str(result.exception)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert '"datasets"' not in result.stdout
    return message


def test_a_good_export_reaches_the_signed_head_and_replays(world) -> None:
    for against in (str(world["root"] / "head.json"), "service", world["gov"].info.endpoint):
        result = verify(world["ws"]["texts-provider"], "--file", str(world["export"]), "--against", against)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["ok"] and report["recordsRecomputed"] == 1 and report["comparedWithService"]
        assert report["headSeqno"] >= world["after"] and report["against"]
        texts = next(d for d in report["datasets"] if d["name"] == "head-texts")
        assert texts["spent"] == pytest.approx(opacus_epsilon(1.1, 0.01, 500, 1e-6))
        assert "not checked against a signed head" not in result.stderr


def test_verify_defaults_to_the_services_head_and_warns_without_one(world, tmp_path: Path) -> None:
    default = verify(world["ws"]["hoster"], "--file", str(world["export"]))
    assert default.exit_code == 0, default.output
    assert json.loads(default.stdout)["against"].startswith("the service at ")
    outsider = Workspace.init(tmp_path / "auditor", "auditor").root  # no service: nothing to reach
    offline = verify(outsider, "--file", str(world["export"]))
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout)["against"] is None
    assert "not checked against a signed head, so an export cut at a checkpoint boundary would pass" in offline.stderr


def test_an_export_cut_at_a_checkpoint_is_refused_naming_the_missing_entries(world, tmp_path: Path) -> None:
    lines = world["export"].read_text().splitlines()
    cut_at = next(
        i for i, line in enumerate(lines) if json.loads(line).get("checkpoint", {}).get("to_seqno") == world["before"]
    )
    cut = _write(tmp_path / "cut.jsonl", lines[: cut_at + 1])
    record_seqno = json.loads(lines[_entry_index(lines, "privacy.record")])["entry"]["seqno"]
    assert record_seqno > world["before"]  # the cut drops the run's record: its spend would vanish
    # on its own the cut export verifies (it ends at a signed checkpoint): that is the hole
    outsider = Workspace.init(tmp_path / "auditor", "auditor").root
    alone = verify(outsider, "--file", str(cut))
    assert alone.exit_code == 0 and json.loads(alone.stdout)["recordsRecomputed"] == 0

    for workspace, against in ((outsider, str(world["root"] / "head.json")), (world["ws"]["hoster"], "service")):
        message = _refused(
            verify(workspace, "--file", str(cut), "--against", against),
            IntegrityError,
            f"ledger export ends at entry {world['before']}",
            "missing from the export",
        )
        assert re.search(rf"reaches entry \d+: .*\(entr(y|ies) {world['before'] + 1}\b", message), message


def test_a_reordered_export_is_refused_naming_the_first_entry_out_of_place(world, tmp_path: Path) -> None:
    lines = world["export"].read_text().splitlines()
    index = _entry_index(lines, "privacy.reserve")
    swapped = next(i for i in range(index + 1, len(lines)) if "entry" in json.loads(lines[i]))
    lines[index], lines[swapped] = lines[swapped], lines[index]
    reserve_seqno = json.loads(lines[swapped])["entry"]["seqno"]
    _refused(
        verify(world["ws"]["hoster"], "--file", str(_write(tmp_path / "reordered.jsonl", lines)), "--against", "none"),
        IntegrityError,
        f"ledger entry {reserve_seqno} is missing (found {reserve_seqno + 1} next)",
    )


def _tampered(line: str, **changes: Any) -> str:
    """The privacy.record entry with its record changed and its digest and hash recomputed, so the
    entry is consistent with itself: only the chain and the signed checkpoint can tell."""
    item = json.loads(line)
    entry = item["entry"]
    record = json.loads(base64.b64decode(entry["request"])) | changes
    request = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    entry["request"] = base64.b64encode(request).decode()
    entry["digest"] = hashlib.sha256(request).hexdigest()
    entry["hash"] = ledger.entry_hash(entry["seqno"], entry["prev"], entry["digest"], entry["signer"], entry["kind"])
    return json.dumps(item, sort_keys=True)


def test_a_tampered_epsilon_is_refused_naming_the_entry(world, tmp_path: Path) -> None:
    lines = world["export"].read_text().splitlines()
    index = _entry_index(lines, "privacy.record")
    seqno = json.loads(lines[index])["entry"]["seqno"]
    record = json.loads(base64.b64decode(json.loads(lines[index])["entry"]["request"]))
    assert record["status"] == "recorded" and record["epsilon_spent"] > 0

    lines[index] = _tampered(lines[index], epsilon_spent=0.01, epsilon=0.01)
    tampered = _write(tmp_path / "tampered.jsonl", lines)
    message = _refused(verify(world["ws"]["hoster"], "--file", str(tampered)), IntegrityError)
    assert f"entry {seqno}" in message or f"entries {seqno}.." in message or f"..{seqno} " in message, message

    plain = world["export"].read_text().splitlines()  # the same change, digest and hash left as they were
    item = json.loads(plain[index])
    item["entry"]["request"] = base64.b64encode(json.dumps(record | {"epsilon_spent": 0.01}).encode()).decode()
    plain[index] = json.dumps(item, sort_keys=True)
    _refused(
        verify(world["ws"]["hoster"], "--file", str(_write(tmp_path / "naive.jsonl", plain))),
        IntegrityError,
        f"ledger entry {seqno} was altered",
    )


def test_against_a_head_of_another_service_or_no_head_file_is_refused(world, tmp_path: Path) -> None:
    head = json.loads((world["root"] / "head.json").read_text())
    head["checkpoint"]["signed"] = base64.b64encode(b"not a signature").decode()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(head))
    _refused(
        verify(world["ws"]["hoster"], "--file", str(world["export"]), "--against", str(forged)),
        IntegrityError,
        "is not valid for this ledger's service",
    )
    _refused(
        verify(world["ws"]["hoster"], "--file", str(world["export"]), "--against", str(tmp_path / "absent.json")),
        InvalidInputError,
        "does not exist",
    )
    _refused(
        verify(world["ws"]["hoster"], "--file", str(world["export"]), "--against", "http://127.0.0.1:1"),
        InvalidInputError,
        "reached over TLS only",
    )
    _refused(
        verify(world["ws"]["hoster"], "--file", str(world["export"]), "--against", "https://127.0.0.1:1"),
        ServiceUnavailableError,
        "cannot fetch the signed head of the governance service at https://127.0.0.1:1",
    )
