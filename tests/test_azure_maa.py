"""Governance accepts the Azure sidecar's MAA token: RS256 signed by a key an MAA-shaped JWKS
(x5c) publishes over real loopback TLS, SEV-SNP claims, host data of the accepted ccePolicy.

The tokens are built following Microsoft's documented MAA claims; no live MAA is involved."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from core.errors import AccessDeniedError, InvalidInputError, ServiceUnavailableError
from core.governance import launcher
from core.keys.loopback_tls import loopback_tls
from core.keys.maa import CompositeAttestationVerifier, MaaAttestationVerifier, maa_issuer
from core.keys.measurement import policy_hash_of
from core.runtime.deployment import policy_document

SPEC = {
    "contract_id": "collab-az",
    "applications": [
        {
            "name": "trainer",
            "image": "cleanroom/trainer:1",
            "command": ["python", "-m", "train"],
            "mounts": [{"kind": "datasource", "name": "model", "path": "/mnt/model", "owner": "p"}],
            "env": {},
            "ports": [],
        }
    ],
    "network_policy": {"allow_egress": False},
}
REGO = b'package policy\napi_version := "0.10.0"\ncontainers := [{"id": "cleanroom/trainer:1"}]\n'
HOST_DATA = hashlib.sha256(REGO).hexdigest()
ACCEPTED = policy_document(SPEC, cce_policy=base64.b64encode(REGO).decode())


class MaaSigner:
    """An RSA signing key with a self-signed certificate, published as MAA does (x5c)."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test MAA signing")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )

    def jwk(self) -> dict[str, Any]:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        return {"kid": self.kid, "kty": "RSA", "x5c": [base64.b64encode(der).decode()]}

    def token(self, issuer: str, *, contract_id: str = "collab-az", **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": "t",
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "azure-compliant-uvm",
            "x-ms-sevsnpvm-hostdata": HOST_DATA,
            "x-ms-sevsnpvm-reportdata": "ab" * 32 + "00" * 32,
            "x-ms-runtime": {"contract_id": contract_id, "keys": [{"kid": "cleanroom-transfer-key", "kty": "RSA"}]},
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(
            claims, self.key, algorithm="RS256", headers={"kid": self.kid, "jku": f"{issuer}/certs", "typ": "JWT"}
        )


class JwksServer:
    """``GET /certs`` over TLS on loopback, counting the fetches."""

    def __init__(self, directory: Path, keys: list[dict[str, Any]]) -> None:
        self.keys, self.hits = keys, 0
        tls = loopback_tls(directory, "maa")
        self.ca_file = str(tls.cert_path)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"keys": outer.keys}).encode()
                outer.hits += 1
                self.send_response(200 if self.path == "/certs" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_path, tls.key_path)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"
        self.issuer = f"https://{self.endpoint}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def signer() -> MaaSigner:
    return MaaSigner("maa-key-1")


@pytest.fixture
def maa(tmp_path: Path, signer: MaaSigner) -> Iterator[JwksServer]:
    server = JwksServer(tmp_path, [signer.jwk()])
    yield server
    server.close()


def _verifier(maa: JwksServer, accepted: dict[str, Any] | None = ACCEPTED) -> MaaAttestationVerifier:
    return MaaAttestationVerifier(
        [maa.endpoint],
        ca_file=maa.ca_file,
        accepted_policy=lambda contract_id: accepted if contract_id == "collab-az" else None,
    )


def test_a_good_token_yields_governance_claims_and_the_jwks_is_cached(maa: JwksServer, signer: MaaSigner) -> None:
    verifier = _verifier(maa)
    claims = verifier(signer.token(maa.issuer))
    assert claims["contract_id"] == "collab-az"
    assert claims["attestation_type"] == "sevsnpvm"
    assert claims["host_data"] == HOST_DATA
    assert claims["policy_hash"] == policy_hash_of(ACCEPTED)
    assert claims["report_data"] == "ab" * 32 + "00" * 32
    verifier(signer.token(maa.issuer))
    assert maa.hits == verifier.fetches == 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"x-ms-sevsnpvm-hostdata": "0" * 64}, "x-ms-sevsnpvm-hostdata 0000000000000000… is not the host data"),
        ({"x-ms-compliance-status": "not-azure-compliant"}, "x-ms-compliance-status is 'not-azure-compliant'"),
        ({"x-ms-attestation-type": "sgx"}, "x-ms-attestation-type is 'sgx', not 'sevsnpvm'"),
        ({"exp": int(time.time()) - 3600, "nbf": int(time.time()) - 7200}, "MAA attestation token has expired"),
        ({"x-ms-runtime": {"keys": []}}, "names no contract_id"),
    ],
)
def test_bad_claims_are_refused_with_a_clear_message(
    maa: JwksServer, signer: MaaSigner, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(AccessDeniedError, match=message):
        _verifier(maa)(signer.token(maa.issuer, **overrides))


def test_wrong_issuer_is_refused_before_any_fetch(maa: JwksServer, signer: MaaSigner) -> None:
    verifier = _verifier(maa)
    with pytest.raises(AccessDeniedError, match="'https://evil.attest.azure.net' is not an allowed MAA endpoint"):
        verifier(signer.token("https://evil.attest.azure.net"))
    assert maa.hits == 0


def test_a_signature_by_another_key_is_refused(maa: JwksServer) -> None:
    impostor = MaaSigner("maa-key-1")  # same kid, different key
    with pytest.raises(AccessDeniedError, match=f"signature does not verify against the signing keys of {maa.issuer}"):
        _verifier(maa)(impostor.token(maa.issuer))
    with pytest.raises(AccessDeniedError, match="signed by key 'unknown', which .* does not publish"):
        _verifier(maa)(MaaSigner("unknown").token(maa.issuer))


def test_a_rotated_key_is_picked_up_by_refetching(
    maa: JwksServer, signer: MaaSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.keys.maa as maa_module

    verifier = _verifier(maa)
    verifier(signer.token(maa.issuer))
    rotated = MaaSigner("maa-key-2")
    maa.keys = [signer.jwk(), rotated.jwk()]
    monkeypatch.setattr(maa_module, "REFETCH_MIN_SECONDS", 0.0)
    assert verifier(rotated.token(maa.issuer))["contract_id"] == "collab-az"
    assert maa.hits == 2


def test_a_policy_without_cce_policy_and_an_unbound_verifier_are_refused(maa: JwksServer, signer: MaaSigner) -> None:
    with pytest.raises(AccessDeniedError, match="carries no ccePolicy"):
        _verifier(maa, policy_document(SPEC))(signer.token(maa.issuer))
    with pytest.raises(AccessDeniedError, match="has no accepted clean-room policy"):
        _verifier(maa, None)(signer.token(maa.issuer))
    unbound = MaaAttestationVerifier([maa.endpoint], ca_file=maa.ca_file)
    with pytest.raises(AccessDeniedError, match="not bound to governance"):
        unbound(signer.token(maa.issuer))


def test_the_jwks_is_fetched_only_over_verified_tls(maa: JwksServer, signer: MaaSigner) -> None:
    untrusting = MaaAttestationVerifier([maa.endpoint], accepted_policy=lambda _: ACCEPTED)  # system CAs only
    with pytest.raises(ServiceUnavailableError, match=f"MAA signing keys at {maa.issuer}/certs could not be fetched"):
        untrusting(signer.token(maa.issuer))


def test_endpoints_are_normalised_and_bad_ones_refused() -> None:
    assert maa_issuer("sharedeus.eus.attest.azure.net") == "https://sharedeus.eus.attest.azure.net"
    assert maa_issuer("https://127.0.0.1:8443/") == "https://127.0.0.1:8443"
    for bad in ("http://sharedeus.eus.attest.azure.net", "https://x.attest.azure.net/certs", "https://h:notaport"):
        with pytest.raises(InvalidInputError, match="is not an https host"):
            maa_issuer(bad)


def test_composite_routes_by_token_type(maa: JwksServer, signer: MaaSigner) -> None:
    virtual_calls: list[str] = []

    def virtual(token: str) -> dict[str, Any]:
        virtual_calls.append(token)
        return {"attestation_type": "virtual"}

    composite = CompositeAttestationVerifier(_verifier(maa), virtual)
    assert composite(signer.token(maa.issuer))["attestation_type"] == "sevsnpvm"
    virtual_token = jwt.encode(
        {"iss": "cleanroom-virtual-attestation"}, ec.generate_private_key(ec.SECP384R1()), algorithm="ES384"
    )
    assert composite(virtual_token)["attestation_type"] == "virtual" and virtual_calls == [virtual_token]
    with pytest.raises(AccessDeniedError, match="accepts MAA tokens of"):
        CompositeAttestationVerifier(_verifier(maa), None)(virtual_token)


def test_governance_service_gives_secrets_ca_and_events_to_the_sidecars_maa_token(
    tmp_path: Path, maa: JwksServer, signer: MaaSigner
) -> None:
    """A real governance process configured with --maa-endpoint (as `governance service start`
    records it) next to the embedded virtual verifier."""
    from core.crypto.identity import MemberIdentity
    from tests.governance_support import Consortium

    runtime_dir, key_dir = tmp_path / "runtime", tmp_path / "keys"
    member = MemberIdentity.generate("solo")
    state_dir = tmp_path / "governance"
    launcher.create(
        state_dir,
        [member.cert_pem],
        attestation={
            "factory": "core.keys.attestation:GovernanceAttestationVerifier",
            "args": [str(runtime_dir), str(key_dir)],
        },
    )
    assert launcher.set_maa_endpoints(state_dir, [maa.endpoint], maa.ca_file)
    assert not launcher.set_maa_endpoints(state_dir, [maa.endpoint], maa.ca_file)
    assert launcher.maa_endpoints(state_dir) == [maa.issuer]
    gov = Consortium(state_dir, [member], launcher.start(state_dir))
    try:
        gov.accepted_contract("collab-az")
        gov.pass_proposal(gov.clients[0].propose_clean_room_policy("collab-az", ACCEPTED))
        gov.pass_proposal(gov.clients[0].propose_enable_ca("collab-az"))
        gov.clients[0].generate_ca_key("collab-az")
        gov.clients[0].put_secret("collab-az", "model-secret", b"wrapped-to-vault-kek")
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ingress")]))
            .sign(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
        token = signer.token(maa.issuer)
        with gov.client() as sidecar:
            assert sidecar.get_secret("collab-az", "model-secret", token) == b"wrapped-to-vault-kek"
            assert "BEGIN CERTIFICATE" in sidecar.endorse_csr("collab-az", token, csr)["certificate"]
            sidecar.append_event("collab-az", token, "attested", {"backend": "aci"})
            with pytest.raises(AccessDeniedError, match="is not the host data"):
                sidecar.get_secret(
                    "collab-az", "model-secret", signer.token(maa.issuer, **{"x-ms-sevsnpvm-hostdata": "1" * 64})
                )
            with pytest.raises(AccessDeniedError, match="is not an allowed MAA endpoint"):
                sidecar.get_secret("collab-az", "model-secret", signer.token("https://other.attest.azure.net"))
            with pytest.raises(AccessDeniedError, match="contract 'collab-other' has no accepted clean-room policy"):
                sidecar.get_secret("collab-az", "model-secret", signer.token(maa.issuer, contract_id="collab-other"))
        events = gov.clients[0].events("collab-az")["events"]
        assert [(e["type"], "unaccepted_policy_hash" in e["data"]) for e in events] == [("attested", False)]
    finally:
        gov.close()


def test_cli_service_start_records_the_maa_endpoints(tmp_path: Path, maa: JwksServer) -> None:
    from core.crypto.identity import MemberIdentity
    from tests.cli_runner import cleanroom

    cert = tmp_path / "member_cert.pem"
    cert.write_text(MemberIdentity.generate("solo").cert_pem)
    state_dir = tmp_path / "governance"
    refused = cleanroom(
        "governance",
        "service",
        "start",
        "--state-dir",
        state_dir,
        "--initial-member-cert",
        cert,
        "--maa-ca-file",
        maa.ca_file,
    )
    assert refused.code != 0 and "--maa-ca-file is only used to reach an MAA endpoint" in refused.stderr
    bad = cleanroom(
        "governance",
        "service",
        "start",
        "--state-dir",
        state_dir,
        "--initial-member-cert",
        cert,
        "--maa-endpoint",
        "http://plain.attest.azure.net",
    )
    assert bad.code != 0 and "is not an https host" in bad.stderr and bad.stderr.count("\n") == 1
    assert not (state_dir / "service.json").exists()  # refused before anything was created
    try:
        started = cleanroom(
            "governance",
            "service",
            "start",
            "--state-dir",
            state_dir,
            "--initial-member-cert",
            cert,
            "--maa-endpoint",
            maa.endpoint,
            "--maa-ca-file",
            maa.ca_file,
            "--output",
            "json",
        )
        assert started.code == 0, started.stderr
        assert json.loads(started.stdout)["maaEndpoints"] == [maa.issuer]
        assert json.loads((state_dir / "service.json").read_text())["maa_ca_file"] == str(Path(maa.ca_file).resolve())
        again = cleanroom(
            "governance",
            "service",
            "start",
            "--state-dir",
            state_dir,
            "--maa-endpoint",
            "sharedeus.eus.attest.azure.net",
        )
        assert again.code != 0 and "apply at its next start" in again.stderr
    finally:
        launcher.stop(state_dir)


def test_the_sidecars_runtime_data_names_its_contract_next_to_the_transfer_key() -> None:
    """What AzureKeyRelease sends MAA to copy into x-ms-runtime: the contract this verifier reads."""
    from core.runtime.key_release import TransferKey

    document = json.loads(TransferKey().runtime_data("collab-az"))
    assert document["contract_id"] == "collab-az"
    assert [key["kid"] for key in document["keys"]] == ["cleanroom-transfer-key"]
