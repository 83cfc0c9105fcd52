"""Canonical JSON: the byte form every hash and signature in the product is computed over.

Sorted keys, no insignificant whitespace, UTF-8, no NaN. Two parties that hold the same
document always compute the same hash, whatever their dict ordering or JSON library.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(document: Any) -> bytes:
    """Serialise ``document`` canonically (sorted keys, compact separators, UTF-8)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def document_hash(document: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``document``: the identity of a contract or policy."""
    return sha256_hex(canonical_json(document))
