"""COSE Sign1 requests: how a member signs every governance write, and how the service checks it.

Format (RFC 9052 COSE_Sign1, tag 18), as CCF governance does:

* protected header: ``1`` (alg) = ``-35`` (ES384), ``4`` (kid) = the member id (hex, UTF-8
  bytes), ``"cleanroom.created_at"`` = integer Unix seconds, ``"cleanroom.path"`` = the HTTP
  path the message is for (binds a ballot to one proposal and one endpoint, so a signed
  message cannot be replayed against another endpoint), and ``"cleanroom.nonce"`` = 16 random
  bytes (optional for the service, always sent by our clients: it makes two deliberate,
  identical requests in one second two requests, since the replay cache keys on what is signed);
* payload: canonical JSON of the request body;
* signature: raw ``r || s`` (96 bytes), ECDSA P-384 over SHA-384 of the ``Signature1``
  structure with empty external AAD;
* unprotected header: empty, except on a secret ``PUT`` (``/contracts/<id>/secrets/<name>``),
  where it carries the secret's bytes (``"cleanroom.secret_value"``) and a 32-byte nonce
  (``"cleanroom.secret_nonce"``) and the signed payload carries only their commitment
  ``{"value_commitment": hex SHA-256(nonce || value)}``: the ledger keeps the message without
  the unprotected header, so a ledger export holds no secret value, and a low-entropy value
  cannot be guessed from the commitment because the nonce never reaches the ledger.

A request is identified by what is signed, not by its bytes (``VerifiedRequest.digest`` is the
SHA-256 of the ``Signature1`` structure: protected header, which binds the path and time, and
payload). The message must be the canonical CBOR encoding of itself with nothing after it, so
an extra header, another length encoding, another tag or trailing bytes are refused outright,
and a re-signed copy (ECDSA signatures are malleable: ``(r, n - s)`` verifies too) has the same
digest as the original, so the replay cache refuses it.

Why not ``pycose`` for the hot path: its EC2 backend is pure-Python (python-ecdsa, ~3 ms a
signature and more per verification) and its decoder rejects the tuples recent cbor2 returns,
which would put the ballot round trip far over budget. The structure above is exactly what
pycose produces; the ECDSA itself is ``cryptography``'s. ``tests/test_governance_signing.py``
proves that messages signed by pycose are accepted here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

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
NONCE = "cleanroom.nonce"
NONCE_BYTES = 16
SECRET_VALUE = "cleanroom.secret_value"
SECRET_NONCE = "cleanroom.secret_nonce"
SECRET_NONCE_BYTES = 32
READ_SCHEME = "COSE-Sign1"  # ``Authorization: COSE-Sign1 <base64 message>`` on member-only reads
READ_BODY = {"method": "GET"}
_SECRET_PATH = re.compile(r"/contracts/[^/]+/secrets/[^/]+")
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
    """A request whose signature, signer, freshness and path were checked.

    ``digest`` (the replay-cache key and proposal id) is the SHA-256 of what was signed, so two
    encodings of one signed request are the same request. ``ledger_record`` is the message as
    the ledger keeps it: canonical, with an empty unprotected header (no secret value).
    ``unprotected`` is the unprotected header (only a secret PUT may have one).
    """

    signer: str
    created_at: int
    path: str
    body: dict[str, Any]
    raw: bytes
    signed_digest: str = ""
    ledger_record: bytes = b""
    unprotected: dict[Any, Any] | None = None

    @property
    def digest(self) -> str:
        return self.signed_digest or hashlib.sha256(self.raw).hexdigest()


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def _encode(protected: bytes, unprotected: dict[Any, Any], payload: bytes, signature: bytes) -> bytes:
    """The canonical encoding of a COSE_Sign1 (the only encoding the service accepts)."""
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, unprotected, payload, signature]), canonical=True)


def sign_es384(
    private_key: ec.EllipticCurvePrivateKey,
    *,
    kid: str,
    path: str,
    body: Any,
    created_at: int | None = None,
    unprotected: dict[str, bytes] | None = None,
) -> bytes:
    """Sign ``body`` for ``path`` with any P-384 key (members, and the service for checkpoints).

    ``unprotected`` is for a secret PUT only (see the module docstring); it is not signed."""
    protected = cbor2.dumps(
        {
            ALG_LABEL: ES384,
            KID_LABEL: kid.encode(),
            CREATED_AT: int(time.time()) if created_at is None else int(created_at),
            PATH: path,
            NONCE: os.urandom(NONCE_BYTES),
        }
    )
    payload = canonical_json(body)
    r, s = decode_dss_signature(private_key.sign(_to_be_signed(protected, payload), _ECDSA))
    signature = r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")
    return _encode(protected, dict(unprotected or {}), payload, signature)


def sign_request(identity: MemberIdentity, path: str, body: Any, *, created_at: int | None = None) -> bytes:
    """A member's signed write for ``path`` (what the client sends as the request body)."""
    return sign_es384(identity.private_key, kid=identity.member_id, path=path, body=body, created_at=created_at)


def secret_commitment(nonce: bytes, value: bytes) -> str:
    """What a secret PUT signs instead of the value: hex SHA-256(nonce || value)."""
    return hashlib.sha256(nonce + value).hexdigest()


def sign_secret_put(
    identity: MemberIdentity, path: str, value: bytes, *, nonce: bytes | None = None, created_at: int | None = None
) -> bytes:
    """A member's secret PUT: the value and nonce ride unsigned, their commitment is signed."""
    nonce = os.urandom(SECRET_NONCE_BYTES) if nonce is None else nonce
    return sign_es384(
        identity.private_key,
        kid=identity.member_id,
        path=path,
        created_at=created_at,
        body={"value_commitment": secret_commitment(nonce, value)},
        unprotected={SECRET_NONCE: nonce, SECRET_VALUE: value},
    )


def sign_read(identity: MemberIdentity, path: str, *, created_at: int | None = None) -> str:
    """The ``Authorization`` header value of a member-only read of ``path`` (fresh for the
    service's window; the path is bound in, so it opens no other resource)."""
    message = sign_request(identity, path, READ_BODY, created_at=created_at)
    return f"{READ_SCHEME} {base64.b64encode(message).decode()}"


@dataclass(frozen=True)
class ParsedMessage:
    """A decoded COSE_Sign1 whose signature has not been checked yet."""

    kid: str
    created_at: int
    path: str
    protected: bytes
    payload: bytes
    signature: bytes
    unprotected: dict[Any, Any] = field(default_factory=dict)

    @cached_property
    def to_be_signed(self) -> bytes:
        """The Signature1 structure: encoded once, then both verified and digested."""
        return _to_be_signed(self.protected, self.payload)

    @property
    def signed_digest(self) -> str:
        """SHA-256 of the Signature1 structure: the identity of the request for replay checks."""
        return hashlib.sha256(self.to_be_signed).hexdigest()

    @property
    def ledger_record(self) -> bytes:
        """The message as the ledger keeps it: canonical, unprotected header dropped."""
        return _encode(self.protected, {}, self.payload, self.signature)

    def verify_with(self, public_key: ec.EllipticCurvePublicKey) -> bool:
        if len(self.signature) != 2 * _COORD:
            return False
        r = int.from_bytes(self.signature[:_COORD], "big")
        s = int.from_bytes(self.signature[_COORD:], "big")
        try:
            public_key.verify(encode_dss_signature(r, s), self.to_be_signed, _ECDSA)
        except InvalidSignature:
            return False
        return True


def parse_message(raw: bytes, *, allowed_unprotected: frozenset[str] = frozenset()) -> ParsedMessage:
    """Decode a COSE_Sign1 and its protected header; refuse anything else with a 400/401.

    The message must be exactly the canonical encoding of what it decodes to (no trailing bytes,
    no indefinite or over-long lengths, tag 18 only once) and its unprotected header empty but
    for the ``allowed_unprotected`` labels."""
    try:
        message = cbor2.loads(raw)
    except Exception as exc:  # cbor2 raises several types for garbage
        raise SignatureRejected(
            400, f"request body is not CBOR: send a COSE_Sign1 message (Content-Type {CONTENT_TYPE})"
        ) from exc
    if (
        not isinstance(message, cbor2.CBORTag)
        or message.tag != COSE_SIGN1_TAG
        or not isinstance(message.value, (list, tuple))
        or len(message.value) != 4
    ):
        raise SignatureRejected(400, "request body is not a COSE_Sign1 message (CBOR tag 18 with 4 items)")
    protected, unprotected, payload, signature = message.value
    if (
        not isinstance(protected, bytes)
        or not isinstance(payload, bytes)
        or not isinstance(signature, bytes)
        or not isinstance(unprotected, (dict, cbor2.frozendict))
    ):
        raise SignatureRejected(400, "COSE_Sign1 fields have the wrong types")
    unexpected = [label for label in unprotected if label not in allowed_unprotected]
    if unexpected:
        raise SignatureRejected(
            400,
            f"COSE unprotected header has unexpected label {unexpected[0]!r}: "
            "send it empty (put everything in the protected header)",
        )
    try:
        canonical = _encode(protected, dict(unprotected), payload, signature)
    except Exception:  # an unencodable label or value in the unprotected header
        canonical = b""
    if canonical != raw:
        raise SignatureRejected(
            400,
            "COSE_Sign1 is not canonical CBOR (another length encoding, extra tag "
            "or trailing bytes): send the message exactly as signed",
        )
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
    return ParsedMessage(
        kid=kid.decode(errors="replace"),
        created_at=created_at,
        path=path,
        protected=protected,
        payload=payload,
        signature=signature,
        unprotected=dict(unprotected),
    )


def verify_request(
    raw: bytes,
    *,
    path: str,
    member_key: Callable[[str], ec.EllipticCurvePublicKey | None],
    window_seconds: int,
    now: float | None = None,
) -> VerifiedRequest:
    """Check a member's signed write: structure, membership, signature, freshness and path.

    ``member_key(member_id)`` returns the public key of a member allowed to sign, or None.
    Replays (the same signed content twice, whatever its encoding) are the caller's job: it must
    remember ``digest`` for ``window_seconds`` because only it has durable storage.
    """
    allowed = frozenset({SECRET_VALUE, SECRET_NONCE}) if _SECRET_PATH.fullmatch(path) else frozenset()
    parsed = parse_message(raw, allowed_unprotected=allowed)
    public_key = member_key(parsed.kid)
    if public_key is None:
        raise SignatureRejected(401, f"signer {parsed.kid[:16]}… is not a member of this consortium")
    if not parsed.verify_with(public_key):
        raise SignatureRejected(401, "signature does not verify with the member's certificate")
    current = time.time() if now is None else now
    if abs(current - parsed.created_at) > window_seconds:
        raise SignatureRejected(
            401,
            f"created_at {parsed.created_at} is outside the {window_seconds}s "
            "freshness window: check the clock and sign again",
        )
    if parsed.path != path:
        raise SignatureRejected(401, f"message was signed for {parsed.path!r}, not {path!r}")
    try:
        body = _loads_json(parsed.payload)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the stack
        raise SignatureRejected(400, "COSE payload is not a JSON object") from exc
    return VerifiedRequest(
        signer=parsed.kid,
        created_at=parsed.created_at,
        path=parsed.path,
        body=body,
        raw=raw,
        signed_digest=parsed.signed_digest,
        # parse_message proved ``raw`` is the canonical encoding: with no unprotected header it
        # is already the ledger record, so it is not encoded a third time
        ledger_record=parsed.ledger_record if parsed.unprotected else raw,
        unprotected=parsed.unprotected,
    )


def verify_read(
    authorization: str | None,
    *,
    path: str,
    member_key: Callable[[str], ec.EllipticCurvePublicKey | None],
    window_seconds: int,
) -> str:
    """Check a member-only read's ``Authorization`` header; return the reading member's id.

    Reads change nothing, so a read header is not put in the replay cache: it may be reused for
    the same path within the freshness window (as a long poll or stream reconnect does)."""
    if not authorization:
        raise SignatureRejected(
            401,
            f"this read is for members only: send 'Authorization: {READ_SCHEME} "
            "<signed read>' (the governance client does this for a member workspace)",
        )
    scheme, _, encoded = authorization.partition(" ")
    if scheme != READ_SCHEME:
        raise SignatureRejected(401, f"Authorization scheme {scheme[:20]!r} is not {READ_SCHEME!r}")
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRejected(400, f"{READ_SCHEME} Authorization is not base64") from None
    verified = verify_request(raw, path=path, member_key=member_key, window_seconds=window_seconds)
    if verified.body != READ_BODY:
        raise SignatureRejected(401, f"signed message is not a read (its payload must be {READ_BODY})")
    return verified.signer


def _loads_json(payload: bytes) -> dict[str, Any]:
    value = json.loads(payload) if payload else {}
    if not isinstance(value, dict):
        raise ValueError("payload is not an object")
    return value
