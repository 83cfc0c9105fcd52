"""The shipped MiniLM classifier as a model package: prepare the base, then scaffold the package.

The two steps are the provider's own verbs (``cleanroom model prepare``, ``cleanroom model package
init``) run back to back, so the shipped package is exactly what a provider would build by hand.
It lives in core.ml rather than core.onboarding because preparing a model needs torch and the
layers run one way (core.ml may use core.onboarding, not the reverse). The prepared folder is a
temporary sibling of the output: only the package remains.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from core.errors import ConflictError
from core.ml.model_preparation import DEFAULT_MAX_LENGTH, prepare
from core.onboarding.scaffold import scaffold_package


def build_classifier_package(
    output: Path,
    *,
    base: str | Path | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    seed: int = 0,
    on_stage: Callable[[str], None] | None = None,
) -> Path:
    """Write a text-classification package of ``base`` (default: the offline all-MiniLM-L6-v2) to ``output``."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        # Checked before the minute-long preparation, not only by the scaffold at the end.
        raise ConflictError(f"output folder '{output}' is not empty", hint="choose a new --output-dir or remove it")
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.prepared-", dir=output.parent))
    try:
        prepared = prepare(base, work / "model", max_length=max_length, seed=seed, on_stage=on_stage)
        if on_stage is not None:
            on_stage("writing the model package")
        return scaffold_package(prepared.output, output, task="text-classification")
    finally:
        shutil.rmtree(work, ignore_errors=True)
