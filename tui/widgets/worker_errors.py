"""Background failures become toasts: a view whose worker raised says why, and the app lives on.

Textual does not bubble ``Worker.StateChanged``, so each widget that runs workers mixes this in.
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState

from core.errors import CleanroomError


def error_text(error: BaseException | None) -> str:
    if isinstance(error, CleanroomError):
        return error.one_line()
    return f"{type(error).__name__}: {error}"


class ToastsWorkerErrors:
    """Mixin for a DOM node: a failed worker is one error toast (said once while it shows)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        app = self.app  # type: ignore[attr-defined]
        text = error_text(event.worker.error)
        if any(toast.message == text for toast in app._notifications):
            return  # several views failing for one reason (service down) say it once
        app.notify(text, title="error", severity="error", timeout=8)
