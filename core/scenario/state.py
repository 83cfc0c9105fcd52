"""What a scenario keeps between runs (``<root>/demo.json``) and the lock of the run in progress.

The state file is written atomically after every step, so an interrupted run resumes at the
step that did not finish. ``demo.lock`` holds the pid of the run in progress; a lock whose pid
is gone was left by a killed run and is taken over.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.crypto.secret_file import write_public_file
from core.errors import ConflictError, InvalidInputError

STATE_FILE = "demo.json"
LOCK_FILE = "demo.lock"
STATE_VERSION = 1
REFERENCE_SCENARIO = "three-personas"  # what a state file written before scenarios had names holds


class RunStatus(enum.StrEnum):
    """Where a scenario stands; the value is what demo.json and ``--output json`` say."""

    RUNNING = "running"
    FAILED = "failed"
    COMPLETE = "complete"


@dataclass
class ScenarioState:
    quick: bool
    scenario: str = REFERENCE_SCENARIO  # the definition's name: a root plays one scenario only
    completed: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    durations_s: dict[str, float] = field(default_factory=dict)
    status: RunStatus = RunStatus.RUNNING
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "scenario": self.scenario,
            "quick": self.quick,
            "completed": self.completed,
            "results": self.results,
            "durations_s": self.durations_s,
            "status": self.status.value,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any], where: Path) -> ScenarioState:
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            raise InvalidInputError(
                f"{where} is not a demo state file of this version", hint="run the demo in a new --workspace directory"
            )
        try:
            status = RunStatus(str(document.get("status", RunStatus.RUNNING.value)))
        except ValueError:
            raise InvalidInputError(
                f"{where} has an unknown status {document.get('status')!r}",
                hint="run the demo in a new --workspace directory",
            ) from None
        return cls(
            quick=bool(document["quick"]),
            scenario=str(document.get("scenario", REFERENCE_SCENARIO)),
            completed=list(document.get("completed", [])),
            results=dict(document.get("results", {})),
            durations_s=dict(document.get("durations_s", {})),
            status=status,
            error=document.get("error"),
        )

    @classmethod
    def load(cls, path: Path) -> ScenarioState:
        try:
            document = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"{path} is not valid JSON ({exc.msg})", hint="run the demo in a new --workspace directory"
            ) from exc
        return cls.from_dict(document, path)

    def save(self, path: Path) -> None:
        write_public_file(path, (json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n").encode())


class RunLock:
    """``<root>/demo.lock``: refuses a second run on the same root while one is in progress."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        from core.service_process import process_alive

        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(self.path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and process_alive(pid):
                raise ConflictError(
                    f"another demo (pid {pid}) is running in {self.root}",
                    hint="wait for it to finish, or use another --workspace",
                ) from None
            self.path.unlink(missing_ok=True)  # left by a run that was killed
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
