"""Per-caller rate limits at the ingress: one token bucket per caller (an app name or a member id).

A bucket holds ``BURST_SECONDS`` worth of the caller's per-minute limit (at least one request)
and refills continuously, so a caller may send a short burst but never more than its limit
plus that burst in any minute. Buckets live in an LRU table of at most ``max_callers``: many
callers cannot grow the ingress's memory without bound, and a caller pushed out only gets a
full bucket back, which it could have had by waiting.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

BURST_SECONDS = 10.0  # a caller may spend this many seconds' worth of its limit at once
MAX_CALLERS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float
    rate_per_minute: int


class CallerRateLimits:
    """Token buckets keyed by caller; ``take`` answers how long to wait, or None when allowed."""

    def __init__(self, *, max_callers: int = MAX_CALLERS, burst_seconds: float = BURST_SECONDS) -> None:
        self.max_callers = max_callers
        self.burst_seconds = burst_seconds
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()  # the benchmark and tests call it from several threads

    def capacity(self, rate_per_minute: int) -> float:
        """How many requests a full bucket lets through back to back."""
        return max(1.0, rate_per_minute * self.burst_seconds / 60.0)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, caller: str, rate_per_minute: int, now: float | None = None) -> float | None:
        """Spend one request of ``caller``'s bucket: None if allowed, else the seconds until the
        next request would be (the caller's Retry-After)."""
        now = time.monotonic() if now is None else now
        capacity = self.capacity(rate_per_minute)
        refill = rate_per_minute / 60.0
        with self._lock:
            bucket = self._buckets.get(caller)
            if bucket is None or bucket.rate_per_minute != rate_per_minute:
                # a new caller, or a new voted limit (a fresh token): start from a full bucket
                bucket = _Bucket(capacity, now, rate_per_minute)
                self._buckets[caller] = bucket
                while len(self._buckets) > self.max_callers:
                    self._buckets.popitem(last=False)
            else:
                bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * refill)
                bucket.updated = now
            self._buckets.move_to_end(caller)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / refill


def retry_after_header(wait_seconds: float) -> str:
    """RFC 9110 Retry-After as delay-seconds: a whole number, rounded up so a client that waits
    exactly that long is let through."""
    return str(max(1, math.ceil(wait_seconds)))
