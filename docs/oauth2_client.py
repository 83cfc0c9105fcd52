"""A client application scoring through a clean room, with a stock OAuth2 library (authlib).

Nothing here imports the cleanroom package: this is what an application team writes. It gets an
access token from governance's ``/oauth2/token`` by OAuth2 client credentials, authenticating
with a private_key_jwt assertion (RFC 7523) signed by the application's own key, then calls the
clean room's ingress with it as a bearer token.

Before it can run, the consortium registers the application (every member votes)::

    cleanroom -w W/consumer governance app register --name scorer --owner <member id> \\
        --contract inference-initial --route "POST /score" --rate-limit 600 --generate-key scorer.pem
    cleanroom -w W/<each party> governance proposal vote --proposal-id <proposal id> --action accept

Then::

    python docs/oauth2_client.py --workspace W/consumer --app scorer --key scorer.pem \\
        --contract inference-initial --ingress https://127.0.0.1:8443 --ingress-ca ca.pem \\
        --data '[{"text": "a moving, funny film"}]'

``--workspace`` is read only for the governance endpoint and its pinned TLS certificate (the CA
bundle a client verifies governance with). Without ``--ingress`` the script prints the token
answer and stops. Requires ``pip install 'authlib>=1.3,<2' httpx``.
"""

from __future__ import annotations

import argparse
import json
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey

# authlib signs assertions valid for an hour by default; governance accepts at most five minutes
ASSERTION_LIFETIME_SECONDS = 120


def governance_of(workspace: Path) -> tuple[str, str]:
    """The governance endpoint and the service certificate a cleanroom workspace pinned."""
    settings: dict[str, Any] = json.loads((workspace / "workspace.json").read_text())
    governance = settings["governance"]
    return governance["endpoint"], governance["service_cert_pem"]


def fetch_token(endpoint: str, service_cert_pem: str, app: str, key_pem: bytes, contract: str) -> dict[str, Any]:
    """Client credentials with private_key_jwt, as any OAuth2 client library sends them."""
    token_endpoint = f"{endpoint}/oauth2/token"
    auth = PrivateKeyJWT(token_endpoint, claims={"exp": int(time.time()) + ASSERTION_LIFETIME_SECONDS}, alg="ES384")
    with OAuth2Client(
        client_id=app,
        client_secret=ECKey.import_key(key_pem),
        token_endpoint_auth_method=auth,
        scope=f"contract:{contract}",
        verify=ssl.create_default_context(cadata=service_cert_pem),
    ) as session:
        token: dict[str, Any] = session.fetch_token(token_endpoint, grant_type="client_credentials")
    return token


def score(ingress: str, ingress_ca: Path, access_token: str, records: list[Any]) -> Any:
    """``POST /score`` with ``{"data": [records]}`` and the bearer token."""
    response = httpx.post(
        f"{ingress.rstrip('/')}/score",
        json={"data": records},
        headers={"Authorization": f"Bearer {access_token}"},
        verify=ssl.create_default_context(cafile=str(ingress_ca)),
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="a cleanroom workspace (governance endpoint)")
    parser.add_argument("--app", required=True, help="the registered application name")
    parser.add_argument("--key", type=Path, required=True, help="the application's private key (PEM, EC P-384)")
    parser.add_argument("--contract", required=True, help="the contract whose clean room is called")
    parser.add_argument("--ingress", help="the clean room's ingress URL (omit to print the token answer only)")
    parser.add_argument("--ingress-ca", type=Path, help="the clean room's CA certificate (PEM)")
    parser.add_argument("--data", default="[]", help="a JSON list of records to score")
    args = parser.parse_args()
    endpoint, service_cert_pem = governance_of(args.workspace)
    token = fetch_token(endpoint, service_cert_pem, args.app, args.key.read_bytes(), args.contract)
    if not args.ingress:
        print(json.dumps(token))
        return
    if args.ingress_ca is None:
        parser.error("--ingress needs --ingress-ca")
    print(json.dumps(score(args.ingress, args.ingress_ca, token["access_token"], json.loads(args.data))))


if __name__ == "__main__":
    main()
