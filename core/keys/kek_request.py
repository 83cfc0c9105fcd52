"""The member-signed request that asks the key service for a contract KEK.

Kept apart from the service so clients (CLI, runtime) do not import the web framework.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

AUDIENCE = "cleanroom-key-service"


def signed_kek_request(identity: Any, contract_id: str) -> dict[str, str]:
    """Body of a create-KEK call, signed by ``identity`` (a MemberIdentity) with ES384."""
    token = jwt.encode(
        {"aud": AUDIENCE, "action": "create_kek", "contract_id": contract_id, "iat": int(time.time())},
        identity.private_key,
        algorithm="ES384",
    )
    return {"member_cert": identity.cert_pem, "request": token}
