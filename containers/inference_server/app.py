"""The HTTP API of an ONNX folder: ``POST /infer``, ``GET /healthz``, ``GET /metadata`` (and the
record routes of containers.inference_server.scoring), and the base every served workload shares.

Request bodies are parsed by hand rather than by pydantic so every bad input gets one plain
sentence naming the field and the fix (the consumer reads these through the ingress), and no
bad request can take the server down or make it answer 500: the body is read with a size cap
(``Content-Length`` checked before reading), must be ``application/json`` (415), strict UTF-8,
nested at most ``MAX_JSON_DEPTH`` deep, and its texts must be encodable (no lone surrogates
such as ``"\\ud800"``, which JSON allows and the tokenizer cannot encode).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from containers.inference_server.classifier import OnnxClassifier

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 32  # the request shapes nest 2 deep; the cap keeps the parser off the stack limit


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def workload_app(title: str) -> FastAPI:
    """A served workload's app: no docs or schema routes (nothing the contract did not list),
    refusals as ``{"error": ...}`` with their status, and ``/healthz`` for the runtime."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(BadRequest)
    async def bad_request(_request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def create_app(
    classifier: OnnxClassifier,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    model_name: str = "model",
) -> FastAPI:
    """The ONNX folder's server: ``/infer`` with texts, plus the record routes (``/score``, ``/v2``)."""
    # Imported here: this module is also the summariser's workload base, which needs no model code.
    from containers.inference_server.scoring import add_record_routes
    from containers.inference_server.served_model import OnnxFolderModel

    app = workload_app("cleanroom inference server")
    add_record_routes(app, OnnxFolderModel(classifier, model_name), max_batch=max_batch, max_body_bytes=max_body_bytes)

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {
            "model_file": classifier.model_file.name,
            "model_sha256": classifier.model_sha256,
            "labels": classifier.labels,
            "quantised": classifier.quantised,
            "max_length": classifier.max_length,
            "max_batch": max_batch,
            "threads": classifier.threads,
        }

    @app.post("/infer")
    async def infer(request: Request) -> dict[str, Any]:
        body = await read_capped_body(request, max_body_bytes)
        require_json(request)
        single, texts = parse_request(body, max_batch)
        predictions = await run_in_threadpool(classifier.classify, texts)
        truncated = [i for i, p in enumerate(predictions) if p.truncated]
        warning = (
            (
                f"{len(truncated)} text(s) were longer than {classifier.max_length} tokens "
                "and were truncated before classification"
            )
            if truncated
            else None
        )
        if single:
            (prediction,) = predictions
            answer: dict[str, Any] = {
                "label": prediction.label,
                "label_id": prediction.label_id,
                "score": prediction.score,
                "truncated": prediction.truncated,
            }
        else:
            answer = {
                "labels": [p.label for p in predictions],
                "label_ids": [p.label_id for p in predictions],
                "scores": [p.score for p in predictions],
                "truncated": truncated,
            }
        if warning:
            answer["warning"] = warning
        return answer

    return app


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` (never held whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(
            413,
            f"request body of {int(declared)} bytes is over the limit of "
            f"{limit}; send fewer or shorter texts per request",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(
                413, f"request body is over the limit of {limit} bytes; send fewer or shorter texts per request"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _nests_deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(
            400, f"{where} has a lone surrogate ({text[exc.start]!r} at character {exc.start}); send valid Unicode text"
        ) from None


def require_json(request: Request) -> None:
    """Refuse with 415 a body that does not say it is JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest(
            415,
            f"Content-Type {media_type or 'none'!r} is not application/json; "
            "send the request as JSON with Content-Type: application/json",
        )


def parse_json(body: bytes, shapes: str) -> Any:
    """The JSON document of ``body`` or a 400 whose reason ends with ``shapes`` (what to send)."""
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(
            400, f"request body is not valid JSON (not UTF-8: bad byte at offset {exc.start}); {shapes}"
        ) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"request body is not valid JSON ({exc}); {shapes}") from None
    except RecursionError:
        raise BadRequest(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels; {shapes}") from None
    if _nests_deeper_than(document, MAX_JSON_DEPTH):
        raise BadRequest(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels; {shapes}")
    return document


def parse_request(body: bytes, max_batch: int) -> tuple[bool, list[str]]:
    """Return (is the single-text shape, texts) or raise BadRequest with a one-line reason."""
    document = parse_json(body, 'send {"data": "<text>"} or {"inputs": ["<text>", ...]}')
    if not isinstance(document, dict) or ("data" in document) == ("inputs" in document):
        raise BadRequest(
            422, 'request must be a JSON object with exactly one of "data" (a text) or "inputs" (a list of texts)'
        )
    if "data" in document:
        text = document["data"]
        if not isinstance(text, str):
            raise BadRequest(422, f'"data" must be a string, not {type(text).__name__}')
        if not text.strip():
            raise BadRequest(422, '"data" is empty; send a non-empty text')
        _check_text(text, '"data"')
        return True, [text]
    texts = document["inputs"]
    if not isinstance(texts, list):
        raise BadRequest(422, f'"inputs" must be a list of strings, not {type(texts).__name__}')
    if not texts:
        raise BadRequest(422, '"inputs" is empty; send at least one text')
    if len(texts) > max_batch:
        raise BadRequest(
            413, f'"inputs" has {len(texts)} texts, over the batch limit of {max_batch}; split it into smaller batches'
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequest(422, f'"inputs"[{index}] must be a string, not {type(text).__name__}')
        if not text.strip():
            raise BadRequest(422, f'"inputs"[{index}] is empty; every text must be non-empty')
        _check_text(text, f'"inputs"[{index}]')
    return False, texts
