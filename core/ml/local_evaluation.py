"""The consumer scores a model it holds: an ONNX folder it downloaded, on its own test split.

When a clean room seals the trained model to the consumer's datasink, the model is the
consumer's to run: no endpoint and no clean room are needed to measure it, and the test split
never leaves the consumer's machine. The ONNX folder is read by the same classifier the
inference server uses (tokenizer, padding, int8 or fp32), so an accuracy measured here is the
one the model would show behind an endpoint.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import InvalidInputError
from core.ml.datasets import load_split

BATCH = 128


@dataclass(frozen=True)
class LocalScore:
    accuracy: float
    rows: int
    correct: int
    model_file: str
    quantised: bool


def score_onnx(
    model_dir: Path,
    dataset: Path,
    *,
    split: str = "test",
    quantised: bool = True,
    progress: Callable[[int, int, int], None] | None = None,
) -> LocalScore:
    """Accuracy of the ONNX model in ``model_dir`` on ``dataset``'s ``split``; ``progress(done,
    correct, total)`` after each batch."""
    from containers.inference_server.classifier import ModelFolderError, OnnxClassifier

    rows = load_split(dataset, split)
    try:
        classifier = OnnxClassifier(model_dir, quantised=quantised)
    except ModelFolderError as exc:
        raise InvalidInputError(str(exc), hint="download the datasink the trainer sealed the model to") from exc
    correct = 0
    for start in range(0, len(rows), BATCH):
        texts = rows.texts[start : start + BATCH]
        predictions = classifier.classify(texts)
        correct += sum(
            p.label_id == label for p, label in zip(predictions, rows.labels[start : start + BATCH], strict=True)
        )
        if progress is not None:
            progress(start + len(texts), correct, len(rows))
    return LocalScore(
        accuracy=correct / len(rows) if len(rows) else 0.0,
        rows=len(rows),
        correct=correct,
        model_file=classifier.model_file.name,
        quantised=quantised,
    )


def parser() -> argparse.ArgumentParser:
    """The command line `python -m core.ml.local_evaluation` reads (the scenario narrates it)."""
    parser = argparse.ArgumentParser(
        prog="python -m core.ml.local_evaluation", description="Score an ONNX model folder on a labelled split."
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="a folder holding onnx/ or the ONNX files")
    parser.add_argument("--dataset", required=True, type=Path, help="a parquet file or a folder of <split>.parquet")
    parser.add_argument("--split", default="test")
    parser.add_argument("--fp32", action="store_true", help="score model.onnx instead of model.int8.onnx")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    score = score_onnx(args.model_dir, args.dataset, split=args.split, quantised=not args.fp32)
    print(json.dumps(asdict(score), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
