"""Endpoint usage: who called which contract's endpoint, how much, and what the ingress refused.

The ingress records one ``usage`` event a minute per contract (``core.runtime.usage``): every
caller of that minute (an app as ``app:NAME``, a member by id, ``(unauthenticated)`` for
requests refused before a token was checked) with its requests, rows and refusals by status.
Operators ask "who is using this endpoint now, and is anyone being turned away", so the events
are folded into per-minute buckets per contract and caller (``UsageLog``) and shown over a
sliding window of the last N minutes (``UsageWindow``). The log keeps cursors per contract, so
each reload reads only the events governance recorded since the last one, and it also takes the
usage events the console's live feed delivers; an event seen both ways is counted once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from core.engine.session import GovernanceSession
from core.runtime.usage import USAGE_EVENT

MINUTE = 60
DEFAULT_WINDOW_MINUTES = 15
KEEP_MINUTES = 24 * 60  # a console left open for days keeps one day of buckets, not every minute since


@dataclass
class _Counts:
    requests: int = 0
    rows: int = 0
    refusals: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CallerUsage:
    """One caller's use of one contract's endpoint over a window, and its requests minute by minute."""

    contract_id: str
    caller: str
    requests: int
    rows: int
    refusals: dict[str, int]  # HTTP status -> count
    requests_per_minute: tuple[int, ...]  # oldest minute of the window first
    refused_per_minute: tuple[int, ...]

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())

    @property
    def kind(self) -> str:
        """``app`` (a client application), ``member`` (a consortium member) or ``—`` for the
        ingress's own names: ``(unauthenticated)`` (no verified token) and ``(other callers)``
        (callers past the per-minute cap, folded together)."""
        if self.caller.startswith("app:"):
            return "app"
        return "—" if self.caller.startswith("(") else "member"


@dataclass(frozen=True)
class UsageWindow:
    """The last ``minutes`` minutes up to and including the minute starting at ``last_minute``."""

    last_minute: int  # unix time of the newest minute's start
    minutes: int
    callers: list[CallerUsage]  # busiest first

    def totals(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Requests and refusals per minute, every caller of every contract together."""
        requests = [0] * self.minutes
        refused = [0] * self.minutes
        for caller in self.callers:
            for i in range(self.minutes):
                requests[i] += caller.requests_per_minute[i]
                refused[i] += caller.refused_per_minute[i]
        return tuple(requests), tuple(refused)


def _count(value: Any) -> int:
    """A count from an event: governance stores what the runtime reported, so anything but a
    non-negative whole number counts as nothing rather than breaking the view."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class UsageLog:
    """Usage events folded into (contract, caller, minute) buckets; safe to feed from a reload
    worker and the live event feed at once."""

    def __init__(self) -> None:
        self.cursors: dict[str, int] = {}  # per contract: the next event seqno a reload reads
        self._lock = threading.Lock()
        self._seen: set[tuple[str, int]] = set()
        self._buckets: dict[tuple[str, str, int], _Counts] = {}
        self._newest = 0

    def add(self, contract_id: str, seqno: int, record: dict[str, Any]) -> bool:
        """Fold one usage event in; False if it was already counted or carries no callers.

        A record's ``minute`` is when the ingress's period started (not aligned to the clock's
        minute), so it counts in the clock minute that period started in."""
        callers = record.get("callers")
        started = record.get("minute")
        if not isinstance(callers, dict) or not isinstance(started, int | float) or isinstance(started, bool):
            return False
        minute = int(started) // MINUTE * MINUTE
        with self._lock:
            if (contract_id, seqno) in self._seen:
                return False
            self._seen.add((contract_id, seqno))
            for caller, counts in callers.items():
                if not isinstance(counts, dict):
                    continue
                bucket = self._buckets.setdefault((contract_id, str(caller), minute), _Counts())
                bucket.requests += _count(counts.get("requests"))
                bucket.rows += _count(counts.get("rows"))
                refusals = counts.get("refusals")
                for status, count in refusals.items() if isinstance(refusals, dict) else ():
                    bucket.refusals[str(status)] = bucket.refusals.get(str(status), 0) + _count(count)
            if minute > self._newest:
                self._newest = minute
                self._forget_before(minute - KEEP_MINUTES * MINUTE)
        return True

    def _forget_before(self, oldest: int) -> None:
        for key in [key for key in self._buckets if key[2] < oldest]:
            del self._buckets[key]

    def window(self, now: float, minutes: int = DEFAULT_WINDOW_MINUTES) -> UsageWindow:
        """Per contract and caller, the totals and per-minute requests of the last ``minutes``
        minutes up to ``now``'s minute; callers with nothing in the window are left out."""
        last = int(now) // MINUTE * MINUTE
        first = last - MINUTE * (minutes - 1)
        grouped: dict[tuple[str, str], dict[int, _Counts]] = {}
        with self._lock:
            for (contract_id, caller, minute), counts in self._buckets.items():
                if first <= minute <= last:
                    grouped.setdefault((contract_id, caller), {})[minute] = counts
            callers = [self._caller(key, by_minute, first, minutes) for key, by_minute in grouped.items()]
        callers.sort(key=lambda c: (-c.requests, -c.refused, c.contract_id, c.caller))
        return UsageWindow(last, minutes, callers)

    @staticmethod
    def _caller(key: tuple[str, str], by_minute: dict[int, _Counts], first: int, minutes: int) -> CallerUsage:
        refusals: dict[str, int] = {}
        for counts in by_minute.values():
            for status, count in counts.refusals.items():
                refusals[status] = refusals.get(status, 0) + count
        starts = [first + MINUTE * i for i in range(minutes)]
        empty = _Counts()
        return CallerUsage(
            key[0],
            key[1],
            sum(c.requests for c in by_minute.values()),
            sum(c.rows for c in by_minute.values()),
            dict(sorted(refusals.items())),
            tuple(by_minute.get(start, empty).requests for start in starts),
            tuple(sum(by_minute.get(start, empty).refusals.values()) for start in starts),
        )


class UsageOperations(GovernanceSession):
    """Reading the ingress's usage events from governance."""

    def read_usage(self, log: UsageLog) -> UsageLog:
        """Fold into ``log`` every usage event recorded since its cursors, for every contract."""
        client = self._governance()
        for contract in client.contracts():
            contract_id = str(contract["id"])
            cursor = log.cursors.get(contract_id, 1)
            while True:
                answer = client.events(contract_id, from_seqno=cursor)
                for event in answer["events"]:
                    if event.get("type") == USAGE_EVENT:
                        log.add(contract_id, int(event["seqno"]), dict(event.get("data") or {}))
                following = int(answer["nextSeqno"])
                if following <= cursor:
                    break
                cursor = following
            log.cursors[contract_id] = cursor
        return log
