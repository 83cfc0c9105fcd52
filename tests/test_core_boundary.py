"""core/ must stay free of UI libraries: it is the engine every front end and workload shares."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import core

UI_MODULES = ("textual", "rich")


def test_every_core_module_imports_without_ui_libraries() -> None:
    script = f"""
import importlib, json, pkgutil, sys
import core
names = [m.name for m in pkgutil.walk_packages(core.__path__, "core.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({{"modules": names, "loaded": [m for m in {UI_MODULES!r} if m in sys.modules]}}))
"""
    root = Path(core.__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                         text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "core.workspace" in report["modules"]
    assert report["loaded"] == [], f"core imported UI libraries: {report['loaded']}"
