"""What the console remembers between sessions: the theme and the last persona.

Stored as JSON in ``$XDG_CONFIG_HOME/cleanroom/console.json`` (``~/.config/cleanroom/console.json``
when XDG_CONFIG_HOME is unset), the operator's own settings rather than a workspace's: one
operator may open several consortia's workspaces. Written atomically (a temporary file in the
same folder, then a rename), so a crash mid-write leaves the old file whole. A file that does not
parse is ignored with one line saying so and is overwritten by the next change; nothing in it
is a secret, and nothing in it can make the console act (a persona that is gone or a theme
that does not exist is simply not restored).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "console.json"


def default_path() -> Path:
    """``$XDG_CONFIG_HOME/cleanroom/console.json``, the XDG base-directory default otherwise."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cleanroom" / FILE_NAME


@dataclass
class ConsolePreferences:
    """The remembered choices and where they live; ``warning`` says why a file was ignored."""

    path: Path
    theme: str | None = None
    persona: str | None = None
    warning: str | None = field(default=None, compare=False)

    @classmethod
    def load(cls, path: Path | None = None) -> ConsolePreferences:
        path = path or default_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        except (OSError, UnicodeDecodeError) as exc:
            return cls(path, warning=f"ignored {path}: it cannot be read ({exc.__class__.__name__})")
        try:
            document: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            return cls(
                path,
                warning=f"ignored {path}: not valid JSON ({exc.msg} at line {exc.lineno}); "
                "the next theme or persona change rewrites it",
            )
        if not isinstance(document, dict):
            return cls(path, warning=f"ignored {path}: not a JSON object; the next change rewrites it")
        theme, persona = document.get("theme"), document.get("persona")
        return cls(path, theme if isinstance(theme, str) else None, persona if isinstance(persona, str) else None)

    def save(self) -> None:
        """Write atomically: a temporary file beside the target, flushed, then renamed over it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"theme": self.theme, "persona": self.persona}
        handle, temporary = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.warning = None
