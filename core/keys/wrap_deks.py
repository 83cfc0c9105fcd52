"""``config wrap-deks``: hand a contract the DEKs of this party, readable only by its clean room.

For each datasource/datasink this party owns in the contract, the DEK is unwrapped locally
(with the workspace KEK, which never leaves the workspace), re-wrapped to the party's
per-contract KEK held by the key service (RSA-OAEP-SHA256), and stored as a contract secret.
The clean room gets the secret (attested) and the KEK (released under the accepted policy);
nobody else can put the two together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.crypto.kek import dek_for, load_kek_public_key, wrap_dek_for
from core.errors import InvalidInputError
from core.workspace import Workspace


def dek_secret_name(asset: str) -> str:
    """The governance secret holding an asset's DEK wrapped to its owner's contract KEK."""
    return f"dek-{asset}"


@dataclass(frozen=True)
class WrappedDeks:
    contract_id: str
    kek_fingerprint: str
    assets: list[str]


def wrap_deks(workspace: Workspace, contract_id: str, *, governance: Any, keys: Any) -> WrappedDeks:
    """Create/use this party's KEK for ``contract_id`` and store its wrapped DEKs as contract secrets.

    ``governance`` is a member-signing ``GovernanceClient``; ``keys`` a ``KeyServiceClient``.
    """
    identity = workspace.identity
    contract = governance.contract(contract_id)
    data = contract.get("data") or {}
    owned = [
        asset["name"]
        for asset in data.get("datasources", []) + data.get("datasinks", [])
        if asset.get("owner") == identity.member_id
    ]
    if not owned:
        raise InvalidInputError(
            f"contract '{contract_id}' has no datasource or datasink owned by this workspace",
            hint="nothing to wrap; only parties that bring data run wrap-deks",
        )
    kek = keys.create_kek(identity, contract_id)
    public = load_kek_public_key(kek["public_key_pem"].encode())
    for name in owned:
        governance.put_secret(
            contract_id, dek_secret_name(name), wrap_dek_for(public, dek_for(workspace.keys_dir, name))
        )
    return WrappedDeks(contract_id=contract_id, kek_fingerprint=kek["fingerprint"], assets=owned)
