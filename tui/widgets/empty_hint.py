"""What would fill an empty table, shown under it while it has no rows.

An empty table with only its headers leaves a new operator guessing whether the console is
broken, still loading or waiting for someone; the hint names the step (and the command) that
fills it. It appears only after a load found nothing, never before the first answer.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


class EmptyHint(Static):
    def __init__(self, text: str, *, id: str) -> None:
        super().__init__(Content.styled(text, "$text-muted italic"), id=id, classes="empty-hint")
        self.display = False

    def follow(self, rows: int) -> None:
        """Show the hint exactly while the table it stands for has no rows."""
        self.display = rows == 0
