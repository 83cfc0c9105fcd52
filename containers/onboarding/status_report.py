"""The onboarding workload's telemetry: one ``model_status`` JSON line per status reached.

Lines are flushed as written, so the registry shows each status while the next step runs. The
runtime routes these records to governance whatever the telemetry option says; they are the
version's statuses, not progress.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

MODEL_STATUS = "model_status"


class StatusReport:
    def __init__(self, path: Path | None, *, model: str, version: str) -> None:
        self.model, self.version = model, version
        self.statuses: list[tuple[str, dict[str, Any]]] = []
        self._handle: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("a", encoding="utf-8")

    def status(self, status: str, details: dict[str, Any]) -> None:
        self.statuses.append((status, details))
        record = {"event": MODEL_STATUS, "model": self.model, "version": self.version, "status": status}
        line = json.dumps(record | {"details": details})
        print(f"{self.model} {self.version}: {status}", flush=True)
        if self._handle is not None:
            self._handle.write(line + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
