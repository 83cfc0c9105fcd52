"""The voted join spec of a private training run: which providers' files are joined, on what key.

The join is declared as data (JSON, validated here), never as SQL: every party can read what it
votes for, and the clean room executes exactly this with pyarrow. The key is the privacy unit
(the person id) of every source, so the accounting can bound how many rows one person adds
(``max_rows_per_key``) and a "join" can never concatenate rows so that one person counts twice
without the contract saying so.

A join spec document::

    {
      "key": "person_id",
      "sources": [
        {"datasource": "texts",  "file": "train.parquet", "columns": ["person_id", "text"],  "how": "base"},
        {"datasource": "labels", "file": "train.parquet", "columns": ["person_id", "label"], "how": "inner"}
      ],
      "drop": [], "text_column": "text", "label_column": "label",
      "min_rows": 1000, "max_rows_per_key": 1
    }

Sources apply left to right: the first is the base, each next one is joined (inner/left) or
appended (union) to the result so far.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import InvalidInputError
from core.names import check_name


class _JoinModel(BaseModel):
    """Frozen, strict: an unknown field in a voted join spec is an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _column(value: str) -> str:
    if not value or value != value.strip():
        raise ValueError(f"column name {value!r} is empty or has surrounding spaces")
    return value


class JoinSource(_JoinModel):
    """One provider's parquet file inside its mounted datasource, and the columns taken from it."""

    datasource: str
    file: str  # relative path of a .parquet file inside the datasource's mount
    columns: list[str] = Field(min_length=1)
    how: Literal["base", "inner", "left", "union"]

    @field_validator("datasource")
    @classmethod
    def _datasource(cls, value: str) -> str:
        try:
            return check_name("datasource", value)
        except InvalidInputError as exc:
            raise ValueError(exc.one_line()) from None

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or "\\" in value or not path.parts:
            raise ValueError(f"join file {value!r} must be a relative path inside the datasource, without '..'")
        if path.suffix != ".parquet":
            raise ValueError(f"join file {value!r} is not a .parquet file")
        return str(path)

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        for column in value:
            _column(column)
        if len(set(value)) != len(value):
            raise ValueError("a column is listed twice")
        return value


class JoinSpec(_JoinModel):
    """The join of a private training run (see the module docstring for the document)."""

    key: str
    sources: list[JoinSource] = Field(min_length=1)
    drop: list[str] = Field(default_factory=list)
    text_column: str = "text"
    label_column: str = "label"
    min_rows: int = Field(ge=1)
    max_rows_per_key: int = Field(ge=1)

    @field_validator("key", "text_column", "label_column")
    @classmethod
    def _names(cls, value: str) -> str:
        return _column(value)

    @model_validator(mode="after")
    def _consistent(self) -> JoinSpec:
        if self.sources[0].how != "base":
            raise ValueError(f"the first join source ({self.sources[0].datasource!r}) must have how 'base'")
        for source in self.sources[1:]:
            if source.how == "base":
                raise ValueError(f"join source {source.datasource!r} is not the first: use how inner, left or union")
        for source in self.sources:
            if self.key not in source.columns:
                raise ValueError(f"join source {source.datasource!r} does not take the key column {self.key!r}")
        taken = _joined_columns(self.key, self.sources)
        if self.key in self.drop:
            raise ValueError(f"the join drops its key {self.key!r}: the key bounds each person's rows, keep it")
        for column in self.drop:
            if column not in taken:
                raise ValueError(f"dropped column {column!r} is taken from no join source")
        for role, column in (("text_column", self.text_column), ("label_column", self.label_column)):
            if column not in taken:
                raise ValueError(f"{role} {column!r} is taken from no join source")
            if column in self.drop:
                raise ValueError(f"{role} {column!r} is dropped")
        return self

    @property
    def datasources(self) -> list[str]:
        """The datasources this join reads, in order, each once."""
        return list(dict.fromkeys(source.datasource for source in self.sources))


def _joined_columns(key: str, sources: list[JoinSource]) -> list[str]:
    """The columns of the join, refusing what the workload would refuse at run time: a joined
    column taken twice (whose values would silently shadow each other) and a union whose columns
    differ from the join so far."""
    columns: list[str] = []
    for source in sources:
        if source.how == "union":
            if set(source.columns) != set(columns):
                raise ValueError(
                    f"union source {source.datasource!r} takes {', '.join(sorted(source.columns))} but the join so "
                    f"far has {', '.join(sorted(columns))}; a union needs the same columns"
                )
            continue
        clash = [c for c in source.columns if c != key and c in columns]
        if clash:
            raise ValueError(
                f"column(s) {', '.join(clash)} of join source {source.datasource!r} are already in the join; "
                "take each column from one source only"
            )
        columns += [c for c in source.columns if c not in columns]
    return columns
