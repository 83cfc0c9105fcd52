"""Model scan: time ``check_package`` over 90 MB packages, against reading their bytes once.

Two packages, each with the project's text-classification wrapper in ``src/``: ``safetensors``
is the shipped all-MiniLM-L6-v2 (90.9 MB of safetensors, its tokenizer and configs); ``onnx`` is
one ONNX model holding a 90 MB initializer (parsed whole by ``onnx``, opset checked against the
installed onnxruntime). The baseline is the cheapest thing a
scan could possibly do, in the same process: read and SHA-256 every file once. The check reads
each file, validates the safetensors header byte for byte, sniffs every other file for pickle
opcodes, parses the JSON and the wrapper's syntax tree. The first run is reported apart (it
includes importing numpy/yaml/picklescan). Target (issue 15): at most 5 s for a 90 MB package.

    python benchmarks/model_scan.py [--quick]

The last line of output is one JSON object with the figures, the targets and ``targets_met``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.ml.model_preparation import offline_base_dir
from core.onboarding import wrappers
from core.onboarding.package import check_package

TARGET_SECONDS = 5.0
KINDS = ("safetensors", "onnx")


def build_package(root: Path, kind: str) -> Path:
    if kind == "safetensors":
        shutil.copytree(offline_base_dir(), root / "model")
    else:
        write_onnx(root / "model" / "model.onnx")
    (root / "src").mkdir()
    shutil.copyfile(Path(wrappers.__file__).parent / "text_classification.py", root / "src" / "inference.py")
    (root / "src" / "requirements.txt").write_text("# nothing beyond the clean room's image\n")
    (root / "src" / "settings.yml").write_text(
        'python: "3.11"\ntask: text-classification\nwrapper: TextClassifier\nsample_post_data: {text: fine}\n'
    )
    return root


def write_onnx(path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((23_040, 1_000), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 23_040])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1_000])],
        initializer=[weight],
    )
    path.parent.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))


def read_and_hash(root: Path) -> int:
    total = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    total += len(block)
    return total


def timed(function: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - started, value


def measure(kind: str, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="model-scan-") as folder:
        root = build_package(Path(folder) / "package", kind)
        first_s, report = timed(check_package, root)
        if not report.ok:
            raise SystemExit(f"the {kind} package has findings: {[f.one_line() for f in report.findings]}")
        baseline = [timed(read_and_hash, root)[0] for _ in range(runs)]
        scans = [timed(check_package, root)[0] for _ in range(runs)]
    return {
        "bytes": sum(f.size for f in report.scan.files),
        "files": len(report.scan.files),
        "baseline_s": statistics.median(baseline),
        "first_scan_s": first_s,
        "scan_s": statistics.median(scans),
        "worst_scan_s": max([first_s, *scans]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed run of each instead of five")
    args = parser.parse_args()
    runs = 1 if args.quick else 5
    figures = {kind: measure(kind, runs) for kind in KINDS}
    print(f"check_package over a 90 MB package ({runs} run(s) each; the first run includes imports)")
    print(f"{'package':<12} {'MB':>6} {'files':>5} {'read+sha256':>12} {'first':>8} {'median':>8} {'ratio':>6}")
    for kind, f in figures.items():
        print(
            f"{kind:<12} {f['bytes'] / 1e6:>6.1f} {f['files']:>5} {f['baseline_s']:>11.3f}s {f['first_scan_s']:>7.3f}s "
            f"{f['scan_s']:>7.3f}s {f['scan_s'] / f['baseline_s']:>5.2f}x"
        )
    worst_s = max(f["worst_scan_s"] for f in figures.values())
    print(f"worst {worst_s:.3f} s (target <= {TARGET_SECONDS} s)")
    result: dict[str, Any] = {
        "benchmark": "model_scan",
        "quick": args.quick,
        **{f"{kind}_{key}": round(value, 4) for kind, f in figures.items() for key, value in f.items()},
        "worst_scan_s": round(worst_s, 4),
        "targets": {"worst_scan_s": TARGET_SECONDS},
        "targets_met": worst_s <= TARGET_SECONDS,
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
