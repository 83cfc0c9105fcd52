"""Writing key material to disk: mode 0600 from the first byte, atomically, never half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_secret_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only.

    The file is created 0600 (not chmod-ed afterwards, which would leave a window) under a
    temporary name in the same directory, fsynced, then renamed into place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_public_file(path: Path, data: bytes) -> None:
    """Atomically write a non-secret file (certificates, public keys, documents)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
