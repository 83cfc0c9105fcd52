"""Running `cleanroom` verbs in-process for tests, exactly as the console script does.

``tui.cli.main`` turns CleanroomErrors into ``error: ...`` and an exit code; running it here
(rather than click's runner on the bare group) tests that path too, at a fraction of the
start-up cost of a subprocess per verb.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from tui.cli import main


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def cleanroom(*args: str | Path) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(arg) for arg in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return Outcome(code, out.getvalue(), err.getvalue())
