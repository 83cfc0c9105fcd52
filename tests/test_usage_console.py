"""The console's Usage view: per contract and caller, requests, rows and refusals per minute.

The fold (``core.engine.usage.UsageLog``) is checked on its own: minutes bucketed by the clock,
an event counted once however it arrives, a sliding window, junk ignored. The view is checked in
the real console against a real governance service holding usage events recorded exactly as the
ingress records them (``UsageMeter`` handing its minute to ``record_event`` with the clean room's
attestation), read through the engine on key 0 and then followed from the live feed; and as a
snapshot on the seeded personas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from core.engine import PersonaEngine
from core.engine.usage import KEEP_MINUTES, MINUTE, UsageLog
from core.keys.attestation import AttestationKey, VirtualAttester
from core.keys.release import WorkloadKey
from core.runtime.usage import UNAUTHENTICATED, USAGE_EVENT, UsageMeter
from tests.runtime_world import World
from tests.tui_seeded import MEMBERS, NOW, USAGE_MINUTES, SeededPersona
from tui.app import CleanroomConsole, EngineEvent
from tui.widgets.empty_hint import EmptyHint
from tui.widgets.line_chart import LineChart
from tui.widgets.usage import UsageView, caller_label

SIZE = (140, 40)
T0 = 1_790_000_040  # 40 s into a clock minute


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _minute(started: float, callers: dict[str, Any]) -> dict[str, Any]:
    return {"minute": int(started), "seconds": 60.0, "callers": callers}


def test_the_log_buckets_by_clock_minute_and_counts_an_event_once() -> None:
    log = UsageLog()
    scorer = {"requests": 5, "rows": 15, "refusals": {"429": 2}}
    assert log.add("c1", 7, _minute(T0, {"app:scorer": scorer}))
    assert not log.add("c1", 7, _minute(T0, {"app:scorer": scorer}))  # the same event from the feed and a reload
    assert log.add("c1", 8, _minute(T0 + 10, {"app:scorer": {"requests": 1, "rows": 1, "refusals": {"403": 1}}}))
    assert log.add("c2", 7, _minute(T0 - 3 * MINUTE, {"m" * 64: {"requests": 2, "rows": 2, "refusals": {}}}))
    window = log.window(T0 + 5, minutes=3)
    assert (window.last_minute, window.minutes) == (T0 // MINUTE * MINUTE, 3)
    (scoring,) = window.callers  # c2's minute is 3 minutes back: out of a 3-minute window
    assert (scoring.contract_id, scoring.caller, scoring.kind) == ("c1", "app:scorer", "app")
    assert (scoring.requests, scoring.rows, scoring.refusals, scoring.refused) == (6, 16, {"403": 1, "429": 2}, 3)
    assert scoring.requests_per_minute == (0, 0, 6) and scoring.refused_per_minute == (0, 0, 3)
    wider = log.window(T0 + 5, minutes=4)
    assert [(c.contract_id, c.kind, c.requests_per_minute) for c in wider.callers] == [
        ("c1", "app", (0, 0, 0, 6)),
        ("c2", "member", (2, 0, 0, 0)),
    ]
    assert wider.totals() == ((2, 0, 0, 6), (0, 0, 0, 3))
    assert log.window(T0 + 3 * MINUTE, minutes=3).callers == []  # the window slides with the clock


def test_the_log_ignores_what_is_not_a_usage_minute_and_forgets_after_a_day() -> None:
    log = UsageLog()
    assert not log.add("c1", 1, {"callers": "junk", "minute": T0})
    assert not log.add("c1", 2, {"callers": {}, "minute": "soon"})
    assert log.add("c1", 3, _minute(T0, {"app:a": "junk", "app:b": {"requests": -4, "rows": True, "refusals": [1]}}))
    (b,) = log.window(T0).callers
    assert (b.caller, b.requests, b.rows, b.refusals) == ("app:b", 0, 0, {})
    assert log.add("c1", 4, _minute(T0 + (KEEP_MINUTES + 1) * MINUTE, {UNAUTHENTICATED: {"refusals": {"401": 1}}}))
    assert log.window(T0).callers == []  # a day later the first minute is gone
    (stranger,) = log.window(T0 + (KEEP_MINUTES + 1) * MINUTE).callers
    assert (stranger.kind, stranger.refusals) == ("—", {"401": 1})


def test_callers_read_as_app_names_persona_names_or_short_ids() -> None:
    names = {"a" * 64: "provider"}
    assert caller_label("app:scorer", names) == "scorer"
    assert caller_label("a" * 64, names) == "provider"
    assert caller_label("b" * 64, names) == "bbbbbbbb…"
    assert caller_label(UNAUTHENTICATED, names) == UNAUTHENTICATED


@pytest.fixture()
def world(tmp_path: Path):
    world = World.create(tmp_path)
    yield world
    world.close()


def _recorded_minutes(world: World) -> list[int]:
    return [int(event["data"]["minute"]) for event in world.events("scoring1") if event["type"] == USAGE_EVENT]


def _row(table: DataTable, key: str) -> list[str]:
    return [str(cell) for cell in table.get_row(key)]


@pytest.mark.anyio
async def test_the_usage_view_reads_real_usage_events_and_follows_new_ones(world: World) -> None:
    world.setup_assets({"weights.txt": "w"})
    world.add_app(["python", "-c", "pass"], ports=[8000], routes=["POST /score"])
    spec = world.accept_contract("scoring1")
    # what the local runtime does for its ingress: the clean room's attestation, a meter per minute
    attestation = VirtualAttester(AttestationKey.load_or_create(world.runtime_state)).attest(
        deployment_spec=spec, workload_public_key_der=WorkloadKey().public_der
    )
    governance = world.governance_port()
    meter = UsageMeter(
        lambda minute: governance.record_event(
            "scoring1", {"type": USAGE_EVENT, **minute}, category="audit", attestation=attestation
        )
    )
    consumer_id = world.parties["consumer"].identity.member_id
    for rows in (2, 3):
        meter.forwarded("app:scorer", rows)
    meter.refused("app:scorer", 429)
    meter.refused("app:scorer", 403)
    meter.forwarded(consumer_id, 1)
    meter.refused(UNAUTHENTICATED, 401)
    meter.flush()

    # the console's clock stands in the minute the ingress counted (a run crossing a clock minute
    # would otherwise see that minute as the one before)
    clock = [float(_recorded_minutes(world)[-1])]
    engine = PersonaEngine.open(world.parties["consumer"].root)
    app = CleanroomConsole([engine], background=False, now=lambda: clock[0])
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.app.workers.wait_for_complete()
            await pilot.press("0")  # shows the view and reads usage in a worker
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            assert app.screen.active_view == "usage"
            view = app.screen.query_one(UsageView)
            table = view.query_one("#usage-table", DataTable)
            assert table.row_count == 3
            assert _row(table, "scoring1/app:scorer") == [
                "scoring1",
                "scorer",
                "app",
                "2",
                "5",
                "2",
                "403×1, 429×1",
                "2",
            ]
            assert _row(table, f"scoring1/{consumer_id}") == ["scoring1", "consumer", "member", "1", "1", "0", "", "1"]
            assert _row(table, f"scoring1/{UNAUTHENTICATED}") == [
                "scoring1", UNAUTHENTICATED, "—", "0", "0", "1", "401×1", "0"
            ]  # fmt: skip
            headline = str(view.query_one("#usage-headline", Static).render())
            assert "3 callers on 1 contract · 3 requests · 6 rows · 3 refused (401×1, 403×1, 429×1)" in headline
            assert not view.query_one(EmptyHint).display
            chart = view.query_one("#usage-chart", LineChart)
            assert chart.title == "Requests per minute: scorer on scoring1"
            assert chart.ys[-1] == 2.0 and chart.xs[-1] == 0.0 and chart.xs[0] == -14.0
            refused_chart = view.query_one("#usage-refused-chart", LineChart)
            assert refused_chart.title == "Refused per minute (2 in the window)" and refused_chart.ys[-1] == 2.0

            # a new minute arrives through the live feed, as the console's follower delivers it
            cursor = max(event.seqno for event in engine.all_events("scoring1")) + 1
            meter.forwarded("app:scorer", 4)
            meter.flush()
            clock[0] = float(_recorded_minutes(world)[-1])
            (fresh,) = [e for e in engine.events("scoring1", cursor) if e.kind == USAGE_EVENT]
            app.post_message(EngineEvent(0, fresh))
            await pilot.pause()
            assert _row(table, "scoring1/app:scorer")[3:5] == ["3", "9"]
            await pilot.press("ctrl+r")  # a reload reads the same event from governance: counted once
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            assert _row(table, "scoring1/app:scorer")[3:5] == ["3", "9"]
            assert view.usage_log.cursors["scoring1"] > cursor
    finally:
        engine.close()


@pytest.mark.anyio
async def test_with_no_usage_the_view_says_what_fills_it(world: World) -> None:
    engine = PersonaEngine.open(world.parties["hoster"].root)
    app = CleanroomConsole([engine], background=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.app.workers.wait_for_complete()
            await pilot.press("0")  # shows the view and reads usage in a worker
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            view = app.screen.query_one(UsageView)
            assert view.query_one("#usage-table", DataTable).row_count == 0
            hint = view.query_one(EmptyHint)
            assert hint.display and "cleanroom deployment start" in str(hint.render())
            assert "0 callers on 0 contracts · 0 requests · 0 rows · 0 refused" in str(
                view.query_one("#usage-headline", Static).render()
            )
            assert view.query_one("#usage-chart", LineChart).title == "Requests per minute: all callers"
            assert view.query_one("#usage-refused-chart", LineChart).title == "Refused per minute (0 in the window)"
    finally:
        engine.close()


async def _open_usage_view(pilot: Any) -> None:
    """Key 0, then wait until the usage rows are in the table and drawn at their widths."""
    await pilot.app.workers.wait_for_complete()
    await pilot.press("0")  # shows the view and reads usage in a worker
    await pilot.app.workers.wait_for_complete()
    # the rows arrive through call_from_thread, and the table sizes its columns to them on a
    # later refresh (a CI capture once had the rows under header-wide columns): let both land
    table = pilot.app.screen.query_one("#usage-table", DataTable)
    contract = table.ordered_columns[0]
    for _ in range(200):  # the table widens its columns to the rows when it next goes idle
        if table.row_count and contract.content_width > len(str(contract.label)):
            break
        await pilot.pause(0.05)
    table.refresh()  # the header line may have been drawn before the widths changed
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


@pytest.mark.anyio
async def test_the_seeded_usage_view_charts_the_selected_caller_and_slides_with_the_clock(tmp_path: Path) -> None:
    clock = [NOW]
    app = CleanroomConsole([SeededPersona(tmp_path, i) for i in range(3)], now=lambda: clock[0], background=False)
    async with app.run_test(size=SIZE) as pilot:
        await _open_usage_view(pilot)
        view = app.screen.query_one(UsageView)
        chart = view.query_one("#usage-chart", LineChart)
        per_minute = dict(zip(chart.xs, chart.ys, strict=True))
        assert (per_minute[-4.0], per_minute[-2.0], per_minute[0.0]) == (40.0, 120.0, 90.0)  # app:scorer
        refused = view.query_one("#usage-refused-chart", LineChart)
        assert dict(zip(refused.xs, refused.ys, strict=True))[-2.0] == 3.0  # its 429s two minutes ago
        await pilot.press("down")
        await pilot.pause()
        assert chart.title.startswith(f"Requests per minute: {MEMBERS[2].name} on inference-1")
        assert sum(chart.ys) == 2 * len(USAGE_MINUTES)
        view._slide()  # the same minute: nothing to redraw
        assert view.query_one("#usage-table", DataTable).row_count == 3
        clock[0] = NOW + 15 * MINUTE  # the newest seeded minute has left the 15-minute window
        view._slide()
        assert view.query_one("#usage-table", DataTable).row_count == 0 and view.query_one(EmptyHint).display


def test_usage_view_snapshot(snap_compare, tmp_path: Path) -> None:
    app = CleanroomConsole([SeededPersona(tmp_path, i) for i in range(3)], now=lambda: NOW, background=False)

    async def run_before(pilot) -> None:
        await _open_usage_view(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
