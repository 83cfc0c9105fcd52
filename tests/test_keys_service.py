"""The key service over real loopback TLS: KEKs are released only under their policy."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from core.crypto.identity import MemberIdentity
from core.crypto.kek import Kek, load_kek_public_key, wrap_dek_for
from core.errors import AccessDeniedError, CleanroomError, NotFoundError
from core.keys.attestation import AttestationKey, AttestationVerifier, VirtualAttester
from core.keys.client import KeyServiceClient
from core.keys.measurement import policy_hash
from core.keys.release import WorkloadKey
from core.keys.service import KeyServiceServer

SPEC = {
    "contract_id": "collab1",
    "applications": [
        {
            "name": "app",
            "image": "img",
            "command": ["python", "-c", "print(1)"],
            "mounts": [{"kind": "datasource", "name": "data", "path": "/mnt/data"}],
        }
    ],
    "network_policy": {},
}


class RecordingAuthority:
    """Stands in for governance's read side in this unit test; the runtime tests use real governance."""

    def __init__(self) -> None:
        self.accepted: dict[str, str] = {"collab1": policy_hash(SPEC)}
        self.enabled = True
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.recording_works = True

    def accepted_policy_hash(self, contract_id: str) -> str | None:
        return self.accepted.get(contract_id)

    def execution_enabled(self, contract_id: str) -> bool:
        return self.enabled

    def member_active(self, member_id: str) -> bool:
        return True  # tests/test_keys_attacks.py checks membership against the real governance

    def contract_exists(self, contract_id: str) -> bool:
        return contract_id in ("collab1", "collab2")

    def record_event(self, contract_id: str, event: dict[str, Any]) -> None:
        if not self.recording_works:
            raise CleanroomError("governance unreachable")
        self.events.append((contract_id, event))


@pytest.fixture()
def service(tmp_path: Path):
    authority = RecordingAuthority()
    attestation_key = AttestationKey.load_or_create(tmp_path / "runtime")
    server = KeyServiceServer(
        tmp_path / "keys", verifier=AttestationVerifier(attestation_key.public_pem), authority=authority
    ).start()
    client = KeyServiceClient(server.url, server.tls.cert_path)
    yield client, authority, VirtualAttester(attestation_key), tmp_path
    client.close()
    server.stop()


def test_release_to_attested_workload_with_accepted_policy(service) -> None:
    client, authority, attester, _ = service
    member = MemberIdentity.generate("provider")
    description = client.create_kek(member, "collab1")
    assert client.create_kek(member, "collab1")["fingerprint"] == description["fingerprint"]  # creates once
    public = load_kek_public_key(description["public_key_pem"].encode())
    wrapped = wrap_dek_for(public, b"\x07" * 32)

    workload = WorkloadKey()
    token = attester.attest(deployment_spec=SPEC, workload_public_key_der=workload.public_der)
    pem = client.release(member.member_id, "collab1", attestation=token, workload_key=workload)
    kek = Kek(serialization.load_pem_private_key(pem, password=None))
    assert kek.unwrap(wrapped) == b"\x07" * 32
    assert authority.events[-1][1]["type"] == "key_released"


def _refused(client, member, token, workload, match, contract="collab1") -> None:
    with pytest.raises(AccessDeniedError, match=match):
        client.release(member.member_id, contract, attestation=token, workload_key=workload)


def test_changed_command_is_refused_and_recorded(service) -> None:
    client, authority, attester, _ = service
    member = MemberIdentity.generate("provider")
    client.create_kek(member, "collab1")
    changed = copy.deepcopy(SPEC)
    changed["applications"][0]["command"][-1] = "print(2)"
    workload = WorkloadKey()
    token = attester.attest(deployment_spec=changed, workload_public_key_der=workload.public_der)
    _refused(client, member, token, workload, "differs from the accepted")
    assert authority.events[-1][1]["type"] == "key_release_refused"
    assert authority.events[-1][1]["policy_hash"] == policy_hash(changed)


def test_other_refusals(service) -> None:
    client, authority, attester, tmp_path = service
    member = MemberIdentity.generate("provider")
    client.create_kek(member, "collab1")
    workload = WorkloadKey()
    token = attester.attest(deployment_spec=SPEC, workload_public_key_der=workload.public_der)
    # a token replayed with a different workload key
    _refused(client, member, token, WorkloadKey(), "report_data")
    # a token from another attestation key
    rogue = VirtualAttester(AttestationKey.load_or_create(tmp_path / "rogue"))
    _refused(
        client,
        member,
        rogue.attest(deployment_spec=SPEC, workload_public_key_der=workload.public_der),
        workload,
        "rejected",
    )
    # a token for another contract against this contract's KEK
    other = dict(SPEC, contract_id="collab2")
    client.create_kek(member, "collab2")
    authority.accepted["collab2"] = policy_hash(other)
    _refused(
        client,
        member,
        attester.attest(deployment_spec=other, workload_public_key_der=workload.public_der),
        workload,
        "names contract 'collab2'",
    )
    # kill switch
    authority.enabled = False
    _refused(client, member, token, workload, "disabled")
    authority.enabled = True
    # no accepted policy
    del authority.accepted["collab1"]
    _refused(client, member, token, workload, "no accepted clean-room policy")
    assert sum(e["type"] == "key_release_refused" for _, e in authority.events) == 5
    with pytest.raises(NotFoundError, match="wrap-deks"):
        client.release(member.member_id, "nocontract", attestation=token, workload_key=workload)


def test_release_that_cannot_be_recorded_does_not_happen(service) -> None:
    client, authority, attester, _ = service
    member = MemberIdentity.generate("provider")
    client.create_kek(member, "collab1")
    authority.recording_works = False
    workload = WorkloadKey()
    token = attester.attest(deployment_spec=SPEC, workload_public_key_der=workload.public_der)
    with pytest.raises(CleanroomError, match="not recorded"):
        client.release(member.member_id, "collab1", attestation=token, workload_key=workload)


def test_kek_request_must_be_signed_by_the_member(service) -> None:
    client, _, _, _ = service
    member, impostor = MemberIdentity.generate("provider"), MemberIdentity.generate("hoster")
    from core.keys.kek_request import signed_kek_request

    body = signed_kek_request(impostor, "collab1")
    body["member_cert"] = member.cert_pem  # claim to be the provider
    with pytest.raises(AccessDeniedError, match="signature rejected"):
        client._call("POST", "/keks", json=body)
