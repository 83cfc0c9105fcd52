"""The detached runtime (`python -m core.runtime.process`, what `deployment start` spawns) loads
only what a deployment needs: every module imported is start time before the workload's first line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# UI and ML stacks are the workloads' or the console's business; httpx's own CLI (click, rich,
# pygments) and the governance state engine (a client only reads the service's endpoint) are
# never used by the runtime process
NOT_FOR_THE_RUNTIME = (
    "torch",
    "transformers",
    "textual",
    "rich",
    "click",
    "pygments",
    "fastapi",
    "uvicorn",
    "core.governance.state",
    "core.governance.ledger",
)

PROBE = """
import json, runpy, sys
sys.argv = ["core.runtime.process", "--help"]
try:
    runpy.run_module("core.runtime.process", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def test_detached_runtime_imports_nothing_it_does_not_use() -> None:
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=root, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "core.runtime.local" in loaded and "httpx" in loaded  # the probe really ran the entry point
    unwanted = sorted(m for m in loaded if any(m == name or m.startswith(name + ".") for name in NOT_FOR_THE_RUNTIME))
    assert unwanted == []
