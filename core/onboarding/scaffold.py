"""``cleanroom model package init``: turn a prepared ONNX classifier into a model package.

The source is what ``cleanroom model prepare`` (or the trainer) writes: an ``onnx/`` folder, or
the folder itself, holding ``model.onnx`` and ``tokenizer.json``. Only the files the wrapper reads
are copied, so nothing the provider happened to leave there (a pickle checkpoint) rides along.
The package is built in a sibling folder and renamed into place: it appears whole or not at all.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from core.errors import ConflictError, InvalidInputError, NotFoundError
from core.onboarding.package import IMAGE_PACKAGES, REQUIREMENTS_FILE, SETTINGS_FILE
from core.onboarding.wrapper import WRAPPER_FILE

SCAFFOLD_TASKS = ("text-classification",)
MODEL_FILES = ("model.onnx", "tokenizer.json")
OPTIONAL_MODEL_FILES = ("model.int8.onnx", "config.json", "serving.json")
WRAPPER_SOURCES = {"text-classification": Path(__file__).parent / "wrappers" / "text_classification.py"}
SAMPLE_TEXT = "A gripping, beautifully acted film that earns every minute of its running time."


def scaffold_package(from_model: Path, output: Path, *, task: str) -> Path:
    """Write a package for ``task`` from the ONNX model in ``from_model`` into ``output``."""
    if task not in SCAFFOLD_TASKS:
        raise InvalidInputError(
            f"--task {task!r} cannot be scaffolded yet", hint=f"use {', '.join(SCAFFOLD_TASKS)}, or write the package"
        )
    source = _onnx_folder(Path(from_model))
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConflictError(f"output folder '{output}' is not empty", hint="choose a new --output-dir or remove it")
    output.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        (building / "model").mkdir()
        (building / "src").mkdir()
        for name in MODEL_FILES + OPTIONAL_MODEL_FILES:
            if (source / name).exists() or name in MODEL_FILES:
                _copy_regular(source / name, building / "model" / name)
        shutil.copyfile(WRAPPER_SOURCES[task], building / WRAPPER_FILE)
        (building / REQUIREMENTS_FILE).write_text(
            "# Every line: name==version --hash=sha256:<wheel hash>, or ./privatepkgs/<file>.whl --hash=...\n"
            f"# None needed: the wrapper imports only {', '.join(IMAGE_PACKAGES)} (the clean room's image has them).\n"
        )
        (building / SETTINGS_FILE).write_text(
            f'python: "{sys.version_info.major}.{sys.version_info.minor}"\n'
            f"task: {task}\n"
            "wrapper: TextClassifier\n"
            "sample_post_data:\n"
            f'  text: "{SAMPLE_TEXT}"\n'
        )
        if output.exists():
            output.rmdir()
        building.rename(output)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return output


def _onnx_folder(model_dir: Path) -> Path:
    if not model_dir.is_dir():
        raise NotFoundError(f"model folder '{model_dir}' does not exist", hint="pass the folder `model prepare` wrote")
    folder = model_dir / "onnx" if (model_dir / "onnx").is_dir() else model_dir
    if not (folder / "model.onnx").is_file() or not (folder / "tokenizer.json").is_file():
        raise InvalidInputError(
            f"model folder '{model_dir}' holds no model.onnx with tokenizer.json",
            hint="run `cleanroom model prepare --output-dir DIR` and pass DIR",
        )
    return folder


def _copy_regular(source: Path, target: Path) -> None:
    """Copy a regular file without following a link the source folder may hold."""
    info = os.lstat(source)
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInputError(f"'{source}' is not a regular file", hint="replace the link with the real file")
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as reader, target.open("xb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
