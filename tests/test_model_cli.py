"""`cleanroom model onboard|list|show|versions|publish|unpublish|delete`, run as the CLI (click, in
process) by three persona workspaces against a real governance service on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.governance import launcher
from core.governance.client import deploy_to_workspace
from core.onboarding.package import check_package
from core.onboarding.package_digest import package_sha256
from core.workspace import Workspace
from tests.cli_runner import Outcome, cleanroom
from tests.governance_support import Attester, Consortium
from tests.model_package_corpus import clean_package, global_pickle
from tests.model_registry_support import OnboardingRoom, onboarding_contract

PERSONAS = ("hoster", "provider", "consumer")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Consortium, Attester, dict[str, Path], Path]]:
    root = tmp_path_factory.mktemp("model-cli")
    attester = Attester(root)
    workspaces = [Workspace.init(root / persona, persona) for persona in PERSONAS]
    launcher.create(
        root / "service", [w.identity.cert_pem for w in workspaces], window_seconds=60, attestation=attester.spec
    )
    gov = Consortium(root / "service", [w.identity for w in workspaces], launcher.start(root / "service"))
    for workspace in workspaces:
        deploy_to_workspace(workspace, gov.info.endpoint, gov.info.service_cert_pem)
    yield gov, attester, {persona: w.root for persona, w in zip(PERSONAS, workspaces, strict=True)}, root
    gov.close()


def invoke(workspace: Path, *args: str | Path) -> Outcome:
    return cleanroom("-w", workspace, "model", *args)


def as_json(workspace: Path, *args: str | Path) -> Any:
    result = invoke(workspace, *args, "-o", "json")
    assert result.code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_onboard_registers_created_and_prints_the_onboarding_clean_room_steps(world: Any) -> None:
    gov, _, ws, root = world
    package = clean_package(root / "clean")
    document = as_json(ws["provider"], "onboard", "--package", package, "--name", "clean", "--version", "1",
                       "--description", "the corpus' clean package")  # fmt: skip
    version = document["model"]["versions"]["1"]
    assert version["status"] == "created" and version["packageHash"] == package_sha256(package)
    assert version["wrapperHash"] == check_package(package).source_sha256
    steps = "\n".join(document["nextSteps"])
    assert f"--env CLEANROOM_ONBOARD_PACKAGE_SHA256={package_sha256(package)}" in steps
    assert "--entrypoint containers/onboarding" in steps and "deployment start --contract-id onboard-clean-1" in steps
    table = invoke(ws["consumer"], "versions", "clean").stdout
    assert "○ created" in table and "versions of clean" in table
    assert "clean" in invoke(ws["hoster"], "list").stdout
    assert as_json(ws["hoster"], "list")[0]["owner"] == gov.members[1].member_id


def test_onboard_refuses_a_package_failing_its_check_and_registers_nothing(world: Any) -> None:
    _, _, ws, root = world
    package = clean_package(root / "pickled")
    (package / "model" / "extra.pkl").write_bytes(global_pickle("os", "system", "true"))
    result = invoke(ws["provider"], "onboard", "--package", package, "--name", "pickled", "--version", "1")
    assert result.code == 2
    assert "model/extra.pkl" in result.stdout and "nothing was registered" in result.stderr
    missing = invoke(ws["provider"], "show", "pickled")
    assert missing.code == 3 and "model 'pickled' is not in the registry" in missing.stderr


def test_publish_by_vote_unpublish_by_one_member_delete_by_the_owner(world: Any) -> None:
    gov, attester, ws, root = world
    package = clean_package(root / "voted")
    as_json(ws["provider"], "onboard", "--package", package, "--name", "voted", "--version", "1")
    early = invoke(ws["provider"], "publish", "voted", "--version", "1")
    assert early.code != 0 and "is created, not verified, so it cannot be published" in early.stderr
    package_hash, wrapper_hash = package_sha256(package), check_package(package).source_sha256
    policy = onboarding_contract(gov, "onboard-voted-1", "voted", "1", package_hash, wrapper_hash)
    room = OnboardingRoom(gov, attester, "onboard-voted-1", policy)
    for status in ("downloaded", "scanning", "environmentCreated", "deployed", "verified"):
        room.status("voted", "1", status, {"step": status})
    proposal_id = invoke(ws["provider"], "publish", "voted", "--version", "1", "--query", "proposalId").stdout.strip()
    for client in gov.clients:
        client.vote(proposal_id, "accept")
    assert as_json(ws["consumer"], "versions", "voted")[0]["published"] is True
    shown = invoke(ws["consumer"], "show", "voted").stdout
    assert "✔ verified, published" in shown and "attested:onboard-voted-1" in shown
    refused = invoke(ws["provider"], "delete", "voted")
    assert refused.code != 0 and "is published, so it cannot be deleted" in refused.stderr
    assert "unpublished voted version 1" in invoke(ws["consumer"], "unpublish", "voted", "--version", "1").stdout
    not_owner = invoke(ws["consumer"], "delete", "voted")
    assert not_owner.code != 0 and "only the owner of model 'voted'" in not_owner.stderr
    assert as_json(ws["provider"], "delete", "voted")["deleted"] is True
    assert invoke(ws["provider"], "show", "voted").code == 3


def test_show_lists_every_scan_finding_of_a_vulnerable_version(world: Any) -> None:
    gov, attester, ws, root = world
    package = clean_package(root / "scanned")
    as_json(ws["provider"], "onboard", "--package", package, "--name", "scanned", "--version", "1")
    package_hash, wrapper_hash = package_sha256(package), check_package(package).source_sha256
    room = OnboardingRoom(
        gov, attester, "onboard-scanned-1", onboarding_contract(gov, "onboard-scanned-1", "scanned", "1",
                                                                package_hash, wrapper_hash)
    )  # fmt: skip
    findings = ["model/extra.pkl: raw pickle stream (protocol 4)", "model/w.pt: torch zip holds a pickle"]
    room.status("scanned", "1", "downloaded", {"packageHash": package_hash})
    room.status("scanned", "1", "scanning", {})
    room.status("scanned", "1", "vulnerable", {"findings": findings, "reasons": ["pickle"]})
    shown = invoke(ws["consumer"], "show", "scanned").stdout
    assert "version 1: ✘ vulnerable" in shown and "2 finding(s):" in shown
    assert all(f"    {finding}" in shown.splitlines() for finding in findings)
    versions = invoke(ws["consumer"], "versions", "scanned").stdout
    assert "✘ vulnerable" in versions and "model/extra.pkl" in versions
