"""The ACI template: a confidential container group the SDK's models accept property for property."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import uuid
from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential
from azure.mgmt.containerinstance.models import Container, ContainerGroup

from core.errors import InvalidInputError
from core.keys.measurement import policy_hash
from core.keys.skr import release_policy, release_policy_for_clean_room_policy, required_host_data
from core.runtime.aci import (
    CCE_POLICY_PLACEHOLDER,
    RUNTIME_SIDECAR_NAME,
    WAIT_FOR_DATA,
    AciDeployment,
    aci_template,
    cce_policy_host_data,
    container_group,
    write_aci_template,
)

SPEC = {
    "contract_id": "finetune-1",
    "applications": [
        {
            "name": "trainer",
            "image": "cleanroomacr.azurecr.io/trainer:1.0",
            "command": ["python", "-m", "containers.trainer", "--config", "/mnt/config/train.json"],
            "mounts": [
                {"kind": "datasource", "name": "model", "path": "/mnt/model", "owner": "provider"},
                {"kind": "datasource", "name": "training-data", "path": "/mnt/data", "owner": "consumer"},
                {"kind": "datasink", "name": "trained-model", "path": "/mnt/out", "owner": "provider"},
            ],
            "env": {"EPOCHS": "1"},
            "env_names": ["WANDB_API_KEY"],
            "ports": [],
            "cpu": 2,
            "memory_gb": 8,
        },
        {
            "name": "metrics",
            "image": "cleanroomacr.azurecr.io/metrics:1.0",
            "command": ["python", "-m", "metrics"],
            "ports": [8443],
        },
    ],
    "network_policy": {"allow_egress": False},
    "datasources": [
        {
            "name": "model",
            "owner": "provider",
            "store": {"kind": "azure_blob", "account_url": "https://prov.blob.core.windows.net"},
        },
        {
            "name": "training-data",
            "owner": "consumer",
            "store": {"kind": "azure_blob", "connection_string_env": "CONSUMER_CS", "container": "td"},
        },
    ],
    "datasinks": [
        {
            "name": "trained-model",
            "owner": "provider",
            "store": {"kind": "azure_blob", "account_url": "https://prov.blob.core.windows.net"},
        },
    ],
}


SECRETS = {"WANDB_API_KEY": "x", "CONSUMER_CS": "AccountKey=k"}


def _resource(template: dict) -> dict:
    (resource,) = template["resources"]
    return resource


def test_template_is_a_confidential_group_with_the_runtime_sidecar() -> None:
    template = aci_template(SPEC, runtime_image="cleanroomacr.azurecr.io/runtime:0.1.0")
    resource = _resource(template)
    assert resource["type"] == "Microsoft.ContainerInstance/containerGroups"
    properties = resource["properties"]
    assert properties["sku"] == "Confidential"
    assert properties["confidentialComputeProperties"] == {"ccePolicy": "[parameters('ccePolicy')]"}
    assert template["parameters"]["ccePolicy"]["defaultValue"] == CCE_POLICY_PLACEHOLDER
    names = [c["name"] for c in properties["containers"]]
    assert names == ["trainer", "metrics", RUNTIME_SIDECAR_NAME]
    sidecar = properties["containers"][-1]["properties"]
    assert sidecar["image"] == "cleanroomacr.azurecr.io/runtime:0.1.0"
    measured = policy_hash(SPEC)
    assert {"name": "CLEANROOM_POLICY_HASH", "value": measured} in sidecar["environmentVariables"]
    assert resource["tags"]["cleanroom-policy-hash"] == measured
    assert template["outputs"]["policyHash"]["value"] == measured
    assert properties["ipAddress"]["ports"] == [{"port": 8443, "protocol": "TCP"}]
    # each workload waits for its decrypted data, then reports its exit code to the sidecar
    trainer = properties["containers"][0]["properties"]
    assert trainer["command"] == ["/bin/sh", "-c", WAIT_FOR_DATA, "trainer", *SPEC["applications"][0]["command"]]
    assert {"name": "cleanroom-run", "mountPath": "/run/cleanroom", "readOnly": False} in trainer["volumeMounts"]
    assert {"name": "CLEANROOM_APPLICATIONS", "value": '["trainer","metrics"]'} in sidecar["environmentVariables"]
    # JSON all the way (what `az deployment group create` reads) and deterministic.
    assert json.loads(json.dumps(template)) == aci_template(SPEC, runtime_image="cleanroomacr.azurecr.io/runtime:0.1.0")


def test_sdk_models_are_built_from_the_template() -> None:
    name, group = container_group(
        aci_template(SPEC),
        location="westeurope",
        cce_policy=base64.b64encode(b"package policy").decode(),
        secrets={"WANDB_API_KEY": "s3cret", "CONSUMER_CS": "AccountKey=k"},
    )
    assert name == "cleanroom-finetune-1"
    assert isinstance(group, ContainerGroup) and group.sku == "Confidential"
    assert group.location == "westeurope" and group.os_type == "Linux"
    assert group.confidential_compute_properties.cce_policy == "cGFja2FnZSBwb2xpY3k="
    trainer, metrics, sidecar = group.containers
    assert all(isinstance(c, Container) for c in group.containers)
    assert trainer.resources.requests.cpu == 2 and trainer.resources.requests.memory_in_gb == 8
    assert {m.mount_path: m.read_only for m in trainer.volume_mounts} == {
        "/mnt/model": True,
        "/mnt/data": True,
        "/mnt/out": False,
        "/run/cleanroom": False,
    }
    assert {v.name for v in group.volumes} == {m.name for m in sidecar.volume_mounts}
    assert all(v.empty_dir == {} for v in group.volumes)
    assert [(e.name, e.value, e.secure_value) for e in trainer.environment_variables] == [
        ("EPOCHS", "1", None),
        ("WANDB_API_KEY", None, "s3cret"),
    ]
    assert metrics.ports[0].port == 8443 and group.ip_address.type == "Public"
    plan = json.loads(next(e.value for e in sidecar.environment_variables if e.name == "CLEANROOM_MOUNT_PLAN"))
    # the consumer's store is reached by connection string: the sidecar gets it as a secure value
    assert [(e.name, e.secure_value) for e in sidecar.environment_variables if e.secure_value] == [
        ("CONSUMER_CS", "AccountKey=k")
    ]
    assert {(p["kind"], p["name"], p["owner"], p["store"]["container"]) for p in plan} == {
        ("datasource", "model", "provider", "model"),
        ("datasource", "training-data", "consumer", "td"),
        ("datasink", "trained-model", "provider", "trained-model"),
    }
    # The model serialises back to the REST body Azure receives.
    body = group.serialize()
    assert body["properties"]["sku"] == "Confidential"
    assert body["properties"]["containers"][0]["properties"]["resources"]["requests"]["memoryInGB"] == 8


def test_secret_env_values_are_parameters_not_template_content() -> None:
    template = aci_template(SPEC)
    assert template["parameters"]["secret_WANDB_API_KEY"] == {"type": "securestring"}
    env = _resource(template)["properties"]["containers"][0]["properties"]["environmentVariables"]
    assert {"name": "WANDB_API_KEY", "secureValue": "[parameters('secret_WANDB_API_KEY')]"} in env
    with pytest.raises(InvalidInputError, match="no value for the secret environment variable"):
        container_group(template, location="westeurope")


def test_bad_env_name_is_refused() -> None:
    spec = copy.deepcopy(SPEC)
    spec["applications"][0]["env_names"] = ["NOT-VALID"]
    with pytest.raises(InvalidInputError, match="environment variable name 'NOT-VALID'"):
        aci_template(spec)


def test_a_misspelt_property_is_refused_by_the_model_check() -> None:
    template = aci_template(SPEC)
    container = _resource(template)["properties"]["containers"][0]["properties"]
    container["volumeMount"] = container.pop("volumeMounts")
    with pytest.raises(InvalidInputError, match=r"containers\[0\]\.properties\.volumeMount is not"):
        container_group(template, location="westeurope", secrets=SECRETS)


def test_a_wrongly_typed_property_is_refused() -> None:
    template = aci_template(SPEC)
    _resource(template)["properties"]["containers"][0]["properties"]["ports"] = "8443"
    with pytest.raises(InvalidInputError, match="ACI template"):
        container_group(template, location="westeurope", secrets=SECRETS)


def test_what_runs_changes_the_policy_hash_in_the_template() -> None:
    changed = copy.deepcopy(SPEC)
    changed["applications"][0]["command"][-1] = "/mnt/config/other.json"
    assert (
        _resource(aci_template(changed))["tags"]["cleanroom-policy-hash"]
        != _resource(aci_template(SPEC))["tags"]["cleanroom-policy-hash"]
    )


REGO = b'package policy\napi_version := "0.10.0"\n'
CCE = base64.b64encode(REGO).decode()


def test_voted_policy_skr_policy_and_template_agree_on_the_host_data() -> None:
    from core.runtime.deployment import accepted_policy_hash, policy_document

    voted = policy_document(SPEC, cce_policy=CCE)
    template = aci_template(SPEC, cce_policy=CCE)
    skr = release_policy_for_clean_room_policy(voted, "sharedeus.eus.attest.azure.net")
    host_data = hashlib.sha256(REGO).hexdigest()
    assert voted["cce_policy"] == CCE and voted["attestation_type"] == "sevsnpvm"
    assert voted["host_data"] == required_host_data(skr) == host_data
    assert template["parameters"]["ccePolicy"]["defaultValue"] == CCE
    assert template["outputs"]["hostData"]["value"] == _resource(template)["tags"]["cleanroom-host-data"] == host_data
    assert template["metadata"]["cleanroom"]["host_data"] == host_data
    # the template the SDK gets carries that same ccePolicy, so SEV-SNP reports that host data
    _name, group = container_group(template, location="westeurope", secrets=SECRETS)
    assert cce_policy_host_data(group.confidential_compute_properties.cce_policy) == host_data
    # governance still checks the clean-room measurement of the same document
    assert accepted_policy_hash(voted) == policy_hash(SPEC)


def test_a_changed_cce_policy_changes_the_hash_and_the_skr_policy_no_longer_matches() -> None:
    from core.runtime.deployment import policy_document

    voted = policy_document(SPEC, cce_policy=CCE)
    skr = release_policy_for_clean_room_policy(voted, "sharedeus.eus.attest.azure.net")
    changed = base64.b64encode(REGO + b"allow_stdio_access := true\n").decode()
    template = aci_template(SPEC, cce_policy=changed)
    assert template["outputs"]["hostData"]["value"] == cce_policy_host_data(changed) != required_host_data(skr)
    # deploying a ccePolicy other than the one the template (and the vote) carries is refused
    deployment = AciDeployment("rg-cleanroom", subscription_id=str(uuid.uuid4()), credential=DefaultAzureCredential())
    with pytest.raises(InvalidInputError, match="not the one the template is bound to"):
        deployment.start(aci_template(SPEC, cce_policy=CCE), location="westeurope", cce_policy=changed, secrets=SECRETS)


def test_placeholder_cce_policy_is_not_a_policy_to_bind_keys_to() -> None:
    from core.runtime.deployment import policy_document

    for bad in (CCE_POLICY_PLACEHOLDER, ""):
        with pytest.raises(InvalidInputError, match="acipolicygen"):
            policy_document(SPEC, cce_policy=bad)
        with pytest.raises(InvalidInputError, match="acipolicygen"):
            aci_template(SPEC, cce_policy=bad)


def test_cce_policy_host_data_is_the_sha256_of_the_rego() -> None:
    rego = b'package policy\napi_version := "0.10.0"\n'
    host_data = cce_policy_host_data(base64.b64encode(rego).decode())
    assert host_data == hashlib.sha256(rego).hexdigest()
    assert required_host_data(release_policy(host_data, "sharedeus.eus.attest.azure.net")) == host_data
    with pytest.raises(InvalidInputError, match="ccePolicy is not base64"):
        cce_policy_host_data("not base64!")


def test_local_store_mounts_are_refused_for_azure() -> None:
    spec = copy.deepcopy(SPEC)
    spec["datasources"][0]["store"] = {"kind": "local", "path": "/srv/store"}
    with pytest.raises(InvalidInputError, match="datasource 'model' lives in a local store"):
        aci_template(spec)
    del spec["datasources"][0]
    with pytest.raises(InvalidInputError, match="datasource 'model' is mounted but has no store"):
        aci_template(spec)


def test_template_is_written_next_to_the_spec(tmp_path: Path) -> None:
    path = write_aci_template(SPEC, tmp_path)
    assert json.loads(path.read_text()) == aci_template(SPEC)


def test_application_without_an_image_is_refused() -> None:
    spec = copy.deepcopy(SPEC)
    spec["applications"][0]["image"] = ""
    with pytest.raises(InvalidInputError, match="application 'trainer' has no container image"):
        aci_template(spec)


@pytest.mark.parametrize("clash", ["Metrics", RUNTIME_SIDECAR_NAME])
def test_clashing_container_names_are_refused(clash: str) -> None:
    spec = copy.deepcopy(SPEC)
    spec["applications"][0]["name"] = clash
    with pytest.raises(InvalidInputError, match="names clash"):
        aci_template(spec)


def test_spec_without_contract_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no contract_id"):
        aci_template({"applications": SPEC["applications"]})


def test_deployment_needs_a_resource_group_and_subscription(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    with pytest.raises(InvalidInputError, match="no resource group"):
        AciDeployment("")
    with pytest.raises(InvalidInputError, match="no Azure subscription"):
        AciDeployment("rg-cleanroom")


def test_placeholder_cce_policy_is_refused_before_deploying() -> None:
    deployment = AciDeployment("rg-cleanroom", subscription_id=str(uuid.uuid4()), credential=DefaultAzureCredential())
    with pytest.raises(InvalidInputError, match="ccePolicy placeholder"):
        deployment.start(aci_template(SPEC), location="westeurope", secrets=SECRETS)


LIVE = {
    k: os.environ.get(k)
    for k in ("AZURE_SUBSCRIPTION_ID", "CLEANROOM_TEST_RESOURCE_GROUP", "CLEANROOM_TEST_ACI_LOCATION")
}


@pytest.mark.azure_live
@pytest.mark.skipif(
    not all(LIVE.values()),
    reason="live ACI test: set AZURE_SUBSCRIPTION_ID, CLEANROOM_TEST_RESOURCE_GROUP "
    "and CLEANROOM_TEST_ACI_LOCATION and sign in (az login or "
    "AZURE_CLIENT_ID/SECRET/TENANT_ID)",
)
def test_live_confidential_group_start_status_logs_stop() -> None:
    spec = {
        "contract_id": f"live-{uuid.uuid4().hex[:6]}",
        "network_policy": {},
        "applications": [
            {
                "name": "hello",
                "image": "mcr.microsoft.com/azuredocs/aci-helloworld",
                "command": ["node", "/usr/src/app/index.js"],
                "ports": [80],
            }
        ],
    }
    deployment = AciDeployment(str(LIVE["CLEANROOM_TEST_RESOURCE_GROUP"]))
    template = aci_template(spec, runtime_image="mcr.microsoft.com/azuredocs/aci-helloworld")
    status = deployment.start(template, location=str(LIVE["CLEANROOM_TEST_ACI_LOCATION"]), allow_debug_policy=True)
    try:
        assert status.provisioning_state == "Succeeded"
        assert {c["name"] for c in status.containers} == {"hello", RUNTIME_SIDECAR_NAME}
        assert isinstance(deployment.logs(status.name, "hello", tail=10), str)
        deployment.stop(status.name)
    finally:
        deployment.delete(status.name)


def test_template_from_a_generated_deployment_spec() -> None:
    """The step-3 generator's spec (with its runtime-added env and None sizing) deploys as-is."""
    from core.runtime.deployment import deployment_spec

    merged = {
        "applications": [
            {
                "name": "inference",
                "image": "acr.azurecr.io/inference:1",
                "command": ["python", "-m", "containers.inference_server"],
                "mounts": [{"source": "model", "target": "/mnt/model"}],
                "ports": [8000],
                "env_names": ["HF_TOKEN"],
            }
        ],
        "datasources": [
            {
                "name": "model",
                "owner": "m-provider",
                "store": {"kind": "azure_blob", "account_url": "https://prov.blob.core.windows.net"},
            }
        ],
    }
    spec = deployment_spec("inference-1", merged)
    template = aci_template(spec)
    assert template["outputs"]["policyHash"]["value"] == policy_hash(spec)
    _name, group = container_group(template, location="westeurope", secrets={"HF_TOKEN": "t"})
    inference = group.containers[0]
    assert inference.resources.requests.cpu == 1.0
    assert inference.volume_mounts[0].read_only is True
