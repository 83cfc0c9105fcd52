"""Command line: ``python -m containers.dp_trainer --model-dir M --output-dir O``.

The job (epsilon, delta, join, LoRA, mounts) comes from ``CLEANROOM_PRIVATE_TRAINING``, never
from a party's own config. Exit codes: 0 trained and written; 2 refused (job, join, model or
output mount), with one line and nothing written; 143 stopped by SIGTERM/SIGINT with nothing
written; 1 anything else (also nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from containers.dp_trainer.job import LOSS_TELEMETRY_ENV, OUTPUT_NAMES, PrivacyConfigError, load_job
from containers.dp_trainer.join import JoinError, execute_join, join_report
from containers.trainer.__main__ import (
    EXIT_BAD_INPUT,
    EXIT_STOPPED,
    TELEMETRY_ENV,
    ModelMountError,
    check_output,
    model_folder,
    run_until_stopped,
)
from containers.trainer.model_files import PickleCheckpointError
from containers.trainer.training import StopSignal, TrainingStopped


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m containers.dp_trainer",
        description="Join the providers' datasources, train LoRA with DP-SGD and write the merged model, "
        "ONNX fp32 + int8, join_report.json and privacy_report.json.",
        epilog="The job is read from $CLEANROOM_PRIVATE_TRAINING (set by the runtime from the contract).",
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="model mount (holding pytorch/ or the model)")
    parser.add_argument("--output-dir", type=Path, required=True, help="output mount (must not hold earlier outputs)")
    parser.add_argument(
        "--progress-file", type=Path, default=None, help=f"telemetry JSON lines (default: ${TELEMETRY_ENV} if set)"
    )
    parser.add_argument("--log-every", type=int, default=1, help="write a step line every N steps (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: CPUs available)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_until_stopped(lambda stop: run(args, stop))


def run(args: argparse.Namespace, stop: StopSignal) -> int:
    try:
        # Refusals come before the (slow) model load: the job, the mounts, then the join.
        job = load_job(dict(os.environ))
        folder = model_folder(args.model_dir)
        check_output(args.output_dir, OUTPUT_NAMES)
        joined = execute_join(job.join, job.mounts)
    except (PrivacyConfigError, JoinError, ModelMountError, PickleCheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a clean room has no egress; never try the hub
    import torch

    from containers.dp_trainer.private_training import LoraUpdateError, train_private, write_outputs
    from containers.dp_trainer.telemetry import PrivateProgress

    torch.set_num_threads(args.threads or max(1, len(os.sched_getaffinity(0))))
    progress_path = args.progress_file or (Path(os.environ[TELEMETRY_ENV]) if os.environ.get(TELEMETRY_ENV) else None)
    progress = PrivateProgress(progress_path, with_loss=os.environ.get(LOSS_TELEMETRY_ENV) == "1")
    try:
        trained = train_private(joined.table, folder, job, progress, stop, log_every=max(1, args.log_every))
        # Reported before the outputs are written: the budget was spent by the steps, whatever follows.
        progress.privacy_record(trained.record.as_dict())
        write_outputs(trained, job, join_report(joined, job.join), args.output_dir, stop)
    except PrivacyConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LoraUpdateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TrainingStopped as exc:
        print(f"stopped: {exc}; nothing was written to {args.output_dir}", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        progress.close()
    record = trained.record
    print(
        f"trained {record.steps} private steps: epsilon={record.epsilon:.3f} ({record.accountant}) "
        f"epsilon_rdp={record.epsilon_rdp:.3f} delta={record.delta:g} sigma={record.noise_multiplier:.4f} "
        f"q={record.sample_rate:.5f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
