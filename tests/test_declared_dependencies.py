"""Every third-party package the product imports is declared in pyproject.toml, so a fresh install
(`pip install .[ml]`) has it: an import that only works because something else pulled its
package in (numpy by transformers, cbor2 by nothing) breaks on the day that something changes."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("core", "tui", "containers", "themes")
# exists only in type checkers' stubs of the standard library, imported under TYPE_CHECKING
TYPING_ONLY = {"_typeshed"}
# tests, docs and the lint gates use these; the product must not need them
TEST_EXTRAS = {"test"}


def _distribution(requirement: str) -> str:
    """``pyjwt[crypto]>=2.8,<3`` -> ``pyjwt`` (PEP 503 normalised)."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert name is not None, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [reqs for extra, reqs in project["optional-dependencies"].items() if extra not in TEST_EXTRAS]
    return {_distribution(r) for r in project["dependencies"] + [r for reqs in extras for r in reqs]}


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside a ``try`` that falls back on ImportError: the code runs without the package."""
    while node in parents:
        child, node = node, parents[node]
        if isinstance(node, ast.Try) and child in node.body:
            caught = [h.type for h in node.handlers if h.type is not None]
            names = {n.id for t in caught for n in ast.walk(t) if isinstance(n, ast.Name)}
            if names & {"ImportError", "ModuleNotFoundError"}:
                return True
    return False


def third_party_imports(root: Path) -> dict[str, list[str]]:
    """Top-level module -> ['file:line', ...] for every required third-party import under ``root``."""
    first_party = {path.name for path in root.iterdir() if (path / "__init__.py").is_file()} | set(PRODUCT)
    found: dict[str, list[str]] = {}
    for folder in PRODUCT:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in first_party or top in sys.stdlib_module_names or top in TYPING_ONLY:
                        continue
                    if top == "__future__" or _optional(node, parents):
                        continue
                    found.setdefault(top, []).append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    return found


def test_every_third_party_import_is_declared() -> None:
    declared = _declared()
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, where in sorted(third_party_imports(ROOT).items()):
        candidates = {_distribution(d) for d in distributions.get(module, [])}
        if not candidates & declared:
            undeclared[module] = f"{where[0]} (distribution {sorted(candidates) or 'not installed'})"
    assert undeclared == {}, "declare these in pyproject.toml: " + "; ".join(
        f"{m} at {w}" for m, w in undeclared.items()
    )
    assert {"cbor2", "numpy"} <= set(third_party_imports(ROOT))  # the two this test was written for


def test_the_scan_sees_required_imports_and_skips_optional_ones(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "m.py").write_text(
        "import json\n"
        "import numpy as np\n"
        "from core import errors\n"
        "from . import sibling\n"
        "def p():\n"
        "    try:\n"
        "        from scipy.stats import binomtest\n"
        "    except ImportError:\n"
        "        return None\n"
        "    from yaml import safe_load\n"
    )
    assert third_party_imports(tmp_path) == {"numpy": ["core/m.py:2"], "yaml": ["core/m.py:10"]}
