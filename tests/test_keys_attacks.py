"""Attacks on key release and on the DEKs it unlocks, each performed through the real services.

One three-party world (``cleanroom up``: governance and key service processes on loopback, the
bubblewrap runtime) with an accepted contract: the provider's datasource "model", the
consumer's datasink "results", the hoster's application. Each test plays a member (usually the
hoster) or a loopback client trying to get a key, a DEK or an audit entry it should not, and
asserts the refusal; on the code before issue #12 each attack succeeded.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core.crypto.identity import MemberIdentity
from core.crypto.kek import load_kek_public_key, wrap_dek_for
from core.datasource import download_asset
from core.errors import AccessDeniedError, CleanroomError, NotFoundError, ServiceUnavailableError
from core.governance.state import DB_FILE
from core.keys.measurement import policy_hash
from core.keys.release import WorkloadKey
from core.keys.service import NEW_KEKS_PER_MEMBER, REFUSAL_REASONS, RELEASE_ATTEMPTS_PER_KEK
from core.keys.wrap_deks import dek_secret_name
from core.storage.locator import local_store_spec
from tests.runtime_world import World

CONTRACT = "keys-attacks"
COPY = (
    "import pathlib; "
    "text = pathlib.Path('/mnt/remote/model/weights.txt').read_text(); "
    "pathlib.Path('/mnt/remote/results/out.txt').write_text(text.upper()); print('done')"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    world = World.create(tmp_path_factory.mktemp("keys-attacks"))
    world.setup_assets({"weights.txt": "provider secret weights"})
    world.add_app(["python", "-c", COPY])
    world.spec = world.accept_contract(CONTRACT)  # type: ignore[attr-defined]
    yield world
    world.close()


def _events(world: World, contract_id: str = CONTRACT) -> list[dict[str, Any]]:
    return world.events(contract_id)


# -- DEK squatting ------------------------------------------------------------------------------
def test_hoster_cannot_put_the_dek_of_a_consumer_datasink(world: World) -> None:
    """The hoster writes ``dek-results`` (a DEK it knows, wrapped to the consumer's public KEK)
    so the consumer's outputs would be sealed with it: governance refuses and names the owner."""
    hoster, consumer = world.clients["hoster"], world.clients["consumer"]
    consumer_id = world.parties["consumer"].identity.member_id
    kek = world.keys().describe_kek(consumer_id, CONTRACT)
    known = wrap_dek_for(load_kek_public_key(kek["public_key_pem"].encode()), b"\x42" * 32)
    # first, before the consumer wrapped its DEKs (the old rule gave the name to its first writer)
    hoster.create_contract("squat", hoster.contract(CONTRACT)["data"])
    with pytest.raises(AccessDeniedError, match=r"\(403\).*owned by consumer.*only its owner may put it"):
        hoster.put_secret("squat", dek_secret_name("results"), known)
    consumer.put_secret("squat", dek_secret_name("results"), b"the consumer's own wrapped DEK")
    with pytest.raises(AccessDeniedError, match=r"\(403\).*owned by consumer.*only its owner may put it"):
        hoster.put_secret(CONTRACT, dek_secret_name("results"), known)
    with pytest.raises(AccessDeniedError, match=r"\(403\).*names no datasource or datasink 'ghost'"):
        hoster.put_secret(CONTRACT, dek_secret_name("ghost"), known)
    # the owner may still replace its own DEK; a name held by another member says who holds it
    owners = {s["name"]: s["owner"] for s in consumer.secrets(CONTRACT)}
    assert owners[dek_secret_name("results")] == consumer_id
    hoster.put_secret(CONTRACT, "hoster-note", b"x")
    with pytest.raises(AccessDeniedError, match=r"\(403\).*belongs to another member, hoster \("):
        consumer.put_secret(CONTRACT, "hoster-note", b"y")


def test_runtime_refuses_a_dek_not_written_by_the_asset_owner(world: World, tmp_path: Path) -> None:
    """A DEK squatted under the old first-writer rule (already in the database when the service
    was upgraded): the runtime checks the recorded writer before unwrapping, so the consumer's
    datasink is never sealed with a DEK the hoster chose."""
    hoster_id = world.parties["hoster"].identity.member_id
    consumer_id = world.parties["consumer"].identity.member_id
    kek = world.keys().describe_kek(consumer_id, CONTRACT)
    known = wrap_dek_for(load_kek_public_key(kek["public_key_pem"].encode()), b"\x42" * 32)
    # the live service writes the same file: wait out its transactions (a loaded CI passed the 5 s default)
    database = sqlite3.connect(world.governance_state / DB_FILE, timeout=120)
    name = dek_secret_name("results")
    original = database.execute(
        "SELECT value, owner FROM secrets WHERE contract_id=? AND name=?", (CONTRACT, name)
    ).fetchone()
    try:
        with database:
            database.execute(
                "UPDATE secrets SET value=?, owner=? WHERE contract_id=? AND name=?", (known, hoster_id, CONTRACT, name)
            )
        runtime = world.runtime()
        with pytest.raises(AccessDeniedError, match=r"DEK of 'results' was written by member .*not by its owner"):
            runtime.run(CONTRACT)
        with pytest.raises(NotFoundError):  # nothing sealed, with any DEK
            download_asset(world.parties["consumer"], "datasink", "results", tmp_path / "got")
        # the owner takes its DEK name back (the contract's word beats the first writer's)
        world.clients["consumer"].put_secret(CONTRACT, name, bytes(original[0]))
        assert {s["name"]: s["owner"] for s in world.clients["consumer"].secrets(CONTRACT)}[name] == consumer_id
    finally:
        with database:
            database.execute(
                "UPDATE secrets SET value=?, owner=? WHERE contract_id=? AND name=?", (*original, CONTRACT, name)
            )
        database.close()


# -- an edited spec gets no key --------------------------------------------------------------------
def _hoster_store(world: World) -> dict[str, Any]:
    return local_store_spec(world.parties["hoster"].root / "store").model_dump()


@pytest.mark.parametrize(
    "edit", ["datasink_store", "datasink_owner", "datasource_store", "logging", "telemetry", "resources"]
)
def test_spec_edited_outside_the_measured_applications_gets_no_key(world: World, edit: str) -> None:
    """``deployment start --spec``: the hoster points outputs or logs at itself (fields the old
    policy hash left out); the whole spec is measured now, so the key service refuses."""
    changed = copy.deepcopy(world.spec)  # type: ignore[attr-defined]
    hoster_id = world.parties["hoster"].identity.member_id
    if edit == "datasink_store":
        changed["datasinks"][0]["store"] = _hoster_store(world)
    elif edit == "datasink_owner":
        changed["datasinks"][0]["owner"] = hoster_id
    elif edit == "datasource_store":
        # the hoster serves a copy of the pinned ciphertext from its own store, so the upload pin
        # (checked by the runtime itself) matches and what refuses is the key service
        source = changed["datasources"][0]
        container = source["store"].get("container") or source["name"]
        shutil.copytree(Path(source["store"]["path"]) / container, world.parties["hoster"].root / "store" / container)
        changed["datasources"][0]["store"] = _hoster_store(world)
    elif edit in ("logging", "telemetry"):
        changed[edit] = {"enabled": True, "datasink": "results", "owner": hoster_id}
    else:
        changed["applications"][0]["memory_gb"] = 64
    assert policy_hash(changed) != policy_hash(world.spec)  # type: ignore[attr-defined]
    started: list[str] = []
    runtime = world.runtime(listener=lambda kind, _detail: started.append(kind))
    with pytest.raises(AccessDeniedError, match="differs from the accepted"):
        runtime.run(CONTRACT, spec_override=changed)
    assert "keys_released" not in started and "running" not in started
    refusals = [e for e in _events(world) if e["type"] == "key_release_refused"]
    assert refusals and refusals[-1]["data"]["policy_hash"] == policy_hash(changed)


# -- who may get a KEK ----------------------------------------------------------------------------
def test_key_service_makes_no_kek_for_a_stranger_or_an_unknown_contract(world: World) -> None:
    keys = world.keys()
    stranger = MemberIdentity.generate("stranger")
    with pytest.raises(AccessDeniedError, match="not an active member"):
        keys.create_kek(stranger, CONTRACT)
    with pytest.raises(NotFoundError, match="contract 'no-such-contract' does not exist"):
        keys.create_kek(world.parties["provider"].identity, "no-such-contract")
    assert not (world.key_state / "keks" / stranger.member_id).exists()
    assert not (world.key_state / "keks" / world.parties["provider"].identity.member_id / "no-such-contract").exists()


def test_kek_creation_is_rate_bounded_per_member(world: World) -> None:
    hoster = world.clients["hoster"]
    identity = world.parties["hoster"].identity
    keys = world.keys()
    for index in range(NEW_KEKS_PER_MEMBER + 1):
        hoster.create_contract(f"kek-rate-{index}", {"purpose": "rate"})
    for index in range(NEW_KEKS_PER_MEMBER):
        keys.create_kek(identity, f"kek-rate-{index}")
    with pytest.raises(ServiceUnavailableError, match=r"created \d+ KEKs in \d+ s; retry later"):
        keys.create_kek(identity, f"kek-rate-{NEW_KEKS_PER_MEMBER}")
    keys.create_kek(identity, "kek-rate-0")  # an existing KEK is still handed back


# -- the audit trail takes no text from a requester ---------------------------------------------------
def _release_raw(world: World, path: str, attestation: str) -> None:
    body = {"attestation": attestation, "workload_public_key": base64.b64encode(WorkloadKey().public_der).decode()}
    world.keys()._call("POST", path, json=body)


def test_release_request_cannot_write_free_text_into_the_audit_trail(world: World) -> None:
    provider_id = world.parties["provider"].identity.member_id
    text = "provider-approved-this-release-ignore-the-policy"
    before = len(_events(world))
    with pytest.raises(NotFoundError):  # no such KEK: 404, and nothing is recorded
        _release_raw(world, f"/keks/{text}/{CONTRACT}/release", "x")
    with pytest.raises(NotFoundError):
        _release_raw(world, f"/keks/{provider_id}/{text}/release", "x")
    assert len(_events(world)) == before
    with pytest.raises(AccessDeniedError):
        _release_raw(world, f"/keks/{provider_id}/{CONTRACT}/release", text)
    [refusal] = _events(world)[before:]
    assert refusal["type"] == "key_release_refused"
    assert set(refusal["data"]) <= {"kek_owner", "reason_code", "reason", "policy_hash", "attestation_contract"}
    assert refusal["data"]["kek_owner"] == provider_id
    assert refusal["data"]["reason"] == REFUSAL_REASONS[refusal["data"]["reason_code"]]
    assert text not in json.dumps(refusal)


def test_release_attempts_are_rate_bounded_per_kek(world: World) -> None:
    provider = world.clients["provider"]
    provider.create_contract("release-rate", {"purpose": "rate"})
    identity = world.parties["provider"].identity
    world.keys().create_kek(identity, "release-rate")
    path = f"/keks/{identity.member_id}/release-rate/release"
    for _ in range(RELEASE_ATTEMPTS_PER_KEK):
        with pytest.raises(AccessDeniedError):
            _release_raw(world, path, "not-a-token")
    with pytest.raises(CleanroomError, match="release attempts for this KEK"):
        _release_raw(world, path, "not-a-token")
