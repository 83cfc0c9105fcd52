"""Open Inference Protocol v2 (the KServe/Triton REST shape) over a model's record schemas.

A v2 request carries named tensors, a record model takes records: each top-level property of the
input schema is one input tensor of shape ``[batch]`` (``text`` -> BYTES), and row ``i`` of every
tensor together is record ``i``. Outputs go the other way, one tensor per output property. A
schema that is not an object of named properties is served as one ``record`` tensor whose items
are whole records. Only the JSON form of the protocol is spoken (no binary tensor extension).
"""

from __future__ import annotations

import math
from typing import Any

from containers.inference_server.app import BadRequest

WHOLE_RECORD = "record"
DATATYPES = {"string": "BYTES", "integer": "INT64", "number": "FP64", "boolean": "BOOL"}


def whole_records(schema: dict[str, Any]) -> bool:
    """Whether the schema's records travel as one ``record`` tensor (no named properties)."""
    properties = schema.get("properties") if schema.get("type") == "object" else None
    return not isinstance(properties, dict) or not properties


def tensor_names(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, datatype) of each tensor the schema maps to."""
    if whole_records(schema):
        return [(WHOLE_RECORD, "BYTES")]
    return [(name, _datatype(spec)) for name, spec in schema["properties"].items()]


def _datatype(spec: Any) -> str:
    kind = spec.get("type") if isinstance(spec, dict) else None
    return DATATYPES.get(kind, "BYTES") if isinstance(kind, str) else "BYTES"


def tensor_metadata(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in tensor_names(schema)]


def records_from_inputs(document: Any, schema: dict[str, Any], max_batch: int) -> list[Any]:
    """The records an inference request's input tensors spell, or a 400/413 naming the tensor."""
    shapes = 'send {"inputs": [{"name": ..., "shape": [n], "datatype": ..., "data": [...]}]}'
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list) or not document["inputs"]:
        raise BadRequest(400, f'an inference request is a JSON object with a non-empty "inputs" list; {shapes}')
    declared = dict(tensor_names(schema))
    whole = whole_records(schema)
    required = {WHOLE_RECORD} if whole else {name for name in schema.get("required") or [] if name in declared}
    columns: dict[str, list[Any]] = {}
    for index, tensor in enumerate(document["inputs"]):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadRequest(400, f'{where} is not a tensor object with a "name"; {shapes}')
        name = tensor["name"]
        if name not in declared:
            raise BadRequest(
                400, f"{where} names tensor {name[:60]!r}, which the model does not take; use {_list(declared)}"
            )
        if name in columns:
            raise BadRequest(400, f"{where} repeats tensor {name!r}; send each input tensor once")
        if tensor.get("datatype") != declared[name]:
            raise BadRequest(
                400, f"{where} ({name}) has datatype {str(tensor.get('datatype'))[:20]!r}; use {declared[name]}"
            )
        data, shape = tensor.get("data"), tensor.get("shape")
        if not isinstance(data, list) or not data:
            raise BadRequest(400, f'{where} ({name}) has no "data" list; send one item per row, row-major and flat')
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
            or math.prod(shape) != len(data)
            or math.prod(shape[1:]) != 1
        ):
            raise BadRequest(
                400, f"{where} ({name}) shape {str(shape)[:40]} does not fit its {len(data)} item(s); use [{len(data)}]"
            )
        columns[name] = data
    missing = sorted(required - set(columns))
    if missing:
        raise BadRequest(
            400, f"input tensor(s) {_list(missing)} are missing; the model needs {_list(sorted(required))}"
        )
    sizes = {len(data) for data in columns.values()}
    if len(sizes) > 1:
        raise BadRequest(
            400, f"input tensors have different batch sizes ({_list(sorted(map(str, sizes)))}); send one row per record"
        )
    (size,) = sizes
    if size > max_batch:
        raise BadRequest(
            413, f"the request has {size} rows, over the batch limit of {max_batch}; split it into smaller batches"
        )
    if whole:
        return list(columns[WHOLE_RECORD])
    return [{name: data[row] for name, data in columns.items()} for row in range(size)]


def requested_outputs(document: dict[str, Any], schema: dict[str, Any]) -> list[tuple[str, str]]:
    """The output tensors the request asks for (all of them when it names none)."""
    available = tensor_names(schema)
    asked = document.get("outputs")
    if asked is None:
        return available
    known = dict(available)
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise BadRequest(400, '"outputs" must be a list of {"name": ...}; or leave it out for every output')
    unknown = [o["name"] for o in asked if o["name"] not in known]
    if unknown:
        raise BadRequest(400, f"output tensor {unknown[0][:60]!r} is not one the model gives; use {_list(known)}")
    return [(o["name"], known[o["name"]]) for o in asked]


def outputs_to_tensors(
    outputs: list[Any], schema: dict[str, Any], wanted: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """One tensor per wanted output; an optional property a record left out is null in its row."""
    whole = whole_records(schema)
    return [
        {
            "name": name,
            "datatype": datatype,
            "shape": [len(outputs)],
            "data": list(outputs) if whole else [o.get(name) if isinstance(o, dict) else None for o in outputs],
        }
        for name, datatype in wanted
    ]


def _list(names: Any) -> str:
    return ", ".join(str(n) for n in names)
