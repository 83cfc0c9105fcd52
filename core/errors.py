"""Errors every front end can show as one line: what went wrong, and how to fix it.

The CLI prints ``error: <message>`` and exits with ``exit_code``; the console shows a toast.
Keeping the fix in the message (rather than in a front end) means every caller says the same.
"""

from __future__ import annotations


class CleanroomError(Exception):
    """Base class: a user-facing failure with a one-line message that names the thing and the fix."""

    exit_code = 1
    # the row of docs/cli.md's exit-code table (scripts/cli_reference.py renders it from these)
    meaning = "any other failure (a deployment that failed, ...)"

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
    meaning = "not found: workspace, datasource, contract, blob, or a `--query` that matches nothing"


class InvalidInputError(CleanroomError):
    """A file, flag or document the user gave is malformed."""

    exit_code = 2
    meaning = "bad input: a flag, file or document (also click's usage errors)"


class IntegrityError(CleanroomError):
    """Ciphertext, a signature or a ledger entry failed verification: tampering or a wrong key."""

    exit_code = 4
    meaning = "integrity: ciphertext, a signature or the ledger failed verification (tampering or a wrong key)"


class ConflictError(CleanroomError):
    """The request is valid but the current state forbids it (stale version, closed proposal)."""

    exit_code = 5
    meaning = "conflict: valid, but the current state forbids it (stale version, closed proposal)"


class AccessDeniedError(CleanroomError):
    """The caller is not allowed: not a member, not attested, not approved by the contract."""

    exit_code = 6
    meaning = "access denied: not a member, not attested, not named by the contract"


class ServiceUnavailableError(CleanroomError):
    """A required local service is not running or not reachable."""

    exit_code = 7
    meaning = "a required service is not running or not reachable"
