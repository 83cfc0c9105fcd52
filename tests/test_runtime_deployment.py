"""Deployment spec and clean-room policy generation from real, merged config fragments."""

from __future__ import annotations

import json

import pytest

from core.config.fragment import Application, Fragment, LocalStoreSpec, Mount, NetworkPolicy
from core.config.merge import merge_fragments
from core.crypto.identity import MemberIdentity
from core.errors import InvalidInputError
from core.keys.measurement import policy_hash
from core.runtime.deployment import accepted_policy_hash, deployment_spec, policy_document, write_deployment


def _merged(tmp_path, command=("python", "-m", "containers.inference_server", "--uds", "/run/cleanroom/app.sock")):
    provider, hoster = MemberIdentity.generate("provider"), MemberIdentity.generate("hoster")
    provider_fragment = (
        Fragment.new("provider", provider)
        .with_datasource("model", LocalStoreSpec(path=str(tmp_path / "p")))
        .with_datasink("outputs", LocalStoreSpec(path=str(tmp_path / "p")))
    )
    hoster_fragment = (
        Fragment.new("hoster", hoster)
        .with_application(
            Application(
                name="app",
                owner=hoster.member_id,
                entrypoint="containers/inference_server",
                command=list(command),
                mounts=[
                    Mount(source="model", target="/mnt/remote/model"),
                    Mount(source="outputs", target="/mnt/remote/out"),
                ],
                ports=[8000],
                env={"LOG_LEVEL": "info"},
                env_names=["API_KEY"],
            )
        )
        .with_network_policy(NetworkPolicy(inbound_allow=["POST /infer"]))
    )
    return merge_fragments([provider_fragment, hoster_fragment]).document(), provider


def test_spec_resolves_mounts_owners_and_runtime_env(tmp_path) -> None:
    merged, provider = _merged(tmp_path)
    spec = deployment_spec("collab1", merged)
    app = spec["applications"][0]
    assert app["socket"] == "/run/cleanroom/app.sock"
    assert app["env"]["CLEANROOM_UDS"] == "/run/cleanroom/app.sock"
    assert {m["name"]: (m["kind"], m["read_only"], m["owner"]) for m in app["mounts"]} == {
        "model": ("datasource", True, provider.member_id),
        "outputs": ("datasink", False, provider.member_id),
    }
    assert spec["network_policy"]["inbound_allow"] == ["POST /infer"]


def test_policy_document_hash_is_recomputed(tmp_path) -> None:
    merged, _ = _merged(tmp_path)
    spec = deployment_spec("collab1", merged)
    document = policy_document(spec)
    assert accepted_policy_hash(document) == policy_hash(spec) == document["policy_hash"]
    lying = dict(document, policy_hash="0" * 64)
    assert accepted_policy_hash(lying) is None
    tampered = json.loads(json.dumps(document))
    tampered["policy"]["applications"][0]["command"][0] = "sh"
    assert accepted_policy_hash(tampered) is None


def test_one_character_in_the_fragment_changes_the_policy(tmp_path) -> None:
    a, _ = _merged(tmp_path)
    b, _ = _merged(
        tmp_path, command=("python", "-m", "containers.inference_server", "--uds", "/run/cleanroom/app.sockk")
    )
    assert policy_hash(deployment_spec("c", a)) != policy_hash(deployment_spec("c", b))


def test_write_deployment_files(tmp_path) -> None:
    merged, _ = _merged(tmp_path)
    summary = write_deployment("collab1", merged, tmp_path / "out")
    spec = json.loads((tmp_path / "out" / "deployment-spec.json").read_text())
    policy = json.loads((tmp_path / "out" / "clean-room-policy.json").read_text())
    assert summary["policy_hash"] == policy["policy_hash"] == policy_hash(spec)


def test_contract_without_applications_is_refused(tmp_path) -> None:
    merged, _ = _merged(tmp_path)
    with pytest.raises(InvalidInputError, match="no applications"):
        deployment_spec("c", {**merged, "applications": []})
    broken = json.loads(json.dumps(merged))
    broken["applications"][0]["mounts"][0]["source"] = "ghost"
    with pytest.raises(InvalidInputError, match="ghost"):
        deployment_spec("c", broken)
