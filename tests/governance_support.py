"""Shared pieces for the governance tests: a real service process per test module, and a
stand-in attestation issuer.

Attestation is step 3's (core/keys/attestation.py); these tests need *some* verifier to exercise
the attested endpoints, so the service is configured with ``jwt_verifier`` below: a real ES384
signature check against a key the test holds, loaded through the same factory mechanism
(``{"factory": "module:attr", "args": [...]}``) the runtime uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.crypto.identity import MemberIdentity
from core.errors import AccessDeniedError
from core.governance import launcher
from core.governance.client import GovernanceClient

ISSUER = "test-attestation"


def jwt_verifier(public_key_path: str) -> Callable[[str], dict[str, Any]]:
    public_key = serialization.load_pem_public_key(Path(public_key_path).read_bytes())

    def verify(token: str) -> dict[str, Any]:
        try:
            return jwt.decode(token, public_key, algorithms=["ES384"], issuer=ISSUER)  # type: ignore[arg-type]
        except jwt.PyJWTError as exc:
            raise AccessDeniedError(f"attestation token rejected ({exc})") from exc

    return verify


class Attester:
    """Mints tokens the service's ``jwt_verifier`` accepts."""

    def __init__(self, directory: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.public_path = directory / "attestation_pub.pem"
        self.public_path.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @property
    def spec(self) -> dict[str, Any]:
        return {"factory": "tests.governance_support:jwt_verifier", "args": [str(self.public_path)]}

    def token(self, contract_id: str, policy_hash: str) -> str:
        now = int(time.time())
        return jwt.encode(
            {"iss": ISSUER, "iat": now, "exp": now + 300, "contract_id": contract_id, "policy_hash": policy_hash},
            self.key,
            algorithm="ES384",
        )


class Consortium:
    """A running service with members and one client per member."""

    def __init__(self, state_dir: Path, members: list[MemberIdentity], info: launcher.ServiceInfo) -> None:
        self.state_dir = state_dir
        self.members = members
        self.info = info
        self.clients = [GovernanceClient(info.endpoint, info.service_cert_pem, m) for m in members]

    def client(self, identity: MemberIdentity | None = None) -> GovernanceClient:
        return GovernanceClient(self.info.endpoint, self.info.service_cert_pem, identity)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        launcher.stop(self.state_dir)

    def accepted_contract(self, contract_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create, propose and have every member accept a contract."""
        first = self.clients[0]
        created = first.create_contract(contract_id, data or {"id": contract_id, "parties": ["a", "b", "c"]})
        proposal = first.propose_contract(contract_id, created["version"])
        for client in self.clients:
            client.vote(proposal["proposalId"], "accept")
        return first.contract(contract_id)

    def pass_proposal(self, proposal: dict[str, Any]) -> dict[str, Any]:
        result = proposal
        for client in self.clients:
            result = client.vote(proposal["proposalId"], "accept")
        return result


def start_consortium(
    state_dir: Path, names: tuple[str, ...] = ("hoster", "provider", "consumer"), **create_options: Any
) -> Consortium:
    members = [MemberIdentity.generate(name) for name in names]
    launcher.create(state_dir, [m.cert_pem for m in members], **create_options)
    return Consortium(state_dir, members, launcher.start(state_dir))
