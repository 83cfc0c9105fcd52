"""Blue/green at the ingress: which serving application answers each request.

A contract may serve several applications (a base model and a fine-tuned one) behind one
endpoint. The members vote how traffic is divided (``core.governance.traffic``); the runtime
polls ``GET /contracts/{id}/traffic`` every second (:class:`TrafficPoller`) and the ingress asks
:class:`TrafficRouter` once per request. A request picks its application once, before it is
forwarded, so a split changing mid-request never moves or drops it.

Why a seeded ``random.Random`` and not a CSPRNG: the choice only spreads load by the voted
weights; nothing secret depends on it, and a caller can choose its version outright with the
pin header anyway. ``X-Cleanroom-Version: <application>`` pins one request (for testing a
version); the ingress strips it before the workload, and every answer carries
``X-Cleanroom-Version`` naming the application that produced it. Telling a caller that is fine:
the applications are named in the contract every party accepted, and the caller needs it to
compare versions; it reveals nothing of either party's data.

Before any split is voted the traffic is divided evenly: every serving application was accepted
by every member, and no order among them was voted.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import CleanroomError, IntegrityError, InvalidInputError
from core.runtime.feed_polling import FeedPolling

VERSION_HEADER = "x-cleanroom-version"  # lower case: the ingress compares lower-cased names
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class TrafficSplit:
    """One split as the ingress applies it: applications with a positive weight, cumulated."""

    version: int
    weights: dict[str, int]
    rolled_back_to: str | None = None

    @classmethod
    def even(cls, applications: tuple[str, ...]) -> TrafficSplit:
        return cls(0, dict.fromkeys(applications, 1))

    @classmethod
    def from_feed(cls, feed: Mapping[str, Any], applications: tuple[str, ...]) -> TrafficSplit:
        """The split governance published, checked against the applications this room serves.

        Governance validated it already; a feed naming an application this deployment does not
        run means the spec and the contract disagree, and is refused rather than half applied."""
        version, split = feed.get("version"), feed.get("split")
        if isinstance(version, bool) or not isinstance(version, int) or not isinstance(split, dict):
            raise IntegrityError("governance's traffic feed is malformed", hint="check the governance service")
        if not split:
            return cls(version, TrafficSplit.even(applications).weights)
        for name, weight in split.items():
            if name not in applications:
                raise IntegrityError(
                    f"the voted traffic split names {str(name)[:64]!r}, which this deployment does not serve",
                    hint="deploy the contract's accepted deployment spec",
                )
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise IntegrityError(f"the voted traffic weight of '{name}' is {weight!r}, not a whole number")
        weights = {name: weight for name, weight in split.items() if weight > 0}
        if not weights:
            raise IntegrityError("the voted traffic split gives no application any traffic")
        rolled_back_to = feed.get("rolledBackTo")
        return cls(version, weights, rolled_back_to if isinstance(rolled_back_to, str) else None)

    @property
    def percentages(self) -> dict[str, float]:
        total = sum(self.weights.values())
        return {name: 100.0 * weight / total for name, weight in self.weights.items()}


class TrafficRouter:
    """Chooses the serving application of each request by the current split (or the pin).

    ``upstreams`` maps each serving application to its socket. ``choose`` runs on the ingress's
    event loop; ``apply`` runs on the poller's thread and swaps in a whole new table at once,
    so a request sees either the old split or the new one, never a mix."""

    def __init__(self, upstreams: Mapping[str, Path]) -> None:
        if len(upstreams) < 2:
            raise InvalidInputError("a traffic split needs two serving applications", hint="serve one without a split")
        self.upstreams = dict(upstreams)
        self.applications = tuple(self.upstreams)
        self._random = random.Random(os.urandom(32))
        self.split = TrafficSplit.even(self.applications)
        self._table = self._cumulated(self.split)

    @staticmethod
    def _cumulated(split: TrafficSplit) -> tuple[tuple[str, ...], tuple[int, ...]]:
        return tuple(split.weights), tuple(itertools.accumulate(split.weights.values()))

    def apply(self, split: TrafficSplit) -> None:
        self.split, self._table = split, self._cumulated(split)

    def choose(self, pinned: str | None = None) -> str:
        """The application for one request; a pin naming no serving application is refused."""
        if pinned is not None:
            if pinned not in self.upstreams:
                raise InvalidInputError(
                    f"X-Cleanroom-Version {pinned[:64]!r} is not a serving application of this contract",
                    hint=f"pin one of: {', '.join(self.applications)}",
                )
            return pinned
        names, cumulative = self._table  # one read: the table is replaced whole, never edited
        return names[bisect.bisect_right(cumulative, self._random.randrange(cumulative[-1]))]


class TrafficPoller(FeedPolling):
    """Keeps a router on governance's current split, polling every ``interval`` seconds.

    A failed poll keeps the split already applied (traffic keeps flowing as last voted) and is
    reported once per failure streak through ``on_error``; ``on_change`` hears each new split."""

    def __init__(
        self,
        router: TrafficRouter,
        fetch: Callable[[], Mapping[str, Any]],
        *,
        interval: float = POLL_SECONDS,
        on_change: Callable[[TrafficSplit], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(interval, "traffic-split")
        self.router = router
        self.fetch = fetch
        self.on_change = on_change
        self.on_error = on_error
        self._failing = False

    def poll(self) -> None:
        """Fetch once and apply the split if its version is new."""
        try:
            split = TrafficSplit.from_feed(self.fetch(), self.router.applications)
        except CleanroomError as exc:
            if not self._failing and self.on_error is not None:
                self.on_error(exc.one_line())
            self._failing = True
            return
        self._failing = False
        if split.version != self.router.split.version:
            self.router.apply(split)
            if self.on_change is not None:
                self.on_change(split)
