"""One epoch of our trainer vs a plain transformers training loop, same config, same run.

The plain loop is what a notebook fine-tune looks like: ``datasets.map`` tokenisation, a
shuffled ``DataLoader`` with ``DataCollatorWithPadding`` (dynamic padding, random batches),
AdamW + linear warmup. Ours (``python -m containers.trainer``) adds length-grouped batches,
validation, the progress stream, safetensors + ONNX fp32/int8 outputs. Both fine-tune the
offline all-MiniLM-L6-v2 (prepared by ``core.ml.model_preparation``) on rotten_tomatoes with
lr 5e-5, batch 32, max_length 64, warmup 10 %, weight decay 0.01, seed 42, on the same threads.

Targets: our epoch (training-loop time) <= 1.1x the plain loop's; and, for a full epoch only
(not ``--quick``), <= 6 minutes with test accuracy >= 0.80. ``--quick`` uses a few hundred
training rows so the ratio can be checked in about a minute on a shared machine.

    python benchmarks/training.py [--quick] [--work-dir DIR]

The last line is one JSON object with the figures, the targets and ``targets_met``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIG = {
    "epochs": 1,
    "learning_rate": 5e-5,
    "batch_size": 32,
    "max_length": 64,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "seed": 42,
    "eval_each_epoch": True,
}
QUICK_ROWS = {"train": 480, "validation": 200, "test": 300}
TARGET_RATIO = 1.1
TARGET_EPOCH_S = 360.0
TARGET_ACCURACY = 0.80


def prepared_base(work: Path) -> Path:
    from core.ml.model_preparation import prepare

    base = work / "minilm-base"
    if not (base / "pytorch" / "model.safetensors").is_file():
        prepare(None, base, max_length=CONFIG["max_length"])
    return base


def write_data(work: Path, quick: bool) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.ml.datasets import load

    folder = work / ("data-quick" if quick else "data-full")
    folder.mkdir(parents=True, exist_ok=True)
    dataset = load("rotten_tomatoes")
    for split, part in dataset.items():
        rows = part.shuffle(seed=0).select(range(QUICK_ROWS[split])) if quick else part
        pq.write_table(
            pa.table({"text": rows["text"], "label": [int(v) for v in rows["label"]]}), folder / f"{split}.parquet"
        )
    return folder


def run_ours(base: Path, data: Path, work: Path, threads: int) -> dict:
    run = work / f"ours-{int(time.time())}"
    (run / "config").mkdir(parents=True)
    (run / "config" / "training_config.json").write_text(json.dumps(CONFIG))
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "containers.trainer",
            "--model-dir",
            str(base),
            "--data-dir",
            str(data),
            "--config-dir",
            str(run / "config"),
            "--output-dir",
            str(run / "output"),
            "--progress-file",
            str(run / "progress.jsonl"),
            "--threads",
            str(threads),
        ],
        cwd=ROOT,
        check=True,
    )
    total = time.perf_counter() - started
    metrics = json.loads((run / "output" / "metrics.json").read_text())
    return {
        "train_s": metrics["train_time_s"],
        "total_s": total,
        "test_accuracy": metrics.get("test_accuracy"),
        "val_accuracy": metrics["epochs"][-1].get("val_accuracy"),
        "output": str(run / "output"),
    }


def run_plain(base: Path, data: Path, threads: int) -> dict:
    import datasets
    import torch
    import transformers
    from torch.utils.data import DataLoader
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        get_linear_schedule_with_warmup,
    )

    started = time.perf_counter()
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    random.seed(CONFIG["seed"])
    torch.manual_seed(CONFIG["seed"])
    tokenizer = AutoTokenizer.from_pretrained(base / "pytorch")
    model = AutoModelForSequenceClassification.from_pretrained(base / "pytorch")
    raw = datasets.load_dataset("parquet", data_files={s: str(data / f"{s}.parquet") for s in ("train", "test")})
    encoded = raw.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=CONFIG["max_length"]),
        batched=True,
        remove_columns=["text"],
    ).rename_column("label", "labels")
    collator = DataCollatorWithPadding(tokenizer)
    loader = DataLoader(encoded["train"], batch_size=CONFIG["batch_size"], shuffle=True, collate_fn=collator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=CONFIG["learning_rate"], weight_decay=CONFIG["weight_decay"])
    steps = len(loader) * CONFIG["epochs"]
    scheduler = get_linear_schedule_with_warmup(optimizer, int(CONFIG["warmup_ratio"] * steps), steps)
    train_start = time.perf_counter()
    model.train()
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    train_s = time.perf_counter() - train_start
    model.eval()
    correct = 0
    with torch.no_grad():
        for batch in DataLoader(encoded["test"], batch_size=64, collate_fn=collator):
            correct += int((model(**batch).logits.argmax(-1) == batch["labels"]).sum())
    return {
        "train_s": train_s,
        "total_s": time.perf_counter() - started,
        "test_accuracy": correct / len(encoded["test"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"train on {QUICK_ROWS['train']} rows only")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/cleanroom-bench"))
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    base = prepared_base(args.work_dir)
    data = write_data(args.work_dir, args.quick)
    plain = run_plain(base, data, args.threads)
    ours = run_ours(base, data, args.work_dir, args.threads)
    ratio = ours["train_s"] / plain["train_s"]
    rows = QUICK_ROWS["train"] if args.quick else 8530
    print(f"{'':28}{'train loop s':>14}{'end to end s':>14}{'test acc':>10}")
    for name, row in (("plain transformers loop", plain), ("containers.trainer", ours)):
        print(f"{name:28}{row['train_s']:>14.1f}{row['total_s']:>14.1f}{row['test_accuracy']:>10.3f}")
    print(
        f"ours/plain training-loop time: {ratio:.3f} (target <= {TARGET_RATIO}); "
        "ours end to end also validates, exports ONNX fp32 + int8 and writes atomically"
    )
    targets = {"ours_over_plain_max": TARGET_RATIO}
    met = ratio <= TARGET_RATIO
    if not args.quick:
        targets |= {"epoch_s_max": TARGET_EPOCH_S, "test_accuracy_min": TARGET_ACCURACY}
        met = met and ours["train_s"] <= TARGET_EPOCH_S and ours["test_accuracy"] >= TARGET_ACCURACY
    print(
        json.dumps(
            {
                "benchmark": "training",
                "quick": args.quick,
                "train_rows": rows,
                "threads": args.threads,
                "config": CONFIG,
                "plain_train_s": round(plain["train_s"], 2),
                "ours_train_s": round(ours["train_s"], 2),
                "plain_total_s": round(plain["total_s"], 2),
                "ours_total_s": round(ours["total_s"], 2),
                "ours_over_plain": round(ratio, 3),
                "plain_test_accuracy": round(plain["test_accuracy"], 4),
                "ours_test_accuracy": round(ours["test_accuracy"], 4),
                "ours_epoch_s_extrapolated": round(ours["train_s"] * 8530 / rows, 1),
                "targets": targets,
                "targets_met": met,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
