"""The voted join (containers.dp_trainer.join): equal to a reference join, and every refusal."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from containers.dp_trainer.job import JoinSource, JoinSpec
from containers.dp_trainer.join import JoinError, execute_join, join_report, join_tables

KEY = "person_id"


def reference_join(spec: JoinSpec, tables: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The join spelled out on dicts, nested loops and SQL null semantics: what pyarrow must match."""
    rows = [dict(row) for row in tables[0]]
    for source, table in zip(spec.sources[1:], tables[1:], strict=True):
        if source.how == "union":
            rows = rows + [dict(row) for row in table]
            continue
        added = [c for c in source.columns if c != spec.key]
        joined = []
        for row in rows:
            matches = [other for other in table if row[spec.key] is not None and other[spec.key] == row[spec.key]]
            joined.extend({**row, **{c: m[c] for c in added}} for m in matches)
            if not matches and source.how == "left":
                joined.append({**row, **dict.fromkeys(added)})
        rows = joined
    return rows


def as_bag(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(sorted(row.items())) for row in rows)


def random_case(rng: random.Random) -> tuple[JoinSpec, list[list[dict[str, Any]]]]:
    string_keys = rng.random() < 0.5
    pool = [f"p-{i:04d}" if string_keys else i for i in range(rng.randint(1, 25))]
    sources, tables = [], []
    base_columns = [KEY, "text"]
    for index in range(rng.randint(1, 4)):
        how = "base" if index == 0 else rng.choice(["inner", "left", "union"])
        if how == "base":
            columns = base_columns
        elif how == "union":
            columns = sources_columns(sources)
        else:
            columns = [KEY, f"c{index}"]
        rows = []
        for _ in range(rng.randint(0, 30)):
            row: dict[str, Any] = {KEY: rng.choice(pool)}
            for column in columns[1:]:
                row[column] = None if rng.random() < 0.15 else rng.choice([f"v{rng.randint(0, 9)}", "x"])
            rows.append(row)
        sources.append(JoinSource(datasource=f"s{index}", file="f.parquet", columns=tuple(columns), how=how))
        tables.append(rows)
    spec = JoinSpec(key=KEY, sources=tuple(sources), min_rows=1, max_rows_per_key=1000)
    return spec, tables


def sources_columns(sources: list[JoinSource]) -> list[str]:
    """The columns of the join so far, in order (what a union source must bring)."""
    columns: list[str] = []
    for source in sources:
        columns += [c for c in source.columns if c not in columns]
    return columns


def to_table(rows: list[dict[str, Any]], columns: tuple[str, ...], key_type: pa.DataType) -> pa.Table:
    types = {c: key_type if c == KEY else pa.string() for c in columns}
    return pa.table({c: pa.array([row[c] for row in rows], type=types[c]) for c in columns})


def test_the_join_equals_the_reference_join_on_generated_cases() -> None:
    rng = random.Random(14)
    mismatches, hows = 0, Counter[str]()
    for _ in range(80):
        spec, rows = random_case(rng)
        key_type = pa.string() if any(isinstance(r[KEY], str) for t in rows for r in t) else pa.int64()
        tables = [to_table(t, s.columns, key_type) for s, t in zip(spec.sources, rows, strict=True)]
        got = join_tables(spec, tables).to_pylist()
        expected = reference_join(spec, rows)
        mismatches += as_bag(got) != as_bag(expected)
        hows.update(s.how for s in spec.sources[1:])
    assert mismatches == 0
    assert min(hows[h] for h in ("inner", "left", "union")) >= 10  # every kind was exercised


# --- files on mounts -------------------------------------------------------------------------


def write(mount: Path, name: str, columns: dict[str, pa.Array | list[Any]]) -> Path:
    mount.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), mount / name)
    return mount


def spec_of(*sources: tuple[str, list[str], str], **extra: Any) -> JoinSpec:
    settings = {"min_rows": 1, "max_rows_per_key": 1, **extra}
    return JoinSpec(
        key=KEY,
        sources=tuple(JoinSource(datasource=d, file="train.parquet", columns=tuple(c), how=h) for d, c, h in sources),
        **settings,
    )


TEXTS = ("texts", [KEY, "text"], "base")
LABELS = ("labels", [KEY, "label"], "inner")


@pytest.fixture
def mounts(tmp_path: Path) -> dict[str, Path]:
    ids = [f"p-{i:04d}" for i in range(300)]
    return {
        "texts": write(tmp_path / "texts", "train.parquet", {KEY: ids, "text": [f"review {i}" for i in range(300)]}),
        "labels": write(tmp_path / "labels", "train.parquet", {KEY: ids[30:], "label": [i % 2 for i in range(270)]}),
    }


def test_a_vertical_join_keeps_the_overlap_and_reports_only_rounded_counts(mounts: dict[str, Path]) -> None:
    spec = spec_of(TEXTS, LABELS, min_rows=200)
    result = execute_join(spec, mounts)
    assert result.table.num_rows == 270 and result.table.column_names == [KEY, "text", "label"]
    assert result.table.to_pylist() == sorted(result.table.to_pylist(), key=lambda r: r[KEY])  # repeatable order
    report = join_report(result, spec)
    assert report["joined_rows"] == 300 and report["trainable_rows"] == 300 and report["persons"] == 300
    assert report["sources"] == {"texts": 300, "labels": 300}
    small = join_report(result, spec_of(TEXTS, LABELS, min_rows=280))
    assert small["sources"]["labels"] == "below min_rows 280" and small["sources"]["texts"] == 300


def test_a_left_join_leaves_unlabelled_rows_out_of_training(mounts: dict[str, Path]) -> None:
    result = execute_join(spec_of(TEXTS, ("labels", [KEY, "label"], "left")), mounts)
    assert result.joined_rows == 300 and result.table.num_rows == 270


def test_dropped_columns_are_gone(tmp_path: Path, mounts: dict[str, Path]) -> None:
    mounts["labels"] = write(tmp_path / "l2", "train.parquet", {KEY: ["p-0001"], "label": [1], "age": [40]})
    spec = spec_of(TEXTS, ("labels", [KEY, "label", "age"], "inner"), drop=("age",))
    assert execute_join(spec, mounts).table.column_names == [KEY, "text", "label"]


def test_a_key_type_mismatch_is_refused(tmp_path: Path, mounts: dict[str, Path]) -> None:
    mounts["labels"] = write(tmp_path / "l2", "train.parquet", {KEY: [1, 2], "label": [0, 1]})
    with pytest.raises(JoinError, match="join key 'person_id' is string in 'texts' but int64 in 'labels'"):
        execute_join(spec_of(TEXTS, LABELS), mounts)


def test_a_float_key_is_refused(tmp_path: Path) -> None:
    mounts = {"texts": write(tmp_path / "t", "train.parquet", {KEY: [1.5], "text": ["a"], "label": [1]})}
    with pytest.raises(JoinError, match="is double in 'texts'; a person id must be integer or string"):
        execute_join(spec_of(("texts", [KEY, "text", "label"], "base")), mounts)


def test_a_row_without_a_person_is_refused(tmp_path: Path, mounts: dict[str, Path]) -> None:
    mounts["labels"] = write(tmp_path / "l2", "train.parquet", {KEY: ["p-0001", None, None], "label": [0, 1, 1]})
    with pytest.raises(JoinError, match="join key 'person_id' is empty in 2 row\\(s\\) of 'labels'"):
        execute_join(spec_of(TEXTS, LABELS), mounts)


def test_more_rows_per_person_than_declared_is_refused_without_naming_anyone(
    tmp_path: Path, mounts: dict[str, Path]
) -> None:
    ids = ["p-0007", "p-0007", "p-0042", "p-0042", "p-0042", "p-0100"]
    mounts["labels"] = write(tmp_path / "l2", "train.parquet", {KEY: ids, "label": [0, 1, 0, 1, 0, 1]})
    with pytest.raises(JoinError) as refused:
        execute_join(spec_of(TEXTS, LABELS), mounts)
    message = str(refused.value)
    assert "2 person(s) have more than 1 row(s) after the join" in message
    assert "max_rows_per_key 1" in message
    assert "p-00" not in message and "review" not in message
    execute_join(spec_of(TEXTS, LABELS, max_rows_per_key=3), mounts)  # declared: accepted


def test_a_union_that_counts_a_person_twice_is_refused(tmp_path: Path, mounts: dict[str, Path]) -> None:
    mounts["extra"] = write(tmp_path / "extra", "train.parquet", {KEY: ["p-0100"], "text": ["again"], "label": [1]})
    union = ("extra", [KEY, "text", "label"], "union")
    with pytest.raises(JoinError, match="1 person\\(s\\) have more than 1 row"):
        execute_join(spec_of(TEXTS, LABELS, union), mounts)
    mounts["extra"] = write(tmp_path / "extra2", "train.parquet", {KEY: ["q-1"], "text": ["new"], "label": [1]})
    assert execute_join(spec_of(TEXTS, LABELS, union), mounts).table.num_rows == 271


def test_a_union_with_other_columns_or_types_is_refused(tmp_path: Path, mounts: dict[str, Path]) -> None:
    mounts["extra"] = write(tmp_path / "e1", "train.parquet", {KEY: ["q-1"], "text": ["x"], "label": ["pos"]})
    union = ("extra", [KEY, "text", "label"], "union")
    with pytest.raises(JoinError, match="union source 'extra' has column 'label' as string but the join so far"):
        execute_join(spec_of(TEXTS, LABELS, union), mounts)
    with pytest.raises(JoinError, match="union source 'extra' has columns person_id, text but the join so far"):
        execute_join(spec_of(TEXTS, LABELS, ("extra", [KEY, "text"], "union")), mounts)


def test_a_column_taken_from_two_joined_sources_is_refused(tmp_path: Path, mounts: dict[str, Path]) -> None:
    mounts["labels"] = write(tmp_path / "l2", "train.parquet", {KEY: ["p-0001"], "text": ["mine"], "label": [1]})
    with pytest.raises(JoinError, match="column\\(s\\) text of join source 'labels' are already in the join"):
        execute_join(spec_of(TEXTS, ("labels", [KEY, "text"], "inner")), mounts)


def test_fewer_rows_than_min_rows_is_refused_without_the_count(mounts: dict[str, Path]) -> None:
    with pytest.raises(JoinError) as refused:
        execute_join(spec_of(TEXTS, LABELS, min_rows=271), mounts)
    assert "fewer trainable rows than min_rows 271; nothing is trained" in str(refused.value)
    assert "270" not in str(refused.value)


def test_text_and_label_columns_need_their_types(tmp_path: Path, mounts: dict[str, Path]) -> None:
    mounts["labels"] = write(tmp_path / "l2", "train.parquet", {KEY: ["p-0001"], "label": [0.5]})
    with pytest.raises(JoinError, match="label column 'label' is double; it must be an integer"):
        execute_join(spec_of(TEXTS, LABELS), mounts)
    with pytest.raises(JoinError, match="the joined rows have no label column 'label'"):
        execute_join(spec_of(TEXTS), mounts)


def test_a_missing_column_is_named_with_the_columns_there(mounts: dict[str, Path]) -> None:
    with pytest.raises(JoinError, match="has no column\\(s\\) score \\(it has person_id, label\\)"):
        execute_join(spec_of(TEXTS, ("labels", [KEY, "score"], "inner")), mounts)


def test_a_file_that_is_a_symlink_is_refused(tmp_path: Path, mounts: dict[str, Path]) -> None:
    secret = write(tmp_path / "elsewhere", "secret.parquet", {KEY: ["p-0001"], "label": [1]})
    (mounts["labels"] / "train.parquet").unlink()
    os.symlink(secret / "secret.parquet", mounts["labels"] / "train.parquet")
    with pytest.raises(JoinError, match="join file 'train.parquet' of datasource 'labels' goes through a symlink"):
        execute_join(spec_of(TEXTS, LABELS), mounts)


def test_a_folder_that_is_a_symlink_is_refused(tmp_path: Path, mounts: dict[str, Path]) -> None:
    write(tmp_path / "elsewhere" / "part", "train.parquet", {KEY: ["p-0001"], "label": [1]})
    os.symlink(tmp_path / "elsewhere" / "part", mounts["labels"] / "part")
    spec = JoinSpec(
        key=KEY,
        sources=(
            JoinSource("texts", "train.parquet", (KEY, "text"), "base"),
            JoinSource("labels", "part/train.parquet", (KEY, "label"), "inner"),
        ),
        min_rows=1,
        max_rows_per_key=1,
    )
    with pytest.raises(JoinError, match="'part/train.parquet' of datasource 'labels' goes through a symlink"):
        execute_join(spec, mounts)


def test_a_path_leaving_the_mount_is_refused(mounts: dict[str, Path]) -> None:
    spec = JoinSpec(
        key=KEY,
        sources=(JoinSource("texts", "../labels/train.parquet", (KEY, "label"), "base"),),
        min_rows=1,
        max_rows_per_key=1,
    )
    with pytest.raises(JoinError, match="leaves the datasource's mount"):
        execute_join(spec, mounts)


def test_a_missing_or_damaged_file_is_refused(mounts: dict[str, Path]) -> None:
    (mounts["labels"] / "train.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(JoinError, match="join file 'train.parquet' of datasource 'labels' is not readable parquet"):
        execute_join(spec_of(TEXTS, LABELS), mounts)
    (mounts["labels"] / "train.parquet").unlink()
    with pytest.raises(JoinError, match="does not exist in the upload"):
        execute_join(spec_of(TEXTS, LABELS), mounts)


def test_the_join_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, containers.dp_trainer.join; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
