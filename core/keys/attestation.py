"""Virtual attestation: a token saying "this workload runs this measured policy".

This is NOT hardware attestation. The token is signed by an attestation key the local
runtime keeps in its state directory; whoever controls that machine can mint tokens for any
policy. It exists so that every other part of the product (key release bound to the accepted
policy, secrets only for the clean room, the CA endorsing the ingress) is exercised exactly as
it would be with SEV-SNP + MAA, where the signer is the hardware/attestation service. CCF calls
this "virtual" mode; the claims name ``attestation_type: "virtual"`` so no verifier can mistake it.

``report_data`` carries the SHA-256 of the workload's ephemeral public key, binding released
keys to the process that was measured (as SNP's REPORT_DATA field does).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.crypto.secret_file import write_public_file, write_secret_file
from core.errors import AccessDeniedError, InvalidInputError
from core.keys.measurement import policy_hash

ISSUER = "cleanroom-virtual-attestation"
ALGORITHM = "ES384"
KEY_FILE = "attestation_privk.pem"
PUBLIC_FILE = "attestation_pub.pem"
DEFAULT_TTL_SECONDS = 600


def report_data_of(public_key_der: bytes) -> str:
    """The report_data claim for a workload public key (DER SubjectPublicKeyInfo)."""
    return hashlib.sha256(public_key_der).hexdigest()


@dataclass(frozen=True)
class AttestationKey:
    """The local runtime's P-384 attestation signing key. Never logged or repr'd."""

    private_key: ec.EllipticCurvePrivateKey

    def __repr__(self) -> str:
        return "AttestationKey(<P-384>)"

    @property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def load_or_create(cls, state_dir: Path) -> AttestationKey:
        """Load the key from ``state_dir``, creating it (0600) on first use."""
        path = state_dir / KEY_FILE
        if path.is_file():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
                raise InvalidInputError(
                    f"{path} is not a P-384 private key", hint="delete it to let the runtime create a new one"
                )
            return cls(key)
        key = ec.generate_private_key(ec.SECP384R1())
        write_secret_file(
            path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        attestation = cls(key)
        write_public_file(state_dir / PUBLIC_FILE, attestation.public_pem)
        return attestation


class VirtualAttester:
    """Measures a deployment spec and signs the evidence the key service and governance check."""

    def __init__(self, key: AttestationKey, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._key = key
        self._ttl = ttl_seconds

    def attest(self, *, deployment_spec: dict[str, Any], workload_public_key_der: bytes) -> str:
        """Return a signed token for the deployment the runtime is about to run.

        The measurement is computed here from the spec itself, never taken from the caller,
        so a changed command or mount yields a different policy hash.
        """
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self._ttl,
            "attestation_type": "virtual",
            "contract_id": deployment_spec.get("contract_id"),
            "policy_hash": policy_hash(deployment_spec),
            "report_data": report_data_of(workload_public_key_der),
        }
        return jwt.encode(claims, self._key.private_key, algorithm=ALGORITHM)


class AttestationVerifier:
    """Checks a virtual attestation token: signature, issuer, lifetime and required claims.

    Callable as ``verifier(token) -> claims`` so governance and the key service can plug it in.
    """

    REQUIRED = ("contract_id", "policy_hash", "report_data", "attestation_type", "iat", "exp")
    TYPES: ClassVar[dict[str, str]] = {ISSUER: "virtual", "cleanroom-key-service": "key-service"}

    def __init__(self, public_key_pem: bytes, *, issuer: str = ISSUER) -> None:
        public_key = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise InvalidInputError(
                "the attestation public key is not an EC key", hint="pass the runtime's attestation_pub.pem"
            )
        self._public_key = public_key
        self._issuer = issuer

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> AttestationVerifier:
        return cls(AttestationKey.load_or_create(state_dir).public_pem)

    def __call__(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options={"require": [*self.REQUIRED, "iss"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AccessDeniedError(
                "attestation token has expired", hint="attest again before asking for keys or secrets"
            ) from exc
        except jwt.PyJWTError as exc:
            raise AccessDeniedError(
                f"attestation token rejected ({exc})", hint="the token must come from this machine's clean-room runtime"
            ) from exc
        if claims["attestation_type"] != self.TYPES[self._issuer]:
            raise AccessDeniedError(
                f"attestation type {claims['attestation_type']!r} is not supported here",
                hint="the embedded default accepts only virtual attestation",
            )
        return claims


def verify_report_data(claims: dict[str, Any], workload_public_key_der: bytes) -> None:
    """Refuse unless the token's report_data names this exact workload public key."""
    if claims.get("report_data") != report_data_of(workload_public_key_der):
        raise AccessDeniedError(
            "workload public key does not match the attestation's report_data",
            hint="release keys only to the key pair that was attested",
        )


SERVICE_ISSUER = "cleanroom-key-service"


class KeyServiceAttester:
    """Lets the key service append its release/refusal events to governance.

    Governance accepts events only from an attested party of the contract, so the key service
    presents a token signed by its own key naming the contract and the policy hash governance
    accepted. ``attestation_type: "key-service"`` keeps it distinct from a workload's token.
    """

    def __init__(self, key: AttestationKey, *, ttl_seconds: int = 60) -> None:
        self._key = key
        self._ttl = ttl_seconds

    def token(self, contract_id: str, accepted_policy_hash: str) -> str:
        now = int(time.time())
        return jwt.encode(
            {
                "iss": SERVICE_ISSUER,
                "jti": uuid.uuid4().hex,
                "iat": now,
                "nbf": now - 5,
                "exp": now + self._ttl,
                "attestation_type": "key-service",
                "contract_id": contract_id,
                "policy_hash": accepted_policy_hash,
                "report_data": "",
            },
            self._key.private_key,
            algorithm=ALGORITHM,
        )


class GovernanceAttestationVerifier:
    """The ``attestation_verifier`` governance plugs in: workload tokens from the runtime's
    attestation key, and the key service's event tokens. Public keys are read from the two
    state directories when first needed, so governance may start before the runtime has run.

    Each issuer's tokens must carry its own ``attestation_type`` (``AttestationVerifier.TYPES``):
    governance lets ``key-service`` tokens append events only, never get secrets or certificates."""

    def __init__(self, runtime_state_dir: str, key_service_state_dir: str) -> None:
        self._dirs = {ISSUER: Path(runtime_state_dir), SERVICE_ISSUER: Path(key_service_state_dir)}
        self._verifiers: dict[str, AttestationVerifier] = {}

    def _verifier(self, issuer: str) -> AttestationVerifier:
        if issuer not in self._verifiers:
            path = self._dirs[issuer] / PUBLIC_FILE
            if not path.is_file():
                raise AccessDeniedError(
                    f"no {issuer} key has been created on this machine yet",
                    hint="run the clean room with `cleanroom deployment start`",
                )
            self._verifiers[issuer] = AttestationVerifier(path.read_bytes(), issuer=issuer)
        return self._verifiers[issuer]

    def __call__(self, token: str) -> dict[str, Any]:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise AccessDeniedError(
                f"attestation token is malformed ({exc})", hint="send the clean room's attestation token"
            ) from exc
        if issuer not in self._dirs:
            raise AccessDeniedError(
                f"attestation issuer {issuer!r} is not trusted here",
                hint="the embedded default trusts only its runtime and key service",
            )
        return self._verifier(issuer)(token)
