"""Keys with nothing to act on say why, instead of doing nothing.

A dimmed key that stays silent when pressed reads as a broken console ("a does nothing"). So a
view keeps such keys enabled for Textual and answers them itself: ``idle_reason`` says what is
missing (no proposal selected, already voted, no deployment), the key bar dims the key while
there is a reason, and pressing it shows that reason as a toast. Keys a persona may never use
(mutating keys in read-only mode) stay hidden through ``check_action`` as before.
"""

from __future__ import annotations

from textual.app import App

IDLE_TITLE = "Nothing to do"


class ExplainsIdleKeys:
    """Mixin for a view: ``idle_reason(action)`` is None when the key has something to act on."""

    def idle_reason(self, action: str) -> str | None:
        return None

    def explain_idle(self, action: str) -> bool:
        """True (after toasting the reason) when ``action`` has nothing to act on."""
        reason = self.idle_reason(action)
        if reason is None:
            return False
        app: App[object] = self.app  # type: ignore[attr-defined]
        app.notify(reason, title=IDLE_TITLE, severity="warning", timeout=5)
        return True
