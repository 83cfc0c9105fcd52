"""Client applications on a real governance service: registration by vote, revocation by one
member, the revocation feed, token-key rotation with its overlap window, and the CLI verbs."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from core.errors import AccessDeniedError, ConflictError, InvalidInputError, NotFoundError
from core.governance import launcher
from core.governance.client import GovernanceClient, deploy_to_workspace
from core.governance.service_identity import ServiceIdentity
from core.governance.state import GovernanceState
from core.governance.token_keys import TokenKeyRing
from core.workspace import Workspace
from tests.cli_runner import cleanroom
from tests.client_app_support import assertion, post_token, public_pem, register, token_form, verify_with_jwks
from tests.governance_support import Consortium, start_consortium


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory):
    consortium = start_consortium(tmp_path_factory.mktemp("apps") / "service", window_seconds=60)
    consortium.accepted_contract("scoring")
    yield consortium
    consortium.close()


def _args(gov: Consortium, **overrides: Any) -> dict[str, Any]:
    args = {
        "name": "valid-app",
        "owner": gov.members[1].member_id,
        "contracts": ["scoring"],
        "routes": ["POST /score"],
        "rate_limit_per_minute": 60,
        "public_key": public_pem(ec.generate_private_key(ec.SECP384R1())),
    }
    return args | overrides


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


BAD_REGISTRATIONS: dict[str, tuple[dict[str, Any] | None, type[Exception], str]] = {
    "name with a slash": ({"name": "a/b"}, InvalidInputError, "name 'a/b' is not valid"),
    "owner not a member": ({"owner": "f" * 64}, NotFoundError, "is not a member"),
    "unknown contract": (
        {"contracts": ["nowhere"]},
        NotFoundError,
        "contract 'nowhere' named by client application 'bad' does not exist",
    ),
    "no contracts": ({"contracts": []}, InvalidInputError, "needs contracts as a non-empty list"),
    "wildcard route": ({"routes": ["POST /*"]}, InvalidInputError, "is not 'METHOD /exact/path'"),
    "route without method": ({"routes": ["/score"]}, InvalidInputError, "is not 'METHOD /exact/path'"),
    "dot-dot route": ({"routes": ["GET /a/../admin"]}, InvalidInputError, "is not 'METHOD /exact/path'"),
    "zero rate limit": ({"rate_limit_per_minute": 0}, InvalidInputError, "rate_limit_per_minute 0"),
    "boolean rate limit": ({"rate_limit_per_minute": True}, InvalidInputError, "rate_limit_per_minute True"),
    "huge rate limit": ({"rate_limit_per_minute": 10**9}, InvalidInputError, "is not in 1..1000000"),
    "RSA 1024": (None, InvalidInputError, "public_key is RSA 1024, which is not accepted"),
    "P-521": (None, InvalidInputError, "public_key is EC secp521r1, which is not accepted"),
    "private key PEM": (None, InvalidInputError, "public_key PEM is a private key"),
    "private JWK": (None, InvalidInputError, "public_key JWK holds a private key"),
    "garbage key": ({"public_key": "hello"}, InvalidInputError, "neither a PEM public key nor a JWK"),
    "Ed25519": (None, InvalidInputError, "public_key is Ed25519.*, which is not accepted"),
    "symmetric JWK": ({"public_key": {"kty": "oct", "k": "c2VjcmV0"}}, InvalidInputError, "kty 'oct' is neither"),
    "broken EC JWK": ({"public_key": {"kty": "EC", "crv": "P-384"}}, InvalidInputError, "JWK of kty EC does not"),
}


def _bad_key(case: str) -> dict[str, Any]:
    if case == "RSA 1024":
        return {"public_key": _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))}
    if case == "Ed25519":
        return {"public_key": _pem(ed25519.Ed25519PrivateKey.generate())}
    if case == "P-521":
        return {"public_key": _pem(ec.generate_private_key(ec.SECP521R1()))}
    key = ec.generate_private_key(ec.SECP384R1())
    if case == "private key PEM":
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {"public_key": private.decode()}
    return {"public_key": json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))}  # private JWK (has "d")


@pytest.mark.parametrize("case", BAD_REGISTRATIONS, ids=list(BAD_REGISTRATIONS))
def test_bad_registration_opens_no_proposal(gov: Consortium, case: str) -> None:
    overrides, error, words = BAD_REGISTRATIONS[case]
    before = len(gov.clients[0].proposals(action="register_client_app"))
    with pytest.raises(error, match=words):
        gov.clients[0].propose("register_client_app", _args(gov, **({"name": "bad"} | (overrides or _bad_key(case)))))
    assert len(gov.clients[0].proposals(action="register_client_app")) == before


def test_registration_needs_every_member_and_list_shows_no_key(gov: Consortium) -> None:
    proposal = gov.clients[0].propose("register_client_app", _args(gov, name="listed", routes=["POST /score"] * 2))
    gov.clients[0].vote(proposal["proposalId"], "accept")
    gov.clients[1].vote(proposal["proposalId"], "accept")
    assert all(app["name"] != "listed" for app in gov.clients[0].client_apps())  # two of three: not yet
    assert gov.clients[2].vote(proposal["proposalId"], "accept")["proposalState"] == "Accepted"
    listed = {app["name"]: app for app in gov.client().client_apps()}["listed"]  # anyone may read it
    assert listed["status"] == "active" and listed["routes"] == ["POST /score"]
    assert listed["owner"] == gov.members[1].member_id and listed["keyType"] == "EC secp384r1"
    assert "BEGIN" not in json.dumps(listed) and "publicKey" not in listed
    with pytest.raises(ConflictError, match="'listed' is already registered"):
        gov.clients[0].propose("register_client_app", _args(gov, name="listed"))


def test_a_name_taken_while_the_proposal_was_open_fails_it(gov: Consortium) -> None:
    first = gov.clients[0].propose("register_client_app", _args(gov, name="twin"))
    second = gov.clients[1].propose("register_client_app", _args(gov, name="twin"))
    assert gov.pass_proposal(first)["proposalState"] == "Accepted"
    failed = gov.pass_proposal(second)
    assert failed["proposalState"] == "Failed" and "'twin' is already registered" in failed["failure"]


def test_a_rejected_registration_registers_nothing(gov: Consortium) -> None:
    proposal = gov.clients[0].propose("register_client_app", _args(gov, name="vetoed"))
    assert gov.clients[2].vote(proposal["proposalId"], "reject")["proposalState"] == "Rejected"
    assert all(app["name"] != "vetoed" for app in gov.clients[0].client_apps())


def test_any_member_revokes_alone_and_the_app_gets_no_token(gov: Consortium) -> None:
    key = register(gov, "revocable", ["scoring"])
    assert post_token(gov, token_form(assertion(gov, "revocable", key))).status_code == 200
    feed = gov.client().app_revocations()
    revoked = gov.clients[0].revoke_client_app("revocable")  # not the owner (members[-1])
    assert revoked["status"] == "revoked" and revoked["revokedBy"] == gov.members[0].member_id
    after = gov.client().app_revocations()
    assert after["version"] > feed["version"]
    assert {"app": "revocable", "revokedAt": int(revoked["revokedAt"])} in after["revoked"]
    assert gov.clients[0].receipt(after["version"])["entry"]["kind"] == "client_app.revoke"
    head = gov.clients[0].ledger_head()["seqno"]
    refused = post_token(gov, token_form(assertion(gov, "revocable", key)))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert "'revocable' is revoked" in refused.json()["error_description"] and "access_token" not in refused.json()
    assert gov.clients[1].revoke_client_app("revocable")["idempotent"] is True
    assert gov.clients[0].ledger_head()["seqno"] == head
    assert gov.client().app_revocations() == after
    with pytest.raises(ConflictError, match="'revocable' is already registered"):  # a revoked name stays taken
        gov.clients[0].propose("register_client_app", _args(gov, name="revocable"))


def test_revocation_refusals(gov: Consortium) -> None:
    with pytest.raises(NotFoundError, match="'nobody' is not registered"):
        gov.clients[0].revoke_client_app("nobody")
    register(gov, "kept", ["scoring"])
    with pytest.raises(AccessDeniedError, match="unsigned"):
        gov.clients[0].send_raw("POST", "/oauth2/apps/kept/revoke", b"{}", "application/json")
    with pytest.raises(AccessDeniedError, match="no member identity"):
        gov.client().revoke_client_app("kept")
    assert {app["name"]: app for app in gov.clients[0].client_apps()}["kept"]["status"] == "active"
    assert all(item["app"] != "kept" for item in gov.client().app_revocations()["revoked"])


def test_a_revocation_racing_token_requests_wins_from_its_commit(gov: Consortium) -> None:
    """Tokens issued while a revocation commits: none is issued after the revocation's ledger entry."""
    key = register(gov, "raced", ["scoring"])
    issued: list[int] = []

    def ask() -> None:
        for _ in range(8):
            if post_token(gov, token_form(assertion(gov, "raced", key))).status_code == 200:
                issued.append(1)

    thread = threading.Thread(target=ask)
    thread.start()
    gov.clients[1].revoke_client_app("raced")
    revoked_at = gov.client().app_revocations()["version"]  # the revocation's own ledger seqno
    assert gov.clients[0].receipt(revoked_at)["entry"]["kind"] == "client_app.revoke"
    thread.join()
    assert post_token(gov, token_form(assertion(gov, "raced", key))).status_code == 401
    for seqno in range(revoked_at + 1, gov.clients[0].ledger_head()["seqno"] + 1):
        receipt = gov.clients[0].receipt(seqno)
        assert not (receipt["entry"]["kind"] == "oauth2.token" and b"raced" in base64.b64decode(receipt["request"]))


# -- token key rotation --------------------------------------------------------------------------------
def test_ring_publishes_a_retired_key_for_the_overlap_window_only() -> None:
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    first = ec.generate_private_key(ec.SECP384R1())
    ring = TokenKeyRing(db, threading.RLock(), first, overlap_seconds=300)
    old = ring.current
    assert [k.kid for k in ring.published(now=1_000)] == [old.kid]
    new = ring.rotate(seqno=7, now=1_000)
    assert ring.current.kid == new.kid != old.kid
    assert [k.kid for k in ring.published(now=1_299)] == [new.kid, old.kid]
    assert [k.kid for k in ring.published(now=1_300)] == [new.kid]
    newest = ring.rotate(seqno=9, now=1_100)
    assert [k.kid for k in ring.published(now=1_350)] == [newest.kid, new.kid]
    assert "PRIVATE" not in repr(ring.current) and ring.jwks(now=1_350)["keys"][0]["kid"] == newest.kid
    assert all("d" not in key for key in ring.jwks(now=1_000)["keys"])


def test_rotation_keeps_old_tokens_valid_until_expiry_and_survives_a_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "service"
    gov = start_consortium(state_dir, ("hoster", "consumer"), window_seconds=60)
    try:
        gov.accepted_contract("rotating", {"id": "rotating"})
        key = register(gov, "rotor", ["rotating"])
        old_app = post_token(gov, token_form(assertion(gov, "rotor", key))).json()["access_token"]
        old_member = gov.clients[0].issue_token("rotating")["token"]
        (old_kid,) = [k["kid"] for k in gov.clients[0].jwks()["keys"]]
        with pytest.raises(AccessDeniedError, match="unsigned"):
            gov.clients[0].send_raw("POST", "/token-keys/rotate", b"{}", "application/json")
        assert [k["kid"] for k in gov.clients[0].jwks()["keys"]] == [old_kid]
        rotated = gov.clients[1].rotate_token_key()
        new_kid = rotated["kid"]
        assert new_kid != old_kid and [k["kid"] for k in rotated["keys"]] == [new_kid, old_kid]
        assert gov.clients[0].receipt(rotated["seqno"])["entry"]["kind"] == "token_key.rotate"
        assert [k["kid"] for k in gov.client().jwks()["keys"]] == [new_kid, old_kid]
        # tokens signed before the rotation still verify against the published JWKS
        assert verify_with_jwks(gov, old_app, "cleanroom:rotating")["app"] == "rotor"
        assert verify_with_jwks(gov, old_member, "cleanroom:rotating")["sub"] == gov.members[0].member_id
        fresh = post_token(gov, token_form(assertion(gov, "rotor", key))).json()["access_token"]
        assert jwt.get_unverified_header(fresh)["kid"] == new_kid
        assert jwt.get_unverified_header(gov.clients[1].issue_token("rotating")["token"])["kid"] == new_kid
        launcher.stop(state_dir)
        info = launcher.start(state_dir)
        with GovernanceClient(info.endpoint, info.service_cert_pem, gov.members[0]) as restarted:
            assert [k["kid"] for k in restarted.jwks()["keys"]] == [new_kid, old_kid]
            assert jwt.get_unverified_header(restarted.issue_token("rotating")["token"])["kid"] == new_kid
    finally:
        gov.close()
    # after the overlap window the retired key leaves the JWKS (the persisted ring, read offline)
    state = GovernanceState(state_dir, ServiceIdentity.load(state_dir / launcher.IDENTITY_DIR))
    try:
        overlap = state.token_keys.overlap_seconds
        assert overlap >= 300
        assert [k["kid"] for k in state.token_keys.jwks(now=time.time() + overlap - 60)["keys"]] == [new_kid, old_kid]
        assert [k["kid"] for k in state.token_keys.jwks(now=time.time() + overlap + 1)["keys"]] == [new_kid]
    finally:
        state.close()


# -- the CLI verbs -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("apps-cli")
    workspaces = [Workspace.init(root / name, name) for name in ("hoster", "consumer")]
    state_dir = root / "service"
    launcher.create(state_dir, [w.identity.cert_pem for w in workspaces], window_seconds=60)
    info = launcher.start(state_dir)
    for workspace in workspaces:
        deploy_to_workspace(workspace, info.endpoint, info.service_cert_pem)
    gov = Consortium(state_dir, [w.identity for w in workspaces], info)
    gov.accepted_contract("cli-scoring", {"id": "cli-scoring"})
    yield gov, [w.root for w in workspaces], root
    gov.close()


def test_cli_register_vote_list_token_revoke_rotate(cli_world: tuple[Consortium, list[Path], Path]) -> None:
    gov, (hoster, consumer), root = cli_world
    key_file = root / "scorer.pem"
    outcome = cleanroom(
        "-w", consumer, "governance", "app", "register", "--name", "scorer", "--contract", "cli-scoring",
        "--route", "POST /score", "--rate-limit", "120", "--generate-key", key_file, "-o", "json",
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    proposal = json.loads(outcome.stdout)
    assert proposal["proposalState"] == "Open" and proposal["args"]["owner"] == gov.members[1].member_id
    assert key_file.stat().st_mode & 0o777 == 0o600
    for workspace in (hoster, consumer):
        assert cleanroom("-w", workspace, "governance", "proposal", "vote", "--proposal-id", proposal["proposalId"],
                         "--action", "accept").code == 0  # fmt: skip
    listed = json.loads(cleanroom("-w", hoster, "governance", "app", "list", "-o", "json").stdout)
    assert [(a["name"], a["status"], a["rateLimitPerMinute"]) for a in listed] == [("scorer", "active", 120)]
    token = cleanroom("-w", consumer, "governance", "app", "token", "scorer", "--key", key_file,
                      "--contract", "cli-scoring")  # fmt: skip
    assert token.code == 0, token.stderr
    assert verify_with_jwks(gov, token.stdout.strip(), "cleanroom:cli-scoring")["app"] == "scorer"
    answer = json.loads(cleanroom("-w", consumer, "governance", "app", "token", "scorer", "--key", key_file,
                                  "--contract", "cli-scoring", "-o", "json").stdout)  # fmt: skip
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 300
    rotated = cleanroom("-w", hoster, "governance", "keys", "rotate")
    assert rotated.code == 0 and "is current (2 keys published in /jwks)" in rotated.stdout
    revoked = cleanroom("-w", hoster, "governance", "app", "revoke", "scorer")
    assert revoked.code == 0 and "client application 'scorer' is revoked" in revoked.stdout
    refused = cleanroom("-w", consumer, "governance", "app", "token", "scorer", "--key", key_file,
                        "--contract", "cli-scoring")  # fmt: skip
    assert refused.code != 0 and "(invalid_client): client application 'scorer' is revoked" in refused.stderr
    assert refused.stdout == ""


def test_cli_register_refusals_write_no_key(cli_world: tuple[Consortium, list[Path], Path]) -> None:
    gov, (hoster, _), root = cli_world
    key_file = root / "never.pem"
    both = cleanroom(
        "-w", hoster, "governance", "app", "register", "--name", "x", "--contract", "cli-scoring",
        "--route", "POST /score", "--rate-limit", "1",
    )  # fmt: skip
    assert both.code == 2 and "give exactly one of --public-key FILE and --generate-key OUT" in both.stderr
    bad_route = cleanroom(
        "-w", hoster, "governance", "app", "register", "--name", "x", "--contract", "cli-scoring",
        "--route", "POST /*", "--rate-limit", "1", "--generate-key", key_file,
    )  # fmt: skip
    assert bad_route.code != 0 and "route 'POST /*' of client application 'x'" in bad_route.stderr
    assert not key_file.exists()
    assert gov.clients[0].proposals(action="register_client_app", state="Open") == []


def test_cli_register_with_a_public_key_file(cli_world: tuple[Consortium, list[Path], Path]) -> None:
    gov, (hoster, _), root = cli_world
    key = ec.generate_private_key(ec.SECP256R1())
    public_file = root / "p256.pub.pem"
    public_file.write_text(public_pem(key))
    outcome = cleanroom(
        "-w", hoster, "governance", "app", "register", "--name", "p256-app", "--contract", "cli-scoring",
        "--route", "POST /score", "--route", "GET /v2/health/ready", "--rate-limit", "30",
        "--public-key", public_file, "--query", "proposalId",
    )  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    proposal = gov.clients[0].proposal(outcome.stdout.strip())
    assert proposal["args"]["public_key"] == public_pem(key) and proposal["args"]["owner"] == gov.members[0].member_id
    assert gov.clients[0].withdraw(proposal["proposalId"])["proposalState"] == "Withdrawn"
    missing = cleanroom(
        "-w", hoster, "governance", "app", "register", "--name", "p256-app", "--contract", "cli-scoring",
        "--route", "POST /score", "--rate-limit", "30", "--public-key", root / "absent.pem",
    )  # fmt: skip
    assert missing.code == 3 and "public key file" in missing.stderr and "does not exist" in missing.stderr
