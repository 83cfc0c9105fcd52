"""Key Vault secure key release: the policy requires exactly the host data of the voted ccePolicy."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import uuid

import pytest
from azure.keyvault.keys import JsonWebKey

from core.crypto.kek import Kek
from core.errors import InvalidInputError
from core.keys.skr import (
    accepted_host_data,
    create_release_kek,
    maa_authority,
    release_policy,
    release_policy_for_clean_room_policy,
    required_host_data,
    vault_kek_name,
    wrap_deks,
    wrap_deks_with_vault_kek,
)

MAA = "https://sharedeus.eus.attest.azure.net"

SPEC = {
    "contract_id": "inference-1",
    "applications": [
        {
            "name": "inference-server",
            "image": "cleanroom/inference-server:1",
            "command": ["python", "-m", "containers.inference_server", "--port", "8000"],
            "mounts": [{"kind": "datasource", "name": "model", "path": "/mnt/model", "owner": "provider"}],
            "env": {"MODEL_DIR": "/mnt/model"},
            "ports": [8000],
        }
    ],
    "network_policy": {"allow_egress": False},
}
REGO = b'package policy\napi_version := "0.10.0"\ncontainers := [{"id": "cleanroom/inference-server:1"}]\n'
CCE = base64.b64encode(REGO).decode()


def _voted(spec: dict = SPEC, cce: str = CCE) -> dict:
    from core.runtime.deployment import policy_document

    return policy_document(spec, cce_policy=cce)


def test_policy_requires_the_voted_host_data_on_sev_snp() -> None:
    document = release_policy_for_clean_room_policy(_voted(), MAA)
    assert document["version"] == "1.0.0"
    (rule,) = document["anyOf"]
    assert rule["authority"] == MAA
    claims = {c["claim"]: c["equals"] for c in rule["allOf"]}
    assert claims == {
        "x-ms-attestation-type": "sevsnpvm",
        "x-ms-compliance-status": "azure-compliant-uvm",
        "x-ms-sevsnpvm-hostdata": hashlib.sha256(REGO).hexdigest(),
    }


def test_a_changed_cce_policy_changes_the_required_host_data() -> None:
    base = required_host_data(release_policy_for_clean_room_policy(_voted(), MAA))
    other = base64.b64encode(REGO.replace(b"inference-server:1", b"inference-server:2")).decode()
    assert required_host_data(release_policy_for_clean_room_policy(_voted(cce=other), MAA)) != base
    resized = copy.deepcopy(SPEC)
    resized["applications"][0]["cpu"] = 4  # Azure sizing is not in the voted document's host data
    assert required_host_data(release_policy_for_clean_room_policy(_voted(resized), MAA)) == base


def test_a_policy_without_a_consistent_cce_policy_yields_no_skr_policy() -> None:
    from core.runtime.deployment import policy_document

    with pytest.raises(InvalidInputError, match="carries no ccePolicy"):
        release_policy_for_clean_room_policy(policy_document(SPEC), MAA)
    lying = {**_voted(), "host_data": "0" * 64}  # a stated host data is never trusted alone
    assert accepted_host_data(lying) is None
    swapped = {**_voted(), "cce_policy": base64.b64encode(b"package other").decode()}
    assert accepted_host_data(swapped) is None
    with pytest.raises(InvalidInputError, match="carries no ccePolicy"):
        release_policy_for_clean_room_policy(swapped, MAA)


@pytest.mark.parametrize("endpoint", ["sharedeus.eus.attest.azure.net", "https://sharedeus.eus.attest.azure.net/"])
def test_maa_endpoint_is_normalised(endpoint: str) -> None:
    assert maa_authority(endpoint) == MAA


@pytest.mark.parametrize("endpoint", ["http://maa.example", "https://maa.example/path", "https://"])
def test_bad_maa_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(InvalidInputError, match="MAA endpoint .* is not an https host"):
        maa_authority(endpoint)


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "0" * 63])
def test_bad_policy_hash_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="not 64 lowercase hex"):
        release_policy(bad, MAA)


def test_policy_without_hostdata_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no x-ms-sevsnpvm-hostdata"):
        required_host_data({"version": "1.0.0", "anyOf": [{"allOf": []}]})


def test_deks_wrapped_to_a_vault_jwk_unwrap_with_the_kek() -> None:
    """The SDK's RSA-OAEP-256 wrap is the same format our KEK unwraps (and Key Vault releases)."""
    kek = Kek.generate()
    numbers = kek.public_key.public_numbers()
    jwk = JsonWebKey(
        kid=f"https://v.vault.azure.net/keys/kek/{uuid.uuid4().hex}",
        kty="RSA-HSM",
        key_ops=["wrapKey"],
        n=numbers.n.to_bytes(384, "big"),
        e=numbers.e.to_bytes(3, "big"),
    )
    deks = {"model": os.urandom(32), "training-data": os.urandom(32)}
    wrapped = wrap_deks(jwk, deks)
    assert {name: kek.unwrap(blob) for name, blob in wrapped.items()} == deks


def test_wrong_size_dek_is_refused() -> None:
    numbers = Kek.generate().public_key.public_numbers()
    jwk = JsonWebKey(kty="RSA", n=numbers.n.to_bytes(384, "big"), e=numbers.e.to_bytes(3, "big"))
    with pytest.raises(InvalidInputError, match="DEK of 'x' is 16 bytes"):
        wrap_deks(jwk, {"x": b"0" * 16})


def test_kek_vault_must_be_a_key_vault_url() -> None:
    with pytest.raises(InvalidInputError, match="not a Key Vault or managed HSM URL"):
        create_release_kek("https://example.com", "kek", release_policy("0" * 64, MAA))


def test_vault_kek_names_are_valid_key_vault_names() -> None:
    assert vault_kek_name("inference-1") == "cleanroom-inference-1-kek"
    assert vault_kek_name("fine_tune.v2") == "cleanroom-fine-tune-v2-kek"
    assert len(vault_kek_name("x" * 300)) == 127


def test_wrap_with_vault_checks_inputs_before_calling_azure() -> None:
    with pytest.raises(InvalidInputError, match="not 64 lowercase hex"):
        wrap_deks_with_vault_kek("https://v.vault.azure.net", "c1", "nothex", MAA, {})
    with pytest.raises(InvalidInputError, match="not a Key Vault"):
        wrap_deks_with_vault_kek("https://v.example.com", "c1", "0" * 64, MAA, {})


LIVE_VAULT = os.environ.get("CLEANROOM_TEST_KEK_VAULT")


@pytest.mark.azure_live
@pytest.mark.skipif(
    not LIVE_VAULT,
    reason="live Key Vault test: set CLEANROOM_TEST_KEK_VAULT to a "
    "premium vault URL and sign in (az login or AZURE_CLIENT_ID/SECRET/TENANT_ID)",
)
def test_live_create_release_kek_carries_the_policy() -> None:
    document = release_policy_for_clean_room_policy(_voted(), MAA)
    key = create_release_kek(str(LIVE_VAULT), f"cleanroom-test-{uuid.uuid4().hex[:8]}", document)
    assert key.properties.exportable is True
    host_data = hashlib.sha256(REGO).hexdigest()
    assert host_data.encode() in key.properties.release_policy.encoded_policy
    kid, wrapped = wrap_deks_with_vault_kek(
        str(LIVE_VAULT), f"test-{uuid.uuid4().hex[:8]}", host_data, MAA, {"model": os.urandom(32)}
    )
    assert kid.startswith(str(LIVE_VAULT).rstrip("/")) and len(wrapped["model"]) == 384
