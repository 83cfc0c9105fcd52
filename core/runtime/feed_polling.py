"""One background poll of a governance feed for the ingress (revocations, the traffic split).

``poll`` runs once in ``start`` (so the first requests already follow the feed), then every
``interval`` seconds on a daemon thread until ``stop``; a subclass's ``poll`` must not raise.
"""

from __future__ import annotations

import threading
from typing import Self


class FeedPolling:
    def __init__(self, interval: float, name: str) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def poll(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self.poll()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()
