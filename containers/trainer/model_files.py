"""Model files on disk: safetensors in, safetensors + ONNX (fp32 and int8) out.

Pickle checkpoints (.bin/.pt/.pkl) execute code when loaded, and in a clean room the model is
another party's asset: loading one would let its owner run anything inside. So only
safetensors and ONNX are accepted. This module is also used by ``cleanroom model prepare`` so
the provider's prepared model and the trainer's output have exactly the same layout.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SERVING_FILE = "serving.json"
ONNX_OPSET = 17


class PickleCheckpointError(ValueError):
    """A model folder or file holds only a pickle checkpoint."""


def refuse_pickle(path: Path) -> None:
    """Raise unless ``path`` can be loaded without unpickling (a safetensors folder)."""
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise PickleCheckpointError(
                f"'{path}' is a pickle checkpoint; only safetensors and ONNX are accepted "
                "(convert it with `model.save_pretrained(dir, safe_serialization=True)`)"
            )
        return
    pickles = sorted(p.name for p in path.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    has_safetensors = any(path.glob("*.safetensors"))
    if pickles and not has_safetensors:
        raise PickleCheckpointError(
            f"model folder '{path}' holds only pickle checkpoint(s) {', '.join(pickles)}; "
            "only safetensors and ONNX are accepted "
            "(convert it with `model.save_pretrained(dir, safe_serialization=True)`)"
        )


def save_pytorch(model: Any, tokenizer: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def export_onnx(model: Any, tokenizer: Any, folder: Path, *, max_length: int) -> None:
    """Write ``model.onnx`` (dynamic batch and sequence axes), ``model.int8.onnx``, the tokenizer,
    ``config.json`` and ``serving.json`` (labels, max_length, input names) into ``folder``.

    The TorchScript-based exporter is used: it gives dynamic axes directly and its graph is what
    the onnxruntime quantiser and transformer fusions expect.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)  # before the padded sample call below changes its state
    model.config.save_pretrained(folder)
    model.eval()
    # A padded sample: tracing an all-ones mask could let a graph drop the masking path.
    sample = tokenizer(
        ["a short one", "a somewhat longer sample sentence for tracing"], padding=True, return_tensors="pt"
    )
    names = [name for name in ONNX_INPUTS if name in sample]

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, tensors, strict=False))).logits

    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    fp32 = folder / "model.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits().eval(),
            tuple(sample[n] for n in names),
            str(fp32),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    quantiser_log = logging.getLogger()
    level = quantiser_log.level
    quantiser_log.setLevel(logging.ERROR)  # the quantiser warns about optional pre-processing
    try:
        quantize_dynamic(str(fp32), str(folder / "model.int8.onnx"), weight_type=QuantType.QInt8)
    finally:
        quantiser_log.setLevel(level)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    (folder / SERVING_FILE).write_text(
        json.dumps({"labels": labels, "max_length": max_length, "inputs": names}, indent=2) + "\n"
    )
