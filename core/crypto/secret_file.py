"""Writing key material and documents to disk: atomically, never half-written.

Secrets are created 0600 from the first byte (not chmod-ed afterwards, which would leave a
window); every file is written under a temporary name in the same directory, fsynced, then
renamed into place, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _write_atomically(path: Path, data: bytes, *, secret: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_secret_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only (private keys, DEKs, tokens)."""
    _write_atomically(path, data, secret=True)


def write_public_file(path: Path, data: bytes) -> None:
    """Write a non-secret file (certificates, public keys, documents), world-readable."""
    _write_atomically(path, data, secret=False)
