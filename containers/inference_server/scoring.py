"""The record routes every served model speaks: Azure-ML-style ``POST /score`` and Open Inference
Protocol v2 (``/v2/health/*``, ``/v2/models/{name}``, ``/v2/models/{name}/infer``).

Every record is checked against the model's input schema before the model sees any (400 naming
the field), and every answer against the output schema before it leaves (500 naming the field,
never the model's exception text). Bodies are capped and parsed as ``/infer``'s are.
"""

from __future__ import annotations

import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from containers.inference_server.app import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    BadRequest,
    parse_json,
    read_capped_body,
    require_json,
    workload_app,
)
from containers.inference_server.open_inference import (
    outputs_to_tensors,
    records_from_inputs,
    requested_outputs,
    tensor_metadata,
)
from containers.inference_server.served_model import ModelFault, PackageModel, ServedModel

MAX_ID_CHARS = 256


async def answer_records(
    model: ServedModel, records: list[Any], where: str, max_batch: int, *, single: bool = False
) -> list[Any]:
    """The model's checked answers, after every record passed the input schema (else 400/413)."""
    if len(records) > max_batch:
        raise BadRequest(
            413,
            f"{where} has {len(records)} records, over the batch limit of {max_batch}; split it into smaller batches",
        )
    for index, record in enumerate(records):
        problem = model.input_schema.problem(record, where if single else f"{where}[{index}]")
        if problem is not None:
            raise BadRequest(
                400, f"{problem}; send records valid under the model's input schema (GET /v2/models/{model.name})"
            )
    return await run_in_threadpool(model.answer, records)


def add_record_routes(app: FastAPI, model: ServedModel, *, max_batch: int, max_body_bytes: int) -> None:
    @app.exception_handler(ModelFault)
    async def model_fault(_request: Request, exc: ModelFault) -> JSONResponse:
        print(f"inference_server: {exc}", file=sys.stderr, flush=True)
        return JSONResponse({"error": str(exc)}, status_code=500)

    async def read_document(request: Request, shapes: str) -> Any:
        body = await read_capped_body(request, max_body_bytes)
        require_json(request)
        return parse_json(body, shapes)

    @app.post("/score")
    async def score(request: Request) -> dict[str, Any]:
        shapes = 'send {"data": [<record>, ...]}'
        document = await read_document(request, shapes)
        if not isinstance(document, dict) or set(document) != {"data"}:
            raise BadRequest(400, f'a scoring request is a JSON object with only "data"; {shapes}')
        if not isinstance(document["data"], list) or not document["data"]:
            raise BadRequest(400, f'"data" must be a non-empty list of records; {shapes}')
        return {"predictions": await answer_records(model, document["data"], "data", max_batch)}

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}  # the app exists only once the model has answered its self-check

    def served(name: str, version: str | None = None) -> None:
        if name != model.name or version not in (None, model.version):
            asked = " ".join((name if version is None else f"{name}' version '{version}").split())
            raise BadRequest(
                404,
                f"model '{asked[:80]}' is not served here; this server serves '{model.name}' version "
                f"'{model.version}' (GET /v2/models/{model.name})",
            )

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str) -> dict[str, Any]:
        served(name)
        return {
            "name": model.name,
            "versions": [model.version],
            "platform": model.platform,
            "inputs": tensor_metadata(model.input_schema.schema),
            "outputs": tensor_metadata(model.output_schema.schema),
        }

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> dict[str, Any]:
        served(name)
        return {"name": model.name, "ready": True}

    async def infer_v2(request: Request) -> dict[str, Any]:
        document = await read_document(request, 'send {"inputs": [{"name", "shape", "datatype", "data"}]}')
        records = records_from_inputs(document, model.input_schema.schema, max_batch)
        wanted = requested_outputs(document, model.output_schema.schema)
        request_id = document.get("id")
        if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_ID_CHARS):
            raise BadRequest(400, f'"id" must be a string of at most {MAX_ID_CHARS} characters; or leave it out')
        outputs = await answer_records(model, records, "inputs", max_batch)
        response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
        if request_id is not None:
            response["id"] = request_id
        response["outputs"] = outputs_to_tensors(outputs, model.output_schema.schema, wanted)
        return response

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> dict[str, Any]:
        served(name)
        return await infer_v2(request)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(name: str, version: str, request: Request) -> dict[str, Any]:
        served(name, version)
        return await infer_v2(request)


def create_package_app(
    model: PackageModel, *, max_batch: int = DEFAULT_MAX_BATCH, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """A model package's server. ``/infer`` takes the package's own records here:
    ``{"data": <record>}`` answers with the record's output, ``{"inputs": [<record>, ...]}`` with
    ``{"outputs": [...]}``, as the ONNX folder's ``/infer`` answers a text and a list of texts."""
    app = workload_app("cleanroom inference server")
    add_record_routes(app, model, max_batch=max_batch, max_body_bytes=max_body_bytes)

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {
            **model.metadata(),
            "max_batch": max_batch,
            "input_schema": model.input_schema.schema,
            "output_schema": model.output_schema.schema,
        }

    @app.post("/infer")
    async def infer(request: Request) -> Any:
        shapes = 'send {"data": <record>} or {"inputs": [<record>, ...]}'
        body = await read_capped_body(request, max_body_bytes)
        require_json(request)
        document = parse_json(body, shapes)
        if not isinstance(document, dict) or ("data" in document) == ("inputs" in document) or len(document) != 1:
            raise BadRequest(422, f'request must be a JSON object with exactly one of "data" or "inputs"; {shapes}')
        if "data" in document:
            (output,) = await answer_records(model, [document["data"]], "data", max_batch, single=True)
            return output
        if not isinstance(document["inputs"], list) or not document["inputs"]:
            raise BadRequest(422, f'"inputs" must be a non-empty list of records; {shapes}')
        return {"outputs": await answer_records(model, document["inputs"], "inputs", max_batch)}

    return app
