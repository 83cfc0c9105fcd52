"""Forged ledger exports (issue #12): trimmed, extended, emptied or cut ones must not verify.

Every export here comes from a real governance service (TLS on loopback, real ES384 keys);
the forger is an insider who holds a member key and the public export, but not the service's
key. Each forgery is checked through ``core.governance.ledger`` and through the real
``cleanroom`` CLI (``tests/cli_runner.py``), which must exit non-zero with one line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.config.canonical import document_hash
from core.crypto.identity import MemberIdentity
from core.errors import IntegrityError, InvalidInputError
from core.governance import ledger
from core.governance.client import deploy_to_workspace
from core.governance.service_identity import ServiceIdentity
from core.governance.signing import sign_request
from core.workspace import Workspace
from tests.cli_runner import Outcome, cleanroom
from tests.governance_support import Attester, Consortium, start_consortium

CONTRACT = "c-ledger"


@dataclass
class World:
    """A consortium with some history, a kill switch the consumer kept proof of, and its export."""

    gov: Consortium
    workspace: Path  # the consumer's workspace, deployed against the service
    root: Path
    lines: list[str]  # the honest export (ends at a signed checkpoint)
    before_kill: int  # the last entry before the kill switch (a checkpoint ends there)
    kill_seqno: int  # the kill switch's entry
    head_file: Path  # `ledger head --file`, saved after the kill switch
    receipt_file: Path  # `ledger receipt --seqno <kill switch> -o json`

    @property
    def pinned(self) -> str:
        return self.gov.info.service_cert_pem

    def write(self, name: str, lines: list[str]) -> Path:
        path = self.root / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def cli_verify(self, path: Path, *options: str) -> Outcome:
        return cleanroom("-w", self.workspace, "governance", "ledger", "verify", "--file", path, *options)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("ledger-attacks")
    attester = Attester(root)
    gov = start_consortium(root / "service", checkpoint_every=5, attestation=attester.spec)
    try:
        gov.accepted_contract(CONTRACT)
        inner = {"version": 1, "contract_id": CONTRACT, "applications": [{"name": "server"}]}
        gov.pass_proposal(
            gov.clients[0].propose_clean_room_policy(CONTRACT, {"policy": inner, "policy_hash": document_hash(inner)})
        )
        with gov.client() as clean_room:  # attested writes: entries with no member signature
            token = attester.token(CONTRACT, document_hash(inner))
            clean_room.append_event(CONTRACT, token, "started", {"pid": 1})
            clean_room.append_event(CONTRACT, token, "progress", {"step": 1})
        gov.clients[1].create_contract("c-draft", {"draft": True})

        workspace = Workspace.init(root / "consumer", "consumer")
        deploy_to_workspace(workspace, gov.info.endpoint, gov.info.service_cert_pem)
        before = cleanroom("-w", workspace.root, "governance", "ledger", "head", "-o", "json")
        assert before.code == 0, before.stderr
        before_kill = json.loads(before.stdout)["seqno"]
        gov.clients[2].set_runtime_option(CONTRACT, "execution", False)  # the kill switch
        kill_seqno = gov.clients[0].ledger_head()["seqno"]
        assert kill_seqno == before_kill + 1
        head_file, receipt_file = root / "head.json", root / "kill-receipt.json"
        saved = cleanroom("-w", workspace.root, "governance", "ledger", "head", "--file", head_file)
        assert saved.code == 0, saved.stderr
        receipt = cleanroom(
            "-w", workspace.root, "governance", "ledger", "receipt", "--seqno", str(kill_seqno), "-o", "json"
        )
        assert receipt.code == 0, receipt.stderr
        receipt_file.write_text(receipt.stdout)
        export = root / "ledger.jsonl"
        assert cleanroom("-w", workspace.root, "governance", "ledger", "export", "--file", export).code == 0
        yield World(
            gov, workspace.root, root, export.read_text().splitlines(), before_kill, kill_seqno, head_file, receipt_file
        )
    finally:
        gov.close()


# -- forging helpers ----------------------------------------------------------------------------------
def _entries(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line)["entry"] for line in lines[1:] if '"entry"' in line]


def _forged_entry(
    seqno: int, prev: str, member: MemberIdentity, kind: str, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    """An entry a member can make on its own: really signed, digest and hash recomputed."""
    request = sign_request(member, path, body)
    digest = hashlib.sha256(request).hexdigest()
    signer = member.member_id
    return {
        "seqno": seqno,
        "prev": prev,
        "digest": digest,
        "signer": signer,
        "kind": kind,
        "hash": ledger.entry_hash(seqno, prev, digest, signer, kind),
        "request": base64.b64encode(request).decode(),
    }


def _enable_execution(world: World, seqno: int, prev: str) -> dict[str, Any]:
    return _forged_entry(
        seqno,
        prev,
        world.gov.members[2],
        "runtime_option.enable",
        f"/contracts/{CONTRACT}/runtime-options/execution",
        {"action": "enable"},
    )


def _fails_in_core(world: World, lines: list[str], words: str, error: type = IntegrityError, **options: Any) -> str:
    for full in (False, True):
        with pytest.raises(error, match=words) as info:
            ledger.verify_export(lines, expected_service_cert_pem=world.pinned, full=full, **options)
    return info.value.one_line()


def _fails_in_cli(world: World, path: Path, words: str, *options: str, code: int = IntegrityError.exit_code) -> str:
    for full in ((), ("--full",)):
        outcome = world.cli_verify(path, *options, *full)
        assert outcome.code == code, outcome
        error = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and words in error[0], outcome.stderr
        assert outcome.stdout == ""
    return error[0]


# -- the five forgeries ------------------------------------------------------------------------------
def test_honest_export_verifies_through_the_cli_against_the_service(world: World) -> None:
    path = world.write("honest.jsonl", world.lines)
    outcome = world.cli_verify(path, "-o", "json")
    assert outcome.code == 0, outcome.stderr
    report = json.loads(outcome.stdout)
    assert report["ok"] and report["lastSeqno"] == report["lastCheckpointSeqno"] == report["headSeqno"]
    assert report["against"].startswith("the service at https://127.0.0.1")


def test_export_without_its_final_checkpoint_fails(world: World) -> None:
    assert '"checkpoint"' in world.lines[-1]
    forged = world.lines[:-1]
    last = _entries(forged)[-1]["seqno"]
    message = _fails_in_core(
        world,
        forged,
        r"ledger export ends with \d+ entr(y|ies) .* after its last signed "
        r"checkpoint .* could not be vouched for",
    )
    assert f"{last})" in message or f"entry {last} " in message
    _fails_in_cli(
        world, world.write("no-final-checkpoint.jsonl", forged), "could not be vouched for", "--against", "none"
    )
    no_checkpoints = [line for line in world.lines if '"checkpoint"' not in line]
    _fails_in_core(
        world,
        no_checkpoints,
        f"ledger export has no signed checkpoint: its {len(_entries(forged))} entries \\(entries 1\\.\\.",
    )


def test_entry_invented_after_the_last_checkpoint_fails(world: World) -> None:
    """A member re-enables execution in the export only: its own, valid signature on the entry."""
    last = _entries(world.lines)[-1]
    invented = _enable_execution(world, last["seqno"] + 1, last["hash"])
    forged = [*world.lines, json.dumps({"entry": invented})]
    _fails_in_core(
        world,
        forged,
        f"ends with 1 entry \\(entry {invented['seqno']}\\) after its last signed "
        f"checkpoint \\(entry {last['seqno']}\\): 1 entry could not be vouched for",
    )
    _fails_in_cli(world, world.write("appended.jsonl", forged), "1 entry could not be vouched for")


def test_last_entry_replaced_fails(world: World) -> None:
    entries = _entries(world.lines)
    last, before = entries[-1], entries[-2]
    replacement = json.dumps({"entry": _enable_execution(world, last["seqno"], before["hash"])})
    index = next(
        i for i, line in enumerate(world.lines) if json.loads(line).get("entry", {}).get("seqno") == last["seqno"]
    )
    kept = [*world.lines[:index], replacement, *world.lines[index + 1 :]]  # the signed checkpoint kept
    _fails_in_core(
        world,
        kept,
        f"^ledger (entry |entries \\d+\\.\\.){last['seqno']} (does|do) not match (its|their) signed checkpoint",
    )
    _fails_in_cli(world, world.write("replaced.jsonl", kept), "signed checkpoint (an entry was rewritten)")
    dropped = [*world.lines[:index], replacement]  # and dropped
    _fails_in_core(world, dropped, "could not be vouched for")
    _fails_in_cli(world, world.write("replaced-no-checkpoint.jsonl", dropped), "could not be vouched for")


def test_header_only_and_empty_exports_fail(world: World) -> None:
    _fails_in_core(world, world.lines[:1], "ledger export has no entries")
    _fails_in_cli(
        world, world.write("header-only.jsonl", world.lines[:1]), "ledger export has no entries", "--against", "none"
    )
    _fails_in_core(world, [], "ledger export is empty", error=InvalidInputError)
    empty = world.root / "empty.jsonl"
    empty.write_text("")
    _fails_in_cli(world, empty, "ledger export is empty", code=InvalidInputError.exit_code)


def _cut_before_kill_switch(world: World) -> list[str]:
    """The export as it was before the kill switch: ends at a genuine signed checkpoint."""
    for index, line in enumerate(world.lines):
        if json.loads(line).get("checkpoint", {}).get("to_seqno") == world.before_kill:
            return world.lines[: index + 1]
    raise AssertionError(f"no checkpoint ends at entry {world.before_kill}")


def test_export_cut_at_a_checkpoint_boundary_fails_against_a_kept_head(world: World) -> None:
    forged = _cut_before_kill_switch(world)
    path = world.write("cut.jsonl", forged)
    # well formed on its own: only a later signed head reveals the cut
    assert ledger.verify_export(forged, expected_service_cert_pem=world.pinned).last_seqno == world.before_kill
    missing = f"ends at entry {world.before_kill} but the signed head from"
    for kept in (world.head_file, world.receipt_file):
        head = ledger.load_signed_head(kept)
        message = _fails_in_core(world, forged, missing, against=head)
        count = head.seqno - world.before_kill
        assert f"{count} entr" in message and "could not be vouched for" in message
        _fails_in_cli(world, path, f"reaches entry {head.seqno}", "--against", str(kept))
    # the default in a workspace deployed against the service: its signed head, fetched now
    _fails_in_cli(world, path, "signed head from the service at https://127.0.0.1")
    _fails_in_cli(world, path, "could not be vouched for", "--against", "service")
    # explicitly offline, the cut cannot be seen: the CLI says so instead of a bare "ok"
    offline = world.cli_verify(path, "--against", "none")
    assert offline.code == 0 and "export cut at a checkpoint boundary would pass" in offline.stderr


def test_the_honest_export_verifies_against_the_kept_head(world: World) -> None:
    path = world.write("honest-against.jsonl", world.lines)
    for kept in (world.head_file, world.receipt_file):
        report = ledger.verify_export(
            world.lines, expected_service_cert_pem=world.pinned, against=ledger.load_signed_head(kept)
        )
        assert report.head_seqno is not None and report.head_seqno >= world.kill_seqno
        assert world.cli_verify(path, "--against", str(kept)).code == 0


def test_a_forged_or_foreign_head_is_refused(world: World) -> None:
    document = json.loads(world.head_file.read_text())
    document["checkpoint"]["to_seqno"] += 1  # claims the ledger went further than it did
    forged = world.root / "forged-head.json"
    forged.write_text(json.dumps(document))
    _fails_in_cli(
        world,
        world.write("honest-forged-head.jsonl", world.lines),
        "is not valid for this ledger's service",
        "--against",
        str(forged),
    )
    other = ServiceIdentity.create(world.root / "other-service")
    body = ledger.checkpoint_body(1, 1, "ab" * 32, "cd" * 32)
    foreign = ledger.SignedHead(
        1, 1, "ab" * 32, "cd" * 32, ledger.sign_checkpoint(other.private_key, other.service_id, body), "foreign.json"
    )
    _fails_in_core(world, world.lines, "signed head from foreign.json \\(entry 1\\) is not valid", against=foreign)
    bad = world.root / "not-a-head.json"
    bad.write_text('{"hello": 1}')
    _fails_in_cli(
        world,
        world.write("honest-bad-head.jsonl", world.lines),
        "is not a signed ledger head",
        "--against",
        str(bad),
        code=InvalidInputError.exit_code,
    )


@pytest.mark.parametrize(
    "mangle",
    [
        lambda lines: ["[]", *lines[1:]],  # header not an object
        lambda lines: [json.dumps(json.loads(lines[0]) | {"service_cert": "nope"}), *lines[1:]],
        lambda lines: [*lines[:2], "[1, 2]", *lines[2:]],  # a record not an object
        lambda lines: [*lines[:1], lines[1].replace('"seqno": 1,', '"seqno": "1",'), *lines[2:]],
        lambda lines: [*lines[:1], lines[1].replace('"seqno": 1,', '"seqno": true,'), *lines[2:]],
    ],
)
def test_malformed_exports_are_one_line_input_errors(world: World, mangle: Any) -> None:
    mangled = mangle(world.lines)
    assert mangled != world.lines
    _fails_in_core(world, mangled, "ledger export|not a cleanroom ledger export", error=InvalidInputError)
    _fails_in_cli(world, world.write("mangled.jsonl", mangled), "ledger export", code=InvalidInputError.exit_code)


# -- what verification reports ------------------------------------------------------------------------
def test_signature_counts_count_signatures(world: World) -> None:
    entries = _entries(world.lines)
    members = sum(
        1
        for e in entries
        if e["signer"] != ledger.SERVICE_SIGNER and not e["signer"].startswith(ledger.ATTESTED_PREFIX)
    )
    services = sum(1 for e in entries if e["signer"] == ledger.SERVICE_SIGNER)
    attested = sum(1 for e in entries if e["signer"].startswith(ledger.ATTESTED_PREFIX))
    checkpoints = sum(1 for line in world.lines if '"checkpoint"' in line)
    assert services == 1 and attested == 2 and members == len(entries) - 3  # genesis and 2 events
    full = ledger.verify_export(world.lines, expected_service_cert_pem=world.pinned, full=True)
    assert full.member_signatures_checked == members != full.entries
    assert full.service_signatures_checked == checkpoints + services and full.attested_entries == attested
    default = ledger.verify_export(world.lines, expected_service_cert_pem=world.pinned)
    assert default.member_signatures_checked == 0 and default.service_signatures_checked == checkpoints
    outcome = world.cli_verify(
        world.write("count.jsonl", world.lines), "--full", "-o", "json", "--against", str(world.head_file)
    )
    report = json.loads(outcome.stdout)
    assert report["memberSignaturesChecked"] == members
    assert report["serviceSignaturesChecked"] == checkpoints + services + 1  # and the service's head


def _with_prev(lines: list[str], seqno: int, prev: str) -> list[str]:
    """Entry ``seqno`` gets another ``prev``; its hash is recomputed, as a careful forger would."""
    out = []
    for line in lines:
        record = json.loads(line)
        entry = record.get("entry")
        if entry and entry["seqno"] == seqno:
            entry["prev"] = prev
            entry["hash"] = ledger.entry_hash(seqno, prev, entry["digest"], entry["signer"], entry["kind"])
            line = json.dumps(record)
        out.append(line)
    return out


def test_a_broken_prev_names_the_entry(world: World) -> None:
    checkpoint_ends = {json.loads(line)["checkpoint"]["to_seqno"] for line in world.lines if '"checkpoint"' in line}
    entries = _entries(world.lines)
    inside = next(e["seqno"] for e in entries if e["seqno"] > 2 and e["seqno"] - 1 not in checkpoint_ends)
    after_checkpoint = next(e["seqno"] for e in entries if e["seqno"] - 1 in checkpoint_ends and e["seqno"] > 1)
    _fails_in_core(
        world,
        _with_prev(world.lines, inside, "ee" * 32),
        f"^ledger entry {inside} has a broken prev: it is not the hash of entry {inside - 1} "
        f"\\(entry {inside}'s prev or entry {inside - 1} was altered\\)",
    )
    _fails_in_core(
        world,
        _with_prev(world.lines, after_checkpoint, "ee" * 32),
        f"^ledger entry {after_checkpoint} has a broken prev: .* a signed checkpoint vouches for, "
        f"so entry {after_checkpoint} was altered",
    )
    _fails_in_core(world, _with_prev(world.lines, 1, "ee" * 32), "^ledger entry 1 has a broken prev")
    error = _fails_in_cli(
        world,
        world.write("broken-prev.jsonl", _with_prev(world.lines, inside, "ee" * 32)),
        f"ledger entry {inside} has a broken prev",
    )
    assert error.startswith(f"error: ledger entry {inside} has a broken prev")


# -- the exporter's side -----------------------------------------------------------------------------
def test_export_lines_stop_at_the_last_checkpoint() -> None:
    """A write that lands between the service's checkpoint and its read is left for the next export."""
    hashes, entries, prev = [], [], ledger.GENESIS_PREV
    for seqno in (1, 2, 3):
        request = f"request {seqno}".encode()
        digest = ledger.payload_digest(request)
        entry_hash = ledger.entry_hash(seqno, prev, digest, "service", "genesis")
        entries.append(
            {
                "seqno": seqno,
                "prev": prev,
                "digest": digest,
                "signer": "service",
                "kind": "genesis",
                "hash": entry_hash,
                "request": request,
            }
        )
        hashes.append(entry_hash)
        prev = entry_hash
    checkpoint = {
        "from_seqno": 1,
        "to_seqno": 2,
        "chain_head": hashes[1],
        "merkle_root": ledger.merkle_root(hashes[:2]),
        "signed": b"x",
    }
    lines = list(ledger.export_lines("PEM", {}, entries, [checkpoint]))
    assert [json.loads(line).get("entry", {}).get("seqno") for line in lines[1:]] == [1, 2, None]
    assert '"checkpoint"' in lines[-1]


def test_exports_taken_while_members_write_always_verify(world: World, tmp_path: Path) -> None:
    """Writes racing the export never leave an uncovered tail in it (the export stops at its checkpoint)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        client = world.gov.clients[index]
        count = 0
        while not stop.is_set():
            try:
                client.create_contract(f"race-{index}-{count}", {"n": count})
            except BaseException as exc:
                errors.append(exc)
                return
            count += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    try:
        for attempt in range(6):
            path = tmp_path / f"race-{attempt}.jsonl"
            world.gov.clients[2].export_ledger(path)
            report = ledger.verify_export_file(path, expected_service_cert_pem=world.pinned)
            assert report.last_seqno == report.last_checkpoint_seqno
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
