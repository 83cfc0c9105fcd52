"""Blue/green on the ACI backend is refused, at generation and at start, with one line naming the fix.

A container group has no ingress to apply the voted traffic split (each serving port is published
as is), so a contract serving two applications is refused by `governance deployment generate
--backend aci` before any file is written, and a template carrying two serving containers (written
by hand, or before this refusal) by `deployment start --backend aci` before Azure is asked anything.
The local backend keeps generating the same contract: the refusal is the Azure backend's limit.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidInputError
from core.runtime.aci import BLUE_GREEN_HINT, AciDeployment, aci_template
from core.runtime.backend import GenerateOptions, GovernedContract, generation_backend
from core.runtime.deployment import DEPLOYMENT_SPEC_FILE, POLICY_FILE
from core.workspace import Workspace
from tests.cli_runner import cleanroom
from tests.test_azure_cli import ACI_SPEC, _one_line_error, azure_contract_data

REFUSAL = "serves 2 applications (inference, inference-tuned) behind one endpoint with a voted traffic split"


def _blue_green_contract(owner: Any) -> dict[str, Any]:
    data = azure_contract_data(owner)
    tuned = {**copy.deepcopy(data["applications"][0]), "name": "inference-tuned", "ports": [8001]}
    data["applications"].append(tuned)
    return data


def _blue_green_spec() -> dict[str, Any]:
    spec = copy.deepcopy(ACI_SPEC)
    spec["applications"].append({**copy.deepcopy(spec["applications"][0]), "name": "inference-tuned", "ports": [8001]})
    return spec


def test_the_template_of_a_blue_green_spec_is_refused_naming_the_applications_and_the_fix() -> None:
    with pytest.raises(InvalidInputError) as refused:
        aci_template(_blue_green_spec())
    assert REFUSAL in refused.value.message and "--backend aci cannot route" in refused.value.message
    assert refused.value.hint == BLUE_GREEN_HINT and "--backend local" in BLUE_GREEN_HINT
    one = copy.deepcopy(ACI_SPEC)  # one serving application and a worker without ports is not blue/green
    one["applications"].append({**copy.deepcopy(one["applications"][0]), "name": "batch", "ports": []})
    assert len(aci_template(one)["resources"][0]["properties"]["ipAddress"]["ports"]) == 1


def test_generate_backend_aci_refuses_a_blue_green_contract_and_writes_nothing(tmp_path: Path) -> None:
    owner = Workspace.init(tmp_path / "hoster", "hoster").identity

    def governed() -> GovernedContract:
        return GovernedContract(_blue_green_contract(owner), "https://127.0.0.1:9443", owner.cert_pem)

    with pytest.raises(InvalidInputError, match=re.escape(REFUSAL)):
        generation_backend("aci").generate("bg", governed, tmp_path / "aci", GenerateOptions())
    assert not (tmp_path / "aci").exists()
    written = generation_backend("local").generate("bg", governed, tmp_path / "local", GenerateOptions())
    assert written["applications"] == ["inference", "inference-tuned"]
    assert sorted(p.name for p in (tmp_path / "local").iterdir()) == sorted([DEPLOYMENT_SPEC_FILE, POLICY_FILE])


def _two_serving_template() -> dict[str, Any]:
    """A deployable-looking template with a second serving container added by hand."""
    template = aci_template(ACI_SPEC, cce_policy=base64.b64encode(b"package policy\n").decode())
    containers = template["resources"][0]["properties"]["containers"]
    tuned = copy.deepcopy(containers[0])
    tuned["name"] = "inference-tuned"
    tuned["properties"]["ports"] = [{"port": 8001, "protocol": "TCP"}]
    containers.insert(1, tuned)
    return template


class _RecordingContainerGroups:
    """Stands in for Azure's API only to prove it is never called: the refusal comes first."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin_create_or_update(self, *args: Any) -> Any:
        self.calls.append("begin_create_or_update")
        raise AssertionError("a refused template reached Azure")


class _Client:
    def __init__(self) -> None:
        self.container_groups = _RecordingContainerGroups()


def test_starting_a_template_with_two_serving_containers_is_refused_before_azure_is_called() -> None:
    client = _Client()
    deployment = AciDeployment("rg-cleanroom", client=client)
    with pytest.raises(InvalidInputError) as refused:
        deployment.start(_two_serving_template(), location="westeurope")
    assert "contract 'inference-azure' serves 2 applications (inference, inference-tuned)" in refused.value.message
    assert refused.value.hint == BLUE_GREEN_HINT
    assert client.container_groups.calls == []


def test_deployment_start_backend_aci_refuses_blue_green_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    template = tmp_path / "cleanroom-aci-template.json"
    template.write_text(json.dumps(_two_serving_template()))
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
    _one_line_error(outcome, "--backend aci cannot route", "deploy it with --backend local")
