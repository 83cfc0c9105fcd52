"""The token signing key ring: the current ES384 key, and retired ones kept until their tokens expire.

Why a ring and not one key: a rotation must not break a token already handed out, so the key a
token was signed with stays in ``GET /jwks`` after it stops signing, for the overlap window (the
longest lifetime of a token it signed); then it leaves, and a verifier that refetches the JWKS
refuses anything it signed. Old tokens thus stop at their own expiry, never earlier.

The keys live in the governance database (created 0600, as for the contract CA keys), and a
rotation is written in the same transaction as the member's signed request in the ledger, so the
ring and the ledger cannot disagree after a crash. Until the first rotation the ring is the one
key the service identity made at creation (``token_privk.pem``); the first rotation records it as
a retired row, so a restart rebuilds the same ring from the database alone.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

TOKEN_ALGORITHM = "ES384"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS token_keys (kid TEXT PRIMARY KEY, key_pem BLOB NOT NULL, created_at REAL NOT NULL,
    retired_at REAL, seqno INTEGER NOT NULL);
"""


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The ``kid``: SHA-256 of the public key's DER SubjectPublicKeyInfo, 32 hex digits."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:32]


@dataclass(frozen=True)
class TokenKey:
    """One signing key of the ring; never repr'd with its private half."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey
    retired_at: float | None

    def __repr__(self) -> str:
        return f"TokenKey(kid={self.kid}, retired_at={self.retired_at})"

    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key()))
        return public | {"kid": self.kid, "alg": TOKEN_ALGORITHM, "use": "sig"}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm=TOKEN_ALGORITHM, headers={"kid": self.kid})


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TokenKeyRing:
    """The keys tokens are signed with and verified against, over the governance database.

    ``db`` and ``lock`` are the governance state's connection and its lock; ``rotate`` must run
    inside the state's write transaction (``GovernanceState.rotate_token_key`` does).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: threading.RLock,
        initial_key: ec.EllipticCurvePrivateKey,
        *,
        overlap_seconds: float,
    ) -> None:
        self._db = db
        self._lock = lock
        self._initial = initial_key
        self.overlap_seconds = overlap_seconds
        self._parsed: dict[str, ec.EllipticCurvePrivateKey] = {}  # kid -> key: rows never change their key
        self._db.executescript(_SCHEMA)

    def _keys(self) -> list[TokenKey]:
        """Every key of the ring, oldest first (the last is the current one)."""
        with self._lock:
            rows = self._db.execute("SELECT kid, key_pem, retired_at FROM token_keys ORDER BY seqno").fetchall()
        if not rows:
            return [TokenKey(key_id(self._initial.public_key()), self._initial, None)]
        keys = []
        for row in rows:
            private = self._parsed.get(row["kid"])
            if private is None:
                loaded = serialization.load_pem_private_key(bytes(row["key_pem"]), password=None)
                assert isinstance(loaded, ec.EllipticCurvePrivateKey), "the ring stores only EC keys"
                private = self._parsed[row["kid"]] = loaded
            keys.append(TokenKey(row["kid"], private, row["retired_at"]))
        return keys

    @property
    def current(self) -> TokenKey:
        """The key new tokens are signed with."""
        return self._keys()[-1]

    def published(self, now: float | None = None) -> list[TokenKey]:
        """The current key and every retired key a token may still be valid under, newest first."""
        moment = time.time() if now is None else now
        return [
            key
            for key in reversed(self._keys())
            if key.retired_at is None or moment < key.retired_at + self.overlap_seconds
        ]

    def jwks(self, now: float | None = None) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.published(now)]}

    def rotate(self, seqno: int, now: float | None = None) -> TokenKey:
        """Retire the current key and make a fresh P-384 key current (inside a write transaction)."""
        moment = time.time() if now is None else now
        retiring = self.current
        new_key = ec.generate_private_key(ec.SECP384R1())
        new = TokenKey(key_id(new_key.public_key()), new_key, None)
        self._db.execute(
            "INSERT OR IGNORE INTO token_keys VALUES (?,?,?,?,?)",
            (retiring.kid, _private_pem(retiring.private_key), moment, None, 0),  # the identity's first key
        )
        self._db.execute("UPDATE token_keys SET retired_at=? WHERE kid=?", (moment, retiring.kid))
        self._db.execute(
            "INSERT INTO token_keys VALUES (?,?,?,?,?)", (new.kid, _private_pem(new_key), moment, None, seqno)
        )
        return new
