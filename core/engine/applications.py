"""Client application operations: registration, tokens, revocation and token-key rotation.

An application (a program, not a person) calls a clean room's routes with short-lived tokens it
gets from governance by OAuth2 client credentials, proving itself with its own key
(private_key_jwt). Registering one is a proposal every member votes on; revoking one is any
member's act alone, as is rotating the key governance signs tokens with. Listing applications
and fetching an application's token are what any OAuth2 client does, so they go without this
member's signature.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.engine.session import GovernanceSession
from core.errors import ConflictError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from core.governance.client import GovernanceClient


def _read_file(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise NotFoundError(f"{what} file {path} does not exist", hint="check the path")
    return path.read_bytes()


class ApplicationOperations(GovernanceSession):
    """What a member does with the client applications that call scoring endpoints."""

    @contextmanager
    def _anonymous_governance(self) -> Iterator[GovernanceClient]:
        """A client of the workspace's service without this member's identity: the OAuth2 token
        endpoint and the application list are public, and an application signs for itself."""
        from core.governance.client import GovernanceClient

        with GovernanceClient.from_workspace(self.workspace, with_identity=False) as client:
            yield client

    def register_client_app(
        self,
        name: str,
        *,
        contracts: list[str],
        routes: list[str],
        rate_limit_per_minute: int,
        owner: str | None = None,
        public_key_file: Path | None = None,
        generate_key: Path | None = None,
    ) -> dict[str, Any]:
        """Propose registering an application (register_client_app) with the public key in
        ``public_key_file``, or with a fresh EC P-384 key whose private half is written to
        ``generate_key`` (0600) only once the proposal exists, so a refused proposal leaves no key.

        The proposal, with ``privateKeyFile`` (the written key's path or None); ``owner`` defaults
        to this member."""
        from core.crypto.secret_file import write_secret_file
        from core.governance.client_apps import new_app_key

        if (public_key_file is None) == (generate_key is None):
            raise InvalidInputError(
                "give exactly one of --public-key FILE and --generate-key OUT",
                hint="see `governance app register --help`",
            )
        private_pem = None
        if generate_key is not None:
            if generate_key.exists():
                raise ConflictError(
                    f"key file {generate_key} already exists", hint="choose another --generate-key path"
                )
            private_pem, key_text = new_app_key()
        else:
            assert public_key_file is not None
            key_text = _read_file(public_key_file, "public key").decode(errors="replace")
        proposal = self._governance().propose_client_app(
            name,
            owner=owner or self.member_id,
            contracts=contracts,
            routes=routes,
            rate_limit_per_minute=rate_limit_per_minute,
            public_key=key_text,
        )
        if generate_key is not None and private_pem is not None:
            write_secret_file(generate_key, private_pem)
        return proposal | {"privateKeyFile": str(generate_key) if generate_key else None}

    def client_apps(self) -> list[dict[str, Any]]:
        """Every registered application's metadata (keys are never shown)."""
        with self._anonymous_governance() as client:
            return client.client_apps()

    def revoke_client_app(self, name: str) -> dict[str, Any]:
        """Revoke an application now (``idempotent`` when it already was); the ingress refuses it within 2 s."""
        return self._governance().revoke_client_app(name)

    def app_token(self, name: str, key_file: Path, contract_id: str) -> dict[str, Any]:
        """The application's access token from /oauth2/token, proven with its private key (an
        unencrypted EC or RSA PEM): the OAuth2 answer (access_token, token_type, expires_in, scope)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        try:
            private_key = serialization.load_pem_private_key(_read_file(key_file, "application key"), password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                f"application key {key_file} is not an unencrypted PEM private key", hint="pass the key you registered"
            ) from exc
        if not isinstance(private_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise InvalidInputError(f"application key {key_file} is not an EC or RSA key", hint="use EC P-384")
        with self._anonymous_governance() as client:
            return client.app_token(name, private_key, contract_id)

    def rotate_token_key(self) -> dict[str, Any]:
        """Make a fresh token signing key current; the previous one stays in /jwks until its tokens expire."""
        return self._governance().rotate_token_key()
