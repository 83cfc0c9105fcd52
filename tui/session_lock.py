"""One front end drives a scenario root at a time: the console and `cleanroom demo` take this lock.

Two consoles on one scenario would both offer the same next step, race to record it, and the
first to quit would stop the services (and the clean rooms) the other is still using. The lock
is an ``flock`` on ``<root>/session.lock`` held for the whole session: the kernel drops it when
the holder dies, however it dies, so a lock file a killed console left behind is stale by
construction and simply taken over. The file names the holder (pid and verb) so the refusal
can say who has the scenario open.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Self

from core.errors import ConflictError

LOCK_NAME = "session.lock"


class SessionLock:
    """An exclusive, non-blocking ``flock`` on a scenario root, held until ``release``."""

    def __init__(self, root: Path, holder: str) -> None:
        self.root = root
        self.path = root / LOCK_NAME
        self.holder = holder  # "console" or "demo": what the refusal tells the second one
        self._fd: int | None = None

    def acquire(self) -> Self:
        """Take the lock or raise a one-line ConflictError naming the pid that holds it.

        O_NOFOLLOW: a link planted at the lock's path is not followed; O_CLOEXEC: the services
        and clean rooms this session starts must not inherit (and so keep) the lock."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            pid, verb = [*owner, "?", "session"][:2] if owner else ("?", "session")
            raise ConflictError(
                f"another cleanroom {verb} (pid {pid}) has the scenario in {self.root} open",
                hint="close that one first (one console or demo per scenario at a time)",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.holder}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock; the file stays (unlinking it would let a waiter lock a dead inode)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
