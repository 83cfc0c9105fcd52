"""The progress stream: JSON lines the runtime tails and turns into telemetry events.

Each line is flushed as it is written so the runtime (and the parties watching the clean room)
see training move in real time; lines are complete or absent, never half-written JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any


class ProgressStream:
    def __init__(self, path: Path | None) -> None:
        self._handle: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("a", encoding="utf-8")

    def step(
        self, *, step: int, epoch: int, loss: float, learning_rate: float, examples_per_s: float, total_steps: int
    ) -> None:
        self._write(
            {
                "event": "step",
                "step": step,
                "epoch": epoch,
                "loss": round(loss, 6),
                "learning_rate": learning_rate,
                "examples_per_s": round(examples_per_s, 2),
                "total_steps": total_steps,
            }
        )

    def eval(self, *, epoch: int, val_accuracy: float, val_loss: float) -> None:
        self._write(
            {"event": "eval", "epoch": epoch, "val_accuracy": round(val_accuracy, 6), "val_loss": round(val_loss, 6)}
        )

    def _write(self, record: dict[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(record) + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
