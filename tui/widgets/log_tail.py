"""A log tail that follows new lines until the operator scrolls up, then holds still.

While held it counts what arrived ("+N lines") instead of yanking the view away from what
the operator is reading; End (or scrolling back to the bottom) resumes following.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Log, Static


class FollowingLog(Log):
    """A Log that tells its parent when the operator returns to the bottom."""

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        parent = self.parent
        if isinstance(parent, LogTail) and self.is_vertical_scroll_end:
            parent.resume()


class LogTail(Vertical):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="log-tail")
        self.pending = 0
        self.lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield FollowingLog(auto_scroll=False, max_lines=5000)
        yield Static("", classes="log-tail-status hidden")

    @property
    def paused(self) -> bool:
        log = self.query_one(FollowingLog)
        return not log.is_vertical_scroll_end

    def append(self, line: str) -> None:
        log = self.query_one(FollowingLog)
        following = not self.paused
        self.lines.append(line)
        log.write_line(line, scroll_end=following)
        if not following:
            self.pending += 1
            self._show_status()

    def resume(self) -> None:
        if self.pending:
            self.pending = 0
            self._show_status()

    def follow(self) -> None:
        self.query_one(FollowingLog).scroll_end(animate=False, immediate=True)
        self.pending = 0
        self._show_status()

    def _show_status(self) -> None:
        status = self.query_one(".log-tail-status", Static)
        status.set_class(self.pending == 0, "hidden")
        status.update(Content.styled(f"⏸ paused · +{self.pending} lines · End to follow", "bold $warning"))
