"""A persona workspace: one party's keys, config fragment, blob store and service endpoints.

Layout (every party has its own; nothing in it is shared with other parties)::

    <workspace>/
      workspace.json        persona, member name, store location, governance endpoint
      identity/             member_privk.pem (0600), member_cert.pem
      keys/                 kek_privk.pem (0600), kek_pub.pem, deks/<name>.dek.wrapped
      config.json           the party's config fragment
      store/                the local blob store (embedded default; can point elsewhere)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.crypto.identity import MemberIdentity
from core.crypto.secret_file import write_public_file
from core.errors import ConflictError, InvalidInputError, NotFoundError

SETTINGS_FILE = "workspace.json"


@dataclass
class Workspace:
    root: Path
    settings: dict[str, Any] = field(default_factory=dict)

    # -- layout -----------------------------------------------------------------------------
    @property
    def identity_dir(self) -> Path:
        return self.root / "identity"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def fragment_path(self) -> Path:
        return self.root / "config.json"

    @property
    def store_dir(self) -> Path:
        configured = self.settings.get("store_dir")
        return Path(configured) if configured else self.root / "store"

    @property
    def persona(self) -> str:
        return str(self.settings["persona"])

    @property
    def name(self) -> str:
        return str(self.settings.get("name", self.persona))

    @property
    def identity(self) -> MemberIdentity:
        return MemberIdentity.load(self.identity_dir)

    # -- lifecycle --------------------------------------------------------------------------
    @classmethod
    def init(cls, root: Path, persona: str, *, name: str | None = None, store_dir: Path | None = None) -> Workspace:
        """Create a workspace with a fresh member identity. Refuses to overwrite an existing one."""
        root = root.expanduser().resolve()
        if (root / SETTINGS_FILE).exists():
            raise ConflictError(
                f"workspace {root} already exists (persona {cls.open(root).persona})",
                hint="use it as it is, or choose another --workspace directory",
            )
        if not persona or not persona.replace("-", "").replace("_", "").isalnum():
            raise InvalidInputError(
                f"persona {persona!r} is not a valid name",
                hint="use letters, digits, '-' or '_' (e.g. hoster, provider, consumer)",
            )
        settings: dict[str, Any] = {"persona": persona, "name": name or persona}
        if store_dir is not None:
            settings["store_dir"] = str(store_dir.expanduser().resolve())
        workspace = cls(root=root, settings=settings)
        root.mkdir(parents=True, exist_ok=True)
        MemberIdentity.generate(workspace.name).save(workspace.identity_dir)
        workspace.save()
        return workspace

    @classmethod
    def open(cls, root: Path) -> Workspace:
        root = root.expanduser().resolve()
        path = root / SETTINGS_FILE
        if not path.is_file():
            raise NotFoundError(
                f"no workspace at {root}",
                hint="create one with `cleanroom --workspace DIR config init --persona NAME`",
            )
        try:
            settings = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"{path} is not valid JSON ({exc.msg})", hint="restore it or recreate the workspace"
            ) from exc
        if not isinstance(settings, dict) or "persona" not in settings:
            raise InvalidInputError(f"{path} has no persona", hint="recreate the workspace")
        return cls(root=root, settings=settings)

    def save(self) -> None:
        write_public_file(
            self.root / SETTINGS_FILE, (json.dumps(self.settings, indent=2, sort_keys=True) + "\n").encode()
        )
