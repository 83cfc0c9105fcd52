"""Key release wrapping: ECDH-ES (P-384) + HKDF-SHA384 + AES-256-GCM to a workload's ephemeral key.

The workload creates a fresh key pair per deployment and never writes its private half to
disk; the attestation binds the public half (report_data), and the key service encrypts the
released KEK to it. Anyone who intercepts the response, or replays a token with a different
public key, gets nothing usable.
"""

from __future__ import annotations

import base64
import os
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import IntegrityError, InvalidInputError

INFO = b"cleanroom key release v1"


class KeyReleaseEvent(StrEnum):
    """What the key service records in governance for each release request it decides."""

    RELEASED = "key_released"
    REFUSED = "key_release_refused"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{what} is not base64", hint="send the value the runtime produced") from exc


def _derive(shared: bytes, recipient_der: bytes, sender_der: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA384(), length=32, salt=None, info=INFO + recipient_der + sender_der).derive(shared)


def load_workload_public_key(der: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(der)
    except ValueError as exc:
        raise InvalidInputError(
            "workload public key is not DER SubjectPublicKeyInfo", hint="send the runtime's ephemeral P-384 public key"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise InvalidInputError("workload public key must be P-384", hint="use WorkloadKey.generate()")
    return key


def seal_to_workload(workload_public_der: bytes, plaintext: bytes, *, aad: bytes) -> dict[str, str]:
    """Encrypt ``plaintext`` so only the holder of the workload's private key can read it."""
    recipient = load_workload_public_key(workload_public_der)
    ephemeral = ec.generate_private_key(ec.SECP384R1())
    sender_der = ephemeral.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = _derive(ephemeral.exchange(ec.ECDH(), recipient), workload_public_der, sender_der)
    nonce = os.urandom(12)
    return {
        "alg": "ECDH-ES+HKDF-SHA384+A256GCM",
        "epk": _b64(sender_der),
        "nonce": _b64(nonce),
        "ciphertext": _b64(AESGCM(key).encrypt(nonce, plaintext, aad)),
    }


class WorkloadKey:
    """The ephemeral key pair of one deployment; lives in memory only."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP384R1())
        self.public_der = self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:
        return "WorkloadKey(<ephemeral P-384>)"

    def open(self, sealed: dict[str, Any], *, aad: bytes) -> bytes:
        """Decrypt a value sealed with :func:`seal_to_workload`; tampering raises IntegrityError."""
        try:
            sender_der = _unb64(sealed["epk"], "epk")
            nonce, ciphertext = _unb64(sealed["nonce"], "nonce"), _unb64(sealed["ciphertext"], "ciphertext")
        except KeyError as exc:
            raise InvalidInputError(
                f"released key is missing '{exc.args[0]}'", hint="the key service response is malformed"
            ) from exc
        sender = load_workload_public_key(sender_der)
        key = _derive(self._private.exchange(ec.ECDH(), sender), self.public_der, sender_der)
        try:
            return AESGCM(key).decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise IntegrityError(
                "released key failed authentication", hint="it was tampered with or sealed to another workload"
            ) from exc
