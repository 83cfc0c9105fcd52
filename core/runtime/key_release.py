"""How a clean room proves what it runs and gets each data owner's KEK released.

The runtime sidecar (``core.runtime.sidecar``) needs two things from its platform: an
attestation token for the deployment spec it runs (which governance checks before handing out
the contract's wrapped DEKs and taking events), and each owner's KEK, released only against
that attestation. :class:`KeyRelease` is that seam:

* :class:`VirtualKeyRelease`: the embedded default's path, exactly what ``LocalRuntime`` does:
  virtual attestation signed by the runtime's attestation key, KEK released by the local key
  service sealed to an ephemeral workload key.
* :class:`AzureKeyRelease`: inside a confidential container group: the SKR sidecar's attestation
  endpoint gets an MAA token for the SEV-SNP report (its runtime data carrying our ephemeral RSA
  transfer key), and Key Vault releases the owner's exportable KEK against that token, wrapped to
  the transfer key (``RSA_AES_KEY_WRAP_256``). Only the MAA and Key Vault calls themselves
  cannot be exercised without Azure.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from core.crypto.kek import Kek
from core.errors import AccessDeniedError, IntegrityError, InvalidInputError, ServiceUnavailableError
from core.keys.attestation import AttestationKey, VirtualAttester
from core.keys.client import KeyServiceClient
from core.keys.release import WorkloadKey
from core.keys.skr import check_kek_vault, maa_authority, vault_kek_name

TRANSFER_KEY_BITS = 3072
DEFAULT_ATTESTATION_URL = "http://localhost:8080/attest/maa"


class KeyRelease(Protocol):
    """Attestation and KEK release for one deployment (one ephemeral key per instance)."""

    def attest(self, deployment_spec: dict[str, Any]) -> str:
        """A token naming the measured deployment; callable again when it nears expiry."""
        ...

    def release_kek(self, owner: str, contract_id: str, attestation: str) -> Kek: ...


class VirtualKeyRelease:
    """The embedded default: virtual attestation + the local key service."""

    def __init__(self, runtime_state_dir: Path, keys: KeyServiceClient) -> None:
        self._attester = VirtualAttester(AttestationKey.load_or_create(runtime_state_dir))
        self._workload_key = WorkloadKey()
        self._keys = keys

    def attest(self, deployment_spec: dict[str, Any]) -> str:
        return self._attester.attest(
            deployment_spec=deployment_spec, workload_public_key_der=self._workload_key.public_der
        )

    def release_kek(self, owner: str, contract_id: str, attestation: str) -> Kek:
        pem = self._keys.release(owner, contract_id, attestation=attestation, workload_key=self._workload_key)
        return Kek.from_released_pem(pem, owner=owner)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise IntegrityError(
            f"released key's {what} is not base64url", hint="Key Vault's release response is malformed"
        ) from exc


class TransferKey:
    """The ephemeral RSA key Key Vault wraps a released KEK to; its public half rides in the
    attestation's runtime data, so only this attested process can open the release."""

    def __init__(self) -> None:
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=TRANSFER_KEY_BITS)

    def __repr__(self) -> str:
        return "TransferKey(<ephemeral RSA>)"

    def runtime_data(self, contract_id: str | None = None) -> bytes:
        """``{"contract_id": C, "keys": [JWK]}``, which MAA copies into the token's
        ``x-ms-runtime`` claim: Key Vault wraps to the key, governance
        (``core.keys.maa``) checks the host data against contract C's accepted policy."""
        numbers = self._private.public_key().public_numbers()
        jwk = {
            "kid": "cleanroom-transfer-key",
            "kty": "RSA",
            "key_ops": ["encrypt"],
            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }
        document: dict[str, Any] = {"keys": [jwk]}
        if contract_id is not None:
            document["contract_id"] = contract_id
        return json.dumps(document, sort_keys=True).encode()

    def open_release(self, released: str) -> Kek:
        """The KEK inside Key Vault's release result (a JWS whose payload holds ``key_hsm``:
        RSA-OAEP-256 of an AES key, then AES-KWP of the KEK's PKCS#8 private key)."""
        try:
            payload = json.loads(_unb64url(released.split(".")[1], "payload"))
            key_hsm = json.loads(_unb64url(payload["response"]["key"]["key"]["key_hsm"], "key_hsm"))
            blob = _unb64url(key_hsm["ciphertext"], "ciphertext")
        except (IndexError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise IntegrityError(
                "Key Vault's release result has no key_hsm ciphertext",
                hint="release with algorithm RSA_AES_KEY_WRAP_256",
            ) from exc
        split = self._private.key_size // 8
        try:
            aes_key = self._private.decrypt(
                blob[:split], padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
            )
            der = aes_key_unwrap_with_padding(aes_key, blob[split:])
            private = serialization.load_der_private_key(der, password=None)
        except (ValueError, InvalidUnwrap) as exc:
            raise IntegrityError(
                "released KEK does not open with this clean room's transfer key",
                hint="it was released to another attestation or tampered with",
            ) from exc
        if not isinstance(private, rsa.RSAPrivateKey):
            raise IntegrityError("released KEK is not an RSA key", hint="KEKs are RSA-HSM 3072 keys")
        return Kek(private)


class AzureKeyRelease:
    """Inside a confidential container group: MAA via the SKR sidecar, KEKs from Key Vault."""

    def __init__(
        self, *, attestation_url: str, maa_endpoint: str, kek_vaults: dict[str, str], credential: Any | None = None
    ) -> None:
        self._attestation_url = attestation_url
        self._maa = maa_authority(maa_endpoint)
        for url in kek_vaults.values():
            check_kek_vault(url)
        self._vaults = kek_vaults
        self._credential = credential
        self._transfer_key = TransferKey()

    def attest(self, deployment_spec: dict[str, Any]) -> str:
        """The SKR sidecar's MAA token for this group's SEV-SNP report (the spec is measured by
        the hardware, via the ccePolicy, not by us)."""
        body = {
            "maa_endpoint": self._maa.removeprefix("https://"),
            "runtime_data": base64.b64encode(
                self._transfer_key.runtime_data(str(deployment_spec.get("contract_id", "")))
            ).decode(),
        }
        try:
            response = httpx.post(self._attestation_url, json=body, timeout=60.0)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(
                f"attestation endpoint {self._attestation_url} is not reachable ({exc})",
                hint="run the SKR sidecar in the group or set CLEANROOM_ATTESTATION_URL",
            ) from exc
        if response.status_code != 200:
            raise AccessDeniedError(
                f"attestation endpoint refused ({response.status_code}: {response.text[:200]})",
                hint="the group must run on SEV-SNP hardware with a ccePolicy",
            )
        return str(response.json()["token"])

    def release_kek(self, owner: str, contract_id: str, attestation: str) -> Kek:
        vault = self._vaults.get(owner)
        if vault is None:
            raise InvalidInputError(
                f"no Key Vault is configured for the KEK of '{owner}'",
                hint=f"generate with `--kek-vault {owner}=https://NAME.vault.azure.net`",
            )
        from azure.core.exceptions import HttpResponseError
        from azure.keyvault.keys import KeyClient, KeyExportEncryptionAlgorithm

        if self._credential is None:
            from core.azure_credential import default_credential

            self._credential = default_credential()
        client = KeyClient(vault, self._credential)
        try:
            result = client.release_key(
                vault_kek_name(contract_id), attestation, algorithm=KeyExportEncryptionAlgorithm.rsa_aes_key_wrap_256
            )
        except HttpResponseError as exc:
            raise AccessDeniedError(
                f"Key Vault {vault} refused to release the KEK of '{owner}' ({exc.message})",
                hint="its SKR policy must require this group's host data",
            ) from exc
        return self._transfer_key.open_release(result.value)
