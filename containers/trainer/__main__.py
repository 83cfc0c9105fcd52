"""Command line: ``python -m containers.trainer --model-dir M --data-dir D --config-dir C --output-dir O``.

Exit codes: 0 trained and written; 2 bad input (config, dataset, model, output mount), reported
before any training; 143 stopped by SIGTERM/SIGINT with nothing written; 1 anything else.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from containers.trainer.config import ConfigError, load_config
from containers.trainer.data import DatasetError, load_splits
from containers.trainer.model_files import PickleCheckpointError, refuse_pickle
from containers.trainer.progress import ProgressStream
from containers.trainer.training import OUTPUT_NAMES, StopSignal, TrainingStopped

TELEMETRY_ENV = "CLEANROOM_TELEMETRY_FILE"
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 143


class ModelMountError(ValueError):
    """The model or output mount cannot be used."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m containers.trainer",
        description="Fine-tune a sequence classifier on CPU and write pytorch/, onnx/ and metrics.json.",
        epilog="Example: python -m containers.trainer --model-dir /mnt/model --data-dir /mnt/data "
        "--config-dir /mnt/config --output-dir /mnt/output --progress-file /mnt/telemetry/progress.jsonl",
    )
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="model mount (holding pytorch/ or the model itself)"
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="dataset mount (parquet splits or save_to_disk)")
    parser.add_argument("--config-dir", type=Path, required=True, help="training-config mount (training_config.json)")
    parser.add_argument("--output-dir", type=Path, required=True, help="output mount (must not hold earlier outputs)")
    parser.add_argument(
        "--progress-file",
        type=Path,
        default=None,
        help=f"append JSON-lines progress here (default: ${TELEMETRY_ENV} if set)",
    )
    parser.add_argument("--log-every", type=int, default=10, help="write a step line every N steps (default 10)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: CPUs available)")
    return parser.parse_args(argv)


def model_folder(model_dir: Path) -> Path:
    folder = model_dir / "pytorch" if (model_dir / "pytorch").is_dir() else model_dir
    if not (folder / "config.json").is_file():
        raise ModelMountError(
            f"model folder '{folder}' has no config.json; mount a folder prepared "
            "by `cleanroom model prepare` (its pytorch/ part)"
        )
    refuse_pickle(folder)
    if not any(folder.glob("*.safetensors")):
        raise ModelMountError(f"model folder '{folder}' has no .safetensors weights")
    return folder


def check_output(output_dir: Path, names: tuple[str, ...] = OUTPUT_NAMES) -> None:
    """Refuse an output mount that already holds any of ``names`` (the trainer's outputs)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    existing = [name for name in names if (output_dir / name).exists()]
    if existing:
        raise ModelMountError(
            f"output folder '{output_dir}' already holds {', '.join(existing)}; "
            "give an empty output mount so no earlier result is overwritten"
        )


def run_until_stopped(run: Callable[[StopSignal], int]) -> int:
    """Run ``run`` with SIGTERM/SIGINT turned into a stop request it checks between steps, so
    a stop from the runtime ends the run cleanly instead of mid-write."""
    stop = StopSignal()
    previous = {signum: signal.signal(signum, lambda *_: stop.request()) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return run(stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_until_stopped(lambda stop: run(args, stop))


def run(args: argparse.Namespace, stop: StopSignal) -> int:
    try:
        # Everything is validated before the (slow) model load and training start.
        config = load_config(args.config_dir)
        folder = model_folder(args.model_dir)
        num_labels = _num_labels(folder)
        splits = load_splits(args.data_dir, num_labels)
        check_output(args.output_dir)
    except (ConfigError, DatasetError, ModelMountError, PickleCheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a clean room has no egress; never try the hub
    import torch

    from containers.trainer.training import train

    torch.set_num_threads(args.threads or max(1, len(os.sched_getaffinity(0))))
    progress_path = args.progress_file or (Path(os.environ[TELEMETRY_ENV]) if os.environ.get(TELEMETRY_ENV) else None)
    progress = ProgressStream(progress_path)
    try:
        metrics = train(folder, splits, config, args.output_dir, progress, stop, log_every=max(1, args.log_every))
    except TrainingStopped as exc:
        print(f"stopped: {exc}; nothing was written to {args.output_dir}", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        progress.close()
    last = metrics["epochs"][-1] if metrics["epochs"] else {}
    print(
        f"trained {metrics['steps']} steps: val_accuracy={last.get('val_accuracy')} "
        f"test_accuracy={metrics.get('test_accuracy')} wall_time_s={metrics['wall_time_s']}"
    )
    return 0


def _num_labels(folder: Path) -> int:
    import json

    config = json.loads((folder / "config.json").read_text())
    return int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)


if __name__ == "__main__":
    sys.exit(main())
