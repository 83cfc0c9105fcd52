"""Text classification with ONNX Runtime and the Rust tokenizer: a model package's wrapper.

Copied verbatim into ``src/inference.py`` by ``cleanroom model package init``; the contract pins
this file's hash, so every member votes for exactly this code. One request is one text of at
most ``MAX_TEXT_CHARS`` characters (the task's maximum payload, which a load test sends); a
batch is padded only to its own longest text.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_TEXT_CHARS = 1000
DEFAULT_MAX_LENGTH = 128


class TextClassifier:
    """A ``ModelWrapper`` over ``model/model.onnx`` + ``model/tokenizer.json``."""

    def init(self, model_dir: Path) -> None:
        folder = Path(model_dir)
        serving_file = folder / "serving.json"
        serving = json.loads(serving_file.read_text()) if serving_file.is_file() else {}
        config_file = folder / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        id2label = config.get("id2label") or {}
        self.labels: list[str] = serving.get("labels") or [id2label[k] for k in sorted(id2label, key=int)] or ["0", "1"]
        self.pad_id = int(config.get("pad_token_id") or 0)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(serving.get("max_length") or DEFAULT_MAX_LENGTH))
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        # One run at a time: the server's thread pool must not oversubscribe the clean room's cores.
        self._run_lock = threading.Lock()

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}},
            "required": ["text"],
            "additionalProperties": False,
        }

    def output_schema(self) -> dict[str, Any]:
        return output_schema_for(self.labels)

    def convert_input(self, record: Mapping[str, Any]) -> str:
        text = record.get("text") if isinstance(record, Mapping) else None
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT_CHARS or set(record) != {"text"}:
            raise ValueError(f"a request is {{'text': <1-{MAX_TEXT_CHARS} characters>}} and nothing else")
        return text

    def convert_output(self, raw: Any) -> dict[str, Any]:
        probabilities = np.asarray(raw, dtype=np.float64)
        label_id = int(probabilities.argmax())
        return {"label": self.labels[label_id], "score": float(probabilities[label_id])}

    def inference(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.inference_batch([record])[0]

    def inference_batch(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not records:
            return []
        encodings = self.tokenizer.encode_batch([self.convert_input(record) for record in records])
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
            types[row, : len(encoding.ids)] = encoding.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        with self._run_lock:
            (logits,) = self.session.run(None, {name: feed[name] for name in self.input_names})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        return [self.convert_output(row) for row in probabilities]


def output_schema_for(labels: Sequence[str]) -> dict[str, Any]:
    """The answer to one text: its most likely label and that label's probability. A function of
    the labels, so a server of a plain ONNX folder answers in exactly the package's shape."""
    return {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": list(labels)},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["label", "score"],
        "additionalProperties": False,
    }
