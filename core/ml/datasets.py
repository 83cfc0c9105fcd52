"""Text-classification datasets: the vendored rotten_tomatoes, local folders and parquet files.

The machines that build and run clean rooms are often offline, so rotten_tomatoes ships inside
the package and is verified against its SHA256SUMS on every load: a silently altered test set
would make every accuracy figure a lie. The hub loader stays for users who are online.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import IntegrityError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    import datasets as hf_datasets

VENDORED_DIR = Path(__file__).resolve().parent / "data"
VENDORED = ("rotten_tomatoes",)
HUB_IDS = {"rotten_tomatoes": "cornell-movie-review-data/rotten_tomatoes"}
SPLITS = ("train", "validation", "test")
REQUIRED_COLUMNS = ("text", "label")
LABEL_NAMES = ("neg", "pos")


@dataclass(frozen=True)
class LabelledRows:
    """The plain (text, label) pairs of one split, what the evaluation client sends and scores."""

    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(folder: Path) -> None:
    """Check every file listed in ``folder/SHA256SUMS``; raise IntegrityError on any mismatch."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise IntegrityError(
            f"dataset folder '{folder}' has no SHA256SUMS",
            hint="restore it from the package or reinstall cleanroom-console",
        )
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        expected, name = line.split(maxsplit=1)
        path = folder / name.strip().lstrip("*")
        if not path.is_file():
            raise IntegrityError(
                f"dataset file '{path}' listed in SHA256SUMS is missing",
                hint="reinstall cleanroom-console to restore the vendored data",
            )
        if sha256_file(path) != expected:
            raise IntegrityError(
                f"dataset file '{path}' does not match its SHA256SUMS checksum",
                hint="the file was altered; reinstall cleanroom-console",
            )


def load(name_or_path: str | Path, *, source: str = "vendored") -> hf_datasets.DatasetDict:
    """Load a dataset as a ``DatasetDict`` with ``text`` and ``label`` columns.

    ``name_or_path`` is a vendored name (``rotten_tomatoes``), a folder of ``<split>.parquet``
    files, a ``datasets.save_to_disk`` folder, or one parquet file (returned as split ``test``).
    ``source="hub"`` asks the Hugging Face hub instead (online users only).
    """
    if source == "hub":
        return _load_from_hub(str(name_or_path))
    if source != "vendored":
        raise InvalidInputError(f"dataset source '{source}' is unknown", hint="use 'vendored' or 'hub'")
    name = str(name_or_path)
    if name in VENDORED:
        folder = VENDORED_DIR / name
        verify_checksums(folder)
        return _load_parquet_folder(folder)
    path = Path(name_or_path)
    if not path.exists():
        raise NotFoundError(
            f"dataset '{name}' is neither a vendored dataset nor an existing path",
            hint=f"use one of {', '.join(VENDORED)} or a folder/parquet file",
        )
    if path.is_file():
        if path.suffix != ".parquet":
            raise InvalidInputError(
                f"dataset file '{path}' is not a parquet file",
                hint="give a .parquet file or a folder of <split>.parquet files",
            )
        return _check_schema(_parquet_dict({"test": path}), str(path))
    if (path / "dataset_dict.json").is_file():
        import datasets as hf_datasets

        return _check_schema(hf_datasets.load_from_disk(str(path)), str(path))
    if (path / "SHA256SUMS").is_file():
        verify_checksums(path)
    return _load_parquet_folder(path)


def load_split(name_or_path: str | Path, split: str = "test") -> LabelledRows:
    """One split as plain lists, for callers that only need to send and score rows."""
    dataset = load(name_or_path)
    if split not in dataset:
        raise NotFoundError(
            f"split '{split}' is not in dataset '{name_or_path}'", hint=f"choose one of: {', '.join(dataset.keys())}"
        )
    part = dataset[split]
    return LabelledRows(texts=list(part["text"]), labels=[int(v) for v in part["label"]])


def _load_parquet_folder(folder: Path) -> hf_datasets.DatasetDict:
    files = {split: folder / f"{split}.parquet" for split in SPLITS if (folder / f"{split}.parquet").is_file()}
    if not files:
        raise InvalidInputError(
            f"dataset folder '{folder}' has no train/validation/test .parquet files",
            hint="add <split>.parquet files or a datasets.save_to_disk folder",
        )
    return _check_schema(_parquet_dict(files), str(folder))


def _parquet_dict(files: dict[str, Path]) -> hf_datasets.DatasetDict:
    import datasets as hf_datasets
    import pyarrow.parquet as pq

    splits = {}
    for split, path in files.items():
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise InvalidInputError(
                f"dataset file '{path}' is not readable parquet ({exc})", hint="re-export the split with pandas/pyarrow"
            ) from exc
        splits[split] = hf_datasets.Dataset(table)
    return hf_datasets.DatasetDict(splits)


def _check_schema(dataset: hf_datasets.DatasetDict, where: str) -> hf_datasets.DatasetDict:
    for split, part in dataset.items():
        missing = [c for c in REQUIRED_COLUMNS if c not in part.column_names]
        if missing:
            raise InvalidInputError(
                f"split '{split}' of dataset '{where}' lacks column(s) {', '.join(missing)}",
                hint="a dataset needs a 'text' (string) and a 'label' (integer) column",
            )
    return dataset


def _load_from_hub(name: str) -> hf_datasets.DatasetDict:
    import datasets as hf_datasets

    try:
        return _check_schema(hf_datasets.load_dataset(HUB_IDS.get(name, name)), name)
    except Exception as exc:  # offline mode and network failures surface as many types
        raise NotFoundError(
            f"dataset '{name}' could not be loaded from the Hugging Face hub ({exc})",
            hint="use the vendored copy (source='vendored') when offline",
        ) from exc
