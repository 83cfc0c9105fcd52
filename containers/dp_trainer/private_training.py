"""LoRA on the classifier, trained with DP-SGD: Poisson-sampled batches, per-sample clipping,
Gaussian noise calibrated by opacus for the job's target epsilon and delta.

The noise multiplier is calibrated for the planned steps (epochs of ``1/q`` Poisson batches,
capped by ``max_steps``); the epsilon reported is recomputed from the steps actually taken,
with a fresh accountant, exactly as governance recomputes it from the ``privacy_record``.
Only the adapter weights (LoRA matrices and the classifier head peft keeps trainable) are
trained; a check after the first step proves they moved and the frozen base did not, because
a model wrapped in the wrong order trains nothing and would still spend the budget.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from containers.dp_trainer.job import OUTPUT_NAMES, PrivacyConfigError, PrivateTrainingJob
from containers.dp_trainer.telemetry import PrivateProgress
from containers.trainer.model_files import export_onnx, save_pytorch
from containers.trainer.training import StopSignal, collate, seed_everything

ADAPTER_MARKERS = ("lora_", "modules_to_save")
PHYSICAL_BATCH = 64  # rows per forward/backward (bounds memory: ~2.5 GB for MiniLM); the job sets the expected batch
# Notices that are expected here and would bury the run's own lines: opacus's secure-RNG
# reminder (its secure mode needs torchcsprng, not shipped), the backward-hook notice of the
# first hooked layer (the frozen embeddings take no gradient) and renamed-API notices.
QUIET_WARNINGS = (
    "Secure RNG turned off",
    "Full backward hook is firing",
    "Optimal order is the largest alpha",
    ".*is deprecated",
)


class LoraUpdateError(RuntimeError):
    """The first private step did not move the adapter weights, or moved the frozen base."""


@dataclass(frozen=True)
class PrivacyRecord:
    """What governance needs to recompute the run's epsilon (design: the ``privacy_record``)."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    accountant: str
    epsilon: float
    epsilon_rdp: float
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def spent_epsilon(accountant: str, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps, from a fresh opacus accountant
    (the same computation governance runs on the record)."""
    from opacus.accountants import create_accountant

    fresh = create_accountant(accountant)
    fresh.history = [(noise_multiplier, sample_rate, steps)]
    return float(fresh.get_epsilon(delta=delta))


def check_delta(delta: float, rows: int) -> None:
    """Refuse delta >= 1/N: at that delta one person's record may leak outright. Never clamped."""
    if delta * rows >= 1:
        about = max(100, round(rows / 100) * 100)
        raise PrivacyConfigError(
            f"delta {delta:g} is not below 1/N for the about {about} joined rows; "
            f"vote a delta below 1/N (e.g. {10 ** math.floor(math.log10(1 / (rows * 10))):g})"
        )


def load_lora_model(model_dir: Path, job: PrivateTrainingJob) -> tuple[Any, Any]:
    """The classifier from the model mount with LoRA adapters; the head stays trainable.

    With ``pooling: mean`` the head classifies the masked mean of the token states (see
    containers/trainer/mean_pooling.py): under DP-SGD the head is most of what learns, and
    the [CLS] pooler of a sentence-transformers backbone is a poor feature for it."""
    import transformers
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from containers.trainer.mean_pooling import from_bert_classifier

    transformers.logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if job.pooling == "mean":
        base = from_bert_classifier(model_dir)
    else:
        base = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,  # peft then keeps the classifier head trainable (modules_to_save)
        r=job.lora.r,
        lora_alpha=job.lora.alpha,
        lora_dropout=job.lora.dropout,
        target_modules=list(job.lora.target_modules),
    )
    try:
        model = get_peft_model(base, config)
    except ValueError as exc:
        raise PrivacyConfigError(
            f"lora target_modules {', '.join(job.lora.target_modules)} do not fit the model "
            f"({str(exc).splitlines()[0]})"
        ) from None
    return model, tokenizer


def check_private_layers(model: torch.nn.Module) -> None:
    """Refuse layers whose per-sample gradients opacus cannot bound (BatchNorm mixes the samples
    of a batch, so one person's row would influence every other row's gradient)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        names = sorted({str(error).split(":")[0].strip() for error in errors})
        raise PrivacyConfigError(
            f"the model has layer(s) opacus cannot clip per sample ({'; '.join(names)}); "
            "use a model without BatchNorm (LayerNorm or GroupNorm train privately)"
        )


class FirstStepCheck:
    """Snapshot of the weights before the first private step, checked right after it."""

    def __init__(self, model: torch.nn.Module) -> None:
        named = dict(model.named_parameters())
        self.adapters = {n: p.detach().clone() for n, p in named.items() if _is_adapter(n)}
        self.frozen = {n: p.detach().clone() for n, p in named.items() if not _is_adapter(n)}
        if not self.adapters:
            raise LoraUpdateError("the model has no LoRA weights; the adapters were not attached")

    def verify(self, model: torch.nn.Module) -> None:
        named = dict(model.named_parameters())
        unchanged = [n for n, before in self.adapters.items() if torch.equal(named[n].detach(), before)]
        if unchanged:
            raise LoraUpdateError(
                f"{len(unchanged)} LoRA weight(s) did not change after the first private step "
                f"(first: {_short(unchanged[0])}); the optimizer does not train the adapters, nothing is written"
            )
        moved = [n for n, before in self.frozen.items() if not torch.equal(named[n].detach(), before)]
        if moved:
            raise LoraUpdateError(
                f"{len(moved)} frozen weight(s) changed after the first private step (first: {_short(moved[0])}); "
                "only the adapters may train, nothing is written"
            )
        self.adapters.clear()
        self.frozen.clear()


@dataclass
class PrivateRun:
    """The trained model (adapters merged) and its accounting."""

    model: Any
    tokenizer: Any
    record: PrivacyRecord
    target_epsilon: float
    planned_steps: int
    wall_time_s: float
    calibration_s: float  # finding the noise multiplier (PRV: tens of seconds, whatever the run's size)


def train_private(
    table: pa.Table,
    model_dir: Path,
    job: PrivateTrainingJob,
    progress: PrivateProgress,
    stop: StopSignal,
    *,
    log_every: int = 1,
) -> PrivateRun:
    """DP-SGD over the joined rows; returns the merged model and the privacy record."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    with warnings.catch_warnings():
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        return _train_private(table, model_dir, job, progress, stop, log_every=log_every)


def _train_private(
    table: pa.Table,
    model_dir: Path,
    job: PrivateTrainingJob,
    progress: PrivateProgress,
    stop: StopSignal,
    *,
    log_every: int,
) -> PrivateRun:
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.utils.batch_memory_manager import BatchMemoryManager

    started = time.perf_counter()
    seed_everything(job.seed)
    rows = table.num_rows
    check_delta(job.delta, rows)
    model, tokenizer = load_lora_model(model_dir, job)
    check_private_layers(model)
    texts = table[job.join.text_column].to_pylist()
    labels = table[job.join.label_column].to_pylist()
    num_labels = int(model.config.num_labels)
    if any(not 0 <= label < num_labels for label in labels):
        raise PrivacyConfigError(
            f"label column '{job.join.label_column}' holds values outside 0..{num_labels - 1} "
            f"(the model has {num_labels} labels)"
        )
    encoded = tokenizer(texts, truncation=True, max_length=job.max_length)["input_ids"]
    pad_id = tokenizer.pad_token_id or 0
    with_types = "token_type_ids" in tokenizer.model_input_names

    def batch_of(indices: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        picked = [int(i) for i in indices]
        batch = collate(encoded, picked, pad_id, with_types)
        batch["labels"] = torch.tensor([labels[i] for i in picked], dtype=torch.long)
        return batch

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.arange(rows)),
        batch_size=job.batch_size,
        collate_fn=lambda items: batch_of([item[0] for item in items]),
    )
    sample_rate = 1 / len(loader)  # what opacus's Poisson loader samples with (~ batch_size / N)
    planned = len(loader) * job.epochs
    if job.max_steps is not None:
        planned = min(planned, job.max_steps)
    calibration_started = time.perf_counter()
    noise_multiplier = get_noise_multiplier(
        target_epsilon=job.epsilon,
        target_delta=job.delta,
        sample_rate=sample_rate,
        steps=planned,
        accountant=job.accountant,
    )
    calibration_s = time.perf_counter() - calibration_started
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=job.learning_rate, weight_decay=0.0)
    # The contract's seed made the model's start reproducible; the privacy noise and the Poisson
    # draws must not be: anyone who reads the contract could otherwise regenerate both and
    # subtract the noise. Both use torch's global generator, so it is reseeded from the OS's
    # entropy here. (opacus's secure_mode, a CSPRNG, needs torchcsprng, which is not installed.)
    torch.manual_seed(secrets.randbits(63))
    engine = PrivacyEngine(accountant=job.accountant)
    private_model, private_optimizer, private_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=job.max_grad_norm,
        poisson_sampling=True,
    )
    first_step: FirstStepCheck | None = FirstStepCheck(private_model)
    private_model.train()
    step, window_rows, window_loss, window_start = 0, 0, 0.0, time.perf_counter()
    # A logical (Poisson) batch is cut into physical chunks of at most PHYSICAL_BATCH rows, so
    # memory does not grow with the expected batch size; opacus steps once per logical batch.
    with BatchMemoryManager(
        data_loader=private_loader, max_physical_batch_size=PHYSICAL_BATCH, optimizer=private_optimizer
    ) as chunks:
        for epoch in range(1, job.epochs + 1):
            for batch in chunks:
                if step >= planned:
                    break
                stop.check()
                if not isinstance(batch, dict) or len(batch["labels"]) == 0:
                    _empty_batch(private_optimizer)
                else:
                    target = batch.pop("labels")
                    loss = torch.nn.functional.cross_entropy(private_model(**batch).logits, target)
                    loss.backward()
                    window_rows += len(target)
                    window_loss += float(loss.detach()) * len(target)
                private_optimizer.step()
                private_optimizer.zero_grad(set_to_none=True)
                if _steps_taken(engine) == step:
                    continue  # a chunk inside a logical batch: clipped and summed, no step yet
                step += 1
                if first_step is not None:
                    first_step.verify(private_model)
                    first_step = None
                if step % log_every == 0 or step == planned:
                    now = time.perf_counter()
                    progress.step(
                        step=step,
                        epoch=epoch,
                        total_steps=planned,
                        examples_per_s=window_rows / max(now - window_start, 1e-9),
                        loss=window_loss / window_rows if window_rows else None,
                    )
                    window_rows, window_loss, window_start = 0, 0.0, now
    if _steps_taken(engine) != step:
        raise RuntimeError(f"the accountant saw {_steps_taken(engine)} steps but {step} were taken; not accounted")
    record = PrivacyRecord(
        noise_multiplier=float(noise_multiplier),
        sample_rate=sample_rate,
        steps=step,
        delta=job.delta,
        accountant=job.accountant,
        epsilon=spent_epsilon(job.accountant, noise_multiplier, sample_rate, step, job.delta),
        epsilon_rdp=spent_epsilon("rdp", noise_multiplier, sample_rate, step, job.delta),
        rows=rows,
    )
    private_model.remove_hooks()
    merged = private_model._module.merge_and_unload()
    return PrivateRun(
        model=merged,
        tokenizer=tokenizer,
        record=record,
        target_epsilon=job.epsilon,
        planned_steps=planned,
        wall_time_s=round(time.perf_counter() - started, 3),
        calibration_s=round(calibration_s, 3),
    )


def privacy_report(run: PrivateRun, job: PrivateTrainingJob) -> dict[str, Any]:
    """The accounting that leaves with the model (rows only rounded, like the join report)."""
    record = run.record
    return {
        "accountant": record.accountant,
        "epsilon": {"prv": _epsilon_of(record, "prv"), "rdp": record.epsilon_rdp},
        "target_epsilon": run.target_epsilon,
        "delta": record.delta,
        "noise_multiplier": record.noise_multiplier,
        "sample_rate": record.sample_rate,
        "steps": record.steps,
        "planned_steps": run.planned_steps,
        "max_grad_norm": job.max_grad_norm,
        "max_rows_per_key": job.join.max_rows_per_key,
        "epsilon_per_person": job.join.max_rows_per_key * record.epsilon,
        "poisson_sampling": True,
        "expected_batch_size": job.batch_size,
        "epochs": job.epochs,
        "pooling": job.pooling,
        "lora": asdict(job.lora),
    }


def write_outputs(
    run: PrivateRun, job: PrivateTrainingJob, join_report: dict[str, Any], output_dir: Path, stop: StopSignal
) -> None:
    """Build everything in a temp folder inside the output mount, then rename into place
    (renames are atomic within one file system, so a stop leaves no partial model)."""
    building = Path(tempfile.mkdtemp(prefix=".dp-trainer-partial-", dir=output_dir))
    try:
        save_pytorch(run.model, run.tokenizer, building / "pytorch")
        stop.check()
        export_onnx(run.model, run.tokenizer, building / "onnx", max_length=job.max_length)
        stop.check()
        (building / "join_report.json").write_text(json.dumps(join_report, indent=2) + "\n")
        report = privacy_report(run, job)
        report["wall_time_s"] = run.wall_time_s
        (building / "privacy_report.json").write_text(json.dumps(report, indent=2) + "\n")
        for name in OUTPUT_NAMES:
            os.rename(building / name, output_dir / name)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _epsilon_of(record: PrivacyRecord, accountant: str) -> float:
    if record.accountant == accountant:
        return record.epsilon
    return spent_epsilon(accountant, record.noise_multiplier, record.sample_rate, record.steps, record.delta)


def _empty_batch(optimizer: Any) -> None:
    """A Poisson batch that drew no row is still a step (the accountant counts it, and skipping
    it would change the sampling the guarantee is computed for): no gradient, only the noise.
    The model cannot run on zero rows, so the per-sample gradients are set empty directly."""
    for parameter in optimizer.params:
        parameter.grad_sample = torch.zeros((0, *parameter.shape), dtype=parameter.dtype)


def _steps_taken(engine: Any) -> int:
    """Noised optimizer steps so far, as the engine's accountant counted them."""
    return sum(count for _sigma, _rate, count in engine.accountant.history)


def _is_adapter(name: str) -> bool:
    return any(marker in name for marker in ADAPTER_MARKERS)


def _short(name: str) -> str:
    return name.removeprefix("_module.").removeprefix("base_model.model.")
