"""COSE_Sign1 requests: our messages are standard, pycose-made messages are accepted, bad ones refused."""

from __future__ import annotations

import json
import time

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pycose.algorithms import Es384
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key
from pycose.keys.curves import P384
from pycose.messages import Sign1Message

from core.config.canonical import canonical_json
from core.crypto.identity import MemberIdentity
from core.governance.signing import CREATED_AT, NONCE, PATH, SignatureRejected, sign_request, verify_request


def _pycose_key(private_key: ec.EllipticCurvePrivateKey) -> EC2Key:
    numbers = private_key.private_numbers()
    return EC2Key(
        crv=P384,
        x=numbers.public_numbers.x.to_bytes(48, "big"),
        y=numbers.public_numbers.y.to_bytes(48, "big"),
        d=numbers.private_value.to_bytes(48, "big"),
    )


@pytest.fixture(scope="module")
def member() -> MemberIdentity:
    return MemberIdentity.generate("hoster")


def _lookup(member: MemberIdentity):
    return lambda member_id: member.certificate.public_key() if member_id == member.member_id else None


def test_a_message_signed_by_pycose_is_accepted(member: MemberIdentity) -> None:
    body = {"ballot": "accept"}
    message = Sign1Message(
        phdr={
            Algorithm: Es384,
            KID: member.member_id.encode(),
            CREATED_AT: int(time.time()),
            PATH: "/proposals/p/ballots",
        },
        payload=canonical_json(body),
    )
    message.key = _pycose_key(member.private_key)
    verified = verify_request(
        message.encode(), path="/proposals/p/ballots", member_key=_lookup(member), window_seconds=60
    )
    assert verified.signer == member.member_id and verified.body == body


def test_our_message_is_a_tagged_cose_sign1_with_the_documented_header(member: MemberIdentity) -> None:
    raw = sign_request(member, "/contracts/x", {"data": {"b": 1, "a": 2}}, created_at=1_700_000_000)
    tag = cbor2.loads(raw)
    assert tag.tag == 18
    protected, unprotected, payload, signature = tag.value
    header = dict(cbor2.loads(protected))
    nonce = header.pop(NONCE)  # random per message: two identical requests are two requests
    assert isinstance(nonce, bytes) and len(nonce) == 16
    assert header == {1: -35, 4: member.member_id.encode(), CREATED_AT: 1_700_000_000, PATH: "/contracts/x"}
    assert unprotected == {} and payload == b'{"data":{"a":2,"b":1}}' and len(signature) == 96
    assert json.loads(payload) == {"data": {"a": 2, "b": 1}}
    # pycose verifies the same structure (its decoder wants a list and a dict, not cbor2's
    # tuple and frozendict, so hand it the items)
    parsed = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)
    parsed.key = _pycose_key(member.private_key)
    assert parsed.verify_signature()


def test_tampered_payload_and_wrong_window_are_refused(member: MemberIdentity) -> None:
    raw = sign_request(member, "/p", {"ballot": "accept"})
    tag = cbor2.loads(raw)
    items = list(tag.value)
    items[2] = b'{"ballot":"reject"}'
    with pytest.raises(SignatureRejected, match="does not verify") as info:
        verify_request(cbor2.dumps(cbor2.CBORTag(18, items)), path="/p", member_key=_lookup(member), window_seconds=60)
    assert info.value.status == 401
    old = sign_request(member, "/p", {}, created_at=int(time.time()) - 120)
    with pytest.raises(SignatureRejected, match="freshness"):
        verify_request(old, path="/p", member_key=_lookup(member), window_seconds=60)
    with pytest.raises(SignatureRejected, match="ES384"):
        verify_request(
            cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7}), {}, b"{}", b"x" * 64])),
            path="/p",
            member_key=_lookup(member),
            window_seconds=60,
        )
