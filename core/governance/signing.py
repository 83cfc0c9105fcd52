"""COSE Sign1 requests: how a member signs every governance write, and how the service checks it.

Format (RFC 9052 COSE_Sign1, tag 18), as CCF governance does:

* protected header: ``1`` (alg) = ``-35`` (ES384), ``4`` (kid) = the member id (hex, UTF-8
  bytes), ``"cleanroom.created_at"`` = integer Unix seconds, ``"cleanroom.path"`` = the HTTP
  path the message is for (binds a ballot to one proposal and one endpoint, so a signed
  message cannot be replayed against another endpoint);
* payload: canonical JSON of the request body;
* signature: raw ``r || s`` (96 bytes), ECDSA P-384 over SHA-384 of the ``Signature1``
  structure with empty external AAD.

Why not ``pycose`` for the hot path: its EC2 backend is pure-Python (python-ecdsa, ~3 ms a
signature and more per verification) and its decoder rejects the tuples recent cbor2 returns,
which would put the ballot round trip far over budget. The structure above is exactly what
pycose produces; the ECDSA itself is ``cryptography``'s. ``tests/test_governance_signing.py``
proves that messages signed by pycose are accepted here.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from core.config.canonical import canonical_json
from core.crypto.identity import MemberIdentity

COSE_SIGN1_TAG = 18
ALG_LABEL, KID_LABEL = 1, 4
ES384 = -35
CREATED_AT = "cleanroom.created_at"
PATH = "cleanroom.path"
CONTENT_TYPE = "application/cose"
_ECDSA = ec.ECDSA(hashes.SHA384())
_COORD = 48  # P-384 coordinate size in bytes


class SignatureRejected(Exception):
    """A request failed authentication; ``status`` is the HTTP status the service answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose signature, signer, freshness and path were checked."""

    signer: str
    created_at: int
    path: str
    body: dict[str, Any]
    raw: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def sign_es384(private_key: ec.EllipticCurvePrivateKey, *, kid: str, path: str, body: Any,
               created_at: int | None = None) -> bytes:
    """Sign ``body`` for ``path`` with any P-384 key (members, and the service for checkpoints)."""
    protected = cbor2.dumps({
        ALG_LABEL: ES384,
        KID_LABEL: kid.encode(),
        CREATED_AT: int(time.time()) if created_at is None else int(created_at),
        PATH: path,
    })
    payload = canonical_json(body)
    r, s = decode_dss_signature(private_key.sign(_to_be_signed(protected, payload), _ECDSA))
    signature = r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def sign_request(identity: MemberIdentity, path: str, body: Any, *, created_at: int | None = None) -> bytes:
    """A member's signed write for ``path`` (what the client sends as the request body)."""
    return sign_es384(identity.private_key, kid=identity.member_id, path=path, body=body,
                      created_at=created_at)


@dataclass(frozen=True)
class ParsedMessage:
    """A decoded COSE_Sign1 whose signature has not been checked yet."""

    kid: str
    created_at: int
    path: str
    protected: bytes
    payload: bytes
    signature: bytes

    def verify_with(self, public_key: ec.EllipticCurvePublicKey) -> bool:
        if len(self.signature) != 2 * _COORD:
            return False
        r = int.from_bytes(self.signature[:_COORD], "big")
        s = int.from_bytes(self.signature[_COORD:], "big")
        try:
            public_key.verify(encode_dss_signature(r, s), _to_be_signed(self.protected, self.payload), _ECDSA)
        except InvalidSignature:
            return False
        return True


def parse_message(raw: bytes) -> ParsedMessage:
    """Decode a COSE_Sign1 and its protected header; refuse anything else with a 400/401."""
    try:
        message = cbor2.loads(raw)
    except Exception as exc:  # cbor2 raises several types for garbage
        raise SignatureRejected(400, "request body is not CBOR: send a COSE_Sign1 message "
                                     f"(Content-Type {CONTENT_TYPE})") from exc
    if not isinstance(message, cbor2.CBORTag) or message.tag != COSE_SIGN1_TAG \
            or not isinstance(message.value, (list, tuple)) or len(message.value) != 4:
        raise SignatureRejected(400, "request body is not a COSE_Sign1 message (CBOR tag 18 with 4 items)")
    protected, _unprotected, payload, signature = message.value
    if not isinstance(protected, bytes) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise SignatureRejected(400, "COSE_Sign1 fields have the wrong types")
    if not signature:
        raise SignatureRejected(401, "request is unsigned: the COSE_Sign1 signature is empty")
    try:
        header = cbor2.loads(protected) if protected else {}
    except Exception as exc:
        raise SignatureRejected(400, "COSE protected header is not CBOR") from exc
    if not isinstance(header, dict) or header.get(ALG_LABEL) != ES384:
        raise SignatureRejected(401, "request must be signed with ES384 (COSE alg -35)")
    kid, created_at, path = header.get(KID_LABEL), header.get(CREATED_AT), header.get(PATH)
    if not isinstance(kid, bytes) or not isinstance(created_at, int) or not isinstance(path, str):
        raise SignatureRejected(400, f"COSE protected header needs kid, {CREATED_AT!r} and {PATH!r}")
    return ParsedMessage(kid=kid.decode(errors="replace"), created_at=created_at, path=path,
                         protected=protected, payload=payload, signature=signature)


def verify_request(raw: bytes, *, path: str, member_key: Callable[[str], ec.EllipticCurvePublicKey | None],
                   window_seconds: int, now: float | None = None) -> VerifiedRequest:
    """Check a member's signed write: structure, membership, signature, freshness and path.

    ``member_key(member_id)`` returns the public key of a member allowed to sign, or None.
    Replays (the same bytes twice) are the caller's job: it must remember ``digest`` for
    ``window_seconds`` because only it has durable storage.
    """
    parsed = parse_message(raw)
    public_key = member_key(parsed.kid)
    if public_key is None:
        raise SignatureRejected(401, f"signer {parsed.kid[:16]}… is not a member of this consortium")
    if not parsed.verify_with(public_key):
        raise SignatureRejected(401, "signature does not verify with the member's certificate")
    current = time.time() if now is None else now
    if abs(current - parsed.created_at) > window_seconds:
        raise SignatureRejected(401, f"created_at {parsed.created_at} is outside the {window_seconds}s "
                                     "freshness window: check the clock and sign again")
    if parsed.path != path:
        raise SignatureRejected(401, f"message was signed for {parsed.path!r}, not {path!r}")
    try:
        body = _loads_json(parsed.payload)
    except ValueError as exc:
        raise SignatureRejected(400, "COSE payload is not a JSON object") from exc
    return VerifiedRequest(signer=parsed.kid, created_at=parsed.created_at, path=parsed.path,
                           body=body, raw=raw)


def _loads_json(payload: bytes) -> dict[str, Any]:
    value = json.loads(payload) if payload else {}
    if not isinstance(value, dict):
        raise ValueError("payload is not an object")
    return value
