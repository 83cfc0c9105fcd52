"""The private trainer's telemetry file: progress without loss unless the owners voted for it.

Loss is a function of the training rows, so it is written only when the runtime sets
``CLEANROOM_LOSS_TELEMETRY=1`` (the ``loss_telemetry`` option every member accepted); the
runtime drops any record carrying ``loss`` otherwise (defence in depth). The run ends with one
``privacy_record`` line, which the runtime forwards to governance's privacy ledger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

PRIVACY_RECORD = "privacy_record"


class PrivateProgress:
    def __init__(self, path: Path | None, *, with_loss: bool) -> None:
        self.with_loss = with_loss
        self._handle: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("a", encoding="utf-8")

    def step(self, *, step: int, epoch: int, total_steps: int, examples_per_s: float, loss: float | None) -> None:
        record: dict[str, Any] = {
            "event": "step",
            "step": step,
            "epoch": epoch,
            "total_steps": total_steps,
            "examples_per_s": round(examples_per_s, 2),
        }
        if self.with_loss and loss is not None:
            record["loss"] = round(loss, 6)
        self._write(record)

    def privacy_record(self, data: dict[str, Any]) -> None:
        self._write({"event": PRIVACY_RECORD, **data})

    def _write(self, record: dict[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(record) + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
