"""Governance's check of a Microsoft Azure Attestation (MAA) token from a confidential group.

On Azure the runtime sidecar's attestation is the MAA token the SKR sidecar obtained for the
group's AMD SEV-SNP report (``core.runtime.key_release.AzureKeyRelease``). Governance hands the
contract's wrapped DEKs, CA endorsements and the event log only to a clean room running the
accepted policy, so it must check that token as Key Vault's SKR does, and then some:

- RS256 signature by a key MAA publishes at ``https://<endpoint>/certs`` (a JWKS whose keys
  carry ``x5c``), fetched over verified HTTPS from an endpoint governance was configured to
  trust (never from the token's own ``jku``), cached, refetched when MAA rotates its keys;
- ``iss`` is that endpoint, ``exp``/``nbf`` hold;
- ``x-ms-attestation-type = sevsnpvm`` and ``x-ms-compliance-status = azure-compliant-uvm``;
- ``x-ms-sevsnpvm-hostdata`` equals the host data of the contract's *accepted* clean-room policy
  (recomputed from its ccePolicy, ``core.keys.skr.accepted_host_data``). The contract is named
  by the runtime data the sidecar attested (``x-ms-runtime.contract_id``); that data is produced
  by code the ccePolicy measured, and the host data check ties it to that contract's vote.

It yields the claims governance expects from the virtual verifier (``contract_id``,
``policy_hash`` of the accepted document, ``report_data``, ``attestation_type``) plus
``host_data``. The token format follows Microsoft's documented MAA claims; it has been tested
against tokens built that way, not against a live MAA.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from core.errors import AccessDeniedError, InvalidInputError, ServiceUnavailableError
from core.keys.measurement import policy_hash_of
from core.keys.skr import ATTESTATION_TYPE, COMPLIANCE_STATUS, accepted_host_data

ALGORITHM = "RS256"
JWKS_TTL_SECONDS = 3600.0
REFETCH_MIN_SECONDS = 30.0  # an unknown kid refetches the JWKS, at most this often per endpoint
LEEWAY_SECONDS = 30

AcceptedPolicy = Callable[[str], "dict[str, Any] | None"]


def maa_issuer(endpoint: str) -> str:
    """``https://host[:port]``: the ``iss`` MAA puts in its tokens, from a configured endpoint."""
    url = endpoint.strip() if "://" in endpoint else f"https://{endpoint.strip()}"
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if parsed.scheme != "https" or not parsed.hostname or parsed.path not in ("", "/") or port == -1:
        raise InvalidInputError(
            f"MAA endpoint {endpoint!r} is not an https host",
            hint="pass --maa-endpoint sharedeus.eus.attest.azure.net (or your own MAA)",
        )
    return f"https://{parsed.hostname}" + (f":{port}" if port else "")


def _signing_key(jwk: dict[str, Any]) -> Any:
    """The public key of one JWKS entry: its x5c leaf certificate (MAA's form), else n/e."""
    chain = jwk.get("x5c")
    if isinstance(chain, list) and chain:
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
        except (binascii.Error, ValueError):
            return None
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return None
        key = cert.public_key()
    else:
        try:
            key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
        except jwt.PyJWTError:
            return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


class MaaAttestationVerifier:
    """``verifier(token) -> claims`` for MAA tokens of the configured endpoints.

    The accepted clean-room policy comes from governance through ``bind_accepted_policy``
    (governance builds its state after its verifier); until bound every token is refused.
    ``ca_file`` replaces the system trust store for reaching MAA (tests, private endpoints).
    """

    def __init__(
        self,
        endpoints: list[str],
        *,
        ca_file: str | None = None,
        accepted_policy: AcceptedPolicy | None = None,
        jwks_ttl_seconds: float = JWKS_TTL_SECONDS,
    ) -> None:
        if not endpoints:
            raise InvalidInputError("no MAA endpoint configured", hint="pass --maa-endpoint HOST")
        self.issuers = tuple(dict.fromkeys(maa_issuer(e) for e in endpoints))
        self._tls = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self._accepted_policy = accepted_policy
        self._ttl = jwks_ttl_seconds
        self._keys: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def bind_accepted_policy(self, accepted_policy: AcceptedPolicy) -> None:
        self._accepted_policy = accepted_policy

    def accepts_issuer(self, issuer: Any) -> bool:
        return isinstance(issuer, str) and issuer.rstrip("/") in self.issuers

    def _fetch(self, issuer: str) -> dict[str, Any]:
        url = f"{issuer}/certs"
        try:
            response = httpx.get(url, verify=self._tls, timeout=10.0, follow_redirects=False)
            response.raise_for_status()
            entries = response.json()["keys"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ServiceUnavailableError(
                f"MAA signing keys at {url} could not be fetched ({exc})",
                hint="check that governance can reach the MAA endpoint over HTTPS",
            ) from exc
        self.fetches += 1
        keys = {
            str(e["kid"]): key
            for e in entries
            if isinstance(e, dict) and "kid" in e
            for key in [_signing_key(e)]
            if key is not None
        }
        self._keys[issuer] = (time.monotonic(), keys)
        return keys

    def _key(self, issuer: str, kid: Any) -> Any:
        with self._lock:
            fetched_at, keys = self._keys.get(issuer, (0.0, {}))
            age = time.monotonic() - fetched_at
            if issuer not in self._keys or age > self._ttl or (kid not in keys and age > REFETCH_MIN_SECONDS):
                keys = self._fetch(issuer)
        if kid not in keys:
            raise AccessDeniedError(
                f"MAA token is signed by key {kid!r}, which {issuer}/certs does not publish",
                hint="the token must come from the configured MAA endpoint",
            )
        return keys[kid]

    def __call__(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise AccessDeniedError(f"MAA token is malformed ({exc})", hint="send the SKR sidecar's MAA token") from exc
        if not self.accepts_issuer(issuer):
            raise AccessDeniedError(
                f"MAA issuer {issuer!r} is not an allowed MAA endpoint of this governance service",
                hint=f"allowed: {', '.join(self.issuers)}; add one with "
                "`cleanroom governance service start --maa-endpoint HOST`",
            )
        issuer = str(issuer).rstrip("/")
        if header.get("alg") != ALGORITHM:
            raise AccessDeniedError(
                f"MAA token is signed with {header.get('alg')!r}, not {ALGORITHM}",
                hint="send the SKR sidecar's MAA token",
            )
        key = self._key(issuer, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AccessDeniedError(
                "MAA attestation token has expired", hint="attest again before asking governance for secrets"
            ) from exc
        except jwt.ImmatureSignatureError as exc:
            raise AccessDeniedError(
                "MAA attestation token is not valid yet (nbf)", hint="check the clock of the machine running governance"
            ) from exc
        except jwt.InvalidSignatureError as exc:
            raise AccessDeniedError(
                f"MAA token signature does not verify against the signing keys of {issuer}/certs",
                hint="the token must be issued by the configured MAA endpoint",
            ) from exc
        except jwt.PyJWTError as exc:
            raise AccessDeniedError(f"MAA token rejected ({exc})", hint="send the SKR sidecar's MAA token") from exc
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> dict[str, Any]:
        kind = claims.get("x-ms-attestation-type")
        if kind != ATTESTATION_TYPE:
            raise AccessDeniedError(
                f"MAA token's x-ms-attestation-type is {kind!r}, not {ATTESTATION_TYPE!r}",
                hint="governance accepts MAA tokens only from SEV-SNP confidential container groups",
            )
        compliance = claims.get("x-ms-compliance-status")
        if compliance != COMPLIANCE_STATUS:
            raise AccessDeniedError(
                f"MAA token's x-ms-compliance-status is {compliance!r}, not {COMPLIANCE_STATUS!r}",
                hint="run the group on ACI's Confidential SKU (Microsoft's signed utility VM)",
            )
        runtime = claims.get("x-ms-runtime")
        if not isinstance(runtime, dict):
            runtime = {}
        contract_id = runtime.get("contract_id")
        if not isinstance(contract_id, str) or not contract_id:
            raise AccessDeniedError(
                "MAA token's runtime data (x-ms-runtime) names no contract_id",
                hint="attest with the cleanroom runtime sidecar, which puts the contract in it",
            )
        host_data = str(claims.get("x-ms-sevsnpvm-hostdata", "")).lower()
        if self._accepted_policy is None:
            raise AccessDeniedError(
                "this MAA verifier is not bound to governance's accepted policies",
                hint="run it inside the governance service",
            )
        document = self._accepted_policy(contract_id)
        if not document:
            raise AccessDeniedError(
                f"contract '{contract_id}' has no accepted clean-room policy",
                hint="propose and accept one with `cleanroom governance deployment policy propose`",
            )
        expected = accepted_host_data(document)
        if expected is None:
            raise AccessDeniedError(
                f"the accepted clean-room policy of '{contract_id}' carries no ccePolicy, "
                "so no SEV-SNP group can match it",
                hint="generate it with `governance deployment generate --backend aci "
                "--cce-policy FILE`, then propose and vote it",
            )
        if host_data != expected:
            raise AccessDeniedError(
                f"MAA token's x-ms-sevsnpvm-hostdata {host_data[:16] or '(none)'}… is not the "
                f"host data {expected[:16]}… of contract '{contract_id}''s accepted "
                "clean-room policy",
                hint="deploy the template carrying the accepted ccePolicy",
            )
        return {
            "iss": claims["iss"],
            "iat": claims.get("iat"),
            "exp": claims["exp"],
            "attestation_type": ATTESTATION_TYPE,
            "contract_id": contract_id,
            "policy_hash": policy_hash_of(document),
            "host_data": host_data,
            "report_data": str(claims.get("x-ms-sevsnpvm-reportdata", "")),
            "runtime_keys": runtime.get("keys", []),
        }


class CompositeAttestationVerifier:
    """Governance's verifier when MAA endpoints are configured: MAA tokens (``iss`` an https
    URL) go to ``maa``, everything else (virtual and key-service tokens) to ``fallback``."""

    def __init__(self, maa: MaaAttestationVerifier, fallback: Callable[[str], dict[str, Any]] | None) -> None:
        self.maa = maa
        self._fallback = fallback

    def __call__(self, token: str) -> dict[str, Any]:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise AccessDeniedError(
                f"attestation token is malformed ({exc})", hint="send the clean room's attestation token"
            ) from exc
        if isinstance(issuer, str) and issuer.startswith("https://"):
            return self.maa(token)
        if self._fallback is None:
            raise AccessDeniedError(
                f"attestation issuer {issuer!r} is not trusted here",
                hint=f"this governance service accepts MAA tokens of {', '.join(self.maa.issuers)}",
            )
        return self._fallback(token)
