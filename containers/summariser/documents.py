"""The party's documents as mounted: ``.txt`` files (any depth) and/or parquet files with an id and a text column.

An over-size ``.txt`` file is refused from its size on disk, before it is read; a parquet row
is refused from its text's UTF-8 size. Other files are refused by name (they may be a party's
mistake, and silently skipping them would hide it), never opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from containers.summariser.caps import oversize_reason
from containers.summariser.policy import SummaryPolicy
from containers.summariser.summarising import Refusal

PARQUET_BATCH = 256


class DocumentsError(ValueError):
    """The input folder cannot be read as documents at all."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str


def read_documents(
    input_dir: Path, policy: SummaryPolicy, *, id_column: str = "id", text_column: str = "text"
) -> Iterator[Document | Refusal]:
    """Documents (or refusals) in a stable order: files sorted by path, parquet rows in file order."""
    if not input_dir.is_dir():
        raise DocumentsError(f"input folder '{input_dir}' does not exist; mount the documents datasource there")
    files = sorted(p for p in input_dir.rglob("*") if p.is_file())
    if not files:
        raise DocumentsError(f"input folder '{input_dir}' holds no files; upload .txt files or a parquet file")
    for path in files:
        name = path.relative_to(input_dir).as_posix()
        suffix = path.suffix.lower()
        if suffix == ".txt":
            yield _text_file(path, name, policy)
        elif suffix == ".parquet":
            yield from _parquet_rows(path, name, policy, id_column, text_column)
        else:
            yield Refusal(name, f"'{name}' is not a .txt or .parquet file; upload documents in one of those forms")


def _text_file(path: Path, name: str, policy: SummaryPolicy) -> Document | Refusal:
    reason = oversize_reason(policy, path.stat().st_size)
    if reason:
        return Refusal(name, reason, too_large=True)
    try:
        return Document(name, path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Refusal(name, f"document is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8")


def _parquet_rows(
    path: Path, name: str, policy: SummaryPolicy, id_column: str, text_column: str
) -> Iterator[Document | Refusal]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DocumentsError(f"'{name}' is not a readable parquet file ({exc}); upload it again") from None
    columns = parquet.schema_arrow.names
    missing = [column for column in (id_column, text_column) if column not in columns]
    if missing:
        raise DocumentsError(
            f"parquet '{name}' has no column(s) {', '.join(missing)} (it has {', '.join(columns)}); "
            f"name them or pass --id-column/--text-column"
        )
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH, columns=[id_column, text_column]):
        for row_id, text in zip(
            batch.column(id_column).to_pylist(), batch.column(text_column).to_pylist(), strict=True
        ):
            document_id = str(row_id)
            if not isinstance(text, str):
                yield Refusal(document_id, f"row has no text in column '{text_column}'; fill it or drop the row")
                continue
            reason = oversize_reason(policy, len(text.encode("utf-8")))
            yield Refusal(document_id, reason, too_large=True) if reason else Document(document_id, text)
