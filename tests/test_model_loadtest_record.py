"""`cleanroom model loadtest --record NAME@VERSION` through the real CLI, a sandboxed clean room
behind its TLS ingress and the governance service: the clean room serves a verified, published
registry version (its inference application names it in its voted env and mounts its package),
the report lands in that version's ``loadtest`` field as the consumer's signed record, and
`cleanroom model show` draws it. A recorded load test must come through a contract serving
exactly that version: another version of the model is refused and nothing is written."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config.fragment import Application, Fragment
from core.config.merge import merge_fragments
from core.config.party import add_application, set_network_policy
from core.governance.model_registry import LOADTEST
from core.governance.onboarding_contract import onboarding_env
from core.governance.serving_contract import serving_env
from core.keys.attestation import AttestationKey, VirtualAttester
from core.keys.release import WorkloadKey
from core.runtime.deployment import deployment_spec, policy_document
from tests.cli_runner import cleanroom

MOUNT = "/mnt/remote/model"
# a package's wrapper decides its own threads: the server refuses --threads for a package
SERVE = ["python", "-m", "containers.inference_server", "--model-dir", MOUNT, "--uds", "/run/cleanroom/app.sock"]
TO_VERIFIED = ("downloaded", "scanning", "environmentCreated", "deployed", "verified")


def _verified_and_published(world: Any, name: str, version: str, package_hash: str, wrapper_hash: str) -> None:
    """``name`` ``version`` onboarded by the provider, verified by its onboarding clean room (the
    statuses sent with the local runtime's own attestation of the voted spec, as the runtime sends
    them) and published by every member's vote: what an inference contract may mount."""
    world.clients["provider"].onboard_model(name, version, package_hash=package_hash, wrapper_hash=wrapper_hash)
    application = Application(
        name="onboarding",
        owner=world.parties["hoster"].identity.member_id,
        entrypoint="containers/onboarding",
        command=["python", "-m", "containers.onboarding", "--package-dir", "/mnt/remote/package"],
        env=onboarding_env(name, version, package_hash, wrapper_hash),
    )
    fragment = Fragment.new("hoster", world.parties["hoster"].identity).with_application(application)
    data = merge_fragments([fragment]).document()
    contract_id, hoster = f"onboard-{name}-{version}", world.clients["hoster"]
    hoster.create_contract(contract_id, data)
    world.vote_all(hoster.propose_contract(contract_id, hoster.contract(contract_id)["version"]))
    spec = deployment_spec(contract_id, data)
    world.vote_all(hoster.propose_deployment_spec(contract_id, spec))
    world.vote_all(hoster.propose_clean_room_policy(contract_id, policy_document(spec)))
    attester = VirtualAttester(AttestationKey.load_or_create(world.runtime_state))
    token = attester.attest(deployment_spec=spec, workload_public_key_der=WorkloadKey().public_der)
    for status in TO_VERIFIED:
        hoster.record_model_status(contract_id, name, version, status, {}, token)
    world.vote_all(world.clients["provider"].propose_publish_model(name, version))


def _loadtest_entries(world: Any) -> int:
    """How many load-test records the governance ledger holds (its verified export)."""
    export = world.root / f"ledger-{time.monotonic_ns()}.jsonl"
    world.clients["hoster"].export_ledger(export)
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    return sum(1 for line in lines if line.get("entry", {}).get("kind") == LOADTEST)


@pytest.fixture()
def serving_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A model package of the tiny model onboarded as `tiny` 1 and served, by the real inference
    server in a sandbox behind the TLS ingress, under contract inference1 whose application names
    `tiny` 1; its runtime recorded as this process (as `deployment start` records its runtime's pid)."""
    from core.ml.classifier_package import build_classifier_package
    from core.onboarding.package import check_package
    from core.onboarding.package_digest import package_sha256
    from tests.ml_tiny_model import build_tiny_base
    from tests.runtime_world import World

    world = World.create(tmp_path)
    monkeypatch.setenv("CLEANROOM_HOME", str(world.home))
    package = build_classifier_package(tmp_path / "package", base=build_tiny_base(tmp_path / "base"), max_length=32)
    world.setup_assets(source_folder=package)
    digest = package_sha256(package)
    _verified_and_published(world, "tiny", "1", digest, check_package(package).source_sha256)
    hoster = world.parties["hoster"]
    add_application(
        hoster,
        name="app",
        entrypoint="containers/inference_server",
        command=SERVE,
        mounts=[{"source": "model", "target": MOUNT}, {"source": "results", "target": "/mnt/remote/results"}],
        ports=[8000],
        env=serving_env("tiny", "1", digest, MOUNT),
    )
    set_network_policy(hoster, inbound_allow=["POST /infer"], allow_all_outbound=False)
    world.accept_contract("inference1", enable_ca=True)
    try:
        with world.serving("inference1", {"text": "x"}):
            yield world
    finally:
        world.close()


def test_a_recorded_load_test_is_the_members_signed_report_on_the_version(serving_version: Any) -> None:
    world = serving_version
    world.clients["provider"].onboard_model("tiny", "2", package_hash="0" * 64, wrapper_hash="0" * 64)
    consumer = world.parties["consumer"].root
    args = ["-w", consumer, "model", "loadtest", "--contract", "inference1", "--mode", "per-rps", "--steps", "4"]
    args += ["--duration", "1", "--slo-ms", "60000"]

    unknown = cleanroom(*args, "--record", "tiny@9")
    assert unknown.code == 3 and "model 'tiny' has no version '9'" in unknown.stderr
    assert "4 rps:" not in unknown.stderr  # refused before anything was sent
    malformed = cleanroom(*args, "--record", "tiny")
    assert malformed.code == 2 and "--record 'tiny' is not NAME@VERSION" in malformed.stderr
    other = cleanroom(*args, "--record", "tiny@2")  # a version the contract does not serve
    assert other.code == 6 and "contract 'inference1' does not serve model 'tiny' version '2'" in other.stderr
    assert other.stdout == "" and _loadtest_entries(world) == 0
    versions = world.clients["consumer"].model("tiny")["versions"]
    assert versions["1"]["loadtest"] is None and versions["2"]["loadtest"] is None

    outcome = cleanroom(*args, "--record", "tiny@1", "-o", "json")
    assert outcome.code == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    writer = world.clients["consumer"].identity.member_id
    assert document["recorded"]["model"] == "tiny" and document["recorded"]["writer"] == writer
    recorded = world.clients["hoster"].model("tiny")["versions"]["1"]["loadtest"]
    assert recorded["writer"] == writer and recorded["contractId"] == "inference1"
    assert recorded["steps"] == document["steps"] and recorded["knee"] == document["knee"]
    assert _loadtest_entries(world) == 1

    shown = cleanroom("-w", world.parties["hoster"].root, "model", "show", "tiny")
    assert shown.code == 0, shown.stderr
    assert "version 1 load test through contract inference1" in shown.stdout
    assert "knee (p99 <= 60000 ms, no failures): 4 rps" in shown.stdout
