"""Per-caller usage at the ingress, reported to governance once a minute.

Each minute's record counts, per caller (an app name, a member id, or ``UNAUTHENTICATED`` for
requests refused before a token was verified), the requests forwarded to the workload, the rows
they carried (the length of a JSON body's ``"data"`` or ``"inputs"`` list, else 1) and the
refusals by HTTP status. One governance event per minute carries every caller of that minute,
not one per caller, so a busy endpoint costs the ledger one entry a minute; a minute with more
than ``max_callers`` callers folds the rest into ``OTHER_CALLERS`` so memory stays bounded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

UNAUTHENTICATED = "(unauthenticated)"
OTHER_CALLERS = "(other callers)"
MAX_CALLERS_PER_MINUTE = 1000
INLINE_COUNT_BYTES = 64 * 1024  # bodies up to this size are counted where they arrive
USAGE_EVENT = "usage"


def rows_in(body: bytes) -> int:
    """Rows a request carried: the length of a JSON object's ``data`` or ``inputs`` list when
    there is one, else 1 (one text, one record, or a body that is not JSON)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return 1
    if isinstance(document, dict):
        for key in ("data", "inputs"):
            value = document.get(key)
            if isinstance(value, list):
                return len(value)
    return 1


@dataclass
class _CallerUsage:
    requests: int = 0
    rows: int = 0
    refusals: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "rows": self.rows, "refusals": dict(sorted(self.refusals.items()))}


class UsageMeter:
    """Counts usage per caller for the current minute and hands each finished minute to
    ``on_minute`` from a background thread (``stop`` hands over the minute in progress).

    ``on_minute`` gets ``{"minute": <unix start>, "seconds": <length>, "callers": {...}}``;
    it may block (a governance call), which is why it never runs on the ingress's event loop.
    """

    def __init__(
        self,
        on_minute: Callable[[dict[str, Any]], None],
        *,
        period_seconds: float = 60.0,
        max_callers: int = MAX_CALLERS_PER_MINUTE,
    ) -> None:
        self.on_minute = on_minute
        self.period_seconds = period_seconds
        self.max_callers = max_callers
        self._lock = threading.Lock()
        self._callers: dict[str, _CallerUsage] = {}
        self._started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingress-usage", daemon=True)

    def start(self) -> UsageMeter:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the reporting thread and hand over what the current minute has counted."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.flush()

    def forwarded(self, caller: str, rows: int) -> None:
        with self._lock:
            usage = self._usage(caller)
            usage.requests += 1
            usage.rows += rows

    def refused(self, caller: str, status: int) -> None:
        with self._lock:
            usage = self._usage(caller)
            usage.refusals[str(status)] = usage.refusals.get(str(status), 0) + 1

    def _usage(self, caller: str) -> _CallerUsage:
        usage = self._callers.get(caller)
        if usage is None:
            if len(self._callers) >= self.max_callers:
                caller = OTHER_CALLERS
            usage = self._callers.setdefault(caller, _CallerUsage())
        return usage

    def flush(self) -> None:
        """Hand the counts so far to ``on_minute`` and start a new period (nothing if empty)."""
        now = time.time()
        with self._lock:
            callers, self._callers = self._callers, {}
            started, self._started = self._started, now
        if callers:
            self.on_minute(
                {
                    "minute": int(started),
                    "seconds": round(now - started, 3),
                    "callers": {name: usage.as_dict() for name, usage in sorted(callers.items())},
                }
            )

    def _run(self) -> None:
        while not self._stop.wait(max(0.0, self._started + self.period_seconds - time.time())):
            self.flush()


def describe_usage(record: dict[str, Any]) -> str:
    """One log line for a usage event, busiest caller first: ``usage 60 s: app:scorer 120 req
    360 rows (429×3); 3fa2…: 4 req 4 rows``, for the console's runtime events."""
    callers = record.get("callers")
    if not isinstance(callers, dict):
        return "usage: (unreadable record)"
    parts = []
    readable = [(str(caller), counts) for caller, counts in callers.items() if isinstance(counts, dict)]
    for caller, counts in sorted(readable, key=lambda item: -int(item[1].get("requests", 0))):
        refusals = counts.get("refusals") or {}
        refused = ", ".join(f"{status}×{count}" for status, count in sorted(refusals.items()))
        name = f"{caller[:12]}…" if len(caller) > 24 else caller
        parts.append(
            f"{name} {counts.get('requests', 0)} req {counts.get('rows', 0)} rows"
            + (f" ({refused})" if refused else "")
        )
    return f"usage {float(record.get('seconds', 0)):.0f} s: " + "; ".join(parts)
