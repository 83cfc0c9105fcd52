"""Errors every front end can show as one line: what went wrong, and how to fix it.

The CLI prints ``error: <message>`` and exits with ``exit_code``; the console shows a toast.
Keeping the fix in the message (rather than in a front end) means every caller says the same.
"""

from __future__ import annotations


class CleanroomError(Exception):
    """Base class: a user-facing failure with a one-line message that names the thing and the fix."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return " ".join(text.split())


class NotFoundError(CleanroomError):
    """A named thing (workspace, datasource, contract, blob) does not exist."""

    exit_code = 3


class InvalidInputError(CleanroomError):
    """A file, flag or document the user gave is malformed."""

    exit_code = 2


class IntegrityError(CleanroomError):
    """Ciphertext, a signature or a ledger entry failed verification: tampering or a wrong key."""

    exit_code = 4


class ConflictError(CleanroomError):
    """The request is valid but the current state forbids it (stale version, closed proposal)."""

    exit_code = 5


class AccessDeniedError(CleanroomError):
    """The caller is not allowed: not a member, not attested, not approved by the contract."""

    exit_code = 6


class ServiceUnavailableError(CleanroomError):
    """A required local service is not running or not reachable."""

    exit_code = 7
