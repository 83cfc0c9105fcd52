"""The engine's registry, client application, privacy budget and traffic operations, called as the
console and the scenarios call them (no CLI): against a real governance service on loopback TLS,
each refusal asserting its message and that nothing was proposed or written."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.engine import PersonaEngine
from core.errors import AccessDeniedError, ConflictError, InvalidInputError, NotFoundError
from core.governance import launcher
from core.governance.client import deploy_to_workspace
from core.workspace import Workspace
from tests.client_app_support import verify_with_jwks
from tests.governance_support import Consortium

CONTRACT = "engine-scoring"
PACKAGE = hashlib.sha256(b"package").hexdigest()
WRAPPER = hashlib.sha256(b"wrapper").hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Consortium, list[PersonaEngine], Path]]:
    root = tmp_path_factory.mktemp("engine-operations")
    workspaces = [Workspace.init(root / name, name) for name in ("hoster", "consumer")]
    launcher.create(root / "service", [w.identity.cert_pem for w in workspaces], window_seconds=60)
    info = launcher.start(root / "service")
    for workspace in workspaces:
        deploy_to_workspace(workspace, info.endpoint, info.service_cert_pem)
    gov = Consortium(root / "service", [w.identity for w in workspaces], info)
    gov.accepted_contract(CONTRACT, {"id": CONTRACT})
    engines = [PersonaEngine(w) for w in workspaces]
    yield gov, engines, root
    for engine in engines:
        engine.close()
    gov.close()


def _open(gov: Consortium, action: str) -> list[dict[str, object]]:
    return gov.clients[0].proposals(action=action, state="Open")


def test_an_app_registered_through_the_engine_gets_a_token(world: tuple[Consortium, list[PersonaEngine], Path]) -> None:
    gov, (_, consumer), root = world
    key_file = root / "scorer.pem"
    proposal = consumer.register_client_app(
        "scorer", contracts=[CONTRACT], routes=["POST /score"], rate_limit_per_minute=60, generate_key=key_file
    )
    assert proposal["privateKeyFile"] == str(key_file) and key_file.stat().st_mode & 0o777 == 0o600
    assert proposal["args"]["owner"] == consumer.member_id  # the signer, unless --owner says otherwise
    assert gov.pass_proposal(proposal)["proposalState"] == "Accepted"
    assert [(a["name"], a["status"]) for a in consumer.client_apps()] == [("scorer", "active")]
    answer = consumer.app_token("scorer", key_file, CONTRACT)
    assert verify_with_jwks(gov, answer["access_token"], f"cleanroom:{CONTRACT}")["app"] == "scorer"


def test_app_refusals_write_no_key_and_propose_nothing(world: tuple[Consortium, list[PersonaEngine], Path]) -> None:
    gov, (hoster, _), root = world
    key_file = root / "never.pem"
    register = {"contracts": [CONTRACT], "routes": ["POST /score"], "rate_limit_per_minute": 1}
    with pytest.raises(InvalidInputError, match="give exactly one of --public-key FILE and --generate-key OUT"):
        hoster.register_client_app("x", **register)
    taken = root / "taken.pem"
    taken.write_text("not mine")
    with pytest.raises(ConflictError, match=f"key file {taken} already exists"):
        hoster.register_client_app("x", generate_key=taken, **register)
    assert taken.read_text() == "not mine"
    with pytest.raises(InvalidInputError, match="route 'POST /\\*' of client application 'x'"):
        hoster.register_client_app(
            "x", contracts=[CONTRACT], routes=["POST /*"], rate_limit_per_minute=1, generate_key=key_file
        )
    assert not key_file.exists()
    assert _open(gov, "register_client_app") == []
    not_a_key = root / "not-a-key.pem"
    not_a_key.write_text("hello")
    with pytest.raises(InvalidInputError, match=f"application key {not_a_key} is not an unencrypted PEM private key"):
        hoster.app_token("scorer", not_a_key, CONTRACT)
    with pytest.raises(NotFoundError, match=f"application key file {root / 'absent.pem'} does not exist"):
        hoster.app_token("scorer", root / "absent.pem", CONTRACT)


def test_a_traffic_split_is_checked_before_it_is_proposed(world: tuple[Consortium, list[PersonaEngine], Path]) -> None:
    gov, (hoster, _), _ = world
    with pytest.raises(InvalidInputError, match="traffic split part 'tuned' is not NAME=PERCENT"):
        hoster.propose_traffic_split(CONTRACT, "base=90,tuned")
    assert _open(gov, "set_traffic_split") == []


def test_a_budget_raise_names_one_dataset(world: tuple[Consortium, list[PersonaEngine], Path]) -> None:
    gov, (hoster, _), _ = world
    assert hoster.privacy_budgets() == []
    with pytest.raises(NotFoundError, match="no datasets are named 'texts'"):
        hoster.propose_privacy_budget_raise("texts", 5.0)
    assert _open(gov, "set_privacy_budget") == []


def test_the_registry_through_the_engine(world: tuple[Consortium, list[PersonaEngine], Path]) -> None:
    _, (hoster, consumer), _ = world
    shown = hoster.onboard_model("engine-model", "1", package_hash=PACKAGE, wrapper_hash=WRAPPER, description="d")
    assert shown["owner"] == hoster.member_id and shown["versions"]["1"]["status"] == "created"
    assert [m["name"] for m in consumer.models()] == ["engine-model"]
    with pytest.raises(ConflictError, match="is not published"):
        consumer.unpublish_model("engine-model", "1")
    with pytest.raises(AccessDeniedError, match="only the owner of model 'engine-model'"):
        consumer.delete_model("engine-model")
    assert consumer.model("engine-model")["versions"]["1"]["status"] == "created"
    hoster.delete_model("engine-model")
    with pytest.raises(NotFoundError):
        consumer.model("engine-model")
