"""Attacks on governance semantics (issue #12), each performed against the real service on loopback.

The attacker is a loopback client without a member identity (it can read the public ledger
export), or a member abusing what the service lets it sign. Every test performs the attack and
asserts the refusal; on the code before issue #12 each one succeeded (a re-encoded request was
a new request, secret values were in the export, events were readable by anyone).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest

from core.config.canonical import document_hash
from core.crypto.identity import MemberIdentity
from core.errors import AccessDeniedError, CleanroomError, InvalidInputError
from core.governance.client import GovernanceClient
from core.governance.ledger import verify_export_file
from core.governance.signing import SECRET_NONCE, SECRET_VALUE, sign_read, sign_request, sign_secret_put
from tests.governance_support import Attester, Consortium, start_consortium

P384_ORDER = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16)


@pytest.fixture(scope="module")
def attester(tmp_path_factory: pytest.TempPathFactory) -> Attester:
    return Attester(tmp_path_factory.mktemp("attestation"))


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory, attester: Attester):
    consortium = start_consortium(
        tmp_path_factory.mktemp("gov") / "service", window_seconds=60, attestation=attester.spec
    )
    yield consortium
    consortium.close()


@pytest.fixture(scope="module")
def outsider(gov: Consortium):
    """A loopback client with no member identity: it can read what is public, and send bytes."""
    client = gov.client(None)
    yield client
    client.close()


def _refused(call: Callable[[], Any], status: int, words: str) -> None:
    with pytest.raises(CleanroomError) as info:
        call()
    assert f"({status})" in str(info.value) and words in str(info.value), str(info.value)


def _ledger(client: GovernanceClient, tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / f"export-{time.monotonic_ns()}.jsonl"
    client.export_ledger(path)
    return [json.loads(line)["entry"] for line in path.read_text().splitlines()[1:] if '"entry"' in line]


def _last_request(client: GovernanceClient, tmp_path: Path, kind: str) -> bytes:
    """What the attacker reads from the public ledger export: the last request of ``kind``."""
    entries = [e for e in _ledger(client, tmp_path) if e["kind"] == kind]
    return base64.b64decode(entries[-1]["request"])


# -- re-encodings of a captured request -------------------------------------------------------------
def _bstr_long(data: bytes) -> bytes:
    """A byte string with a 2-byte length even when a shorter one fits (valid, not canonical)."""
    return b"\x59" + len(data).to_bytes(2, "big") + data


def _variants(raw: bytes) -> dict[str, bytes]:
    """Re-encodings of one signed request that carry the same signature (or a malleated one)."""
    protected, _unprotected, payload, signature = cbor2.loads(raw).value
    r, s = signature[:48], int.from_bytes(signature[48:], "big")
    high_s = r + (P384_ORDER - s).to_bytes(48, "big")
    items = [protected, {}, payload, signature]
    return {
        "exact bytes": raw,
        "extra unprotected header": cbor2.dumps(
            cbor2.CBORTag(18, [protected, {"note": "hi"}, payload, signature]), canonical=True
        ),
        "long length encoding": b"\xd2\x84"
        + _bstr_long(protected)
        + b"\xa0"
        + _bstr_long(payload)
        + _bstr_long(signature),
        "indefinite-length array": b"\xd2\x9f" + b"".join(cbor2.dumps(i) for i in items) + b"\xff",
        "self-describe tag around it": b"\xd9\xd9\xf7" + raw,
        "untagged": cbor2.dumps(items),
        "trailing bytes": raw + b"\x00",
        "malleated signature (n - s)": cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, high_s])),
    }


def _assert_every_variant_refused(client: GovernanceClient, method: str, path: str, raw: bytes) -> None:
    for name, variant in _variants(raw).items():
        with pytest.raises(CleanroomError) as info:
            client.send_raw(method, path, variant)
        message = str(info.value)
        assert "(400)" in message or ("(401)" in message and "replayed" in message), f"{name}: {message}"


def test_token_request_from_the_public_ledger_cannot_be_replayed(
    gov: Consortium, outsider: GovernanceClient, tmp_path: Path
) -> None:
    """An outsider reads the provider's token request from the ledger export and re-sends it,
    re-encoded, within the freshness window: it gets no token for the provider."""
    gov.accepted_contract("tokens")
    gov.clients[1].issue_token("tokens")
    captured = _last_request(outsider, tmp_path, "token.issue")
    _assert_every_variant_refused(outsider, "POST", "/contracts/tokens/tokens", captured)
    assert sum(e["kind"] == "token.issue" for e in _ledger(outsider, tmp_path)) == 1


def test_re_encoded_enable_does_not_undo_a_later_kill_switch(
    gov: Consortium, outsider: GovernanceClient, tmp_path: Path
) -> None:
    gov.accepted_contract("kill")
    consumer = gov.clients[2]
    consumer.set_runtime_option("kill", "execution", enable=False)
    consumer.set_runtime_option("kill", "execution", enable=True)
    enable = _last_request(outsider, tmp_path, "runtime_option.enable")
    consumer.set_runtime_option("kill", "execution", enable=False)  # the kill switch, pulled again
    _assert_every_variant_refused(outsider, "POST", "/contracts/kill/runtime-options/execution", enable)
    option = outsider.runtime_option("kill", "execution")
    assert option["status"] == "disabled" and option["disabledBy"] == [gov.members[2].member_id]


def test_re_encoded_ballot_is_the_same_ballot(gov: Consortium) -> None:
    """The ballot route (its own fast path) dedupes on what is signed too."""
    hoster = gov.clients[0]
    created = hoster.create_contract("ballot-replay", {"purpose": "replay"})
    proposal = hoster.propose_contract("ballot-replay", created["version"])
    path = f"/proposals/{proposal['proposalId']}/ballots"
    raw = sign_request(gov.members[1], path, {"ballot": "accept"})
    gov.clients[1].send_raw("POST", path, raw)
    _assert_every_variant_refused(gov.clients[0], "POST", path, raw)


# -- secret values stay out of the public ledger -------------------------------------------------------
@pytest.fixture(scope="module")
def attested_contract(gov: Consortium) -> tuple[str, str]:
    contract_id = "secrets"
    gov.accepted_contract(contract_id)
    inner = {"version": 2, "contract_id": contract_id, "applications": [{"name": "server"}]}
    gov.pass_proposal(
        gov.clients[0].propose_clean_room_policy(contract_id, {"policy": inner, "policy_hash": document_hash(inner)})
    )
    return contract_id, document_hash(inner)


def test_secret_values_are_not_in_the_ledger_export(
    gov: Consortium, outsider: GovernanceClient, attester: Attester, attested_contract: tuple[str, str], tmp_path: Path
) -> None:
    contract_id, policy_hash = attested_contract
    value = b"hunter2-the-api-key"
    gov.clients[0].put_secret(contract_id, "env-API_KEY", value)
    export = tmp_path / "ledger.jsonl"
    outsider.export_ledger(export)
    text = export.read_text()
    assert value.decode() not in text and base64.b64encode(value).decode() not in text
    requests = [base64.b64decode(e["request"]) for e in _ledger(outsider, tmp_path)]
    assert not any(value in request for request in requests)
    [entry] = [cbor2.loads(r).value for r in requests if b"env-API_KEY" in r]
    assert dict(entry[1]) == {} and set(json.loads(entry[2])) == {"value_commitment"}
    report = verify_export_file(export, expected_service_cert_pem=gov.info.service_cert_pem, full=True)
    assert report.entries == len(requests)
    # the attested clean room still gets the value, and learns who wrote it
    assert outsider.get_secret_with_writer(contract_id, "env-API_KEY", attester.token(contract_id, policy_hash)) == (
        value,
        gov.members[0].member_id,
    )


def test_secret_put_with_the_value_in_the_signed_payload_is_refused(
    gov: Consortium, attested_contract: tuple[str, str]
) -> None:
    contract_id, _ = attested_contract
    client, identity = gov.clients[0], gov.members[0]
    path = f"/contracts/{contract_id}/secrets/env-OLD"
    old_style = sign_request(identity, path, {"value": base64.b64encode(b"plaintext").decode()})
    _refused(lambda: client.send_raw("PUT", path, old_style), 400, "signed payload, which the public ledger keeps")
    # a value swapped under a captured commitment does not match it
    signed = cbor2.loads(sign_secret_put(identity, path, b"the real value")).value
    swapped = cbor2.dumps(
        cbor2.CBORTag(18, [signed[0], {**signed[1], SECRET_VALUE: b"another value"}, signed[2], signed[3]]),
        canonical=True,
    )
    _refused(lambda: client.send_raw("PUT", path, swapped), 400, "does not match the signed value_commitment")
    # the unprotected header is for secret PUTs only
    other = cbor2.loads(sign_request(identity, "/contracts/x", {"data": {}})).value
    with_value = cbor2.dumps(
        cbor2.CBORTag(18, [other[0], {SECRET_VALUE: b"v", SECRET_NONCE: b"n" * 32}, other[2], other[3]]), canonical=True
    )
    _refused(lambda: client.send_raw("PUT", "/contracts/x", with_value), 400, "unexpected label")
    assert all(s["name"] != "env-OLD" for s in client.secrets(contract_id))


# -- members-only reads ---------------------------------------------------------------------------------
def _get(gov: Consortium, path: str, headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    import ssl

    with (
        httpx.Client(
            base_url=gov.info.endpoint, verify=ssl.create_default_context(cadata=gov.info.service_cert_pem), timeout=10
        ) as http,
        http.stream("GET", path, headers=headers or {}, params=params) as response,
    ):
        if response.status_code >= 400:
            response.read()
        return response


@pytest.mark.parametrize(
    "path", ["/contracts/secrets/events", "/contracts/secrets/events/stream", "/contracts/secrets/secrets"]
)
def test_events_and_secret_names_are_for_members_only(
    gov: Consortium, attested_contract: tuple[str, str], path: str
) -> None:
    member = gov.members[1]
    refusals = {
        "no header": None,
        "other scheme": "Bearer abc",
        "stranger": sign_read(MemberIdentity.generate("stranger"), path),
        "signed for another path": sign_read(member, "/contracts/other/events"),
        "stale": sign_read(member, path, created_at=int(time.time()) - 3600),
    }
    for name, header in refusals.items():
        response = _get(gov, path, {"Authorization": header} if header else None)
        assert response.status_code == 401, (name, response.status_code)
        message = response.json()["error"]["message"]
        assert "\n" not in message and message, name
    assert _get(gov, path, {"Authorization": sign_read(member, path)}).status_code == 200


def test_member_client_reads_events_and_an_identity_less_client_is_told_why(
    gov: Consortium, outsider: GovernanceClient, attested_contract: tuple[str, str]
) -> None:
    contract_id, _ = attested_contract
    assert gov.clients[2].events(contract_id)["contractId"] == contract_id
    with pytest.raises(AccessDeniedError, match="needs a member identity"):
        outsider.events(contract_id)
    with pytest.raises(AccessDeniedError, match="needs a member identity"):
        next(outsider.stream_events(contract_id))


def test_a_read_header_is_no_write(gov: Consortium) -> None:
    """A captured read header, sent as a write body to the path it was signed for, is refused."""
    path = "/contracts/secrets/secrets/env-X"
    header = sign_read(gov.members[0], path)
    raw = base64.b64decode(header.split(" ", 1)[1])
    with pytest.raises(InvalidInputError, match=r"\(400\).*secret PUT needs"):
        gov.clients[0].send_raw("PUT", path, raw)
