"""A self-signed TLS identity for a service that listens on loopback only.

Clients pin the exact certificate (written next to the key), so no public CA and no
hostname trust is involved; the point is that other local users cannot read or alter
traffic carrying wrapped keys.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.crypto.secret_file import write_public_file, write_secret_file


@dataclass(frozen=True)
class LoopbackTLS:
    cert_path: Path
    key_path: Path


def loopback_tls(directory: Path, name: str, *, valid_days: int = 30) -> LoopbackTLS:
    """Create (once) a key + self-signed certificate for 127.0.0.1/localhost in ``directory``."""
    cert_path, key_path = directory / f"{name}_cert.pem", directory / f"{name}_privk.pem"
    if cert_path.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
            return LoopbackTLS(cert_path, key_path)
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"cleanroom {name}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA384())
    )
    write_secret_file(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    write_public_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return LoopbackTLS(cert_path, key_path)
