"""The `cleanroom up` / `governance ...` verbs, run through the real console script, as the seed flow does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.workspace import Workspace

PERSONAS = ("hoster", "provider", "consumer")


def run(
    env: dict[str, str], *args: str, workspace: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tui.cli"] + (["-w", str(workspace)] if workspace else []) + list(args)
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1]
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}): {result.stderr}")
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cli")
    env = dict(os.environ, CLEANROOM_HOME=str(root / "home"))
    workspaces = {p: Workspace.init(root / p, p).root for p in PERSONAS}
    run(env, "up", "--workspace-dirs", *map(str, workspaces.values()))
    yield env, workspaces, root
    run(env, "down")


def test_up_points_every_workspace_at_the_service(world) -> None:
    env, workspaces, root = world
    services = json.loads((root / "home" / "services.json").read_text())
    endpoint = services["governance"]["endpoint"]
    for path in workspaces.values():
        assert Workspace.open(path).settings["governance"]["endpoint"] == endpoint
    members = json.loads(run(env, "governance", "member", "list", "-o", "json", workspace=workspaces["hoster"]).stdout)
    assert sorted(m["name"] for m in members) == sorted(PERSONAS)
    assert (
        run(env, "governance", "member", "show", "--query", "status", workspace=workspaces["consumer"]).stdout.strip()
        == "Active"
    )


def test_seed_flow_contract_deployment_ca(world) -> None:
    env, ws, root = world
    spec = root / "spec.json"
    spec.write_text(json.dumps({"purpose": "inference-server"}))
    run(
        env,
        "governance",
        "contract",
        "create",
        "--id",
        "inference-initial",
        "--data",
        f"@{spec}",
        workspace=ws["hoster"],
    )
    version = run(
        env, "governance", "contract", "show", "--id", "inference-initial", "--query", "version", workspace=ws["hoster"]
    ).stdout.strip()
    run(
        env,
        "governance",
        "contract",
        "propose",
        "--id",
        "inference-initial",
        "--version",
        version,
        workspace=ws["hoster"],
    )
    for persona in PERSONAS:
        proposal_id = run(
            env,
            "governance",
            "contract",
            "show",
            "--id",
            "inference-initial",
            "--query",
            "proposalId",
            workspace=ws[persona],
        ).stdout.strip()
        run(
            env,
            "governance",
            "contract",
            "vote",
            "--id",
            "inference-initial",
            "--proposal-id",
            proposal_id,
            "--action",
            "accept",
            workspace=ws[persona],
        )
    shown = json.loads(
        run(
            env, "governance", "contract", "show", "--id", "inference-initial", "-o", "json", workspace=ws["consumer"]
        ).stdout
    )
    assert shown["state"] == "Accepted"

    template = root / "deployment-spec.json"
    template.write_text(json.dumps({"contract_id": "inference-initial", "applications": []}))
    run(
        env,
        "governance",
        "deployment",
        "template",
        "propose",
        "--contract-id",
        "inference-initial",
        "--template-file",
        str(template),
        workspace=ws["hoster"],
    )
    run(env, "governance", "ca", "propose-enable", "--contract-id", "inference-initial", workspace=ws["hoster"])
    for persona in PERSONAS:
        for group in (("deployment", "template"), ("ca",)):
            proposal_id = run(
                env,
                "governance",
                *group,
                "show",
                "--contract-id",
                "inference-initial",
                "--query",
                "proposalIds[0]",
                workspace=ws[persona],
            ).stdout.strip()
            run(
                env,
                "governance",
                "proposal",
                "vote",
                "--proposal-id",
                proposal_id,
                "--action",
                "accept",
                workspace=ws[persona],
            )
    run(env, "governance", "ca", "generate-key", "--contract-id", "inference-initial", workspace=ws["hoster"])
    ca_cert = run(
        env,
        "governance",
        "ca",
        "show",
        "--contract-id",
        "inference-initial",
        "--query",
        "caCert",
        workspace=ws["consumer"],
    ).stdout
    assert ca_cert.startswith("-----BEGIN CERTIFICATE-----")
    data = json.loads(
        run(
            env,
            "governance",
            "deployment",
            "template",
            "show",
            "--contract-id",
            "inference-initial",
            "--query",
            "data",
            workspace=ws["hoster"],
        ).stdout
    )
    assert data == {"contract_id": "inference-initial", "applications": []}

    run(
        env,
        "governance",
        "contract",
        "runtime-option",
        "set",
        "--id",
        "inference-initial",
        "--option",
        "execution",
        "--action",
        "disable",
        workspace=ws["provider"],
    )
    state = json.loads(
        run(
            env,
            "governance",
            "contract",
            "runtime-option",
            "get",
            "--id",
            "inference-initial",
            "--option",
            "execution",
            "-o",
            "json",
            workspace=ws["consumer"],
        ).stdout
    )
    assert state["status"] == "disabled" and len(state["disabledBy"]) == 1

    export = root / "ledger.jsonl"
    run(env, "governance", "ledger", "export", "--file", str(export), workspace=ws["consumer"])
    report = json.loads(
        run(
            env,
            "governance",
            "ledger",
            "verify",
            "--file",
            str(export),
            "--full",
            "-o",
            "json",
            workspace=ws["consumer"],
        ).stdout
    )
    # every entry carries a member's signature but the service-signed genesis and clean-room writes
    assert report["ok"] and report["memberSignaturesChecked"] == report["entries"] - 1 - report["attestedEntries"]
    assert report["headSeqno"] == report["lastSeqno"]  # checked against the service's signed head by default
    receipt = json.loads(
        run(env, "governance", "ledger", "receipt", "--seqno", "3", "-o", "json", workspace=ws["provider"]).stdout
    )
    assert receipt["verified"] is True and receipt["entry"]["seqno"] == 3


def test_cli_errors_are_one_line_with_exit_codes(world) -> None:
    env, ws, root = world
    cases = [
        (("governance", "contract", "show", "--id", "missing"), 3, "does not exist"),
        (("governance", "contract", "create", "--id", "bad", "--data", "{not json"), 2, "not valid JSON"),
        (("governance", "contract", "create", "--id", "bad", "--data", "@/nope.json"), 3, "does not exist"),
        (("governance", "proposal", "vote", "--proposal-id", "0" * 64, "--action", "accept"), 3, "does not exist"),
        (("governance", "ledger", "verify", "--file", str(root / "nope.jsonl")), 2, "does not exist"),
    ]
    for args, code, words in cases:
        result = run(env, *args, workspace=ws["hoster"], check=False)
        assert result.returncode == code and result.stderr.startswith("error: ") and words in result.stderr, result
        assert result.stderr.count("\n") == 1
    lonely = Workspace.init(root / "lonely", "auditor").root
    result = run(env, "governance", "contract", "list", workspace=lonely, check=False)
    assert result.returncode == 3 and "has no governance service" in result.stderr


def test_vote_with_the_wrong_proposal_id_for_a_contract_is_refused(world) -> None:
    env, ws, _root = world
    run(env, "governance", "contract", "create", "--id", "other", "--data", '{"a": 1}', workspace=ws["hoster"])
    version = run(
        env, "governance", "contract", "show", "--id", "other", "--query", "version", workspace=ws["hoster"]
    ).stdout.strip()
    run(env, "governance", "contract", "propose", "--id", "other", "--version", version, workspace=ws["hoster"])
    result = run(
        env,
        "governance",
        "contract",
        "vote",
        "--id",
        "other",
        "--proposal-id",
        "f" * 64,
        "--action",
        "accept",
        workspace=ws["provider"],
        check=False,
    )
    assert result.returncode == 2 and "is not the open proposal" in result.stderr


def test_service_status_and_help_have_examples(world) -> None:
    env, _ws, _root = world
    status = json.loads(run(env, "governance", "service", "status", "-o", "json").stdout)
    assert status["healthy"] is True and status["running"] is True
    for verb in (
        ("governance", "contract", "create"),
        ("governance", "ledger", "verify"),
        ("up",),
        ("governance", "deployment", "policy", "show"),
    ):
        assert "Example" in run(env, *verb, "--help").stdout


def test_contract_token_verifies_with_the_jwks_and_only_for_named_parties(world) -> None:
    """`contract token` prints a JWT the ingress accepts (JWKS, audience, contract claim); the
    consortium's consumer is refused for a contract naming only hoster and provider, and so is a
    workspace that is no member at all."""
    import jwt

    from core.governance.client import GovernanceClient

    env, ws, root = world
    ids = {p: Workspace.open(ws[p]).identity.member_id for p in PERSONAS}
    data = {"parties": [{"persona": p, "member_id": ids[p]} for p in ("hoster", "provider")]}
    run(
        env, "governance", "contract", "create", "--id", "two-party", "--data", json.dumps(data), workspace=ws["hoster"]
    )
    version = run(
        env, "governance", "contract", "show", "--id", "two-party", "--query", "version", workspace=ws["hoster"]
    ).stdout.strip()
    run(env, "governance", "contract", "propose", "--id", "two-party", "--version", version, workspace=ws["hoster"])
    proposal_id = run(
        env, "governance", "contract", "show", "--id", "two-party", "--query", "proposalId", workspace=ws["hoster"]
    ).stdout.strip()
    for persona in PERSONAS:
        run(
            env,
            "governance",
            "contract",
            "vote",
            "--id",
            "two-party",
            "--proposal-id",
            proposal_id,
            "--action",
            "accept",
            workspace=ws[persona],
        )

    token = run(env, "governance", "contract", "token", "--id", "two-party", workspace=ws["provider"]).stdout.strip()
    with GovernanceClient.from_workspace(Workspace.open(ws["consumer"]), with_identity=False) as reader:
        jwks = reader.jwks()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]].key
    claims = jwt.decode(token, key, algorithms=["ES384"], audience="cleanroom:two-party")
    assert claims["contract_id"] == "two-party" and claims["sub"] == ids["provider"]
    described = json.loads(
        run(
            env, "governance", "contract", "token", "--contract-id", "two-party", "-o", "json", workspace=ws["hoster"]
        ).stdout
    )
    assert described["contractId"] == "two-party" and described["audience"] == "cleanroom:two-party"
    assert (
        jwt.decode(described["token"], key, algorithms=["ES384"], audience="cleanroom:two-party")["sub"]
        == ids["hoster"]
    )

    refused = run(env, "governance", "contract", "token", "--id", "two-party", workspace=ws["consumer"], check=False)
    assert refused.returncode == 6 and "is not a party of contract 'two-party'" in refused.stderr, refused
    assert refused.stdout == ""
    stranger = Workspace.init(root / "stranger", "auditor").root
    service = json.loads((root / "home" / "services.json").read_text())["governance"]
    cert = root / "governance-cert.pem"
    cert.write_text(service["serviceCert"])
    run(
        env,
        "governance",
        "client",
        "deploy",
        "--endpoint",
        service["endpoint"],
        "--service-cert",
        str(cert),
        workspace=stranger,
    )
    refused = run(env, "governance", "contract", "token", "--id", "two-party", workspace=stranger, check=False)
    assert refused.returncode == 6 and "401" in refused.stderr, refused
    missing = run(env, "governance", "contract", "token", "--id", "nope", workspace=ws["provider"], check=False)
    assert missing.returncode == 3 and "does not exist" in missing.stderr
    assert "Example" in run(env, "governance", "contract", "token", "--help").stdout
