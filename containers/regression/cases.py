"""The consumer's regression cases: one parquet or JSON-lines file of ``text`` and ``label``.

Read inside the clean room only (the runtime decrypts the consumer's datasource into the mount);
nothing here ever writes a case anywhere. Labels may be label ids (integers) or label names, as
long as the file uses one kind throughout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CASE_SUFFIXES = (".parquet", ".jsonl")
# An aggregate over a handful of cases is nearly a row: with one case, accuracy is its label.
MIN_CASES = 30


class CasesError(ValueError):
    """The cases mount does not hold one usable cases file."""


@dataclass(frozen=True)
class Cases:
    texts: list[str]
    labels: list[int | str]


def cases_file(cases_dir: Path) -> Path:
    """The one ``.parquet`` or ``.jsonl`` regular file in the mount (two would be ambiguous)."""
    if not cases_dir.is_dir():
        raise CasesError(f"cases folder '{cases_dir}' does not exist; mount the consumer's cases datasource")
    found = sorted(p for p in cases_dir.iterdir() if p.suffix in CASE_SUFFIXES and not p.is_symlink() and p.is_file())
    if len(found) != 1:
        raise CasesError(
            f"cases folder '{cases_dir}' holds {len(found)} .parquet/.jsonl files; upload exactly one cases file"
        )
    return found[0]


def load_cases(cases_dir: Path) -> Cases:
    path = cases_file(cases_dir)
    rows = _parquet_rows(path) if path.suffix == ".parquet" else _jsonl_rows(path)
    texts: list[str] = []
    labels: list[int | str] = []
    for index, (text, label) in enumerate(rows):
        if not isinstance(text, str) or not text.strip():
            raise CasesError(f"case {index} of '{path.name}' has no text; every case needs a non-empty text")
        if isinstance(label, bool) or not isinstance(label, int | str):
            raise CasesError(f"case {index} of '{path.name}' has label {label!r}; give a label id or a label name")
        texts.append(text)
        labels.append(label)
    if len({type(label) for label in labels}) > 1:
        raise CasesError(f"'{path.name}' mixes label ids and label names; use one kind for every case")
    if len(texts) < MIN_CASES:
        raise CasesError(
            f"'{path.name}' holds {len(texts)} cases, fewer than {MIN_CASES}; "
            "upload more cases (a report over so few would reveal single rows)"
        )
    return Cases(texts, labels)


def _parquet_rows(path: Path) -> list[tuple[object, object]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = {"text", "label"} - set(table.column_names)
    if missing:
        raise CasesError(f"'{path.name}' has no column {', '.join(sorted(missing))}; give text and label columns")
    return list(zip(table.column("text").to_pylist(), table.column("label").to_pylist(), strict=True))


def _jsonl_rows(path: Path) -> list[tuple[object, object]]:
    rows: list[tuple[object, object]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise CasesError(f"line {number} of '{path.name}' is not JSON; write one object per line") from None
            if not isinstance(record, dict) or "text" not in record or "label" not in record:
                raise CasesError(f"line {number} of '{path.name}' is not an object with text and label")
            rows.append((record["text"], record["label"]))
    return rows
