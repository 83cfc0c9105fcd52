"""``POST /oauth2/token`` of a real governance service: client credentials with private_key_jwt.

Every refusal is checked for its RFC 6749 error code and status, for ``Cache-Control: no-store``,
and for what it did not do: no access token in the answer and no ledger entry."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.governance.client_apps import APP_TOKEN_TTL_SECONDS
from tests.client_app_support import assertion, post_token, register, token_form, verify_with_jwks
from tests.governance_support import Consortium, start_consortium

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory):
    consortium = start_consortium(tmp_path_factory.mktemp("oauth2") / "service", window_seconds=60)
    for contract_id in ("scoring", "other"):
        consortium.accepted_contract(contract_id)
    consortium.clients[0].create_contract("draft", {"id": "draft"})
    yield consortium
    consortium.close()


@pytest.fixture(scope="module")
def scorer(gov: Consortium) -> ec.EllipticCurvePrivateKey:
    return register(gov, "scorer", ["scoring"], routes=("POST /score", "POST /v2/models/{name}/infer"))


def _seqno(gov: Consortium) -> int:
    return int(gov.clients[0].ledger_head()["seqno"])


def _ledger_request(gov: Consortium, seqno: int) -> tuple[str, bytes]:
    receipt = gov.clients[0].receipt(seqno)
    return receipt["entry"]["kind"], base64.b64decode(receipt["request"])


def test_token_answer_claims_and_ledger_entry(gov: Consortium, scorer: ec.EllipticCurvePrivateKey) -> None:
    before = _seqno(gov)
    response = post_token(gov, token_form(assertion(gov, "scorer", scorer), "scoring"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer = response.json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == APP_TOKEN_TTL_SECONDS
    assert answer["scope"] == "contract:scoring"
    claims = verify_with_jwks(gov, answer["access_token"], "cleanroom:scoring")
    assert claims["iss"] == gov.clients[0].service_info()["tokenIssuer"]
    assert claims["sub"] == "app:scorer" and claims["app"] == "scorer" and claims["contract_id"] == "scoring"
    assert claims["owner"] == gov.members[-1].member_id
    assert claims["routes"] == ["POST /score", "POST /v2/models/{name}/infer"]
    assert claims["rate_limit_per_minute"] == 600
    assert claims["exp"] - claims["iat"] == APP_TOKEN_TTL_SECONDS and len(claims["jti"]) == 32
    assert jwt.get_unverified_header(answer["access_token"])["alg"] == "ES384"
    # one service-signed ledger entry naming app, contract and token id, never the token
    assert _seqno(gov) == before + 1
    kind, request = _ledger_request(gov, before + 1)
    assert kind == "oauth2.token"
    assert claims["jti"].encode() in request and b"scorer" in request
    assert (
        answer["access_token"].encode() not in request and answer["access_token"].split(".")[2].encode() not in request
    )


def test_an_application_with_one_contract_needs_no_scope(gov: Consortium, scorer: ec.EllipticCurvePrivateKey) -> None:
    response = post_token(gov, token_form(assertion(gov, "scorer", scorer)))
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "contract:scoring"


def test_a_stock_client_form_with_client_id_and_resource_works(gov: Consortium, scorer: Any) -> None:
    form = token_form(assertion(gov, "scorer", scorer), client_id="scorer", resource="contract:scoring")
    assert post_token(gov, form).status_code == 200


def test_replayed_assertion_gets_no_second_token(gov: Consortium, scorer: ec.EllipticCurvePrivateKey) -> None:
    form = token_form(assertion(gov, "scorer", scorer), "scoring")
    assert post_token(gov, form).status_code == 200
    after_first = _seqno(gov)
    replay = post_token(gov, form)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    assert "replayed jti" in replay.json()["error_description"] and "access_token" not in replay.json()
    assert _seqno(gov) == after_first


def _hs256(gov: Consortium, _: Any) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": "scorer", "sub": "scorer", "aud": f"{gov.info.endpoint}/oauth2/token", "exp": now + 60, "jti": "h"}
    return token_form(jwt.encode(claims, "a shared secret of at least 32 bytes!!", algorithm="HS256"), "scoring")


def _none(gov: Consortium, _: Any) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": "scorer", "sub": "scorer", "aud": f"{gov.info.endpoint}/oauth2/token", "exp": now + 60, "jti": "n"}
    return token_form(jwt.encode(claims, None, algorithm="none"), "scoring")


def _other_key(gov: Consortium, _: Any) -> dict[str, str]:
    return token_form(assertion(gov, "scorer", ec.generate_private_key(ec.SECP384R1())), "scoring")


def _p256_for_p384(gov: Consortium, _: Any) -> dict[str, str]:
    return token_form(assertion(gov, "scorer", ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"), "scoring")


REFUSALS: dict[str, tuple[Callable[[Consortium, Any], dict[str, str] | str], int, str, str]] = {
    "grant type missing": (
        lambda g, k: {key: v for key, v in token_form(assertion(g, "scorer", k)).items() if key != "grant_type"},
        400,
        "invalid_request",
        "grant_type is missing",
    ),
    "password grant": (
        lambda g, k: token_form(assertion(g, "scorer", k)) | {"grant_type": "password"},
        400,
        "unsupported_grant_type",
        "use client_credentials",
    ),
    "no client assertion": (
        lambda g, k: {"grant_type": "client_credentials", "client_id": "scorer", "client_secret": "s"},
        401,
        "invalid_client",
        "private_key_jwt",
    ),
    "wrong assertion type": (
        lambda g, k: token_form(assertion(g, "scorer", k)) | {"client_assertion_type": "urn:x:saml"},
        401,
        "invalid_client",
        "is not supported",
    ),
    "not a JWT": (lambda g, k: token_form("not.a.jwt"), 401, "invalid_client", "not a JWT"),
    "alg none": (_none, 401, "invalid_client", "alg 'none' is refused"),
    "alg HS256": (_hs256, 401, "invalid_client", "alg 'HS256' is refused"),
    "unknown app": (
        lambda g, k: token_form(assertion(g, "stranger", k)),
        401,
        "invalid_client",
        "'stranger' is not registered",
    ),
    "wrong aud": (
        lambda g, k: token_form(assertion(g, "scorer", k, aud="https://elsewhere.example/oauth2/token")),
        401,
        "invalid_client",
        "aud is not this token endpoint",
    ),
    "expired": (
        lambda g, k: token_form(assertion(g, "scorer", k, iat=int(time.time()) - 600, exp=int(time.time()) - 120)),
        401,
        "invalid_client",
        "has expired",
    ),
    "lives an hour": (
        lambda g, k: token_form(assertion(g, "scorer", k, exp=int(time.time()) + 3600)),
        401,
        "invalid_client",
        "more than 300 s ahead",
    ),
    "no jti": (lambda g, k: token_form(assertion(g, "scorer", k, jti=None)), 401, "invalid_client", '"jti"'),
    "sub is not iss": (
        lambda g, k: token_form(assertion(g, "scorer", k, sub="someone")),
        401,
        "invalid_client",
        "is not its iss",
    ),
    "client_id is not iss": (
        lambda g, k: token_form(assertion(g, "scorer", k), client_id="other-app"),
        401,
        "invalid_client",
        "is not the assertion's iss",
    ),
    "signed by another key": (_other_key, 401, "invalid_client", "signature does not verify"),
    "alg of another key type": (_p256_for_p384, 401, "invalid_client", "does not fit the registered EC secp384r1"),
    "contract not allowed": (
        lambda g, k: token_form(assertion(g, "scorer", k), "other"),
        400,
        "invalid_scope",
        "not registered for contract 'other'",
    ),
    "scope of another kind": (
        lambda g, k: token_form(assertion(g, "scorer", k)) | {"scope": "openid"},
        400,
        "invalid_scope",
        "'openid' is not known",
    ),
    "two contracts": (
        lambda g, k: token_form(assertion(g, "scorer", k)) | {"scope": "contract:scoring contract:other"},
        400,
        "invalid_scope",
        "one contract",
    ),
    "JSON body": (lambda g, k: "{}", 400, "invalid_request", "x-www-form-urlencoded"),
    "parameter twice": (
        lambda g, k: "grant_type=client_credentials&grant_type=client_credentials",
        400,
        "invalid_request",
        "given twice",
    ),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_refusal_gives_no_token_and_no_ledger_entry(gov: Consortium, scorer: Any, case: str) -> None:
    build, status, code, words = REFUSALS[case]
    before = _seqno(gov)
    form = build(gov, scorer)
    response = post_token(gov, form, "application/json" if case == "JSON body" else None)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and words in body["error_description"], body
    assert "access_token" not in body and response.headers["cache-control"] == "no-store"
    assert _seqno(gov) == before


def test_contract_not_accepted_gets_no_token(gov: Consortium) -> None:
    key = register(gov, "drafter", ["scoring", "draft"])
    before = _seqno(gov)
    response = post_token(gov, token_form(assertion(gov, "drafter", key), "draft"))
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"
    assert "contract 'draft' is Draft" in response.json()["error_description"]
    assert _seqno(gov) == before
    several = post_token(gov, token_form(assertion(gov, "drafter", key)))
    assert several.status_code == 400 and "ask for scope=contract:<id>" in several.json()["error_description"]


def test_rsa_and_jwk_registered_keys_work(gov: Consortium) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    proposal = gov.clients[0].propose_client_app(
        "rsa-app",
        owner=gov.members[0].member_id,
        contracts=["scoring"],
        routes=["POST /score"],
        rate_limit_per_minute=60,
        public_key=json.dumps(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))),
    )
    assert gov.pass_proposal(proposal)["proposalState"] == "Accepted"
    for algorithm in ("RS256", "PS256"):
        response = post_token(gov, token_form(assertion(gov, "rsa-app", rsa_key, algorithm=algorithm)))
        assert response.status_code == 200, response.text
    listed = {app["name"]: app for app in gov.clients[1].client_apps()}
    assert listed["rsa-app"]["keyType"] == "RSA 2048"


def test_client_and_cli_token_verbs_refuse_in_one_line(gov: Consortium, scorer: Any) -> None:
    from core.errors import AccessDeniedError, InvalidInputError

    anonymous = gov.client()
    assert anonymous.app_token("scorer", scorer, "scoring")["token_type"] == "Bearer"
    with pytest.raises(InvalidInputError, match=r"\(invalid_scope\): the application is not registered"):
        anonymous.app_token("scorer", scorer, "other")
    with pytest.raises(AccessDeniedError, match=r"'ghost' \(invalid_client\)"):
        anonymous.app_token("ghost", scorer, "scoring")


def test_stock_oauth2_client_script_gets_a_token(gov: Consortium, scorer: Any, tmp_path: Path) -> None:
    """docs/oauth2_client.py (authlib) against the real service. No clean room runs here, so the
    scoring call is not made; the token's claims are checked instead, as the ingress checks them."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    settings = {
        "persona": "app",
        "governance": {"endpoint": gov.info.endpoint, "service_cert_pem": gov.info.service_cert_pem},
    }
    (workspace / "workspace.json").write_text(json.dumps(settings))
    key_file = tmp_path / "scorer.pem"
    key_file.write_bytes(
        scorer.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    before = _seqno(gov)
    script = ROOT / "docs" / "oauth2_client.py"
    arguments = ["--workspace", workspace, "--app", "scorer", "--key", key_file, "--contract", "scoring"]
    result = subprocess.run(
        [sys.executable, script, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["token_type"].lower() == "bearer" and answer["scope"] == "contract:scoring"
    claims = verify_with_jwks(gov, answer["access_token"], "cleanroom:scoring")
    assert claims["app"] == "scorer" and claims["routes"][0] == "POST /score"
    assert _seqno(gov) == before + 1


def test_the_ledger_with_token_issuances_verifies_offline(gov: Consortium, scorer: Any, tmp_path: Path) -> None:
    from core.governance.ledger import verify_export_file

    assert post_token(gov, token_form(assertion(gov, "scorer", scorer))).status_code == 200
    export = tmp_path / "ledger.jsonl"
    gov.clients[0].export_ledger(export)
    report = verify_export_file(export, expected_service_cert_pem=gov.info.service_cert_pem, full=True)
    entries = [json.loads(line)["entry"] for line in export.read_text().splitlines() if '"entry"' in line]
    issuances = sum(entry["kind"] == "oauth2.token" and entry["signer"] == "service" for entry in entries)
    assert issuances >= 1 and report.entries == len(entries)
    # genesis, every checkpoint and every issuance: each service signature was checked
    assert report.service_signatures_checked >= 1 + report.checkpoints + issuances
