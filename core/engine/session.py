"""The persona's governance session, shared by every family of engine operations.

Each operations module (core/engine/*.py) is a mixin over `GovernanceSession`, so all of them act
through one pinned-TLS client signed with this workspace's identity and nothing else in the
operator layer opens its own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Self

from core.workspace import Workspace

if TYPE_CHECKING:
    from core.governance.client import GovernanceClient


class GovernanceSession:
    """A workspace and its governance client, created on first use and closed with the engine."""

    def __init__(self, workspace: Workspace, *, services_home: Path | None = None) -> None:
        self.workspace = workspace
        self.services_home = services_home  # the embedded services' home; None: $CLEANROOM_HOME
        self.member_id = workspace.identity.member_id
        self._client: GovernanceClient | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _governance(self) -> GovernanceClient:
        """The workspace's pinned-TLS governance client, created on first use."""
        if self._client is None:
            from core.governance.client import GovernanceClient

            self._client = GovernanceClient.from_workspace(self.workspace)
        return self._client

    def _ledger_lines(self) -> list[str]:
        """A fresh export of the ledger, line by line (the header first), read through a private
        temporary file that is gone when this returns."""
        with tempfile.TemporaryDirectory(prefix="cleanroom-ledger-") as tmp:
            path = Path(tmp) / "ledger.jsonl"
            self._governance().export_ledger(path)
            return path.read_text(encoding="utf-8").splitlines()
