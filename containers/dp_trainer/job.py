"""The job of a private training run, read from ``CLEANROOM_PRIVATE_TRAINING``.

The runtime passes the contract's ``private_training`` section (canonical JSON) plus the mount of
each datasource. The contract validated it already (``core.config.join_spec`` and the
``PrivateTraining`` model), but a workload imports nothing from ``core`` and trusts no
environment blindly, so every rule the training relies on for its privacy guarantee is checked
again here: a refused job never reads a row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

JOB_ENV = "CLEANROOM_PRIVATE_TRAINING"
LOSS_TELEMETRY_ENV = "CLEANROOM_LOSS_TELEMETRY"
ACCOUNTANTS = ("prv", "rdp")
POOLINGS = ("mean", "cls")  # containers/trainer/mean_pooling.py says why mean is the default
HOWS = ("base", "inner", "left", "union")
# What a run leaves in the output mount (all of it, renamed into place at the end, or nothing).
OUTPUT_NAMES = ("pytorch", "onnx", "join_report.json", "privacy_report.json")


class PrivacyConfigError(ValueError):
    """The private training job is malformed or would break the privacy accounting."""


@dataclass(frozen=True)
class JoinSource:
    datasource: str
    file: str
    columns: tuple[str, ...]
    how: str


@dataclass(frozen=True)
class JoinSpec:
    key: str
    sources: tuple[JoinSource, ...]
    min_rows: int
    max_rows_per_key: int
    drop: tuple[str, ...] = ()
    text_column: str = "text"
    label_column: str = "label"


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("query", "value")


@dataclass(frozen=True)
class PrivateTrainingJob:
    epsilon: float
    delta: float
    batch_size: int
    join: JoinSpec
    mounts: dict[str, Path]
    accountant: str = "prv"
    max_grad_norm: float = 1.0
    epochs: int = 1
    max_steps: int | None = None
    learning_rate: float = 5e-4
    max_length: int = 64
    pooling: str = "mean"
    lora: LoraSettings = field(default_factory=LoraSettings)
    seed: int = 42
    poisson_sampling: bool = True


_JOB_FIELDS = {
    "epsilon",
    "delta",
    "accountant",
    "max_grad_norm",
    "batch_size",
    "epochs",
    "max_steps",
    "learning_rate",
    "max_length",
    "pooling",
    "lora",
    "seed",
    "poisson_sampling",
    "join",
    "mounts",
}
_JOIN_FIELDS = {"key", "sources", "drop", "text_column", "label_column", "min_rows", "max_rows_per_key"}
_SOURCE_FIELDS = {"datasource", "file", "columns", "how"}
_LORA_FIELDS = {"r", "alpha", "dropout", "target_modules"}


def load_job(environ: dict[str, str]) -> PrivateTrainingJob:
    """The job from the environment the runtime set."""
    text = environ.get(JOB_ENV)
    if not text:
        raise PrivacyConfigError(f"{JOB_ENV} is not set; the runtime passes the contract's private_training section")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PrivacyConfigError(f"{JOB_ENV} is not valid JSON ({exc.msg} at {exc.pos})") from None
    return parse_job(document)


def parse_job(document: Any) -> PrivateTrainingJob:
    data = _object(document, "private_training", _JOB_FIELDS, required={"epsilon", "delta", "batch_size", "join"})
    epsilon = _number(data, "epsilon", positive=True)
    delta = _number(data, "delta", positive=True)
    if delta >= 1:
        raise PrivacyConfigError(f"private_training delta {delta} must be below 1")
    accountant = data.get("accountant", "prv")
    if accountant not in ACCOUNTANTS:
        raise PrivacyConfigError(f"private_training accountant {accountant!r} is unknown; use prv or rdp")
    if data.get("poisson_sampling", True) is not True:
        raise PrivacyConfigError(
            "poisson_sampling false is refused: the accountant's guarantee holds only for Poisson-sampled batches"
        )
    max_steps = data.get("max_steps")
    pooling = data.get("pooling", "mean")
    if pooling not in POOLINGS:
        raise PrivacyConfigError(f"private_training pooling {pooling!r} is unknown; use mean or cls")
    mounts = data.get("mounts")
    if not isinstance(mounts, dict) or not all(isinstance(v, str) for v in mounts.values()):
        raise PrivacyConfigError("private_training mounts must map each datasource to its mount path")
    join = _join(data["join"])
    missing = [name for name in dict.fromkeys(s.datasource for s in join.sources) if name not in mounts]
    if missing:
        raise PrivacyConfigError(f"join datasource(s) {', '.join(missing)} are not mounted in this clean room")
    return PrivateTrainingJob(
        epsilon=epsilon,
        delta=delta,
        accountant=accountant,
        max_grad_norm=_number(data, "max_grad_norm", positive=True, default=1.0),
        batch_size=_integer(data, "batch_size"),
        epochs=_integer(data, "epochs", default=1),
        max_steps=None if max_steps is None else _integer(data, "max_steps"),
        learning_rate=_number(data, "learning_rate", positive=True, default=5e-4),
        max_length=_integer(data, "max_length", default=64),
        pooling=pooling,
        lora=_lora(data.get("lora", {})),
        seed=_integer(data, "seed", default=42, minimum=0),
        join=join,
        mounts={name: Path(path) for name, path in mounts.items()},
    )


def _join(document: Any) -> JoinSpec:
    data = _object(document, "join", _JOIN_FIELDS, required={"key", "sources", "min_rows", "max_rows_per_key"})
    key = _text(data, "key")
    sources = data["sources"]
    if not isinstance(sources, list) or not sources:
        raise PrivacyConfigError("join sources must be a non-empty list")
    parsed = tuple(_source(source, key) for source in sources)
    if parsed[0].how != "base" or any(source.how == "base" for source in parsed[1:]):
        raise PrivacyConfigError("join: the first source must have how 'base' and only the first")
    drop = data.get("drop", [])
    if not isinstance(drop, list) or not all(isinstance(c, str) for c in drop):
        raise PrivacyConfigError("join drop must be a list of column names")
    if key in drop:
        raise PrivacyConfigError(f"join drops its key {key!r}: the key bounds each person's rows, keep it")
    return JoinSpec(
        key=key,
        sources=parsed,
        drop=tuple(drop),
        text_column=_text(data, "text_column", default="text"),
        label_column=_text(data, "label_column", default="label"),
        min_rows=_integer(data, "min_rows"),
        max_rows_per_key=_integer(data, "max_rows_per_key"),
    )


def _source(document: Any, key: str) -> JoinSource:
    data = _object(document, "join source", _SOURCE_FIELDS, required=_SOURCE_FIELDS)
    name = _text(data, "datasource")
    file = _text(data, "file")
    path = PurePosixPath(file)
    if path.is_absolute() or ".." in path.parts or "\\" in file or path.suffix != ".parquet":
        raise PrivacyConfigError(f"join file {file!r} of {name!r} must be a relative .parquet path without '..'")
    columns = data["columns"]
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
        raise PrivacyConfigError(f"join source {name!r}: columns must be a non-empty list of names")
    if len(set(columns)) != len(columns) or key not in columns:
        raise PrivacyConfigError(f"join source {name!r}: columns must be distinct and include the key {key!r}")
    how = data["how"]
    if how not in HOWS:
        raise PrivacyConfigError(f"join source {name!r}: how {how!r} is not one of {', '.join(HOWS)}")
    return JoinSource(datasource=name, file=str(path), columns=tuple(columns), how=how)


def _lora(document: Any) -> LoraSettings:
    data = _object(document, "lora", _LORA_FIELDS, required=set())
    targets = data.get("target_modules", ["query", "value"])
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise PrivacyConfigError("lora target_modules must be a non-empty list of module names")
    dropout = _number(data, "dropout", positive=False, default=0.0)
    if dropout >= 1:
        raise PrivacyConfigError(f"lora dropout {dropout} must be below 1")
    return LoraSettings(
        r=_integer(data, "r", default=8),
        alpha=_integer(data, "alpha", default=16),
        dropout=dropout,
        target_modules=tuple(targets),
    )


def _object(document: Any, where: str, allowed: set[str], *, required: set[str]) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise PrivacyConfigError(f"{where} must be a JSON object")
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise PrivacyConfigError(f"{where} has unknown field(s) {', '.join(unknown)}")
    missing = sorted(required - set(document))
    if missing:
        raise PrivacyConfigError(f"{where} lacks field(s) {', '.join(missing)}")
    return document


def _number(data: dict[str, Any], name: str, *, positive: bool, default: float | None = None) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PrivacyConfigError(f"{name} must be a number, not {json.dumps(value)}")
    if value < 0 or (positive and value == 0):
        raise PrivacyConfigError(f"{name} {value} must be {'above' if positive else 'at least'} 0")
    return float(value)


def _integer(data: dict[str, Any], name: str, *, default: int | None = None, minimum: int = 1) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PrivacyConfigError(f"{name} must be an integer >= {minimum}, not {json.dumps(value)}")
    return value


def _text(data: dict[str, Any], name: str, *, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or not value:
        raise PrivacyConfigError(f"{name} must be a non-empty string")
    return value
