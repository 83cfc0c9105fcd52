"""Member identities: a P-384 signing key and a self-signed certificate, as CCF members have.

The member id is the SHA-256 of the DER certificate, so anyone holding the certificate can
compute it and no registry is needed to name a member.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.crypto.secret_file import write_public_file, write_secret_file
from core.errors import InvalidInputError, NotFoundError

KEY_FILE = "member_privk.pem"
CERT_FILE = "member_cert.pem"


def member_id_of(cert: x509.Certificate) -> str:
    """The member id: hex SHA-256 of the certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_certificate(pem: bytes | str) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InvalidInputError(
            "member certificate is not a PEM X.509 certificate",
            hint="pass the member_cert.pem file from the member's workspace",
        ) from exc


@dataclass(frozen=True)
class MemberIdentity:
    """A member's signing key and certificate. ``private_key`` is never logged or serialised."""

    name: str
    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def member_id(self) -> str:
        return member_id_of(self.certificate)

    @property
    def cert_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def __repr__(self) -> str:  # keep the key out of reprs, logs and tracebacks
        return f"MemberIdentity(name={self.name!r}, member_id={self.member_id[:12]}…)"

    @classmethod
    def generate(cls, name: str, *, valid_days: int = 365) -> MemberIdentity:
        key = ec.generate_private_key(ec.SECP384R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA384())
        )
        return cls(name=name, private_key=key, certificate=cert)

    def save(self, directory: Path) -> None:
        key_pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_secret_file(directory / KEY_FILE, key_pem)
        write_public_file(directory / CERT_FILE, self.cert_pem.encode())

    @classmethod
    def load(cls, directory: Path) -> MemberIdentity:
        key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
        if not key_path.is_file() or not cert_path.is_file():
            raise NotFoundError(
                f"no member identity in {directory}",
                hint="run `cleanroom config init --persona NAME` to create the workspace",
            )
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
            raise InvalidInputError(f"{key_path} is not a P-384 private key", hint="recreate the workspace")
        cert = load_certificate(cert_path.read_bytes())
        name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return cls(name=str(name), private_key=key, certificate=cert)
