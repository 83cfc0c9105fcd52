"""The ingress's TLS identity: a fresh key per deployment, endorsed by the contract's CA.

The runtime creates the key inside its private state directory, sends only a CSR (with the
attestation) to governance's CA, and writes the returned chain. Clients pin the contract CA
(``cleanroom governance ca show``), so a proxy on the same port without the CA's endorsement
cannot impersonate the clean room.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.crypto.secret_file import write_public_file, write_secret_file
from core.errors import IntegrityError


@dataclass(frozen=True)
class IngressIdentity:
    cert_chain: Path
    key_file: Path


def ingress_csr(key: ec.EllipticCurvePrivateKey, contract_id: str) -> bytes:
    """A CSR for the loopback ingress of ``contract_id`` (SANs: 127.0.0.1, localhost)."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"cleanroom {contract_id}")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def endorsed_ingress_identity(directory: Path, contract_id: str, endorse: Callable[[bytes], bytes]) -> IngressIdentity:
    """Create the ingress key, have ``endorse(csr_pem) -> chain_pem`` sign it, and save both."""
    key = ec.generate_private_key(ec.SECP256R1())
    chain_pem = endorse(ingress_csr(key, contract_id))
    try:
        leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    except (ValueError, IndexError) as exc:
        raise IntegrityError(
            "the contract CA returned no PEM certificate for the ingress",
            hint="check that the CA is enabled for this contract",
        ) from exc
    if leaf.public_key() != key.public_key():
        raise IntegrityError(
            "the contract CA endorsed a different key than the ingress asked for",
            hint="retry the deployment; report it if it persists",
        )
    key_file, cert_chain = directory / "ingress_privk.pem", directory / "ingress_chain.pem"
    write_secret_file(
        key_file,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    write_public_file(cert_chain, chain_pem)
    return IngressIdentity(cert_chain=cert_chain, key_file=key_file)
