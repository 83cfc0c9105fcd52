"""Secure Key Release on Azure: the Key Vault release policy that stands in for our key service.

In the embedded default the key service releases a KEK only to a workload whose (virtual)
attestation names the accepted clean-room policy hash. On Azure, Key Vault premium / managed HSM
does the same for an *exportable* key carrying a release policy: it releases the key only
against a Microsoft Azure Attestation (MAA) token whose claims match. The claims we require:

- ``x-ms-attestation-type = sevsnpvm``: the evidence is an AMD SEV-SNP hardware report;
- ``x-ms-compliance-status = azure-compliant-uvm``: the utility VM is Microsoft's signed image;
- ``x-ms-sevsnpvm-hostdata = <policy hash>``: the HOST_DATA field fixed at launch, which ACI
  sets to the SHA-256 of the container group's ccePolicy (see ``core.runtime.aci``).

HOST_DATA is not our clean-room policy hash: it is fixed by the ccePolicy (the Rego that
``az confcom acipolicygen`` derives from the ARM template). So for ``--backend aci`` the voted
clean-room policy document carries that ccePolicy and its host data (``aci_policy_fields``),
and the SKR policy requires exactly the host data of the *accepted* document: the hardware must
report the policy the parties voted before Key Vault lets the KEK out. DEKs are wrapped to that KEK's public key locally
(RSA-OAEP-256, the same wrap format as ``core.crypto.kek``), so no DEK ever travels to Azure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any
from urllib.parse import urlparse

from core.config.canonical import canonical_json
from core.errors import InvalidInputError

SKR_POLICY_VERSION = "1.0.0"
ATTESTATION_TYPE = "sevsnpvm"
COMPLIANCE_STATUS = "azure-compliant-uvm"
KEK_SIZE = 3072
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
CCE_POLICY_PLACEHOLDER = "REPLACE-WITH-az-confcom-acipolicygen-OUTPUT"
ACIPOLICYGEN_HINT = (
    "run `az confcom acipolicygen -a cleanroom-aci-template.json --print-policy > cce-policy.b64` "
    "and pass --cce-policy cce-policy.b64"
)


def cce_policy_host_data(cce_policy_b64: str) -> str:
    """SEV-SNP HOST_DATA for a ccePolicy: SHA-256 of the decoded Rego (what SKR must require)."""
    if not cce_policy_b64 or cce_policy_b64.strip() == CCE_POLICY_PLACEHOLDER:
        raise InvalidInputError(
            "the ccePolicy is still the placeholder, so no key could ever be released to it", hint=ACIPOLICYGEN_HINT
        )
    try:
        rego = base64.b64decode(cce_policy_b64.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError("ccePolicy is not base64", hint="pass the output of `az confcom acipolicygen`") from exc
    if not rego:
        raise InvalidInputError("ccePolicy is empty", hint=ACIPOLICYGEN_HINT)
    return hashlib.sha256(rego).hexdigest()


def aci_policy_fields(cce_policy_b64: str) -> dict[str, str]:
    """What an ACI clean-room policy document adds to the measured policy, for the vote."""
    cce = cce_policy_b64.strip()
    return {"attestation_type": ATTESTATION_TYPE, "cce_policy": cce, "host_data": cce_policy_host_data(cce)}


def accepted_host_data(document: dict[str, Any] | None) -> str | None:
    """The HOST_DATA a clean-room policy document binds keys to, recomputed from its ccePolicy
    (a stated value is never trusted alone); None when it carries no (consistent) ccePolicy."""
    if not isinstance(document, dict) or not isinstance(document.get("cce_policy"), str):
        return None
    try:
        recomputed = cce_policy_host_data(document["cce_policy"])
    except InvalidInputError:
        return None
    return recomputed if document.get("host_data") == recomputed else None


def maa_authority(endpoint: str) -> str:
    """Normalise an MAA endpoint (``name.region.attest.azure.net`` with or without https)."""
    url = endpoint if "://" in endpoint else f"https://{endpoint}"
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.hostname or parsed.path not in ("", "/"):
        raise InvalidInputError(
            f"MAA endpoint {endpoint!r} is not an https host",
            hint="pass --maa-endpoint https://sharedeus.eus.attest.azure.net (or your own MAA)",
        )
    return f"https://{parsed.hostname}"


def release_policy(host_data: str, maa_endpoint: str) -> dict[str, Any]:
    """The Key Vault SKR policy that releases only to a SEV-SNP group launched with ``host_data``."""
    if not _HASH_RE.match(host_data or ""):
        raise InvalidInputError(
            f"host data {host_data!r} is not 64 lowercase hex characters",
            hint="use the host_data of the accepted clean-room policy (`cleanroom governance deployment policy show`)",
        )
    return {
        "version": SKR_POLICY_VERSION,
        "anyOf": [
            {
                "authority": maa_authority(maa_endpoint),
                "allOf": [
                    {"claim": "x-ms-attestation-type", "equals": ATTESTATION_TYPE},
                    {"claim": "x-ms-compliance-status", "equals": COMPLIANCE_STATUS},
                    {"claim": "x-ms-sevsnpvm-hostdata", "equals": host_data},
                ],
            }
        ],
    }


def release_policy_for_clean_room_policy(document: dict[str, Any], maa_endpoint: str) -> dict[str, Any]:
    """The SKR policy for a clean-room policy document: exactly the host data of its ccePolicy."""
    host_data = accepted_host_data(document)
    if host_data is None:
        raise InvalidInputError(
            "the clean-room policy carries no ccePolicy, so SEV-SNP's HOST_DATA is unknown "
            "and Key Vault would refuse every release",
            hint=ACIPOLICYGEN_HINT,
        )
    return release_policy(host_data, maa_endpoint)


def required_host_data(document: dict[str, Any]) -> str:
    """The hostdata an SKR policy document requires (to show and to check against a contract)."""
    try:
        rules = document["anyOf"][0]["allOf"]
        return str(next(r["equals"] for r in rules if r.get("claim") == "x-ms-sevsnpvm-hostdata"))
    except (KeyError, IndexError, TypeError, StopIteration) as exc:
        raise InvalidInputError(
            "SKR policy has no x-ms-sevsnpvm-hostdata claim", hint="re-generate it with core.keys.skr.release_policy"
        ) from exc


def policy_bytes(document: dict[str, Any]) -> bytes:
    """The bytes Key Vault stores as the release policy (canonical, so hashes are stable)."""
    return canonical_json(document)


def check_kek_vault(vault_url: str) -> None:
    """SKR needs HSM-backed exportable keys: Key Vault (premium) or a managed HSM."""
    parsed = urlparse(vault_url)
    if parsed.scheme != "https" or not (parsed.hostname or "").endswith((".vault.azure.net", ".managedhsm.azure.net")):
        raise InvalidInputError(
            f"key vault {vault_url!r} is not a Key Vault or managed HSM URL",
            hint="pass --kek-vault https://NAME.vault.azure.net (premium) or https://NAME.managedhsm.azure.net",
        )


def create_release_kek(vault_url: str, key_name: str, document: dict[str, Any], credential: Any | None = None) -> Any:
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
        key_name,
        size=KEK_SIZE,
        hardware_protected=True,
        exportable=True,
        key_operations=["wrapKey", "unwrapKey", "encrypt", "decrypt"],
        release_policy=KeyReleasePolicy(policy_bytes(document), immutable=False),
    )


def vault_kek_name(contract_id: str) -> str:
    """One KEK per contract in the party's vault (Key Vault names: 1-127 letters, digits, '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "-", f"cleanroom-{contract_id}-kek")[:127]


def wrap_deks_with_vault_kek(
    vault_url: str,
    contract_id: str,
    accepted_host_data: str,
    maa_endpoint: str,
    deks: dict[str, bytes],
    credential: Any | None = None,
) -> tuple[str, dict[str, bytes]]:
    """`wrap-deks --kek-vault`: create the contract's SKR-bound KEK, wrap the DEKs; (key id, wraps)."""
    document = release_policy(accepted_host_data, maa_endpoint)
    key = create_release_kek(vault_url, vault_kek_name(contract_id), document, credential)
    return str(key.id), wrap_deks(key.key, deks)


def wrap_deks(kek_public_jwk: Any, deks: dict[str, bytes]) -> dict[str, bytes]:
    """Wrap each DEK to the vault KEK's public key, locally (RSA-OAEP-256)."""
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

    client = CryptographyClient.from_jwk(kek_public_jwk)
    wrapped: dict[str, bytes] = {}
    for name, dek in deks.items():
        if len(dek) != 32:
            raise InvalidInputError(
                f"DEK of '{name}' is {len(dek)} bytes, not 32",
                hint="regenerate it with `cleanroom config add-datasource`",
            )
        wrapped[name] = client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek).encrypted_key
    return wrapped


def wrap_deks_to_vault(
    workspace: Any,
    contract_id: str,
    *,
    governance: Any,
    vault_url: str,
    maa_endpoint: str,
    credential: Any | None = None,
) -> Any:
    """`config wrap-deks --kek-vault`: like ``core.keys.wrap_deks`` with the KEK in Key Vault.

    The KEK is bound by SKR to the host data of the ccePolicy in the contract's *accepted*
    clean-room policy, so this runs after the policy vote; the wrapped DEKs go to governance as
    the same contract secrets.
    """
    from core.crypto.kek import dek_for
    from core.errors import ConflictError
    from core.keys.wrap_deks import WrappedDeks, dek_secret_name

    check_kek_vault(vault_url)
    maa_authority(maa_endpoint)
    member_id = workspace.identity.member_id
    data = governance.contract(contract_id).get("data") or {}
    owned = [
        asset["name"]
        for asset in data.get("datasources", []) + data.get("datasinks", [])
        if asset.get("owner") == member_id
    ]
    if not owned:
        raise InvalidInputError(
            f"contract '{contract_id}' has no datasource or datasink owned by this workspace",
            hint="nothing to wrap; only parties that bring data run wrap-deks",
        )
    document = governance.clean_room_policy(contract_id).get("data")
    if not document:
        raise ConflictError(
            f"contract '{contract_id}' has no accepted clean-room policy to bind the vault KEK to",
            hint="propose and vote it with `cleanroom governance deployment policy propose`",
        )
    accepted = accepted_host_data(document)
    if accepted is None:
        raise ConflictError(
            f"the accepted clean-room policy of '{contract_id}' carries no ccePolicy, so Key Vault "
            "would refuse every release",
            hint="generate it with `governance deployment generate "
            "--backend aci --cce-policy FILE`, then propose and vote it",
        )
    kid, wrapped = wrap_deks_with_vault_kek(
        vault_url,
        contract_id,
        accepted,
        maa_endpoint,
        {name: dek_for(workspace.keys_dir, name) for name in owned},
        credential,
    )
    for name, blob in wrapped.items():
        governance.put_secret(contract_id, dek_secret_name(name), blob)
    return WrappedDeks(contract_id=contract_id, kek_fingerprint=kid, assets=owned)
