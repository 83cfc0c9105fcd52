"""The confidential group's user-assigned managed identity: the ARM template declares it, the SDK
model carries it, and the runtime sidecar selects it with AZURE_CLIENT_ID, so stores named by
``--storage-account`` are reachable with DefaultAzureCredential inside the group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InvalidInputError
from core.runtime.aci import ManagedIdentity, aci_template, container_group
from tests.cli_runner import cleanroom
from tests.test_azure_aci import SECRETS, SPEC
from tests.test_azure_cli import azure_contract_data

IDENTITY_ID = (
    "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/rg-cleanroom/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/cleanroom-runtime"
)
CLIENT_ID = "6c0a9f0e-3f5b-4f7e-9a43-4a9d8d1f2b7c"
CCE = "cGFja2FnZSBwb2xpY3k="


def _sidecar_env(group) -> dict[str, str | None]:
    return {e.name: e.value for e in group.containers[-1].environment_variables}


def test_the_sdk_model_runs_the_group_as_the_identity_and_the_sidecar_selects_it() -> None:
    template = aci_template(SPEC, identity=ManagedIdentity(IDENTITY_ID, CLIENT_ID))
    assert template["resources"][0]["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY_ID: {}}}
    _, group = container_group(template, location="westeurope", cce_policy=CCE, secrets=SECRETS)
    assert group.identity.type == "UserAssigned"
    assert list(group.identity.user_assigned_identities) == [IDENTITY_ID]
    assert group.serialize()["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY_ID: {}}}
    assert _sidecar_env(group)["AZURE_CLIENT_ID"] == CLIENT_ID
    workloads = [c for c in group.containers[:-1]]
    assert all("AZURE_CLIENT_ID" not in {e.name for e in c.environment_variables or []} for c in workloads)


def test_without_an_identity_the_template_declares_none() -> None:
    template = aci_template(SPEC)
    assert "identity" not in template["resources"][0]
    _, group = container_group(template, location="westeurope", cce_policy=CCE, secrets=SECRETS)
    assert group.identity is None and "AZURE_CLIENT_ID" not in _sidecar_env(group)


def test_the_identity_changes_what_the_cce_policy_measures() -> None:
    """AZURE_CLIENT_ID is in the sidecar's environment, which acipolicygen measures."""
    other = ManagedIdentity(IDENTITY_ID, "0f7a3c2e-1111-4f7e-9a43-4a9d8d1f2b7c")
    first = aci_template(SPEC, identity=ManagedIdentity(IDENTITY_ID, CLIENT_ID))
    assert (
        first["resources"][0]["properties"]["containers"][-1]
        != aci_template(SPEC, identity=other)["resources"][0]["properties"]["containers"][-1]
    )


def test_default_azure_credential_in_the_sidecar_picks_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sidecar's environment as ACI receives it makes DefaultAzureCredential's managed
    identity credential ask for this client id (azure-identity reads AZURE_CLIENT_ID)."""
    from azure.identity import ManagedIdentityCredential

    from core.azure_credential import default_credential

    _, group = container_group(
        aci_template(SPEC, identity=ManagedIdentity(IDENTITY_ID, CLIENT_ID)),
        location="westeurope",
        cce_policy=CCE,
        secrets=SECRETS,
    )
    monkeypatch.setenv("AZURE_CLIENT_ID", str(_sidecar_env(group)["AZURE_CLIENT_ID"]))
    for name in ("AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    credential = next(c for c in default_credential().credentials if isinstance(c, ManagedIdentityCredential))
    assert credential._credential._msal_client._managed_identity == {
        "ManagedIdentityIdType": "ClientId",
        "Id": CLIENT_ID,
    }


@pytest.mark.parametrize(
    ("resource_id", "client_id", "needle"),
    [
        (
            "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/s",
            CLIENT_ID,
            "is not a user-assigned managed identity resource id",
        ),
        ("cleanroom-runtime", CLIENT_ID, "is not a user-assigned managed identity resource id"),
        (IDENTITY_ID, "not-a-guid", "is not a GUID"),
    ],
)
def test_bad_identities_are_refused(resource_id: str, client_id: str, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        ManagedIdentity(resource_id, client_id)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--identity", IDENTITY_ID, "--identity-client-id", CLIENT_ID], "are for --backend aci"),
        (["--backend", "aci", "--identity", IDENTITY_ID], "--identity and --identity-client-id go together"),
        (["--backend", "aci", "--identity-client-id", CLIENT_ID], "--identity and --identity-client-id go together"),
        (
            ["--backend", "aci", "--identity", "/subscriptions/x/rg", "--identity-client-id", CLIENT_ID],
            "is not a user-assigned managed identity resource id",
        ),
    ],
)
def test_generate_checks_identity_flags_before_asking_governance(tmp_path: Path, flags: list[str], needle: str) -> None:
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
    assert outcome.code != 0 and outcome.stderr.count("\n") == 1 and needle in outcome.stderr, outcome.stderr
    assert not (tmp_path / "out").exists()


def test_generate_writes_the_identity_into_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`governance deployment generate --backend aci --identity` against a real loopback governance."""
    from core.workspace import Workspace

    monkeypatch.setenv("CLEANROOM_HOME", str(tmp_path / "home"))
    hoster = Workspace.init(tmp_path / "hoster", "hoster").root
    assert cleanroom("up", "--workspace-dirs", hoster).code == 0
    try:
        merged = tmp_path / "merged.json"
        merged.write_text(json.dumps(azure_contract_data(Workspace.open(hoster).identity)))
        created = cleanroom(
            "-w", hoster, "governance", "contract", "create", "--id", "mi-azure", "--data", f"@{merged}"
        )
        assert created.code == 0, created.stderr
        generated = cleanroom(
            "-w",
            hoster,
            "governance",
            "deployment",
            "generate",
            "--contract-id",
            "mi-azure",
            "--output-dir",
            tmp_path / "out",
            "--backend",
            "aci",
            "-o",
            "json",
            "--identity",
            IDENTITY_ID,
            "--identity-client-id",
            CLIENT_ID,
        )
        assert generated.code == 0, generated.stderr
    finally:
        cleanroom("down")
    summary = json.loads(generated.stdout)
    assert summary["identity"] == IDENTITY_ID
    template = json.loads(Path(summary["aciTemplate"]).read_text())
    _, group = container_group(template, location="westeurope", cce_policy=CCE)
    assert list(group.identity.user_assigned_identities) == [IDENTITY_ID]
    assert _sidecar_env(group)["AZURE_CLIENT_ID"] == CLIENT_ID
