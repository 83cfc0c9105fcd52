"""Fine-tuning on CPU: length-grouped batches, dynamic padding, a seeded and repeatable run.

Length grouping (as in transformers' ``group_by_length``): shuffle, cut into mega-batches of
50 batches, sort each mega-batch by length, cut into batches, shuffle the batches. Each batch
then holds texts of similar length and is padded only to its own longest one, which on short
review sentences roughly halves the tokens processed versus random batches, while the order
stays random enough for SGD.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from containers.trainer.config import TrainingConfig
from containers.trainer.data import Split
from containers.trainer.model_files import export_onnx, save_pytorch
from containers.trainer.progress import ProgressStream

MEGA_BATCH = 50
EVAL_BATCH = 64
OUTPUT_NAMES = ("pytorch", "onnx", "metrics.json")


class TrainingStopped(Exception):
    """A stop was requested (SIGTERM); nothing was written to the output mount."""


@dataclass
class StopSignal:
    """Set from a signal handler; checked between steps so a stop never leaves half a write."""

    event: threading.Event = field(default_factory=threading.Event)

    def request(self) -> None:
        self.event.set()

    def check(self) -> None:
        if self.event.is_set():
            raise TrainingStopped("training stopped on request before completion")


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    indices = list(range(len(lengths)))
    rng.shuffle(indices)
    mega = batch_size * MEGA_BATCH
    batches: list[list[int]] = []
    for start in range(0, len(indices), mega):
        group = sorted(indices[start : start + mega], key=lambda i: lengths[i], reverse=True)
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def collate(encoded: list[list[int]], rows: list[int], pad_id: int, with_types: bool = True) -> dict[str, torch.Tensor]:
    width = max(len(encoded[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, index in enumerate(rows):
        tokens = encoded[index]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if with_types:  # BERT-style models take segment ids; DistilBERT-style ones reject them
        batch["token_type_ids"] = torch.zeros_like(ids)
    return batch


def evaluate(
    model: Any, encoded: list[list[int]], labels: list[int], pad_id: int, with_types: bool = True
) -> tuple[float, float]:
    """Accuracy and mean loss, in length-sorted batches (order does not change the result)."""
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(order), EVAL_BATCH):
            rows = order[start : start + EVAL_BATCH]
            target = torch.tensor([labels[i] for i in rows])
            logits = model(**collate(encoded, rows, pad_id, with_types)).logits
            loss_sum += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(dim=-1) == target).sum())
    return correct / len(encoded), loss_sum / len(encoded)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def train(
    model_dir: Path,
    splits: dict[str, Split],
    config: TrainingConfig,
    output_dir: Path,
    progress: ProgressStream,
    stop: StopSignal,
    *,
    log_every: int = 10,
) -> dict[str, Any]:
    """Fine-tune, then write pytorch/, onnx/ and metrics.json into ``output_dir`` atomically."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    started = time.perf_counter()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    seed_everything(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    pad_id = tokenizer.pad_token_id or 0
    with_types = "token_type_ids" in tokenizer.model_input_names

    def encode(split: Split) -> list[list[int]]:
        return tokenizer(split.texts, truncation=True, max_length=config.max_length)["input_ids"]

    train_ids = encode(splits["train"])
    val_ids = encode(splits["validation"])
    lengths = [len(t) for t in train_ids]
    steps_per_epoch = -(-len(train_ids) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
            "weight_decay": config.weight_decay,
        },
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, config.warmup_for(total_steps), total_steps)
    rng = random.Random(config.seed)
    epochs: list[dict[str, Any]] = []
    step = 0
    window_examples, window_start = 0, time.perf_counter()
    train_labels = splits["train"].labels
    training_time = 0.0
    for epoch in range(1, config.epochs + 1):
        if step >= total_steps:
            break
        model.train()
        loss_sum, seen = 0.0, 0
        epoch_start = time.perf_counter()
        for rows in length_grouped_batches(lengths, config.batch_size, rng):
            if step >= total_steps:
                break
            stop.check()
            batch = collate(train_ids, rows, pad_id, with_types)
            target = torch.tensor([train_labels[i] for i in rows])
            loss = torch.nn.functional.cross_entropy(model(**batch).logits, target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = float(loss.detach())
            loss_sum += loss_value * len(rows)
            seen += len(rows)
            window_examples += len(rows)
            if step % log_every == 0 or step == total_steps:
                now = time.perf_counter()
                progress.step(
                    step=step,
                    epoch=epoch,
                    loss=loss_value,
                    learning_rate=scheduler.get_last_lr()[0],
                    examples_per_s=window_examples / max(now - window_start, 1e-9),
                    total_steps=total_steps,
                )
                window_examples, window_start = 0, now
        epoch_time = time.perf_counter() - epoch_start
        training_time += epoch_time
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "train_time_s": round(epoch_time, 3),
        }
        if config.eval_each_epoch or epoch == config.epochs or step >= total_steps:
            stop.check()
            record["val_accuracy"], record["val_loss"] = evaluate(
                model, val_ids, splits["validation"].labels, pad_id, with_types
            )
            progress.eval(epoch=epoch, val_accuracy=record["val_accuracy"], val_loss=record["val_loss"])
        epochs.append(record)
        window_start = time.perf_counter()

    metrics: dict[str, Any] = {
        "epochs": epochs,
        "steps": step,
        "train_examples": len(train_ids),
        "train_time_s": round(training_time, 3),
        "config": config.as_dict(),
    }
    if "test" in splits:
        stop.check()
        metrics["test_accuracy"], metrics["test_loss"] = evaluate(
            model, encode(splits["test"]), splits["test"].labels, pad_id, with_types
        )
    stop.check()
    write_outputs(model, tokenizer, config, output_dir, metrics, started, stop)
    return metrics


def write_outputs(
    model: Any,
    tokenizer: Any,
    config: TrainingConfig,
    output_dir: Path,
    metrics: dict[str, Any],
    started: float,
    stop: StopSignal,
) -> None:
    """Build everything in a temp folder inside the output mount, then rename into place.

    Renames within one file system are atomic, and metrics.json goes last, so a reader that
    sees metrics.json sees a complete model; a stop before that leaves the mount empty.
    """
    building = Path(tempfile.mkdtemp(prefix=".trainer-partial-", dir=output_dir))
    try:
        save_pytorch(model, tokenizer, building / "pytorch")
        stop.check()
        export_onnx(model, tokenizer, building / "onnx", max_length=config.max_length)
        stop.check()
        metrics["wall_time_s"] = round(time.perf_counter() - started, 3)
        (building / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        for name in OUTPUT_NAMES:
            (building / name).rename(output_dir / name)
    finally:
        shutil.rmtree(building, ignore_errors=True)
