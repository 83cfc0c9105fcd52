"""The voted join, executed with pyarrow inside the clean room (no SQL, no pandas, no torch).

Each source's parquet file is read from its datasource's mount, its voted columns selected, and
the sources applied left to right: ``base`` starts the table, ``inner``/``left`` join on the key
(many-to-many, SQL semantics), ``union`` appends rows with the same columns. Then the dropped
columns go, rows without a text or label are left out, and each person's rows are counted: more
than ``max_rows_per_key`` is refused, because the accounting charges ``max_rows_per_key x
epsilon`` per person and a join that silently duplicated a person would break that bound.

Refusals name columns, types and counts, never a person id or a row value: their text reaches
every party, and a key or a value is exactly what must not leave the clean room.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from containers.dp_trainer.job import JoinSource, JoinSpec

REPORT_ROUNDING = 100


class JoinError(ValueError):
    """The join cannot run or its result would break the contract's privacy bounds."""


@dataclass(frozen=True)
class JoinResult:
    """The trainable rows (sorted, so a run is repeatable) and the counts of the join report."""

    table: pa.Table
    source_rows: dict[str, int]
    joined_rows: int
    persons: int


def source_path(mount: Path, source: JoinSource) -> Path:
    """The source's file under its mount, refusing a path or symlink that leads elsewhere."""
    where = f"join file '{source.file}' of datasource '{source.datasource}'"
    if not mount.is_dir():
        raise JoinError(f"datasource '{source.datasource}' is not mounted at '{mount}'; the runtime mounts it there")
    root = mount.resolve()
    relative = PurePosixPath(source.file)
    if relative.is_absolute() or ".." in relative.parts:
        raise JoinError(f"{where} leaves the datasource's mount; give a path inside it")
    path = root
    for part in relative.parts:
        path = path / part
        if path.is_symlink():
            raise JoinError(f"{where} goes through a symlink; upload the file itself")
    if not path.is_file():
        raise JoinError(f"{where} does not exist in the upload; the owner uploads it or the join spec is corrected")
    if not path.resolve().is_relative_to(root):
        raise JoinError(f"{where} leaves the datasource's mount; give a path inside it")
    return path


def read_source(mount: Path, source: JoinSource) -> pa.Table:
    """The voted columns of one source; the final open refuses a symlink swapped in meanwhile."""
    path = source_path(mount, source)
    where = f"join file '{source.file}' of datasource '{source.datasource}'"
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        try:
            parquet = pq.ParquetFile(handle)
            names = parquet.schema_arrow.names
            missing = [column for column in source.columns if column not in names]
            if missing:
                raise JoinError(f"{where} has no column(s) {', '.join(missing)} (it has {', '.join(names)})")
            return parquet.read(columns=list(source.columns))
        except (pa.ArrowException, OSError) as exc:
            raise JoinError(f"{where} is not readable parquet ({type(exc).__name__})") from None


def join_tables(spec: JoinSpec, tables: list[pa.Table]) -> pa.Table:
    """Apply the sources left to right to their (already column-selected) tables."""
    _check_keys(spec, tables)
    result = tables[0]
    for source, table in zip(spec.sources[1:], tables[1:], strict=True):
        if source.how == "union":
            result = _union(result, table, source)
            continue
        clash = [c for c in table.column_names if c != spec.key and c in result.column_names]
        if clash:
            raise JoinError(
                f"column(s) {', '.join(clash)} of join source '{source.datasource}' are already in the join; "
                "take each column from one source only"
            )
        if table.num_rows == 0 or result.num_rows == 0:  # acero refuses some joins of empty inputs
            result = _empty_join(result, table, spec.key, source.how)
            continue
        result = result.join(table, keys=spec.key, join_type="inner" if source.how == "inner" else "left outer")
    return result


def execute_join(spec: JoinSpec, mounts: dict[str, Path]) -> JoinResult:
    """Read, join, bound each person's rows and check min_rows; raise JoinError on any refusal."""
    tables = [read_source(mounts[source.datasource], source) for source in spec.sources]
    joined = join_tables(spec, tables)
    joined = joined.drop_columns([c for c in spec.drop if c in joined.column_names])
    for role, column in (("text", spec.text_column), ("label", spec.label_column)):
        if column not in joined.column_names:
            raise JoinError(
                f"the joined rows have no {role} column '{column}' (they have {', '.join(joined.column_names)})"
            )
    _check_type(joined, spec.text_column, "text", (pa.types.is_string, pa.types.is_large_string), "a string")
    _check_type(joined, spec.label_column, "label", (pa.types.is_integer,), "an integer")
    trainable = joined.filter(pc.and_(pc.is_valid(joined[spec.text_column]), pc.is_valid(joined[spec.label_column])))
    persons, over = contributions(trainable[spec.key], spec.max_rows_per_key)
    if over:
        raise JoinError(
            f"{over} person(s) have more than {spec.max_rows_per_key} row(s) after the join; the contract allows "
            f"max_rows_per_key {spec.max_rows_per_key}: deduplicate the sources or vote a higher max_rows_per_key"
        )
    if trainable.num_rows < spec.min_rows:
        raise JoinError(
            f"the join yields fewer trainable rows than min_rows {spec.min_rows}; nothing is trained "
            "(check the key overlap of the sources or vote a lower min_rows)"
        )
    # One row per person: the key alone orders the rows; otherwise every column breaks the ties
    # (the hash join's output order varies between runs).
    order = [spec.key] if spec.max_rows_per_key == 1 else trainable.column_names
    ordered = trainable.sort_by([(name, "ascending") for name in order])
    return JoinResult(
        table=ordered,
        source_rows={s.datasource: t.num_rows for s, t in zip(spec.sources, tables, strict=True)},
        joined_rows=joined.num_rows,
        persons=persons,
    )


def contributions(keys: pa.ChunkedArray | pa.Array, limit: int) -> tuple[int, int]:
    """How many persons the rows hold, and how many of them have more than ``limit`` rows."""
    counts = pc.value_counts(keys)
    if len(counts) == 0:
        return 0, 0
    over = pc.sum(pc.greater(counts.field("counts"), limit)).as_py() or 0
    return len(counts), int(over)


def join_report(result: JoinResult, spec: JoinSpec) -> dict[str, Any]:
    """What may leave the clean room: counts rounded to 100, each only when >= min_rows."""

    def count(value: int) -> int | str:
        if value < spec.min_rows:
            return f"below min_rows {spec.min_rows}"
        return round(value / REPORT_ROUNDING) * REPORT_ROUNDING

    return {
        "rounding": REPORT_ROUNDING,
        "min_rows": spec.min_rows,
        "max_rows_per_key": spec.max_rows_per_key,
        "sources": {name: count(rows) for name, rows in result.source_rows.items()},
        "joined_rows": count(result.joined_rows),
        "trainable_rows": count(result.table.num_rows),
        "persons": count(result.persons),
    }


def _check_keys(spec: JoinSpec, tables: list[pa.Table]) -> None:
    first_source, first_type = spec.sources[0].datasource, tables[0].schema.field(spec.key).type
    for source, table in zip(spec.sources, tables, strict=True):
        key_type = table.schema.field(spec.key).type
        if not (pa.types.is_integer(key_type) or pa.types.is_string(key_type) or pa.types.is_large_string(key_type)):
            raise JoinError(
                f"join key '{spec.key}' is {key_type} in '{source.datasource}'; a person id must be integer or string"
            )
        if key_type != first_type:
            raise JoinError(
                f"join key '{spec.key}' is {first_type} in '{first_source}' but {key_type} in '{source.datasource}'; "
                "the owners upload the key with one type"
            )
        nulls = table[spec.key].null_count
        if nulls:
            raise JoinError(
                f"join key '{spec.key}' is empty in {nulls} row(s) of '{source.datasource}'; every row needs a person"
            )


def _union(result: pa.Table, table: pa.Table, source: JoinSource) -> pa.Table:
    if set(table.column_names) != set(result.column_names):
        raise JoinError(
            f"union source '{source.datasource}' has columns {', '.join(sorted(table.column_names))} but the join so "
            f"far has {', '.join(sorted(result.column_names))}; a union needs the same columns"
        )
    aligned = table.select(result.column_names)
    for name in result.column_names:
        if aligned.schema.field(name).type != result.schema.field(name).type:
            raise JoinError(
                f"union source '{source.datasource}' has column '{name}' as {aligned.schema.field(name).type} "
                f"but the join so far has {result.schema.field(name).type}; a union needs the same types"
            )
    return pa.concat_tables([result, aligned.cast(result.schema)])


def _empty_join(left: pa.Table, right: pa.Table, key: str, how: str) -> pa.Table:
    """Inner or left join when one side has no rows, with the schema a non-empty join would have."""
    added = [right.schema.field(name) for name in right.column_names if name != key]
    schema = pa.schema([*left.schema, *added])
    if how == "inner" or left.num_rows == 0:
        return schema.empty_table()
    nulls = [pa.nulls(left.num_rows, type=field.type) for field in added]
    return pa.Table.from_arrays([*left.columns, *nulls], schema=schema)


def _check_type(table: pa.Table, column: str, role: str, checks: tuple[Any, ...], expected: str) -> None:
    column_type = table.schema.field(column).type
    if not any(check(column_type) for check in checks):
        raise JoinError(f"{role} column '{column}' is {column_type}; it must be {expected}")
