"""A contract worth reviewing, built the way parties build one: fragments through the CLI.

Shared by the review tests (core summary and diff, `contract show`/`proposal show`) and the
console's vote modal test, so all three read the same spec.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_runner import Outcome, cleanroom


def ok(*args: str | Path) -> Outcome:
    outcome = cleanroom(*args)
    assert outcome.code == 0, outcome.stderr
    return outcome


def build_parties(root: Path) -> dict[str, Path]:
    """Three fragments with an asset each, a trainer with mounts/cpu/memory, logging and telemetry."""
    ws = {name: root / name for name in ("hoster", "provider", "consumer")}
    for name, path in ws.items():
        ok("-w", path, "config", "init", "--persona", name)
    ok("-w", ws["provider"], "config", "add-datasource", "--name", "model")
    ok("-w", ws["provider"], "config", "add-datasink", "--name", "trained-model")
    ok("-w", ws["consumer"], "config", "add-datasource", "--name", "training-data")
    ok("-w", ws["consumer"], "config", "set-telemetry", "--datasink", "consumer-telemetry")
    ok(
        "-w",
        ws["hoster"],
        "config",
        "add-application",
        "--name",
        "trainer",
        "--entrypoint",
        "containers/trainer",
        "--command",
        "python -m trainer --epochs 1",
        "--mounts",
        "src=model,dst=/mnt/model",
        "--mounts",
        "src=training-data,dst=/mnt/data",
        "--mounts",
        "src=trained-model,dst=/mnt/output",
        "--cpu",
        "2",
        "--memory",
        "4",
    )
    ok("-w", ws["hoster"], "config", "set-network-policy", "--allow", "POST /infer")
    return ws


def merged_view(ws: dict[str, Path]) -> dict:
    """`config view --output json`: the spec wrapped with its hash, as a voter regenerates it."""
    return json.loads(ok("config", "view", "--configs", *ws.values(), "--output", "json").stdout)
