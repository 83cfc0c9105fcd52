"""A model package's request and response JSON Schemas: checked once, then applied per record.

The same checker serves ``check_package`` (a package's ``sample_post_data``) and the inference
server (every request record, every output record), so a package accepted locally is held to the
same rules in the clean room. A refusal names the field and the schema keyword it breaks but never
quotes the value: the value may be a consumer's private text, and a 1,000-character text would not
fit on one line anyway. jsonschema 4.18+ resolves ``$ref`` only inside the schema (no network).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from core.errors import InvalidInputError

DETAIL_CHARS = 60


class RecordSchema:
    """A JSON Schema (Draft 2020-12) for one record, checked to be a schema when built."""

    def __init__(self, schema: Mapping[str, Any], *, name: str) -> None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise InvalidInputError(
                f"{name} is not a valid JSON Schema ({_path(exc.absolute_path, 'schema')} breaks the metaschema's "
                f"{exc.validator})",
                hint=f"fix {name} in src/inference.py",
            ) from None
        self.schema = dict(schema)
        self.name = name
        self._validator = Draft202012Validator(self.schema)

    def problem(self, record: Any, where: str, *, quote_names: bool = True) -> str | None:
        """One line naming the first field of ``record`` that breaks the schema, or None when valid.
        Without ``quote_names`` it names the keyword only, never a key the record made up (a model's
        faulty answer could carry a consumer's input in its keys)."""
        error = best_match(self._validator.iter_errors(record))
        if error is None:
            return None
        where = _path(error.absolute_path, where)
        if not quote_names:
            return f"{where} breaks {error.validator}"
        return f"{where} {_breaks(error)}"


def _path(path: Any, where: str) -> str:
    text = where
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if str(part).isidentifier() else f"[{_short(part)}]"
    return text


def _short(value: Any) -> str:
    text = " ".join(json.dumps(value, ensure_ascii=False, default=str).split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def _breaks(error: ValidationError) -> str:
    keyword, value, instance = error.validator, error.validator_value, error.instance
    if keyword == "required" and isinstance(instance, dict):
        missing = [name for name in value if name not in instance]
        return f"misses the required field(s) {_short(missing)}"
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        return f"has field(s) the schema does not allow: {_short(sorted(k for k in instance if k not in known))}"
    if keyword == "type":
        return f"must be of type {_short(value)}, not {_json_type(instance)}"
    return f"breaks {keyword} {_short(value)}"


def _json_type(value: Any) -> str:
    for python_type, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
        if isinstance(value, python_type):
            return name
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "null"
