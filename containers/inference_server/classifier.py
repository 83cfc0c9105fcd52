"""ONNX Runtime text classification with length-sorted, dynamically padded batches.

Sorting a batch by token length before cutting it into sub-batches means each sub-batch is
padded only to its own longest text, so short sentences do not pay for long ones: on the
rotten_tomatoes test set this is most of the speed-up over a padded per-request approach.
Sub-batches of 8 sorted texts measured fastest here for MiniLM on 1-2 cores (fp32 and int8:
larger ones pay for more padding, single rows for more per-call overhead).
The tokenizer is the Rust ``tokenizers`` one read from ``tokenizer.json``, so the serving image
needs neither torch nor transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SERVING_FILE = "serving.json"
DEFAULT_MAX_LENGTH = 128
SUB_BATCH = 8


class ModelFolderError(ValueError):
    """The model mount does not hold a servable ONNX model."""


@dataclass(frozen=True)
class Prediction:
    label_id: int
    label: str
    score: float
    truncated: bool


def onnx_folder(model_dir: Path) -> Path:
    """Accept either the prepared model root (with ``onnx/``) or the ``onnx/`` folder itself."""
    return model_dir / "onnx" if (model_dir / "onnx").is_dir() else model_dir


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_threads() -> int:
    """One intra-op thread per CPU this process may run on (not per CPU of the host)."""
    return max(1, len(os.sched_getaffinity(0)))


class OnnxClassifier:
    def __init__(
        self, model_dir: Path, *, quantised: bool = False, threads: int | None = None, max_length: int | None = None
    ) -> None:
        folder = onnx_folder(Path(model_dir))
        self.model_file = folder / ("model.int8.onnx" if quantised else "model.onnx")
        if not self.model_file.is_file():
            raise ModelFolderError(
                f"model file '{self.model_file}' does not exist; "
                "mount a folder prepared by `cleanroom model prepare` or the trainer"
            )
        if not (folder / "tokenizer.json").is_file():
            raise ModelFolderError(
                f"tokenizer file '{folder / 'tokenizer.json'}' does not exist; "
                "the ONNX folder must hold tokenizer.json next to the model"
            )
        serving = json.loads((folder / SERVING_FILE).read_text()) if (folder / SERVING_FILE).is_file() else {}
        self.labels: list[str] = serving.get("labels") or self._labels_from_config(folder)
        self.max_length = int(max_length or serving.get("max_length") or DEFAULT_MAX_LENGTH)
        self.quantised = quantised
        self.model_sha256 = sha256_file(self.model_file)
        self.threads = threads or default_threads()

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
        self.pad_id = int(config.get("pad_token_id") or 0)

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        # Requests run in a thread pool; one inference at a time keeps the intra-op threads
        # from oversubscribing the few cores a clean room gets.
        self._run_lock = threading.Lock()

    @staticmethod
    def _labels_from_config(folder: Path) -> list[str]:
        config_file = folder / "config.json"
        if not config_file.is_file():
            return ["0", "1"]
        id2label = json.loads(config_file.read_text()).get("id2label") or {}
        return [id2label[k] for k in sorted(id2label, key=int)] or ["0", "1"]

    def classify(self, texts: list[str], sub_batch: int = SUB_BATCH) -> list[Prediction]:
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        results: list[Prediction | None] = [None] * len(texts)
        for start in range(0, len(order), sub_batch):
            chunk = order[start : start + sub_batch]
            probabilities = self._run([encodings[i] for i in chunk])
            for row, index in enumerate(chunk):
                label_id = int(probabilities[row].argmax())
                results[index] = Prediction(
                    label_id=label_id,
                    label=self.labels[label_id],
                    score=float(probabilities[row, label_id]),
                    truncated=bool(encodings[index].overflowing),
                )
        return [r for r in results if r is not None]

    def _run(self, encodings: list) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        with self._run_lock:
            (logits,) = self.session.run(["logits"], {name: feed[name] for name in self.input_names})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
