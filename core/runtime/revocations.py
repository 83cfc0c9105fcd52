"""Governance's revoked client applications, as the ingress knows them.

A background thread polls ``GET /oauth2/revocations`` every ``poll_seconds`` (1 s), so an app
revoked in governance is refused at the ingress within about two polls, well before its tokens
expire. The feed fails closed for apps: while the last good poll is older than
``stale_after_seconds`` (governance unreachable, or a malformed answer) no app token is let
through, because the ingress could no longer honour a revocation in time. Member tokens do not
depend on the feed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core.runtime.feed_polling import FeedPolling

POLL_SECONDS = 1.0
STALE_AFTER_SECONDS = 5.0


class RevocationFeed(FeedPolling):
    """The set of revoked app names, refreshed by polling ``fetch`` (governance's feed)."""

    def __init__(
        self,
        fetch: Callable[[], dict[str, Any]],
        *,
        poll_seconds: float = POLL_SECONDS,
        stale_after_seconds: float = STALE_AFTER_SECONDS,
    ) -> None:
        super().__init__(poll_seconds, "ingress-revocations")
        self.fetch = fetch
        self.stale_after_seconds = stale_after_seconds
        self.version = -1
        self.revoked: frozenset[str] = frozenset()
        self.last_error = "the revocation list has not been fetched yet"
        self._fresh_at = float("-inf")

    def poll(self) -> None:
        """One fetch; a failure keeps the last good list and lets it go stale."""
        try:
            document = self.fetch()
            revoked, version = _parse(document)
        except Exception as exc:  # whatever the fetch raises, the poller must live on
            self.last_error = f"the revocation list cannot be fetched ({str(exc)[:200]})"
            return
        self.revoked, self.version, self._fresh_at = revoked, version, time.monotonic()

    def refusal(self, app: str) -> tuple[int, str] | None:
        """The status and reason ``app``'s tokens are refused with now, or None: 403 when it is
        revoked, 503 while the list is stale (retrying later may succeed)."""
        if time.monotonic() - self._fresh_at > self.stale_after_seconds:
            return 503, f"{self.last_error}; app tokens are refused until it is"
        if app in self.revoked:
            return 403, f"client application '{app}' has been revoked by governance"
        return None


def _parse(document: dict[str, Any]) -> tuple[frozenset[str], int]:
    version = document["version"]
    entries = document["revoked"]
    if not isinstance(version, int) or not isinstance(entries, list):
        raise ValueError("the revocation list is not {version: int, revoked: [...]}")
    names = set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("app"), str):
            raise ValueError("a revocation entry has no app name")
        names.add(entry["app"])
    return frozenset(names), version
