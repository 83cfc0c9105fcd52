"""docs/formats/encrypted-blob.md: its test vector, recomputed by the code and from the spec alone."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.crypto.envelope import decrypt_bytes, encrypt_bytes

DOC = Path(__file__).resolve().parent.parent / "docs" / "formats" / "encrypted-blob.md"


def _vector() -> dict[str, list[str]]:
    """Every ``name  hex`` line of the doc's test-vector section, in order."""
    section = DOC.read_text().split("## Test vector", 1)[1]
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r"^(\w+)\s+([0-9a-f]+)$", section, flags=re.MULTILINE):
        fields.setdefault(name, []).append(value)
    return fields


def test_documented_vector_matches_the_implementation() -> None:
    vector = _vector()
    key, prefix = bytes.fromhex(vector["key"][0]), bytes.fromhex(vector["nonce_prefix"][0])
    plaintext = b"The quick brown fox jumps over the lazy dog"
    blob, empty = (bytes.fromhex(value) for value in vector["blob"])
    assert encrypt_bytes(key, plaintext, chunk_size=16, nonce_prefix=prefix) == blob
    assert encrypt_bytes(key, b"", chunk_size=16, nonce_prefix=prefix) == empty
    assert decrypt_bytes(key, blob) == plaintext and decrypt_bytes(key, empty) == b""


def test_documented_vector_follows_from_the_spec_alone() -> None:
    """Rebuild the blob with bare AES-GCM and the doc's rules: the doc is enough to interoperate."""
    vector = _vector()
    key, prefix = bytes.fromhex(vector["key"][0]), bytes.fromhex(vector["nonce_prefix"][0])
    plaintext = b"The quick brown fox jumps over the lazy dog"
    header = b"CRSE" + bytes([1]) + (16).to_bytes(4, "big") + prefix
    assert header.hex() == vector["header"][0]
    pieces = [plaintext[i : i + 16] for i in range(0, len(plaintext), 16)]
    aead = AESGCM(key)
    chunks = [
        aead.encrypt(prefix + i.to_bytes(4, "big") + bytes([i == len(pieces) - 1]), piece, header)
        for i, piece in enumerate(pieces)
    ]
    assert [chunk.hex() for chunk in chunks] == [vector[f"chunk_{i}"][0] for i in range(3)]
    assert (header + b"".join(chunks)).hex() == vector["blob"][0]
