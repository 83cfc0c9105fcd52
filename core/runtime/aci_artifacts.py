"""What `governance deployment generate --backend aci` writes besides the deployment spec: the
confidential container group's ARM template and, with the real ccePolicy, the policy to vote and
the Key Vault secure-key-release (SKR) policy.

``core.runtime.backend.AciBackend.generate`` checks the Azure flags on their own first
(`check_aci_flags`), before anything is asked of governance, then against the contract
(`check_aci_spec`) before anything is written, so a mistyped flag costs neither a round trip nor
a half-written folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import InvalidInputError
from core.runtime.backend import GenerateOptions


def _identity(options: GenerateOptions) -> Any:
    """The group's user-assigned managed identity (None without --identity); both flags or neither."""
    from core.runtime.aci import ManagedIdentity

    if bool(options.identity_id) != bool(options.identity_client_id):
        raise InvalidInputError(
            "--identity and --identity-client-id go together",
            hint="pass both, from `az identity show --ids RESOURCE_ID --query '[id,clientId]'`",
        )
    if options.identity_id and options.identity_client_id:
        return ManagedIdentity(options.identity_id, options.identity_client_id)
    return None


def refuse_aci_flags(options: GenerateOptions) -> None:
    """Another backend given Azure flags: refused rather than silently writing no Azure file."""
    if (
        options.cce_policy_file
        or options.maa_endpoint
        or options.kek_vaults
        or options.identity_id
        or options.identity_client_id
    ):
        raise InvalidInputError(
            "--cce-policy, --maa-endpoint, --kek-vault and --identity are for --backend aci",
            hint="add --backend aci",
        )


def check_aci_flags(options: GenerateOptions) -> None:
    """The Azure flags on their own, before governance is asked anything."""
    from core.keys.skr import ACIPOLICYGEN_HINT, cce_policy_host_data, maa_authority

    _identity(options)
    if options.maa_endpoint:
        maa_authority(options.maa_endpoint)
        if options.cce_policy_file is None:
            raise InvalidInputError(
                "no SKR policy without the real ccePolicy: the template still has the "
                "placeholder, whose host data no SEV-SNP group reports",
                hint=ACIPOLICYGEN_HINT,
            )
    kek_vaults(options.kek_vaults)
    if options.cce_policy_file is not None:
        cce_policy_host_data(options.cce_policy_file.read_text())
        if not options.maa_endpoint:
            raise InvalidInputError(
                "a deployable template needs --maa-endpoint (where the runtime sidecar attests)",
                hint="add --maa-endpoint sharedeus.eus.attest.azure.net (or your own MAA)",
            )


def check_aci_spec(contract_id: str, contract_data: dict[str, Any], options: GenerateOptions) -> None:
    """Before anything is written: the template must be buildable, and a deployable one (with the
    real ccePolicy) needs every data owner's vault, or the sidecar could release no key."""
    from core.runtime.aci import aci_template
    from core.runtime.deployment import deployment_spec

    spec = deployment_spec(contract_id, contract_data)
    aci_template(spec)  # images, stores and names an Azure clean room can use
    if options.cce_policy_file is None:
        return
    owners = sorted(
        {m["owner"] for app in spec["applications"] for m in app["mounts"]} - set(kek_vaults(options.kek_vaults))
    )
    if owners:
        raise InvalidInputError(
            f"no --kek-vault for data owner(s) {', '.join(owners)}: the runtime sidecar "
            "could not get their KEKs released",
            hint=f"add --kek-vault {owners[0]}=https://NAME.vault.azure.net",
        )


def kek_vaults(items: tuple[str, ...]) -> dict[str, str]:
    """``MEMBER=URL`` flags as {member: vault URL}, each URL checked to be a Key Vault."""
    from core.keys.skr import check_kek_vault

    vaults = {}
    for item in items:
        member, _, url = item.partition("=")
        if not member or not url:
            raise InvalidInputError(
                f"--kek-vault {item!r} is not MEMBER=URL",
                hint="e.g. --kek-vault m-provider=https://provider-kv.vault.azure.net",
            )
        check_kek_vault(url)
        vaults[member] = url
    return vaults


def write_aci_artifacts(
    summary: dict[str, Any], *, governance_url: str, governance_cert_pem: str, options: GenerateOptions
) -> dict[str, Any]:
    """Add the ARM template (and, with the ccePolicy, the policy to vote and the SKR policy)
    next to the deployment spec `write_deployment` wrote; the governance URL and pinned service
    certificate are where the sidecar reports."""
    from core.crypto.secret_file import write_public_file
    from core.keys.skr import ACIPOLICYGEN_HINT, policy_bytes, release_policy_for_clean_room_policy
    from core.runtime.aci import RUNTIME_SIDECAR_IMAGE, write_aci_template
    from core.runtime.deployment import load_document, policy_document
    from core.runtime.sidecar import sidecar_environment

    spec_path = Path(summary["deployment_spec"])
    spec = load_document(spec_path, "deployment spec")
    cce_policy = options.cce_policy_file.read_text().strip() if options.cce_policy_file else None
    sidecar_env = sidecar_environment(
        governance_url=governance_url,
        governance_cert_pem=governance_cert_pem,
        maa_endpoint=options.maa_endpoint,
        kek_vaults=kek_vaults(options.kek_vaults),
    )
    template = write_aci_template(
        spec,
        spec_path.parent,
        runtime_image=options.runtime_image or RUNTIME_SIDECAR_IMAGE,
        cce_policy=cce_policy,
        sidecar_env=sidecar_env,
        identity=_identity(options),
    )
    result = {**summary, "aci_template": str(template)}
    if options.identity_id:
        result["identity"] = options.identity_id
    if cce_policy is None:
        result["next_step"] = (
            ACIPOLICYGEN_HINT.replace("cleanroom-aci-template.json", str(template))
            + " to `governance deployment generate` again, then propose the policy"
        )
        return result
    document = policy_document(spec, cce_policy=cce_policy)
    write_public_file(Path(summary["policy"]), (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    result["host_data"] = document["host_data"]
    if options.maa_endpoint:
        skr_path = spec_path.parent / "cleanroom-skr-policy.json"
        write_public_file(
            skr_path, policy_bytes(release_policy_for_clean_room_policy(document, options.maa_endpoint)) + b"\n"
        )
        result["skr_policy"] = str(skr_path)
    return result
