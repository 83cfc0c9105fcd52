"""The governance ledger: hash-chained entries, signed checkpoints, receipts, offline verification.

Format (docs/formats/ledger.md has a worked example that a test recomputes):

* An **entry** is ``{"seqno", "prev", "digest", "signer", "kind"}``: ``prev`` is the previous
  entry's hash (64 zeros for entry 1), ``digest`` the SHA-256 of the exact request bytes
  (the member's COSE_Sign1, or canonical JSON for service and clean-room writes), ``signer``
  a member id, ``"service"`` or ``"attested:<contract id>"``. Its **hash** is the SHA-256
  of the canonical JSON of those five fields.
* A **checkpoint** covers entries ``from_seqno..to_seqno`` (the ones after the previous
  checkpoint): ``chain_head`` is the hash of entry ``to_seqno`` and ``merkle_root`` the root of
  an RFC 6962-style Merkle tree over their hashes (leaf ``H(0x00||h)``, node ``H(0x01||l||r)``,
  an odd node is promoted). The service signs it as a COSE_Sign1 with its identity key.
* A **receipt** proves one entry: the entry, its Merkle path and the signed checkpoint.
* A **signed head** is the latest signed checkpoint, saved by a party (``ledger head --file``;
  a receipt serves as well). An export ends at a signed checkpoint, so a verifier refuses an
  uncovered tail, but an export cut at an earlier checkpoint boundary is itself well formed:
  only a later signed head the verifier holds (or fetches from the service) reveals the cut.

Verification cost, measured (benchmarks/governance.py): chain links, digests and checkpoint
signatures ran at 23,000-32,000 entries/s on the shared 2-core build machine (12,500 when it
was overloaded); an ECDSA P-384 check of every member request runs at ~800-1,400/s there.
The service already checked each request's signature before appending it, and the signed
checkpoint vouches for the whole range, so ``verify_export`` checks the checkpoint signatures
and no member signature (an entry no checkpoint covers is an error, not something to re-check);
``full=True`` re-checks every member signature for an auditor who trusts nothing the service
signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from core.config.canonical import canonical_json
from core.crypto.identity import load_certificate, member_id_of
from core.errors import IntegrityError, InvalidInputError
from core.governance.signing import SignatureRejected, parse_message, sign_es384

GENESIS_PREV = "0" * 64
EXPORT_FORMAT = "cleanroom.ledger.export"
EXPORT_VERSION = 1
SERVICE_SIGNER = "service"
ATTESTED_PREFIX = "attested:"
CHECKPOINT_PATH = "/ledger/checkpoint"
HEAD_FORMAT = "cleanroom.ledger.head"
HEAD_VERSION = 1


# canonical_json's exact settings, as one reusable encoder: building an encoder per entry was a
# fifth of the verification time
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_PLAIN = re.compile(r"[A-Za-z0-9_.:-]*\Z")  # strings whose JSON form is just "<text>"


def entry_hash(seqno: int, prev: str, digest: str, signer: str, kind: str) -> str:
    """The hash of a ledger entry: SHA-256 of the canonical JSON of its five fields.

    Every real entry has plain hex/identifier strings, whose canonical JSON is written directly
    (a measured ~40% of this function's cost); anything else goes through the encoder.
    """
    try:
        plain = (
            type(seqno) is int
            and _PLAIN.match(prev)
            and _PLAIN.match(digest)
            and _PLAIN.match(signer)
            and _PLAIN.match(kind)
        )
    except TypeError:  # a non-string field from a malformed export
        plain = None
    if plain:
        text = f'{{"digest":"{digest}","kind":"{kind}","prev":"{prev}","seqno":{seqno},"signer":"{signer}"}}'
        return hashlib.sha256(text.encode()).hexdigest()
    header = {"digest": digest, "kind": kind, "prev": prev, "seqno": seqno, "signer": signer}
    return hashlib.sha256(_CANONICAL.encode(header).encode("utf-8")).hexdigest()


def payload_digest(request: bytes) -> str:
    return hashlib.sha256(request).hexdigest()


# -- Merkle tree ----------------------------------------------------------------------------------
def _leaf(entry_hash_hex: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash_hex)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(entry_hashes: list[str]) -> str:
    """Root over ``entry_hashes`` (in seqno order); an odd last node moves up unchanged."""
    if not entry_hashes:
        raise ValueError("a checkpoint covers at least one entry")
    level = [_leaf(h) for h in entry_hashes]
    while len(level) > 1:
        level = [_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0].hex()


def merkle_path(entry_hashes: list[str], index: int) -> list[list[str]]:
    """Siblings from leaf ``index`` to the root: ``[["L"|"R", hex], ...]`` (side of the sibling)."""
    level = [_leaf(h) for h in entry_hashes]
    path: list[list[str]] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(["L" if sibling < index else "R", level[sibling].hex()])
        level = [_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        index //= 2
    return path


def root_from_path(entry_hash_hex: str, path: list[list[str]]) -> str:
    node = _leaf(entry_hash_hex)
    for side, sibling_hex in path:
        sibling = bytes.fromhex(sibling_hex)
        node = _node(sibling, node) if side == "L" else _node(node, sibling)
    return node.hex()


# -- checkpoints ----------------------------------------------------------------------------------
def checkpoint_body(from_seqno: int, to_seqno: int, chain_head: str, root: str) -> dict[str, Any]:
    return {"chain_head": chain_head, "from_seqno": from_seqno, "merkle_root": root, "to_seqno": to_seqno}


def sign_checkpoint(service_key: ec.EllipticCurvePrivateKey, service_id: str, body: dict[str, Any]) -> bytes:
    return sign_es384(service_key, kid=service_id, path=CHECKPOINT_PATH, body=body)


def verify_checkpoint(signed: bytes, body: dict[str, Any], service_key: ec.EllipticCurvePublicKey) -> str | None:
    """None if ``signed`` is the service's signature over exactly ``body``, else the reason."""
    try:
        parsed = parse_message(signed)
    except SignatureRejected as exc:
        return exc.message
    if parsed.path != CHECKPOINT_PATH or not parsed.verify_with(service_key):
        return "its signature does not verify with the service certificate"
    if parsed.payload != canonical_json(body):
        return "its signed body differs from the checkpoint fields"
    return None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64 ({exc})") from exc


# -- export ---------------------------------------------------------------------------------------
def export_lines(
    service_cert_pem: str,
    members: dict[str, str],
    entries: Iterable[dict[str, Any]],
    checkpoints: Iterable[dict[str, Any]],
) -> Iterator[str]:
    """JSON lines: a header, then entries in order with each checkpoint after its last entry.

    ``entries`` items: seqno, prev, digest, signer, kind, hash, request (bytes);
    ``checkpoints`` items: from_seqno, to_seqno, chain_head, merkle_root, signed (bytes).
    """
    yield json.dumps(
        {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "service_cert": service_cert_pem, "members": members},
        sort_keys=True,
    )
    ordered = sorted(checkpoints, key=lambda c: c["to_seqno"])
    # an entry appended after the last checkpoint (a write racing the export) is left for the
    # next export: an export ends at a signed checkpoint, and a verifier refuses an uncovered tail
    covered = ordered[-1]["to_seqno"] if ordered else 0
    pending = iter(ordered)
    checkpoint = next(pending, None)
    for entry in entries:
        if entry["seqno"] > covered:
            break
        record = {k: entry[k] for k in ("seqno", "prev", "digest", "signer", "kind", "hash")}
        record["request"] = b64(entry["request"])
        yield json.dumps({"entry": record}, sort_keys=True)
        while checkpoint is not None and checkpoint["to_seqno"] == entry["seqno"]:
            cp = {k: checkpoint[k] for k in ("from_seqno", "to_seqno", "chain_head", "merkle_root")}
            cp["signed"] = b64(checkpoint["signed"])
            yield json.dumps({"checkpoint": cp}, sort_keys=True)
            checkpoint = next(pending, None)


# -- signed heads ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedHead:
    """A signed checkpoint a party kept: the service's word that the ledger reached ``seqno``.

    Its ``chain_head`` is the hash of entry ``seqno``, which hashes every entry before it, so an
    export that a party checks against a head it saved earlier (``ledger head --file``, or any
    receipt) cannot have been cut at an earlier checkpoint boundary or forked without notice.
    ``source`` says where it came from, for messages.
    """

    from_seqno: int
    seqno: int
    chain_head: str
    merkle_root: str
    signed: bytes
    source: str

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, source: str) -> SignedHead:
        """Read the ``checkpoint`` object of a head file, a receipt or an export line."""
        try:
            fields = (
                checkpoint["from_seqno"],
                checkpoint["to_seqno"],
                checkpoint["chain_head"],
                checkpoint["merkle_root"],
            )
            signed = unb64(checkpoint["signed"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"signed head from {source} is missing checkpoint fields ({exc})",
                hint="save one with `cleanroom governance ledger head --file F`",
            ) from exc
        if type(fields[0]) is not int or type(fields[1]) is not int or not all(isinstance(f, str) for f in fields[2:]):
            raise InvalidInputError(
                f"signed head from {source} has checkpoint fields of the wrong type",
                hint="save one with `cleanroom governance ledger head --file F`",
            )
        return cls(fields[0], fields[1], fields[2], fields[3], signed, source)

    def body(self) -> dict[str, Any]:
        return checkpoint_body(self.from_seqno, self.seqno, self.chain_head, self.merkle_root)

    def document(self) -> dict[str, Any]:
        """The head file (docs/formats/ledger.md, "Signed head")."""
        return {
            "format": HEAD_FORMAT,
            "version": HEAD_VERSION,
            "checkpoint": self.body() | {"signed": b64(self.signed)},
        }

    def verify(self, service_key: ec.EllipticCurvePublicKey) -> None:
        """Raise IntegrityError unless the service whose key this is signed exactly this head."""
        reason = verify_checkpoint(self.signed, self.body(), service_key)
        if reason:
            raise IntegrityError(
                f"signed head from {self.source} (entry {self.seqno}) is not valid for this ledger's service: {reason}",
                hint="use a head saved from the same governance service with "
                "`cleanroom governance ledger head --file F`",
            )


def load_signed_head(path: Path) -> SignedHead:
    """A head file saved by ``ledger head --file`` or a receipt saved by ``ledger receipt -o json``."""
    if not path.is_file():
        raise InvalidInputError(
            f"signed head file {path} does not exist", hint="save one with `cleanroom governance ledger head --file F`"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(
            f"signed head file {path} is not JSON ({exc})",
            hint="save one with `cleanroom governance ledger head --file F`",
        ) from exc
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("checkpoint"), dict)
        or (document.get("format") not in (HEAD_FORMAT, None))
        or (document.get("format") is None and "entry" not in document)
    ):
        raise InvalidInputError(
            f"{path} is not a signed ledger head or a receipt",
            hint="save one with `cleanroom governance ledger head --file F`",
        )
    return SignedHead.from_checkpoint(document["checkpoint"], str(path))


# -- verification ---------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    """What an offline verification established (every count counts signatures actually checked)."""

    entries: int = 0
    checkpoints: int = 0
    last_seqno: int = 0
    last_checkpoint_seqno: int = 0
    member_signatures_checked: int = 0  # ES384 checks of members' requests (``full`` only)
    service_signatures_checked: int = 0  # checkpoints, the signed head and service-signed requests
    attested_entries: int = 0  # clean-room writes: no signature, authenticated at write time
    service_id: str = ""
    full: bool = False
    against: str | None = None  # where the signed head came from, if one was checked
    head_seqno: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "lastSeqno": self.last_seqno,
            "lastCheckpointSeqno": self.last_checkpoint_seqno,
            "memberSignaturesChecked": self.member_signatures_checked,
            "serviceSignaturesChecked": self.service_signatures_checked,
            "attestedEntries": self.attested_entries,
            "serviceId": self.service_id,
            "full": self.full,
            "against": self.against,
            "headSeqno": self.head_seqno,
        }


def _bad(seqno: int, why: str) -> IntegrityError:
    return IntegrityError(
        f"ledger entry {seqno} {why}",
        hint="the ledger was altered after it was written; do not trust entries from here on",
    )


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


def _span(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first}..{last}"


_EXPORT_HINT = "export it again with `cleanroom governance ledger export --file F`"


def verify_export(
    lines: Iterable[str],
    *,
    expected_service_cert_pem: str | None = None,
    full: bool = False,
    against: SignedHead | None = None,
) -> VerifyReport:
    """Verify an export end to end; raise IntegrityError naming the first bad entry.

    ``expected_service_cert_pem`` is the certificate the workspace pinned; without it the
    export's own certificate is trusted (say so to the user). The export must end at a signed
    checkpoint: entries after it are not vouched for by anything and are an error, as is an
    export with no entries. ``against`` is a signed head the verifier holds (saved earlier or
    just fetched from the service): the export must reach it and agree with it, which is what
    catches an export cut at a checkpoint boundary. See the module docstring for which member
    signatures are checked.
    """
    iterator = iter(lines)
    try:
        header = json.loads(next(iterator))
    except (StopIteration, json.JSONDecodeError) as exc:
        raise InvalidInputError("ledger export is empty or not JSON lines", hint=_EXPORT_HINT) from exc
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT or header.get("version") != EXPORT_VERSION:
        raise InvalidInputError("file is not a cleanroom ledger export (version 1)", hint=_EXPORT_HINT)
    try:
        service_cert = load_certificate(header["service_cert"])
        members = dict(header.get("members") or {})
        member_certs = {member_id: load_certificate(pem) for member_id, pem in members.items()}
    except (KeyError, TypeError, ValueError, AttributeError, InvalidInputError) as exc:
        raise InvalidInputError(
            "ledger export header has no valid service_cert or members certificates", hint=_EXPORT_HINT
        ) from exc
    if expected_service_cert_pem is not None and member_id_of(
        load_certificate(expected_service_cert_pem)
    ) != member_id_of(service_cert):
        raise IntegrityError(
            "ledger export is signed by a different governance service than the pinned one",
            hint="export it from the service this workspace was deployed against",
        )
    service_key = service_cert.public_key()
    if not isinstance(service_key, ec.EllipticCurvePublicKey):
        raise InvalidInputError("ledger export header's service_cert has no P-384 key", hint=_EXPORT_HINT)
    member_keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for member_id, cert in member_certs.items():
        if member_id_of(cert) != member_id:
            raise IntegrityError(
                f"member certificate listed for {str(member_id)[:16]}… has another hash",
                hint="the export header was altered",
            )
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidInputError(
                f"member certificate listed for {member_id[:16]}… has no P-384 key", hint=_EXPORT_HINT
            )
        member_keys[member_id] = key

    report = VerifyReport(service_id=member_id_of(service_cert), full=full)
    prev, expected = GENESIS_PREV, 1
    window: list[str] = []  # entry hashes since the last checkpoint
    head_hash: str | None = None  # the hash of entry ``against.seqno``, once seen
    try:
        for line in iterator:
            if not line.strip():
                continue
            record = json.loads(line)
            entry = record.get("entry")
            if entry is not None:
                seqno = entry["seqno"]
                if type(seqno) is not int:
                    raise ValueError(f"seqno {seqno!r} is not an integer")
                if seqno != expected:
                    raise _bad(expected, f"is missing (found {seqno} next)")
                if entry["prev"] != prev:
                    raise _broken_prev(seqno, vouched=seqno > 1 and report.last_checkpoint_seqno == seqno - 1)
                request = unb64(entry["request"])
                if hashlib.sha256(request).hexdigest() != entry["digest"]:
                    raise _bad(seqno, "was altered: its request does not match its payload digest")
                recomputed = entry_hash(seqno, entry["prev"], entry["digest"], entry["signer"], entry["kind"])
                if recomputed != entry["hash"]:
                    raise _bad(seqno, "was altered: its fields do not match its hash")
                if full:
                    checked = _check_signer(seqno, entry["signer"], request, member_keys, service_key)
                    if checked == "member":
                        report.member_signatures_checked += 1
                    elif checked == "service":
                        report.service_signatures_checked += 1
                    else:
                        report.attested_entries += 1
                if against is not None and seqno == against.seqno:
                    head_hash = recomputed
                window.append(recomputed)
                prev, expected = recomputed, seqno + 1
                report.entries += 1
                continue
            cp = record.get("checkpoint")
            if cp is None:
                raise InvalidInputError(
                    f"unknown record after entry {expected - 1} in the ledger export", hint=_EXPORT_HINT
                )
            first, last = cp["from_seqno"], cp["to_seqno"]
            where = f"checkpoint for entries {first}..{last}"
            if last != expected - 1 or first != report.last_checkpoint_seqno + 1 or len(window) != last - first + 1:
                raise IntegrityError(
                    f"{where} does not cover the entries before it",
                    hint="entries were inserted or removed after the checkpoint was signed",
                )
            if cp["chain_head"] != prev or cp["merkle_root"] != merkle_root(window):
                verb = "does not match its" if first == last else "do not match their"
                raise IntegrityError(
                    f"ledger {_span(first, last)} {verb} signed checkpoint (an entry was rewritten)",
                    hint="the ledger was altered after it was written; do not trust entries from here on",
                )
            reason = verify_checkpoint(
                unb64(cp["signed"]), checkpoint_body(first, last, cp["chain_head"], cp["merkle_root"]), service_key
            )
            if reason:
                raise IntegrityError(f"{where} is not valid: {reason}", hint="the ledger export was altered")
            report.checkpoints += 1
            report.service_signatures_checked += 1
            report.last_checkpoint_seqno = last
            window = []
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidInputError(
            f"ledger export is malformed after entry {expected - 1} ({exc})", hint=_EXPORT_HINT
        ) from exc
    report.last_seqno = expected - 1
    if report.entries == 0:
        raise IntegrityError(
            "ledger export has no entries, so it vouches for nothing (a ledger starts with its genesis entry)",
            hint=_EXPORT_HINT,
        )
    if report.last_checkpoint_seqno == 0:
        raise IntegrityError(
            f"ledger export has no signed checkpoint: its {_entries(report.entries)} "
            f"({_span(1, report.last_seqno)}) could not be vouched for",
            hint="an export must end at a signed checkpoint; " + _EXPORT_HINT,
        )
    if report.last_seqno > report.last_checkpoint_seqno:
        first, count = report.last_checkpoint_seqno + 1, report.last_seqno - report.last_checkpoint_seqno
        raise IntegrityError(
            f"ledger export ends with {_entries(count)} ({_span(first, report.last_seqno)}) after its last signed "
            f"checkpoint (entry {report.last_checkpoint_seqno}): {_entries(count)} could not be vouched for",
            hint="an export must end at a signed checkpoint; " + _EXPORT_HINT,
        )
    if against is not None:
        _check_against(report, against, head_hash, service_key)
    return report


def _broken_prev(seqno: int, *, vouched: bool) -> IntegrityError:
    """Name the entry whose ``prev`` does not link, and what that means for its predecessor."""
    if seqno == 1:
        return _bad(1, f"has a broken prev: the first entry's prev must be {GENESIS_PREV[:8]}… (64 zeros)")
    if vouched:  # the previous entry is the chain head of a checkpoint that verified
        return _bad(
            seqno,
            f"has a broken prev: it is not the hash of entry {seqno - 1}, which a signed "
            f"checkpoint vouches for, so entry {seqno} was altered",
        )
    return _bad(
        seqno,
        f"has a broken prev: it is not the hash of entry {seqno - 1} (entry {seqno}'s prev "
        f"or entry {seqno - 1} was altered)",
    )


def _check_against(
    report: VerifyReport, head: SignedHead, head_hash: str | None, service_key: ec.EllipticCurvePublicKey
) -> None:
    """The export must reach the signed head the verifier holds, and agree with it there."""
    head.verify(service_key)
    report.service_signatures_checked += 1
    if report.last_seqno < head.seqno:
        missing = head.seqno - report.last_seqno
        raise IntegrityError(
            f"ledger export ends at entry {report.last_seqno} but the signed head from {head.source} reaches "
            f"entry {head.seqno}: {_entries(missing)} ({_span(report.last_seqno + 1, head.seqno)}) missing from "
            f"the export could not be vouched for",
            hint="the export was cut or is older than the head; export the ledger again and verify the new file",
        )
    if head_hash != head.chain_head:
        raise _bad(
            head.seqno,
            f"differs from the signed head from {head.source}: this export is not the history "
            "the service signed; do not trust it",
        )
    report.against, report.head_seqno = head.source, head.seqno


def _check_signer(
    seqno: int,
    signer: str,
    request: bytes,
    member_keys: dict[str, ec.EllipticCurvePublicKey],
    service_key: ec.EllipticCurvePublicKey,
) -> str:
    """Check the signature on an entry's request; return whose it was: member, service or attested."""
    if signer.startswith(ATTESTED_PREFIX):
        return "attested"  # a clean-room write, authenticated by attestation at write time; no signature
    key = service_key if signer == SERVICE_SIGNER else member_keys.get(signer)
    if key is None:
        raise _bad(seqno, f"names signer {signer[:16]}… whose certificate is not in the export")
    try:
        parsed = parse_message(request)
    except SignatureRejected as exc:
        raise _bad(seqno, f"request is not a signed message ({exc.message})") from exc
    if (signer != SERVICE_SIGNER and parsed.kid != signer) or not parsed.verify_with(key):
        raise _bad(seqno, "request signature does not verify with its signer's certificate")
    return "service" if signer == SERVICE_SIGNER else "member"


def verify_export_file(
    path: Path, *, expected_service_cert_pem: str | None = None, full: bool = False, against: SignedHead | None = None
) -> VerifyReport:
    if not path.is_file():
        raise InvalidInputError(
            f"ledger export {path} does not exist", hint="create it with `cleanroom governance ledger export --file F`"
        )
    with path.open("r", encoding="utf-8") as handle:
        try:
            return verify_export(
                handle, expected_service_cert_pem=expected_service_cert_pem, full=full, against=against
            )
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"ledger export {path} is not UTF-8 JSON lines", hint=_EXPORT_HINT) from exc


# -- receipts -------------------------------------------------------------------------------------
def verify_receipt(receipt: dict[str, Any], *, service_cert_pem: str) -> dict[str, Any]:
    """Check that ``receipt['entry']`` is in the ledger the pinned service signed; return the entry."""
    try:
        entry, cp, path = receipt["entry"], receipt["checkpoint"], receipt["path"]
        seqno = entry["seqno"]
        recomputed = entry_hash(seqno, entry["prev"], entry["digest"], entry["signer"], entry["kind"])
        body = checkpoint_body(cp["from_seqno"], cp["to_seqno"], cp["chain_head"], cp["merkle_root"])
        signed = unb64(cp["signed"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError("receipt is missing fields", hint="fetch it again with `ledger receipt`") from exc
    if recomputed != entry.get("hash"):
        raise IntegrityError(
            f"receipt for entry {seqno}: the entry fields do not match its hash", hint="the receipt was altered"
        )
    if not cp["from_seqno"] <= seqno <= cp["to_seqno"] or root_from_path(recomputed, path) != cp["merkle_root"]:
        raise IntegrityError(
            f"receipt for entry {seqno}: the Merkle path does not lead to the checkpoint root",
            hint="the receipt was altered",
        )
    service_key = load_certificate(service_cert_pem).public_key()
    reason = verify_checkpoint(signed, body, service_key)  # type: ignore[arg-type]
    if reason:
        raise IntegrityError(
            f"receipt for entry {seqno}: checkpoint {reason}",
            hint="check that the receipt came from the pinned governance service",
        )
    return dict(entry)
