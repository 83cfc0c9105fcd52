"""Ingress usage in the console: a ``usage`` event becomes one readable line in the Deployments
view's runtime events (busiest caller first, refusals by status)."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from core.engine import CleanroomEvent
from core.runtime.usage import describe_usage
from tui.widgets.deployments import DeploymentsView
from tui.widgets.log_tail import LogTail

pytestmark = pytest.mark.anyio

MINUTE = {
    "minute": 1_700_000_000,
    "seconds": 60.0,
    "callers": {
        "f" * 64: {"requests": 4, "rows": 4, "refusals": {}},
        "app:scorer": {"requests": 120, "rows": 360, "refusals": {"429": 3, "403": 1}},
        "(unauthenticated)": {"requests": 0, "rows": 0, "refusals": {"401": 2}},
    },
}


def test_a_usage_minute_reads_as_one_line() -> None:
    assert describe_usage(MINUTE) == (
        "usage 60 s: app:scorer 120 req 360 rows (403×1, 429×3); ffffffffffff… 4 req 4 rows; "
        "(unauthenticated) 0 req 0 rows (401×2)"
    )
    assert describe_usage({"callers": "junk"}) == "usage: (unreadable record)"


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield DeploymentsView(engine=None, read_only=True)  # type: ignore[arg-type]  # add_event needs no engine


async def test_the_deployments_view_shows_usage_events() -> None:
    app = _Host()
    async with app.run_test() as pilot:
        view = app.query_one(DeploymentsView)
        view.add_event(CleanroomEvent("scoring1", 42, 0.0, "usage", MINUTE))
        await pilot.pause()
        assert view.query_one(LogTail).lines[-1] == f"[scoring1 #42] {describe_usage(MINUTE)}"
