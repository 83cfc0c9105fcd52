"""What ``verify_request`` hands the ledger and the replay cache, now that the Signature1
structure is encoded once and a plain write's canonical message is reused as its record."""

from __future__ import annotations

import hashlib

import cbor2

from core.crypto.identity import MemberIdentity
from core.governance.signing import VerifiedRequest, parse_message, sign_request, sign_secret_put, verify_request

BALLOT_PATH = "/proposals/" + "ab" * 32 + "/ballots"
SECRET_PATH = "/contracts/c1/secrets/weights-key"


def _verify(member: MemberIdentity, raw: bytes, path: str) -> VerifiedRequest:
    key = member.private_key.public_key()
    return verify_request(raw, path=path, window_seconds=300, member_key=lambda kid: key)


def test_a_plain_write_is_ledgered_as_the_canonical_message_it_arrived_as() -> None:
    member = MemberIdentity.generate("provider")
    raw = sign_request(member, BALLOT_PATH, {"ballot": "accept"})
    verified = _verify(member, raw, BALLOT_PATH)
    parsed = parse_message(raw)
    assert verified.ledger_record == raw == parsed.ledger_record
    signature1 = cbor2.dumps(["Signature1", parsed.protected, b"", parsed.payload])
    assert verified.digest == hashlib.sha256(signature1).hexdigest() == parsed.signed_digest


def test_a_secret_put_is_ledgered_without_its_value_and_keyed_by_what_was_signed() -> None:
    member = MemberIdentity.generate("provider")
    value = b"the-model-weights-key-0123456789"
    raw = sign_secret_put(member, SECRET_PATH, value)
    verified = _verify(member, raw, SECRET_PATH)
    assert verified.ledger_record != raw
    assert value not in verified.ledger_record
    assert (
        verified.ledger_record
        == parse_message(raw, allowed_unprotected=frozenset(verified.unprotected or {})).ledger_record
    )
    assert verified.digest == parse_message(verified.ledger_record).signed_digest
