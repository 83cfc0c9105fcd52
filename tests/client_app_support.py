"""Client applications for the tests: registration by a real vote, and raw token requests.

Raw requests (``post_token``) go over the same pinned TLS as every client, but send exactly the
form a test builds, so a test can send what no well-behaved client would."""

from __future__ import annotations

import ssl
import time
import uuid
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.governance.client_apps import ASSERTION_TYPE
from tests.governance_support import Consortium


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def register(
    gov: Consortium,
    name: str,
    contracts: list[str],
    *,
    routes: tuple[str, ...] = ("POST /score",),
    rate_limit: int = 600,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> ec.EllipticCurvePrivateKey:
    """Propose the application and have every member accept; returns its private key."""
    key = key or ec.generate_private_key(ec.SECP384R1())
    proposal = gov.clients[-1].propose_client_app(
        name,
        owner=gov.members[-1].member_id,
        contracts=contracts,
        routes=list(routes),
        rate_limit_per_minute=rate_limit,
        public_key=public_pem(key),
    )
    assert gov.pass_proposal(proposal)["proposalState"] == "Accepted"
    return key


def token_url(gov: Consortium) -> str:
    return f"{gov.info.endpoint}/oauth2/token"


def assertion(gov: Consortium, name: str, key: Any, *, algorithm: str = "ES384", **claims: Any) -> str:
    """A client assertion; ``claims`` override or (value None) drop the standard ones."""
    now = int(time.time())
    body = {"iss": name, "sub": name, "aud": token_url(gov), "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm)


def token_form(client_assertion: str, contract_id: str | None = None, **fields: str) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    form["client_assertion"] = client_assertion
    if contract_id is not None:
        form["scope"] = f"contract:{contract_id}"
    return form | fields


def post_token(gov: Consortium, form: dict[str, str] | str, content_type: str | None = None) -> httpx.Response:
    context = ssl.create_default_context(cadata=gov.info.service_cert_pem)
    with httpx.Client(verify=context) as http:
        if isinstance(form, str):
            headers = {"Content-Type": content_type or "application/x-www-form-urlencoded"}
            return http.post(token_url(gov), content=form.encode(), headers=headers)
        if content_type is not None:
            return http.post(token_url(gov), json=form, headers={"Content-Type": content_type})
        return http.post(token_url(gov), data=form)


def verify_with_jwks(gov: Consortium, token: str, audience: str) -> dict[str, Any]:
    """Check a token as the ingress does: the JWKS key named by its kid, ES384, its audience."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = [k for k in gov.clients[0].jwks()["keys"] if k["kid"] == kid]
    assert keys, f"kid {kid} is not in the JWKS"
    claims: dict[str, Any] = jwt.decode(token, jwt.PyJWK(keys[0]).key, algorithms=["ES384"], audience=audience)
    return claims
