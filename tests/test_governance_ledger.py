"""The ledger: documented format, offline verification, receipts, tampering, and crash durability."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from core.config.canonical import canonical_json
from core.errors import IntegrityError, InvalidInputError, ServiceUnavailableError
from core.governance import launcher, ledger
from core.governance.service_identity import ServiceIdentity
from core.governance.state import DB_FILE
from tests.governance_support import Consortium, start_consortium
from tui.cli import main as cli_main

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats" / "ledger.md"


# -- the documented format ---------------------------------------------------------------------------
def test_documented_example_recomputes() -> None:
    text = DOC.read_text()
    rows = re.findall(
        r"^\| (\d) \| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \| `([0-9a-f]{64})` \| `([0-9a-f]{64})` \|$",
        text,
        re.MULTILINE,
    )
    assert len(rows) == 3
    prev, hashes = "0" * 64, []
    for seqno, signer, kind, request, digest, entry in rows:
        signer = "a" * 64 if signer.startswith("aaaa") else signer
        # from the description alone: SHA-256 of the canonical JSON of the five fields
        assert hashlib.sha256(request.encode()).hexdigest() == digest
        canonical = json.dumps(
            {"seqno": int(seqno), "prev": prev, "digest": digest, "signer": signer, "kind": kind},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        assert hashlib.sha256(canonical).hexdigest() == entry
        # and with the code
        assert ledger.entry_hash(int(seqno), prev, digest, signer, kind) == entry
        hashes.append(entry)
        prev = entry
    assert canonical_example(text) in text
    leaves = [hashlib.sha256(b"\x00" + bytes.fromhex(h)).digest() for h in hashes]
    left = hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()
    root = hashlib.sha256(b"\x01" + left + leaves[2]).hexdigest()  # the odd third leaf moves up unchanged
    assert f"`merkle_root` = `{root}`" in text.replace("\n", " ")
    assert ledger.merkle_root(hashes) == root
    for index in (1, 2):
        path = ledger.merkle_path(hashes, index)
        assert json.dumps(path) in text.replace("\n", " ")
        assert ledger.root_from_path(hashes[index], path) == root


@pytest.mark.parametrize(
    "fields",
    [
        (7, "0" * 64, "ab" * 32, "attested:inference-initial", "event.append"),
        (7, "0" * 64, "ab" * 32, 'signer "with" quotes', "kind"),
        (7, "0" * 64, "ab" * 32, "ünïcode", "kind\n"),
        (True, "0" * 64, "ab" * 32, "s", "k"),
    ],
)
def test_entry_hash_is_always_the_hash_of_canonical_json(fields) -> None:
    seqno, prev, digest, signer, kind = fields
    header = {"seqno": seqno, "prev": prev, "digest": digest, "signer": signer, "kind": kind}
    assert ledger.entry_hash(*fields) == hashlib.sha256(canonical_json(header)).hexdigest()


def canonical_example(text: str) -> str:
    return re.search(r"```\n(\{\"digest\".*\})\n```", text).group(1)  # type: ignore[union-attr]


# -- a live ledger ------------------------------------------------------------------------------------
@pytest.fixture()
def gov(tmp_path: Path):
    consortium = start_consortium(tmp_path / "service", checkpoint_every=5)
    yield consortium
    consortium.close()


def _some_history(gov: Consortium) -> None:
    gov.accepted_contract("c1")
    gov.clients[1].create_contract("c2", {"draft": True})
    gov.clients[2].set_runtime_option("c1", "execution", False)
    gov.pass_proposal(gov.clients[0].propose_enable_ca("c1"))


def _export(gov: Consortium, path: Path) -> list[str]:
    gov.clients[0].export_ledger(path)
    return path.read_text().splitlines()


def test_export_verifies_default_and_full(gov: Consortium, tmp_path: Path) -> None:
    _some_history(gov)
    lines = _export(gov, tmp_path / "ledger.jsonl")
    head = gov.clients[0].ledger_head()
    report = ledger.verify_export(lines, expected_service_cert_pem=gov.info.service_cert_pem)
    assert report.entries == head["seqno"] and report.last_checkpoint_seqno == head["seqno"]
    assert report.checkpoints >= 2 and report.member_signatures_checked == 0
    full = ledger.verify_export(lines, expected_service_cert_pem=gov.info.service_cert_pem, full=True)
    # every entry but the service-signed genesis carries a member's signature (no clean-room writes here)
    assert full.member_signatures_checked == head["seqno"] - 1
    assert full.service_signatures_checked == full.checkpoints + 1
    kinds = [json.loads(line)["entry"]["kind"] for line in lines[1:] if '"entry"' in line]
    assert kinds[:3] == ["genesis", "contract.create", "proposal.create"] and "runtime_option.disable" in kinds


def test_receipts_prove_each_entry_against_the_pinned_certificate(gov: Consortium) -> None:
    _some_history(gov)
    last = gov.clients[0].ledger_head()["seqno"]
    for seqno in range(1, last + 1):
        receipt = gov.clients[1].receipt(seqno)
        assert ledger.verify_receipt(receipt, service_cert_pem=gov.info.service_cert_pem)["seqno"] == seqno
    receipt = gov.clients[1].receipt(3)
    receipt["entry"]["signer"] = gov.members[2].member_id
    with pytest.raises(IntegrityError, match="receipt for entry 3"):
        ledger.verify_receipt(receipt, service_cert_pem=gov.info.service_cert_pem)
    other = ServiceIdentity.create(gov.state_dir.parent / "other")
    with pytest.raises(IntegrityError, match="checkpoint"):
        ledger.verify_receipt(gov.clients[1].receipt(3), service_cert_pem=other.cert_pem)


def _tampered(lines: list[str], seqno: int, change) -> list[str]:
    out = []
    for line in lines:
        record = json.loads(line)
        if record.get("entry", {}).get("seqno") == seqno:
            change(record["entry"])
            line = json.dumps(record)
        out.append(line)
    return out


def _flip_request_byte(entry: dict) -> None:
    raw = bytearray(base64.b64decode(entry["request"]))
    raw[len(raw) // 2] ^= 0x01
    entry["request"] = base64.b64encode(bytes(raw)).decode()


def test_verify_names_the_first_altered_entry(gov: Consortium, tmp_path: Path) -> None:
    _some_history(gov)
    lines = _export(gov, tmp_path / "ledger.jsonl")
    pinned = gov.info.service_cert_pem

    def fails(bad: list[str], words: str, **options) -> None:
        with pytest.raises(IntegrityError, match=words):
            ledger.verify_export(bad, expected_service_cert_pem=pinned, **options)

    fails(_tampered(lines, 4, _flip_request_byte), "ledger entry 4 was altered: its request")
    fails(
        _tampered(lines, 6, lambda e: e.update(signer=gov.members[0].member_id)),
        "ledger entry 6 was altered: its fields",
    )

    def rewrite(entry: dict) -> None:  # a careful forger recomputes the digest and the hash
        _flip_request_byte(entry)
        entry["digest"] = hashlib.sha256(base64.b64decode(entry["request"])).hexdigest()
        entry["hash"] = ledger.entry_hash(
            entry["seqno"], entry["prev"], entry["digest"], entry["signer"], entry["kind"]
        )

    # the chain breaks at entry 6, whose prev no longer matches: that entry is named, and entry 5 as the suspect
    fails(
        _tampered(lines, 5, rewrite),
        r"ledger entry 6 has a broken prev: it is not the hash of entry 5 "
        r"\(entry 6's prev or entry 5 was altered\)",
    )
    fails([line for line in lines if '"seqno": 3,' not in line], "ledger entry 3 is missing")
    with pytest.raises(InvalidInputError, match="malformed after entry"):
        ledger.verify_export([*lines[:4], '{"entry": {"seqno": 4, "request": "'], expected_service_cert_pem=pinned)
    other = ServiceIdentity.create(tmp_path / "other")
    with pytest.raises(IntegrityError, match="different governance service"):
        ledger.verify_export(lines, expected_service_cert_pem=other.cert_pem)


def test_editing_one_byte_in_the_database_is_detected(gov: Consortium, tmp_path: Path) -> None:
    _some_history(gov)
    launcher.stop(gov.state_dir)
    with sqlite3.connect(gov.state_dir / DB_FILE) as db:
        request = bytearray(db.execute("SELECT request FROM ledger WHERE seqno=7").fetchone()[0])
        request[-10] ^= 0x80
        db.execute("UPDATE ledger SET request=? WHERE seqno=7", (bytes(request),))
    launcher.start(gov.state_dir)
    lines = _export(gov, tmp_path / "ledger.jsonl")
    with pytest.raises(IntegrityError, match=r"ledger entry 7 was altered"):
        ledger.verify_export(lines, expected_service_cert_pem=gov.info.service_cert_pem)


def test_cli_verify_exits_non_zero_and_names_the_entry(
    gov: Consortium, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _some_history(gov)
    lines = _export(gov, tmp_path / "ledger.jsonl")
    (tmp_path / "bad.jsonl").write_text("\n".join(_tampered(lines, 2, _flip_request_byte)) + "\n")
    cert = tmp_path / "service_cert.pem"
    cert.write_text(gov.info.service_cert_pem)
    cli_main(
        [
            "governance",
            "ledger",
            "verify",
            "--file",
            str(tmp_path / "ledger.jsonl"),
            "--service-cert",
            str(cert),
            "--output",
            "json",
        ]
    )
    assert json.loads(capsys.readouterr().out)["ok"] is True
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["governance", "ledger", "verify", "--file", str(tmp_path / "bad.jsonl"), "--service-cert", str(cert)])
    assert exit_info.value.code == IntegrityError.exit_code
    error = capsys.readouterr().err
    assert error.startswith("error: ledger entry 2 was altered") and error.count("\n") == 1


# -- durability ---------------------------------------------------------------------------------------
def test_sigkill_mid_voting_keeps_every_acknowledged_write(gov: Consortium, tmp_path: Path) -> None:
    proposals = []
    for index in range(40):
        created = gov.clients[0].create_contract(f"k{index}", {"index": index})
        proposals.append(gov.clients[0].propose_contract(f"k{index}", created["version"])["proposalId"])
    acknowledged: list[tuple[str, str]] = []
    stop = threading.Event()

    def voter(member_index: int) -> None:
        client = gov.clients[member_index]
        for proposal_id in proposals:
            if stop.is_set():
                return
            try:
                client.vote(proposal_id, "accept")
            except ServiceUnavailableError:
                return
            acknowledged.append((proposal_id, gov.members[member_index].member_id))

    threads = [threading.Thread(target=voter, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 30 and time.monotonic() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.005)
    os.kill(gov.info.pid, signal.SIGKILL)  # mid-round: the voters are still sending
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert 30 <= len(acknowledged) < 120

    restarted = launcher.start(gov.state_dir)
    assert restarted.pid != gov.info.pid and restarted.endpoint == gov.info.endpoint
    reader = gov.client()
    for proposal_id, member_id in acknowledged:
        assert reader.proposal(proposal_id)["ballots"].get(member_id) == "accept"
    lines = _export(gov, tmp_path / "after-crash.jsonl")
    report = ledger.verify_export(lines, expected_service_cert_pem=gov.info.service_cert_pem, full=True)
    assert report.entries == reader.ledger_head()["seqno"]
    # and governance carries on where it stopped
    last = proposals[-1]
    for client in gov.clients:
        state = client.vote(last, "accept")["proposalState"]
    assert state == "Accepted"
    reader.close()
