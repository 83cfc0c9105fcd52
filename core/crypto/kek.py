"""KEKs and DEKs: every datasource/datasink has its own random DEK, wrapped by the party's KEK.

The DEK is what seals blobs (see ``core.crypto.envelope``). It never sits on disk in the clear:
only its RSA-OAEP-SHA256 wrap under the party's 3072-bit KEK does. Releasing one KEK to an
attested clean room therefore releases exactly the DEKs that party wrapped, and a DEK can be
handed to the key service without the key service ever holding the party's other secrets.

Workspace layout (see ``core.workspace``)::

    keys/kek_privk.pem              PKCS#8 PEM, mode 0600
    keys/kek_pub.pem                SubjectPublicKeyInfo PEM
    keys/deks/<name>.dek.wrapped    raw RSA-OAEP-SHA256 ciphertext of the 32-byte DEK (384 bytes)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from core.crypto.secret_file import write_public_file, write_secret_file
from core.errors import IntegrityError, InvalidInputError, NotFoundError
from core.names import check_name

KEK_BITS = 3072
KEK_PRIVATE_FILE = "kek_privk.pem"
KEK_PUBLIC_FILE = "kek_pub.pem"
DEKS_DIR = "deks"
DEK_SUFFIX = ".dek.wrapped"
DEK_SIZE = 32

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _public_pem(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_kek_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """Parse a KEK public key PEM (as exported by :attr:`Kek.public_key_pem`)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise InvalidInputError(
            "KEK public key is not a PEM public key", hint="pass the kek_pub.pem file of the party's workspace"
        ) from exc
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != KEK_BITS:
        raise InvalidInputError(
            f"KEK public key is not an RSA-{KEK_BITS} key", hint="pass the kek_pub.pem file of the party's workspace"
        )
    return key


def wrap_dek_for(public_key: rsa.RSAPublicKey, dek: bytes) -> bytes:
    """Wrap ``dek`` to a KEK's public key (anyone may; only the KEK holder can unwrap)."""
    if len(dek) != DEK_SIZE:
        raise InvalidInputError(f"DEK is {len(dek)} bytes, not {DEK_SIZE}")
    return public_key.encrypt(dek, _OAEP)


class Kek:
    """A party's key-encryption key (RSA-3072, OAEP-SHA256). The private key is never repr'd."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self._private_key = private_key

    def __repr__(self) -> str:
        return f"Kek(fingerprint={self.fingerprint[:16]}…)"

    @classmethod
    def generate(cls) -> Kek:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=KEK_BITS))

    @classmethod
    def exists(cls, keys_dir: Path) -> bool:
        return (keys_dir / KEK_PRIVATE_FILE).is_file()

    @classmethod
    def load(cls, keys_dir: Path) -> Kek:
        path = keys_dir / KEK_PRIVATE_FILE
        if not path.is_file():
            raise NotFoundError(
                f"no KEK in {keys_dir}", hint="run `cleanroom config init --persona NAME` for this workspace"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise InvalidInputError(
                f"{path} is not a PEM private key", hint="restore the workspace's keys/ folder"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != KEK_BITS:
            raise InvalidInputError(
                f"{path} is not an RSA-{KEK_BITS} private key", hint="restore the workspace's keys/ folder"
            )
        return cls(key)

    @classmethod
    def from_released_pem(cls, pem: bytes, *, owner: str) -> Kek:
        """A KEK the key service released (PEM, already AES-GCM-authenticated in transit).

        The key service validated the RSA key when it made it; re-validating an RSA-3072 key
        costs ~0.3 s per owner at every start, so only its kind and size are checked here.
        """
        try:
            key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
        except ValueError as exc:
            raise IntegrityError(
                f"the KEK released for {owner} is not a PEM private key", hint="check the key service's logs"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != KEK_BITS:
            raise IntegrityError(
                f"the KEK released for {owner} is not an RSA-{KEK_BITS} key", hint="check the key service's logs"
            )
        return cls(key)

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> Kek:
        if cls.exists(keys_dir):
            return cls.load(keys_dir)
        kek = cls.generate()
        kek.save(keys_dir)
        return kek

    def save(self, keys_dir: Path) -> None:
        private_pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_secret_file(keys_dir / KEK_PRIVATE_FILE, private_pem)
        write_public_file(keys_dir / KEK_PUBLIC_FILE, self.public_key_pem)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._private_key.public_key()

    @property
    def public_key_pem(self) -> bytes:
        return _public_pem(self.public_key)

    @property
    def private_key_pem(self) -> bytes:
        """PKCS#8 PEM of the private key, for handing the KEK to the key service under a release policy."""
        return self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of the public key's DER SubjectPublicKeyInfo: names the KEK in errors and policies."""
        der = self.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(der).hexdigest()

    def wrap(self, dek: bytes) -> bytes:
        return wrap_dek_for(self.public_key, dek)

    def unwrap(self, wrapped: bytes, *, label: str = "DEK") -> bytes:
        """Unwrap a DEK; a DEK wrapped by another KEK (or altered) raises a one-line IntegrityError."""
        try:
            dek = self._private_key.decrypt(wrapped, _OAEP)
        except ValueError:
            raise IntegrityError(
                f"{label} cannot be unwrapped with this workspace's KEK {self.fingerprint[:12]}"
                " (wrong key or altered wrapped DEK)",
                hint="use the workspace that owns it",
            ) from None
        if len(dek) != DEK_SIZE:
            raise IntegrityError(
                f"{label} unwrapped to {len(dek)} bytes, not {DEK_SIZE}",
                hint="the wrapped DEK is corrupt; recreate the datasource",
            )
        return dek


def wrapped_dek_path(keys_dir: Path, name: str) -> Path:
    return keys_dir / DEKS_DIR / f"{check_name('datasource', name)}{DEK_SUFFIX}"


def read_wrapped_dek(keys_dir: Path, name: str) -> bytes:
    """The raw wrapped DEK of datasource/datasink ``name`` (what the key service is given)."""
    path = wrapped_dek_path(keys_dir, name)
    if not path.is_file():
        raise NotFoundError(
            f"no DEK for '{name}' in {keys_dir}",
            hint=f"declare it with `cleanroom config add-datasource --name {name}`",
        )
    return path.read_bytes()


def dek_for(keys_dir: Path, name: str, *, create: bool = False) -> bytes:
    """The plaintext DEK of ``name``: unwrapped from ``keys/deks``, or made and wrapped if ``create``.

    Creating never replaces an existing DEK: blobs already sealed with it would become unreadable.
    """
    path = wrapped_dek_path(keys_dir, name)
    if path.is_file():
        return Kek.load(keys_dir).unwrap(path.read_bytes(), label=f"DEK of '{name}'")
    if not create:
        raise NotFoundError(
            f"no DEK for '{name}' in {keys_dir}",
            hint=f"declare it with `cleanroom config add-datasource --name {name}`",
        )
    kek = Kek.load_or_create(keys_dir)
    dek = os.urandom(DEK_SIZE)
    write_secret_file(path, kek.wrap(dek))  # ciphertext, but kept private as defence in depth
    return dek
