"""`--backend local|aci` builds one `DeploymentBackend`, and every deployment verb goes through it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import InvalidInputError
from core.runtime.aci import GroupStatus, container_group_name
from core.runtime.backend import (
    NOT_DEPLOYED,
    AciBackend,
    DeploymentBackend,
    LocalBackend,
    StartOptions,
    deployment_backend,
)
from core.runtime.process import RuntimeEnvironment
from tests.cli_runner import cleanroom


class _InMemoryGroups:
    """Azure's container groups in one resource group, as `AciDeployment` drives them: the one
    part of the ACI path that cannot run here. Records what the backend asked of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.groups: dict[str, str] = {}

    def start(self, template: dict[str, Any], *, name: str, **_: Any) -> GroupStatus:
        self.calls.append(("start", name))
        self.groups[name] = "Running"
        return self.status(name)

    def status(self, name: str) -> GroupStatus:
        self.calls.append(("status", name))
        container = {"name": "cleanroom-runtime", "state": self.groups.get(name, "Unknown"), "exitCode": None}
        return GroupStatus(name, "Succeeded", self.groups.get(name, "Unknown"), [container], "10.0.0.4")

    def logs(self, name: str, container: str) -> str:
        self.calls.append(("logs", name))
        return f"{container} says hello"

    def stop(self, name: str) -> None:
        self.calls.append(("stop", name))
        self.groups[name] = "Stopped"


def _environment(root: Path) -> RuntimeEnvironment:
    return RuntimeEnvironment(root / "runtime", root / "governance", root / "keys")


def test_both_backends_satisfy_the_protocol(tmp_path: Path) -> None:
    local: DeploymentBackend = LocalBackend(_environment(tmp_path))  # checked by mypy
    aci: DeploymentBackend = AciBackend(_InMemoryGroups())
    assert isinstance(local, DeploymentBackend) and isinstance(aci, DeploymentBackend)


def test_the_factory_builds_the_backend_the_option_names(tmp_path: Path) -> None:
    asked: list[str] = []

    def environment() -> RuntimeEnvironment:
        asked.append("local")
        return _environment(tmp_path)

    local = deployment_backend("local", local_environment=environment)
    assert isinstance(local, LocalBackend) and asked == ["local"]
    assert local.status("nosuch") == {"contract_id": "nosuch", "state": NOT_DEPLOYED}
    with pytest.raises(InvalidInputError, match="--backend aci needs --resource-group"):
        deployment_backend("aci", local_environment=environment)
    assert asked == ["local"]  # an Azure deployment never looks for the local services
    with pytest.raises(InvalidInputError, match="no deployment backend 'moon'"):
        deployment_backend("moon", local_environment=environment)


def test_aci_start_needs_a_template_and_names_the_group_after_the_contract(tmp_path: Path) -> None:
    groups = _InMemoryGroups()
    with pytest.raises(InvalidInputError, match="needs --template FILE and --location REGION"):
        AciBackend(groups).start("c1", StartOptions())
    template = tmp_path / "t.json"
    template.write_text("{}")
    started = AciBackend(groups).start("c1", StartOptions(template_file=template, location="westeurope"))
    assert started["name"] == container_group_name("c1") and started["state"] == "Running"


def test_cli_verbs_dispatch_through_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    groups = _InMemoryGroups()
    chosen: list[tuple[str | None, str | None]] = []

    def in_resource_group(resource_group: str | None, subscription: str | None = None) -> AciBackend:
        chosen.append((resource_group, subscription))
        return AciBackend(groups)

    monkeypatch.setattr(AciBackend, "in_resource_group", staticmethod(in_resource_group))
    template = tmp_path / "cleanroom-aci-template.json"
    template.write_text("{}")
    aci = ("--backend", "aci", "--resource-group", "rg", "--subscription", "sub", "-o", "json")
    name = container_group_name("c1")

    started = cleanroom(
        "-w", tmp_path, "deployment", "start", "--contract-id", "c1", *aci, "--template", template, "--location", "x"
    )
    assert started.code == 0, started.stderr
    assert json.loads(started.stdout) == {
        "name": name,
        "provisioningState": "Succeeded",
        "state": "Running",
        "containers": [{"name": "cleanroom-runtime", "state": "Running", "exitCode": None}],
        "ipAddress": "10.0.0.4",
    }
    shown = cleanroom("-w", tmp_path, "deployment", "status", "--contract-id", "c1", *aci)
    assert shown.code == 0 and json.loads(shown.stdout)["state"] == "Running"
    logged = cleanroom("-w", tmp_path, "deployment", "logs", "--contract-id", "c1", *aci)
    assert logged.code == 0
    assert json.loads(logged.stdout) == {"container": "cleanroom-runtime", "log": "cleanroom-runtime says hello"}
    stopped = cleanroom("-w", tmp_path, "deployment", "stop", "--contract-id", "c1", *aci)
    assert stopped.code == 0 and json.loads(stopped.stdout)["state"] == "Stopped"

    assert chosen == [("rg", "sub")] * 4
    assert [verb for verb, _ in groups.calls] == ["start", "status", "status", "status", "logs", "stop", "status"]
    assert {group for _, group in groups.calls} == {name}
