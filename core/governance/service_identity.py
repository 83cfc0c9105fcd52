"""The governance service's own identity: a P-384 key and self-signed certificate made at creation.

One identity serves two purposes, as a CCF node's does: it is the TLS certificate clients pin
(no public CA is involved on loopback) and the key that signs ledger checkpoints, so a member
who pinned the certificate can check receipts and exports offline with nothing else.
Access tokens are signed by a separate key (``token_privk.pem``) so rotating token signing
never changes what the ledger is verified against.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.crypto.identity import member_id_of
from core.crypto.secret_file import write_public_file, write_secret_file
from core.errors import NotFoundError

KEY_FILE = "service_privk.pem"
CERT_FILE = "service_cert.pem"
TOKEN_KEY_FILE = "token_privk.pem"


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class ServiceIdentity:
    """Never repr'd with its keys."""

    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    token_key: ec.EllipticCurvePrivateKey
    directory: Path

    def __repr__(self) -> str:
        return f"ServiceIdentity(service_id={self.service_id[:12]}…)"

    @property
    def service_id(self) -> str:
        return member_id_of(self.certificate)

    @property
    def cert_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @classmethod
    def create(cls, directory: Path, *, valid_days: int = 365) -> ServiceIdentity:
        key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cleanroom governance service")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA384())
        )
        token_key = ec.generate_private_key(ec.SECP384R1())
        write_secret_file(directory / KEY_FILE, _private_pem(key))
        write_secret_file(directory / TOKEN_KEY_FILE, _private_pem(token_key))
        write_public_file(directory / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
        return cls(private_key=key, certificate=cert, token_key=token_key, directory=directory)

    @classmethod
    def load(cls, directory: Path) -> ServiceIdentity:
        paths = [directory / KEY_FILE, directory / CERT_FILE, directory / TOKEN_KEY_FILE]
        if not all(p.is_file() for p in paths):
            raise NotFoundError(
                f"no governance service identity in {directory}",
                hint="create the service with `cleanroom governance service start`",
            )
        key = serialization.load_pem_private_key(paths[0].read_bytes(), password=None)
        token_key = serialization.load_pem_private_key(paths[2].read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(paths[1].read_bytes())
        assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(token_key, ec.EllipticCurvePrivateKey)
        return cls(private_key=key, certificate=cert, token_key=token_key, directory=directory)
