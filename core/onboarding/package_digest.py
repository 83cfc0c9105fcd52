"""The digest that names a model package's exact bytes in the model registry (``packageHash``).

Why not the scan's file list: the scan leaves a refused file (a pickle, a link) out of its
accepted files, so a digest over those would let a refused file change without changing the
digest. This one covers every entry of the folder: a regular file by its content, anything else
(a link, a FIFO, a device) by its kind, so the provider's onboarding and the clean room's
"downloaded" check agree on the bytes whatever the scan later says about them. Links are never
followed and only regular files are opened (non-blocking, so a FIFO cannot hang the reader).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from core.errors import NotFoundError

_CHUNK = 1 << 20


def package_sha256(folder: Path) -> str:
    """SHA-256 over ``kind path digest`` lines of every entry below ``folder``, in sorted order."""
    root = Path(folder)
    if not root.is_dir() or root.is_symlink():
        raise NotFoundError(f"model package folder '{root}' does not exist", hint="pass the package's folder")
    digest = hashlib.sha256()
    for line in _entries(root, ""):
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def _entries(folder: Path, prefix: str) -> list[str]:
    lines: list[str] = []
    for name in sorted(os.listdir(folder)):
        path, rel = folder / name, f"{prefix}{name}"
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            lines.append(f"dir\0{rel}")
            lines.extend(_entries(path, f"{rel}/"))
        elif stat.S_ISREG(mode):
            lines.append(f"file\0{rel}\0{_file_sha256(path)}")
        else:
            kind = "link" if stat.S_ISLNK(mode) else "special"
            lines.append(f"{kind}\0{rel}")
    return lines


def _file_sha256(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
