"""The consumer's training data, read from the dataset mount and checked before training.

Accepted layouts: ``<split>.parquet`` files, ``<split>/*.parquet`` folders, or a
``datasets.save_to_disk`` folder; ``train`` and ``validation`` are required, ``test`` optional.
Every split needs a string ``text`` and an integer ``label`` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REQUIRED_SPLITS = ("train", "validation")
OPTIONAL_SPLITS = ("test",)


class DatasetError(ValueError):
    """The dataset mount does not hold a usable text-classification dataset."""


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def load_splits(data_dir: Path, num_labels: int) -> dict[str, Split]:
    if not data_dir.is_dir():
        raise DatasetError(f"dataset folder '{data_dir}' does not exist; mount the training data there")
    columns = _read_columns(data_dir)
    splits: dict[str, Split] = {}
    for name, table in columns.items():
        splits[name] = _check_split(name, table, data_dir, num_labels)
    return splits


def _read_columns(data_dir: Path) -> dict[str, dict[str, list]]:
    if (data_dir / "dataset_dict.json").is_file():
        import datasets

        loaded = datasets.load_from_disk(str(data_dir))
        return {
            name: {c: loaded[name][c] for c in loaded[name].column_names}
            for name in (*REQUIRED_SPLITS, *OPTIONAL_SPLITS)
            if name in loaded
        }
    import pyarrow as pa
    import pyarrow.parquet as pq

    found: dict[str, dict[str, list]] = {}
    for name in (*REQUIRED_SPLITS, *OPTIONAL_SPLITS):
        files = (
            [data_dir / f"{name}.parquet"]
            if (data_dir / f"{name}.parquet").is_file()
            else sorted((data_dir / name).glob("*.parquet"))
            if (data_dir / name).is_dir()
            else []
        )
        if not files:
            continue
        try:
            table = pa.concat_tables([pq.read_table(f) for f in files])
        except Exception as exc:  # pyarrow raises several types for damaged or mismatched files
            raise DatasetError(f"split '{name}' in '{data_dir}' is not readable parquet ({exc})") from exc
        found[name] = table.to_pydict()
    missing = [s for s in REQUIRED_SPLITS if s not in found]
    if missing:
        raise DatasetError(
            f"dataset folder '{data_dir}' lacks split(s) {', '.join(missing)}; it needs "
            "train.parquet and validation.parquet (test.parquet optional) "
            "or a datasets.save_to_disk folder"
        )
    return found


def _check_split(name: str, table: dict[str, list], data_dir: Path, num_labels: int) -> Split:
    where = f"split '{name}' in '{data_dir}'"
    for column in ("text", "label"):
        if column not in table:
            raise DatasetError(
                f"{where} lacks column '{column}' (columns: {', '.join(table) or 'none'}); "
                "a dataset needs 'text' (string) and 'label' (integer)"
            )
    texts, labels = table["text"], table["label"]
    if not texts:
        raise DatasetError(f"{where} has no rows")
    for row, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if not isinstance(text, str):
            raise DatasetError(f"{where} row {row}: 'text' must be a string, not {type(text).__name__}")
        if isinstance(label, bool) or not isinstance(label, int):
            raise DatasetError(f"{where} row {row}: 'label' must be an integer, not {type(label).__name__}")
        if not 0 <= label < num_labels:
            raise DatasetError(
                f"{where} row {row}: label {label} is outside 0..{num_labels - 1} (the model has {num_labels} labels)"
            )
    return Split(texts=list(texts), labels=list(labels))
