"""The training config (the provider's asset): read and validated before any data is touched.

Unknown keys are rejected rather than ignored: a typo such as ``learning_rte`` would otherwise
silently train with a default the provider never agreed to.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "training_config.json"


class ConfigError(ValueError):
    """The training config is missing or malformed."""


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int
    learning_rate: float
    batch_size: int
    max_length: int = 128
    warmup_ratio: float | None = None
    warmup_steps: int | None = None
    weight_decay: float = 0.01
    seed: int = 42
    eval_each_epoch: bool = True
    max_steps: int | None = None

    def warmup_for(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return min(self.warmup_steps, total_steps)
        return round((self.warmup_ratio or 0.0) * total_steps)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# name -> (accepted types, check, what a valid value looks like)
RULES: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "epochs": ((int,), lambda v: 1 <= v <= 100, "an integer from 1 to 100"),
    "learning_rate": ((int, float), lambda v: 0 < v < 1, "a number between 0 and 1, e.g. 5e-5"),
    "batch_size": ((int,), lambda v: 1 <= v <= 1024, "an integer from 1 to 1024"),
    "max_length": ((int,), lambda v: 8 <= v <= 512, "an integer from 8 to 512"),
    "warmup_ratio": ((int, float), lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1"),
    "warmup_steps": ((int,), lambda v: v >= 0, "a non-negative integer"),
    "weight_decay": ((int, float), lambda v: 0 <= v < 1, "a number from 0 up to 1"),
    "seed": ((int,), lambda v: 0 <= v < 2**32, "a non-negative integer below 2**32"),
    "eval_each_epoch": ((bool,), lambda v: True, "true or false"),
    "max_steps": ((int,), lambda v: v >= 1, "a positive integer"),
}
REQUIRED = ("epochs", "learning_rate", "batch_size")


def config_file(config_dir: Path) -> Path:
    """``training_config.json``, or the only ``*.json`` file in the config mount."""
    if config_dir.is_file():
        return config_dir
    if not config_dir.is_dir():
        raise ConfigError(f"config folder '{config_dir}' does not exist; mount the training config there")
    preferred = config_dir / CONFIG_FILE
    if preferred.is_file():
        return preferred
    candidates = sorted(config_dir.glob("*.json"))
    if len(candidates) != 1:
        raise ConfigError(f"config folder '{config_dir}' must hold {CONFIG_FILE} (found {len(candidates)} .json files)")
    return candidates[0]


def load_config(config_dir: Path) -> TrainingConfig:
    path = config_file(config_dir)
    try:
        document = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"training config '{path}' is not valid JSON ({exc})") from exc
    return parse_config(document, str(path))


def parse_config(document: Any, where: str = "training config") -> TrainingConfig:
    if not isinstance(document, dict):
        raise ConfigError(f"{where} must be a JSON object with keys {', '.join(RULES)}")
    unknown = sorted(set(document) - set(RULES))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(RULES)}")
    missing = [key for key in REQUIRED if key not in document]
    if missing:
        raise ConfigError(f"{where} lacks required key(s) {', '.join(missing)}")
    for key, value in document.items():
        types, check, expected = RULES[key]
        is_bool = isinstance(value, bool)
        if (is_bool and bool not in types) or not isinstance(value, types) or not check(value):
            raise ConfigError(f"{where}: '{key}' is {json.dumps(value)}, it must be {expected}")
    if "warmup_ratio" in document and "warmup_steps" in document:
        raise ConfigError(f"{where} sets both warmup_ratio and warmup_steps; keep one of them")
    if "learning_rate" in document:
        document = {**document, "learning_rate": float(document["learning_rate"])}
    return TrainingConfig(**document)
