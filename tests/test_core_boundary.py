"""core/ must stay free of UI libraries: it is the engine every front end, service and workload shares.

Two checks. Statically, no file under core/ imports textual or rich. Dynamically, every core
module imports in a fresh interpreter where textual and rich cannot be imported at all, and
neither ends up loaded. Blocking them (rather than only looking at ``sys.modules``) is what
proves core works without the UI installed: httpx, for one, imports rich for its own CLI when
rich happens to be installed, which says nothing about core's dependencies.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import core

UI_MODULES = ("textual", "rich")
CORE_ROOT = Path(core.__file__).resolve().parent


def test_no_core_file_imports_a_ui_library() -> None:
    offenders = []
    for path in sorted(CORE_ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(CORE_ROOT.parent)}:{node.lineno} imports {name}"
                for name in names
                if name.split(".")[0] in UI_MODULES
            ]
    assert offenders == []


def test_every_core_module_imports_without_ui_libraries() -> None:
    script = f"""
import importlib, importlib.abc, json, pkgutil, sys

class BlockUi(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {UI_MODULES!r}:
            raise ImportError(f"{{name}} is blocked: core must not need it")
        return None

sys.meta_path.insert(0, BlockUi())
import core
names = [m.name for m in pkgutil.walk_packages(core.__path__, "core.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({{"modules": names, "loaded": [m for m in {UI_MODULES!r} if m in sys.modules]}}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=CORE_ROOT.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"core.workspace", "core.crypto.envelope", "core.config.merge"} <= set(report["modules"])
    assert report["loaded"] == [], f"core loaded UI libraries: {report['loaded']}"


def test_import_contracts_hold() -> None:
    """The layer order and the forbidden imports in pyproject.toml ([tool.importlinter]) hold.

    Lazy imports inside functions count too, so an upward import cannot hide in a function body.
    """
    lint_imports = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint_imports), "--no-cache"], cwd=CORE_ROOT.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "core layers run one way KEPT" in out.stdout
