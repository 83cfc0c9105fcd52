"""The CLI with an Azure Blob datasource: config flags, upload and download through azurite."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from core.crypto.identity import MemberIdentity
from tests.azurite import Azurite
from tests.cli_runner import Outcome, cleanroom

CS_VAR = "CLEANROOM_TEST_PROVIDER_CS"


def _one_line_error(outcome: Outcome, *needles: str) -> str:
    assert outcome.code != 0, outcome
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def provider(tmp_path: Path) -> Path:
    workspace = tmp_path / "W" / "provider"
    assert cleanroom("-w", workspace, "config", "init", "--persona", "provider").code == 0
    return workspace


def test_upload_and_download_through_azurite(
    provider: Path, tmp_path: Path, azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CS_VAR, azurite_server.connection_string)
    added = cleanroom("-w", provider, "config", "add-datasource", "--name", "model", "--connection-string-env", CS_VAR)
    assert added.code == 0, added.stderr
    fragment = json.loads((provider / "config.json").read_text())
    (source,) = fragment["datasources"]
    assert source["store"] == {
        "kind": "azure_blob",
        "account_url": None,
        "connection_string_env": CS_VAR,
        "container": None,
    }
    assert azurite_server.connection_string not in (provider / "config.json").read_text()

    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(9 * 1024 * 1024 + 7))  # > one Put Blob: blocks
    (model / "config.json").write_text('{"labels": 2}')
    uploaded = cleanroom("-w", provider, "datasource", "upload", "--name", "model", "--dataset-folder", model)
    assert uploaded.code == 0, uploaded.stderr
    out = tmp_path / "out"
    downloaded = cleanroom("-w", provider, "datasource", "download", "--name", "model", "--target-folder", out)
    assert downloaded.code == 0, downloaded.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {p.name: p.read_bytes() for p in model.iterdir()}


def test_unset_connection_string_variable_is_one_line(
    provider: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CS_VAR, raising=False)
    assert (
        cleanroom("-w", provider, "config", "add-datasource", "--name", "model", "--connection-string-env", CS_VAR).code
        == 0
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.bin").write_bytes(b"x")
    outcome = cleanroom(
        "-w", provider, "datasource", "upload", "--name", "model", "--dataset-folder", tmp_path / "data"
    )
    _one_line_error(outcome, CS_VAR, "is not set")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--storage-account", "https://a.blob.core.windows.net", "--connection-string-env", "X"], "both given"),
        (["--storage-account", "myaccount"], "is not an https URL"),
        (["--storage-account", "http://127.0.0.1:10000/devstoreaccount1"], "is not an https URL"),
        (["--connection-string-env", "DefaultEndpointsProtocol=https;AccountKey=k"], "is not a variable name"),
        (["--container", "models"], "--container needs"),
        (["--connection-string-env", "CS", "--container", "My_Models"], "not a valid Azure container name"),
        (["--storage-account", "https://a.blob.core.windows.net", "--store-path", "/tmp/s"], "both given"),
    ],
)
def test_bad_azure_flags_are_one_line_errors(provider: Path, flags: list[str], needle: str) -> None:
    outcome = cleanroom("-w", provider, "config", "add-datasource", "--name", "model", *flags)
    _one_line_error(outcome, needle)
    assert json.loads((provider / "config.json").read_text()).get("datasources", []) == []


def test_storage_account_is_recorded_with_its_container(provider: Path) -> None:
    outcome = cleanroom(
        "-w",
        provider,
        "config",
        "add-datasink",
        "--name",
        "trained-model",
        "--storage-account",
        "https://prov.blob.core.windows.net",
        "--container",
        "sealed",
    )
    assert outcome.code == 0, outcome.stderr
    (sink,) = json.loads((provider / "config.json").read_text())["datasinks"]
    assert sink["store"] == {
        "kind": "azure_blob",
        "account_url": "https://prov.blob.core.windows.net",
        "connection_string_env": None,
        "container": "sealed",
    }


ACI_SPEC = {
    "contract_id": "inference-azure",
    "applications": [
        {
            "name": "inference",
            "image": "acr.azurecr.io/inference:1",
            "command": ["python", "-m", "containers.inference_server"],
            "ports": [8000],
            "mounts": [{"kind": "datasource", "name": "model", "path": "/mnt/model", "owner": "provider"}],
        }
    ],
    "datasources": [
        {
            "name": "model",
            "owner": "provider",
            "store": {"kind": "azure_blob", "account_url": "https://p.blob.core.windows.net"},
        }
    ],
    "network_policy": {},
}


def test_deployment_start_on_aci_needs_a_resource_group(tmp_path: Path) -> None:
    outcome = cleanroom("-w", tmp_path, "deployment", "start", "--contract-id", "c1", "--backend", "aci")
    _one_line_error(outcome, "--backend aci needs --resource-group")


def test_deployment_start_on_aci_needs_template_and_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    outcome = cleanroom(
        "-w", tmp_path, "deployment", "start", "--contract-id", "c1", "--backend", "aci", "--resource-group", "rg"
    )
    _one_line_error(outcome, "needs --template FILE and --location REGION")


def test_deployment_start_on_aci_refuses_the_placeholder_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.runtime.aci import aci_template

    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    template = tmp_path / "cleanroom-aci-template.json"
    template.write_text(json.dumps(aci_template(ACI_SPEC)))
    outcome = cleanroom(
        "-w",
        tmp_path,
        "deployment",
        "start",
        "--contract-id",
        "inference-azure",
        "--backend",
        "aci",
        "--resource-group",
        "rg",
        "--location",
        "westeurope",
        "--template",
        template,
    )
    _one_line_error(outcome, "ccePolicy placeholder", "az confcom acipolicygen")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    outcome = cleanroom(
        "-w",
        tmp_path,
        "deployment",
        "start",
        "--contract-id",
        "inference-azure",
        "--backend",
        "aci",
        "--resource-group",
        "rg",
        "--location",
        "westeurope",
        "--template",
        broken,
    )
    _one_line_error(outcome, "cannot be read as JSON")


def test_deployment_start_on_aci_refuses_a_cce_policy_other_than_the_voted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.runtime.aci import aci_template

    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    voted = base64.b64encode(b"package policy\n").decode()
    template = tmp_path / "cleanroom-aci-template.json"
    template.write_text(json.dumps(aci_template(ACI_SPEC, cce_policy=voted)))
    other = tmp_path / "other.b64"
    other.write_text(base64.b64encode(b"package policy\nallow_all := true\n").decode())
    outcome = cleanroom(
        "-w",
        tmp_path,
        "deployment",
        "start",
        "--contract-id",
        "inference-azure",
        "--backend",
        "aci",
        "--resource-group",
        "rg",
        "--location",
        "westeurope",
        "--template",
        template,
        "--cce-policy-file",
        other,
    )
    _one_line_error(outcome, "not the one the template is bound to", "deploy with the ccePolicy the parties voted")


def test_generate_backend_aci_writes_template_and_skr_policy(tmp_path: Path) -> None:
    """`governance deployment generate --backend aci` against a real loopback governance service."""
    import subprocess
    import sys

    from core.keys.skr import cce_policy_host_data, required_host_data
    from core.workspace import Workspace

    env = dict(os.environ, CLEANROOM_HOME=str(tmp_path / "home"))
    hoster = Workspace.init(tmp_path / "hoster", "hoster").root

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tui.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[1],
        )

    started = run("up", "--workspace-dirs", str(hoster))
    assert started.returncode == 0, started.stderr
    try:
        merged = tmp_path / "merged.json"
        owner = Workspace.open(hoster).identity
        merged.write_text(json.dumps(azure_contract_data(owner)))
        created = run(
            "-w", str(hoster), "governance", "contract", "create", "--id", "inference-azure", "--data", f"@{merged}"
        )
        assert created.returncode == 0, created.stderr
        out = tmp_path / "out"
        generate = (
            "-w",
            str(hoster),
            "governance",
            "deployment",
            "generate",
            "--contract-id",
            "inference-azure",
            "--output-dir",
            str(out),
            "--backend",
            "aci",
            "-o",
            "json",
        )
        # an SKR policy for the placeholder would bind keys to a host data no group reports
        refused = run(*generate, "--maa-endpoint", "sharedeus.eus.attest.azure.net")
        refused_wrote_nothing = not out.exists()
        first = run(*generate)  # step 1: the template `az confcom acipolicygen` reads
        cce_file = tmp_path / "cce-policy.b64"
        cce_file.write_text(base64.b64encode(b'package policy\napi_version := "0.10.0"\n').decode() + "\n")
        generated = run(
            *generate,
            "--cce-policy",
            str(cce_file),
            "--maa-endpoint",
            "sharedeus.eus.attest.azure.net",
            "--kek-vault",
            f"{owner.member_id}=https://pkv.vault.azure.net",
        )
        bad_vault = run(*generate, "--cce-policy", str(cce_file), "--kek-vault", "https://pkv.vault.azure.net")
        no_vault = run(*generate, "--cce-policy", str(cce_file), "--maa-endpoint", "sharedeus.eus.attest.azure.net")
        no_maa = run(
            *generate, "--cce-policy", str(cce_file), "--kek-vault", f"{owner.member_id}=https://pkv.vault.azure.net"
        )
        assert generated.returncode == 0, generated.stderr
    finally:
        run("down")
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
    assert "no SKR policy without the real ccePolicy" in refused.stderr and "--cce-policy" in refused.stderr
    assert refused_wrote_nothing
    for refusal, needle in (
        (bad_vault, "is not MEMBER=URL"),
        (no_maa, "needs --maa-endpoint"),
        (no_vault, f"no --kek-vault for data owner(s) {owner.member_id}"),
    ):
        assert refusal.returncode != 0 and refusal.stderr.count("\n") == 1 and needle in refusal.stderr, refusal.stderr
    assert first.returncode == 0, first.stderr
    placeholder = json.loads(first.stdout)
    assert "skrPolicy" not in placeholder and "az confcom acipolicygen" in placeholder["nextStep"]

    summary = json.loads(generated.stdout)
    template = json.loads(Path(summary["aciTemplate"]).read_text())
    skr = json.loads(Path(summary["skrPolicy"]).read_text())
    voted = json.loads(Path(summary["policy"]).read_text())
    assert template["resources"][0]["properties"]["sku"] == "Confidential"
    assert template["outputs"]["policyHash"]["value"] == summary["policyHash"] == voted["policy_hash"]
    assert (
        voted["host_data"]
        == summary["hostData"]
        == required_host_data(skr)
        == template["outputs"]["hostData"]["value"]
        == cce_policy_host_data(voted["cce_policy"])
    )
    assert template["parameters"]["ccePolicy"]["defaultValue"] == voted["cce_policy"]
    sidecar = {
        e["name"]: e["value"]
        for e in template["resources"][0]["properties"]["containers"][-1]["properties"]["environmentVariables"]
    }
    assert sidecar["CLEANROOM_GOVERNANCE_URL"].startswith("https://127.0.0.1:")
    assert "BEGIN CERTIFICATE" in sidecar["CLEANROOM_GOVERNANCE_CERT"]
    assert json.loads(sidecar["CLEANROOM_KEK_VAULTS"]) == {owner.member_id: "https://pkv.vault.azure.net"}


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--maa-endpoint", "sharedeus.eus.attest.azure.net"], "are for --backend aci"),
        (["--backend", "aci", "--maa-endpoint", "http://maa.example"], "is not an https host"),
    ],
)
def test_generate_checks_azure_flags_before_asking_governance(tmp_path: Path, flags: list[str], needle: str) -> None:
    outcome = cleanroom(
        "-w",
        tmp_path,
        "governance",
        "deployment",
        "generate",
        "--contract-id",
        "c1",
        "--output-dir",
        tmp_path / "out",
        *flags,
    )
    _one_line_error(outcome, needle)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--kek-vault", "https://kv.vault.azure.net"], "--kek-vault and --maa-endpoint go together"),
        (
            ["--kek-vault", "https://kv.example.com", "--maa-endpoint", "sharedeus.eus.attest.azure.net"],
            "not a Key Vault or managed HSM URL",
        ),
        (["--kek-vault", "https://kv.vault.azure.net", "--maa-endpoint", "http://maa.example"], "is not an https host"),
    ],
)
def test_wrap_deks_to_a_vault_checks_flags_first(provider: Path, flags: list[str], needle: str) -> None:
    outcome = cleanroom("-w", provider, "config", "wrap-deks", "--contract-id", "c1", *flags)
    _one_line_error(outcome, needle)


def _signed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")


@pytest.mark.parametrize("verb", ["status", "logs", "stop"])
def test_aci_verbs_without_sign_in_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: str) -> None:
    """azure-identity's multi-line warning must not reach the terminal; our one line does."""
    _signed_out(monkeypatch)
    outcome = cleanroom(
        "-w",
        tmp_path,
        "deployment",
        verb,
        "--contract-id",
        "c1",
        "--backend",
        "aci",
        "--resource-group",
        "rg-cleanroom",
    )
    _one_line_error(outcome, "cleanroom-c1", "rg-cleanroom")


def test_storage_account_without_sign_in_is_one_line(
    provider: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _signed_out(monkeypatch)
    assert (
        cleanroom(
            "-w",
            provider,
            "config",
            "add-datasource",
            "--name",
            "model",
            "--storage-account",
            "https://127.0.0.1:9/devstoreaccount1",
        ).code
        == 0
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.bin").write_bytes(b"x")
    outcome = cleanroom(
        "-w", provider, "datasource", "upload", "--name", "model", "--dataset-folder", tmp_path / "data"
    )
    _one_line_error(outcome, "https://127.0.0.1:9/devstoreaccount1")


def azure_contract_data(owner: MemberIdentity) -> dict[str, Any]:
    """A one-party contract (governance validates contract data against the merged-spec schema)."""
    return {
        "parties": [{"persona": "hoster", "member_id": owner.member_id, "member_cert": owner.cert_pem}],
        "applications": [
            {
                "name": "inference",
                "owner": owner.member_id,
                "image": "acr.azurecr.io/inference:1",
                "command": ["python", "-m", "containers.inference_server"],
                "ports": [8000],
                "mounts": [{"source": "model", "target": "/mnt/model"}],
            }
        ],
        "datasources": [
            {
                "name": "model",
                "owner": owner.member_id,
                "store": {"kind": "azure_blob", "account_url": "https://p.blob.core.windows.net"},
            }
        ],
    }


def test_both_backends_generate_through_the_protocol_and_check_flags_before_reading_the_contract(
    tmp_path: Path,
) -> None:
    """`generation_backend` builds either backend from the one option, without local services or
    a resource group; each writes its files through `DeploymentBackend.generate`, and refuses a
    flag that is not its own before it reads the contract or writes anything."""
    from core.errors import InvalidInputError, NotFoundError
    from core.runtime.aci import ACI_TEMPLATE_FILE
    from core.runtime.backend import (
        AciBackend,
        DeploymentBackend,
        GenerateOptions,
        GovernedContract,
        LocalBackend,
        generation_backend,
    )
    from core.runtime.deployment import DEPLOYMENT_SPEC_FILE, POLICY_FILE
    from core.workspace import Workspace

    owner = Workspace.init(tmp_path / "hoster", "hoster").identity
    reads: list[str] = []

    def governed() -> GovernedContract:
        reads.append("contract")
        return GovernedContract(azure_contract_data(owner), "https://127.0.0.1:9443", owner.cert_pem)

    local: DeploymentBackend = generation_backend("local")  # the protocol, checked by mypy too
    aci: DeploymentBackend = generation_backend("aci")
    assert isinstance(local, LocalBackend) and isinstance(aci, AciBackend)
    assert isinstance(local, DeploymentBackend) and isinstance(aci, DeploymentBackend)

    written = local.generate("c1", governed, tmp_path / "local", GenerateOptions())
    assert sorted(p.name for p in (tmp_path / "local").iterdir()) == sorted([DEPLOYMENT_SPEC_FILE, POLICY_FILE])
    assert written["deployment_spec"] == str(tmp_path / "local" / DEPLOYMENT_SPEC_FILE)
    assert len(written["policy_hash"]) == 64 and written["applications"] == ["inference"]

    azure = aci.generate("c1", governed, tmp_path / "aci", GenerateOptions())
    assert sorted(p.name for p in (tmp_path / "aci").iterdir()) == sorted(
        [DEPLOYMENT_SPEC_FILE, POLICY_FILE, ACI_TEMPLATE_FILE]
    )
    assert azure["policy_hash"] == written["policy_hash"]  # the same contract, the same policy to vote
    assert azure["aci_template"] == str(tmp_path / "aci" / ACI_TEMPLATE_FILE) and "az confcom" in azure["next_step"]
    assert reads == ["contract", "contract"]

    with pytest.raises(InvalidInputError, match="are for --backend aci"):
        local.generate(
            "c1", governed, tmp_path / "refused", GenerateOptions(maa_endpoint="sharedeus.eus.attest.azure.net")
        )
    with pytest.raises(InvalidInputError, match="--identity and --identity-client-id go together"):
        aci.generate("c1", governed, tmp_path / "refused", GenerateOptions(identity_id="/subscriptions/x"))
    assert reads == ["contract", "contract"] and not (tmp_path / "refused").exists()

    with pytest.raises(NotFoundError, match="built to write deployment files, not to run them"):
        local.status("c1")
    with pytest.raises(InvalidInputError, match="no deployment backend 'moon'"):
        generation_backend("moon")
