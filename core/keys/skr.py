"""Secure Key Release on Azure: the Key Vault release policy that stands in for our key service.

In the embedded default the key service releases a KEK only to a workload whose (virtual)
attestation names the accepted clean-room policy hash. On Azure, Key Vault premium / managed HSM
does the same for an *exportable* key carrying a release policy: it releases the key only
against a Microsoft Azure Attestation (MAA) token whose claims match. The claims we require:

- ``x-ms-attestation-type = sevsnpvm``: the evidence is an AMD SEV-SNP hardware report;
- ``x-ms-compliance-status = azure-compliant-uvm``: the utility VM is Microsoft's signed image;
- ``x-ms-sevsnpvm-hostdata = <policy hash>``: the HOST_DATA field fixed at launch, which ACI
  sets to the SHA-256 of the container group's ccePolicy (see ``core.runtime.aci``).

So the same accepted policy hash that the governance vote fixed is what the hardware must
report before Key Vault lets the KEK out. DEKs are wrapped to that KEK's public key locally
(RSA-OAEP-256, the same wrap format as ``core.crypto.kek``), so no DEK ever travels to Azure.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

from core.config.canonical import canonical_json
from core.errors import InvalidInputError
from core.keys.measurement import policy_hash

SKR_POLICY_VERSION = "1.0.0"
ATTESTATION_TYPE = "sevsnpvm"
COMPLIANCE_STATUS = "azure-compliant-uvm"
KEK_SIZE = 3072
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def maa_authority(endpoint: str) -> str:
    """Normalise an MAA endpoint (``name.region.attest.azure.net`` with or without https)."""
    url = endpoint if "://" in endpoint else f"https://{endpoint}"
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.hostname or parsed.path not in ("", "/"):
        raise InvalidInputError(
            f"MAA endpoint {endpoint!r} is not an https host",
            hint="pass --maa-endpoint https://sharedeus.eus.attest.azure.net (or your own MAA)")
    return f"https://{parsed.hostname}"


def release_policy(accepted_policy_hash: str, maa_endpoint: str) -> dict[str, Any]:
    """The Key Vault SKR policy that releases only to the accepted, SEV-SNP-attested policy."""
    if not _HASH_RE.match(accepted_policy_hash or ""):
        raise InvalidInputError(
            f"policy hash {accepted_policy_hash!r} is not 64 lowercase hex characters",
            hint="use the hash from `cleanroom governance deployment show` of the accepted spec")
    return {
        "version": SKR_POLICY_VERSION,
        "anyOf": [{
            "authority": maa_authority(maa_endpoint),
            "allOf": [
                {"claim": "x-ms-attestation-type", "equals": ATTESTATION_TYPE},
                {"claim": "x-ms-compliance-status", "equals": COMPLIANCE_STATUS},
                {"claim": "x-ms-sevsnpvm-hostdata", "equals": accepted_policy_hash},
            ],
        }],
    }


def release_policy_for_deployment(deployment_spec: dict[str, Any],
                                  maa_endpoint: str) -> dict[str, Any]:
    """The SKR policy for an accepted deployment spec (hash measured the same way as locally)."""
    return release_policy(policy_hash(deployment_spec), maa_endpoint)


def required_host_data(document: dict[str, Any]) -> str:
    """The hostdata an SKR policy document requires (to show and to check against a contract)."""
    try:
        rules = document["anyOf"][0]["allOf"]
        return next(r["equals"] for r in rules if r.get("claim") == "x-ms-sevsnpvm-hostdata")
    except (KeyError, IndexError, TypeError, StopIteration) as exc:
        raise InvalidInputError("SKR policy has no x-ms-sevsnpvm-hostdata claim",
                                hint="re-generate it with core.keys.skr.release_policy") from exc


def policy_bytes(document: dict[str, Any]) -> bytes:
    """The bytes Key Vault stores as the release policy (canonical, so hashes are stable)."""
    return canonical_json(document)


def check_kek_vault(vault_url: str) -> None:
    """SKR needs HSM-backed exportable keys: Key Vault (premium) or a managed HSM."""
    parsed = urlparse(vault_url)
    if parsed.scheme != "https" or not (parsed.hostname or "").endswith(
            (".vault.azure.net", ".managedhsm.azure.net")):
        raise InvalidInputError(
            f"key vault {vault_url!r} is not a Key Vault or managed HSM URL",
            hint="pass --kek-vault https://NAME.vault.azure.net (premium) or "
                 "https://NAME.managedhsm.azure.net")


def create_release_kek(vault_url: str, key_name: str, document: dict[str, Any],
                       credential: Any | None = None) -> Any:
    """Create an exportable RSA-HSM KEK in ``vault_url`` bound to the SKR policy ``document``.

    Needs Key Vault premium or a managed HSM, and the Key Vault Crypto Officer role.
    """
    check_kek_vault(vault_url)
    from azure.keyvault.keys import KeyClient, KeyReleasePolicy

    if credential is None:
        from core.azure_credential import default_credential

        credential = default_credential()
    client = KeyClient(vault_url, credential)
    return client.create_rsa_key(
        key_name, size=KEK_SIZE, hardware_protected=True, exportable=True,
        key_operations=["wrapKey", "unwrapKey", "encrypt", "decrypt"],
        release_policy=KeyReleasePolicy(policy_bytes(document), immutable=False),
    )


def vault_kek_name(contract_id: str) -> str:
    """One KEK per contract in the party's vault (Key Vault names: 1-127 letters, digits, '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "-", f"cleanroom-{contract_id}-kek")[:127]


def wrap_deks_with_vault_kek(vault_url: str, contract_id: str, accepted_policy_hash: str,
                             maa_endpoint: str, deks: dict[str, bytes],
                             credential: Any | None = None) -> tuple[str, dict[str, bytes]]:
    """`wrap-deks --kek-vault`: create the contract's SKR-bound KEK, wrap the DEKs; (key id, wraps)."""
    document = release_policy(accepted_policy_hash, maa_endpoint)
    key = create_release_kek(vault_url, vault_kek_name(contract_id), document, credential)
    return str(key.id), wrap_deks(key.key, deks)


def wrap_deks(kek_public_jwk: Any, deks: dict[str, bytes]) -> dict[str, bytes]:
    """Wrap each DEK to the vault KEK's public key, locally (RSA-OAEP-256)."""
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

    client = CryptographyClient.from_jwk(kek_public_jwk)
    wrapped: dict[str, bytes] = {}
    for name, dek in deks.items():
        if len(dek) != 32:
            raise InvalidInputError(f"DEK of '{name}' is {len(dek)} bytes, not 32",
                                    hint="regenerate it with `cleanroom config add-datasource`")
        wrapped[name] = client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek).encrypted_key
    return wrapped


def wrap_deks_to_vault(workspace: Any, contract_id: str, *, governance: Any, vault_url: str,
                       maa_endpoint: str, credential: Any | None = None) -> Any:
    """`config wrap-deks --kek-vault`: like ``core.keys.wrap_deks`` with the KEK in Key Vault.

    The KEK is bound by SKR to the contract's *accepted* clean-room policy hash, so this runs
    after the policy vote; the wrapped DEKs go to governance as the same contract secrets.
    """
    from core.crypto.kek import dek_for
    from core.errors import ConflictError
    from core.keys.wrap_deks import WrappedDeks, dek_secret_name

    check_kek_vault(vault_url)
    maa_authority(maa_endpoint)
    member_id = workspace.identity.member_id
    data = governance.contract(contract_id).get("data") or {}
    owned = [asset["name"] for asset in data.get("datasources", []) + data.get("datasinks", [])
             if asset.get("owner") == member_id]
    if not owned:
        raise InvalidInputError(f"contract '{contract_id}' has no datasource or datasink owned by this workspace",
                                hint="nothing to wrap; only parties that bring data run wrap-deks")
    accepted = governance.accepted_policy_hash(contract_id)
    if not accepted:
        raise ConflictError(f"contract '{contract_id}' has no accepted clean-room policy to bind the vault KEK to",
                            hint="propose and vote it with `cleanroom governance deployment policy propose`")
    kid, wrapped = wrap_deks_with_vault_kek(vault_url, contract_id, accepted, maa_endpoint,
                                            {name: dek_for(workspace.keys_dir, name) for name in owned},
                                            credential)
    for name, blob in wrapped.items():
        governance.put_secret(contract_id, dek_secret_name(name), blob)
    return WrappedDeks(contract_id=contract_id, kek_fingerprint=kid, assets=owned)
