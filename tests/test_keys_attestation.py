"""Virtual attestation: the measurement follows what runs, and tokens verify only untampered."""

from __future__ import annotations

import copy
import time

import jwt
import pytest

from core.errors import AccessDeniedError, IntegrityError, InvalidInputError
from core.keys.attestation import (
    AttestationKey,
    AttestationVerifier,
    VirtualAttester,
    report_data_of,
    verify_report_data,
)
from core.keys.measurement import clean_room_policy, policy_hash
from core.keys.release import WorkloadKey, seal_to_workload

SPEC = {
    "contract_id": "collab1",
    "applications": [
        {
            "name": "inference",
            "image": "containers/inference_server",
            "command": ["python", "-m", "server", "--uds", "/run/app.sock"],
            "env": {"MODEL_DIR": "/mnt/remote/model"},
            "env_names": ["API_SECRET"],
            "mounts": [{"kind": "datasource", "name": "model", "path": "/mnt/remote/model", "owner": "p"}],
        }
    ],
    "network_policy": {"ingress": {"routes": ["/v1/predict"]}},
}


@pytest.mark.parametrize(
    "path, value",
    [
        (("applications", 0, "command", 4), "/run/app.sockX"),
        (("applications", 0, "image"), "containers/inference_serverX"),
        (("applications", 0, "mounts", 0, "path"), "/mnt/remote/modeX"),
        (("network_policy", "ingress", "routes", 0), "/v1/predicT"),
    ],
)
def test_one_character_change_changes_the_policy_hash(path, value) -> None:
    changed = copy.deepcopy(SPEC)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert policy_hash(changed) != policy_hash(SPEC)


def test_voted_env_is_measured_and_deployment_secrets_only_by_name() -> None:
    changed = copy.deepcopy(SPEC)
    changed["applications"][0]["env"]["MODEL_DIR"] = "/elsewhere"
    assert policy_hash(changed) != policy_hash(SPEC)
    changed = copy.deepcopy(SPEC)
    changed["applications"][0]["env_names"].append("EXTRA")
    assert policy_hash(changed) != policy_hash(SPEC)
    changed = copy.deepcopy(SPEC)  # the whole spec is measured: any field, even one nothing reads
    changed["applications"][0]["any_other_field"] = True
    assert policy_hash(changed) != policy_hash(SPEC)


def test_malformed_spec_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidInputError, match="no applications"):
        clean_room_policy({"contract_id": "c", "applications": []})
    with pytest.raises(InvalidInputError, match="no command"):
        clean_room_policy({"contract_id": "c", "applications": [{"name": "a", "command": "ls"}]})


def test_token_round_trip_and_claims(tmp_path) -> None:
    key = AttestationKey.load_or_create(tmp_path)
    assert (tmp_path / "attestation_privk.pem").stat().st_mode & 0o777 == 0o600
    workload = WorkloadKey()
    token = VirtualAttester(key).attest(deployment_spec=SPEC, workload_public_key_der=workload.public_der)
    claims = AttestationVerifier.from_state_dir(tmp_path)(token)
    assert claims["contract_id"] == "collab1"
    assert claims["policy_hash"] == policy_hash(SPEC)
    assert claims["attestation_type"] == "virtual"
    assert claims["report_data"] == report_data_of(workload.public_der)
    verify_report_data(claims, workload.public_der)
    with pytest.raises(AccessDeniedError, match="report_data"):
        verify_report_data(claims, WorkloadKey().public_der)
    assert "PRIVATE" not in repr(key)


def test_token_from_another_key_is_rejected(tmp_path) -> None:
    ours = AttestationVerifier.from_state_dir(tmp_path / "ours")
    other = VirtualAttester(AttestationKey.load_or_create(tmp_path / "other"))
    token = other.attest(deployment_spec=SPEC, workload_public_key_der=WorkloadKey().public_der)
    with pytest.raises(AccessDeniedError, match="rejected"):
        ours(token)


def test_tampered_and_expired_tokens_are_rejected(tmp_path) -> None:
    key = AttestationKey.load_or_create(tmp_path)
    verifier = AttestationVerifier(key.public_pem)
    token = VirtualAttester(key).attest(deployment_spec=SPEC, workload_public_key_der=WorkloadKey().public_der)
    header, _payload, signature = token.split(".")
    forged_claims = jwt.decode(token, options={"verify_signature": False})
    forged_claims["policy_hash"] = "0" * 64
    forged_payload = jwt.encode(forged_claims, "k" * 32, algorithm="HS256").split(".")[1]
    with pytest.raises(AccessDeniedError):
        verifier(".".join([header, forged_payload, signature]))
    now = int(time.time())
    expired = jwt.encode({**forged_claims, "iat": now - 100, "exp": now - 60}, key.private_key, algorithm="ES384")
    with pytest.raises(AccessDeniedError, match="expired"):
        verifier(expired)


def test_sealed_key_opens_only_for_its_workload() -> None:
    workload, stranger = WorkloadKey(), WorkloadKey()
    sealed = seal_to_workload(workload.public_der, b"secret kek", aad=b"m/c")
    assert workload.open(sealed, aad=b"m/c") == b"secret kek"
    with pytest.raises(IntegrityError):
        stranger.open(sealed, aad=b"m/c")
    with pytest.raises(IntegrityError):
        workload.open(sealed, aad=b"m/other")


def test_key_service_token_appends_events_only(tmp_path) -> None:
    """Governance with the embedded verifier: the key service's own token records events, but only a
    workload attestation gets secrets or an endorsed ingress certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from core.keys.attestation import KeyServiceAttester
    from core.runtime.deployment import policy_document
    from tests.governance_support import start_consortium

    runtime_dir, key_dir = tmp_path / "runtime", tmp_path / "keys"
    runtime_dir.mkdir()
    key_dir.mkdir()
    runtime_key, key_service_key = AttestationKey.load_or_create(runtime_dir), AttestationKey.load_or_create(key_dir)
    gov = start_consortium(
        tmp_path / "governance",
        names=("solo",),
        attestation={
            "factory": "core.keys.attestation:GovernanceAttestationVerifier",
            "args": [str(runtime_dir), str(key_dir)],
        },
    )
    try:
        gov.accepted_contract("collab1")
        gov.pass_proposal(gov.clients[0].propose_clean_room_policy("collab1", policy_document(SPEC)))
        gov.pass_proposal(gov.clients[0].propose_enable_ca("collab1"))
        gov.clients[0].generate_ca_key("collab1")
        gov.clients[0].put_secret("collab1", "model-secret", b"wrapped")
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ingress")]))
            .sign(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
        service_token = KeyServiceAttester(key_service_key).token("collab1", policy_hash(SPEC))
        workload_token = VirtualAttester(runtime_key).attest(
            deployment_spec=SPEC, workload_public_key_der=WorkloadKey().public_der
        )
        with gov.client() as caller:
            with pytest.raises(AccessDeniedError, match="key-service token may only append events"):
                caller.get_secret("collab1", "model-secret", service_token)
            with pytest.raises(AccessDeniedError, match="key-service token may only append events"):
                caller.endorse_csr("collab1", service_token, csr)
            caller.append_event("collab1", service_token, "key_released", {"owner": "p"})
            assert caller.get_secret("collab1", "model-secret", workload_token) == b"wrapped"
            assert "BEGIN CERTIFICATE" in caller.endorse_csr("collab1", workload_token, csr)["certificate"]
        assert [e["type"] for e in gov.clients[0].events("collab1")["events"]] == ["key_released"]
    finally:
        gov.close()
