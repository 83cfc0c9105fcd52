"""Serve mode: ``POST /summarize`` (``{"text": "...", "id": "optional"}``), ``GET /healthz``, ``GET /metadata``.

The body is read with the inference server's capped reader (413 before reading an over-size
body) and parsed by hand so every bad input gets one sentence naming the field and the fix; an
over-size document is a 413 naming the voted cap, and no answer ever echoes the document.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from containers.inference_server.app import BadRequest, read_capped_body, workload_app
from containers.summariser.summarising import DocumentSummariser, Refusal

BODY_OVERHEAD = 64 * 1024  # JSON escaping and the id around a document of the voted size
SHAPE = 'send {"text": "<document>"} with an optional "id"'


def create_app(summariser: DocumentSummariser) -> FastAPI:
    app = workload_app("cleanroom summariser")
    # A JSON string can take up to 6 bytes per document byte (\\uXXXX escapes).
    max_body_bytes = 6 * summariser.policy.max_document_bytes + BODY_OVERHEAD

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {"method": summariser.method.method, "policy": summariser.policy.as_dict()}

    @app.post("/summarize")
    async def summarize(request: Request) -> dict[str, Any]:
        body = await read_capped_body(request, max_body_bytes)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise BadRequest(
                415,
                f"Content-Type {media_type or 'none'!r} is not application/json; "
                "send the request as JSON with Content-Type: application/json",
            )
        document_id, text = parse_request(body)
        result = await run_in_threadpool(summariser.summarise, document_id, text)
        if isinstance(result, Refusal):
            raise BadRequest(413 if result.too_large else 422, result.reason)
        return result.record()

    return app


def parse_request(body: bytes) -> tuple[str, str]:
    """Return (id, text) or raise BadRequest with a one-line reason."""
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(
            400, f"request body is not valid JSON (not UTF-8: bad byte at offset {exc.start}); {SHAPE}"
        ) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"request body is not valid JSON ({exc}); {SHAPE}") from None
    except RecursionError:
        raise BadRequest(400, f"request body nests too deep to be a summary request; {SHAPE}") from None
    if not isinstance(document, dict) or "text" not in document:
        raise BadRequest(422, f'request must be a JSON object with a "text" field; {SHAPE}')
    unknown = sorted(set(document) - {"text", "id"})
    if unknown:
        raise BadRequest(422, f"request has unknown field(s) {', '.join(unknown)}; {SHAPE}")
    text, document_id = document["text"], document.get("id", "request")
    if not isinstance(text, str):
        raise BadRequest(422, f'"text" must be a string, not {type(text).__name__}')
    if not isinstance(document_id, str) or not document_id or len(document_id) > 256:
        raise BadRequest(422, '"id" must be a non-empty string of at most 256 characters')
    for field, value in (("text", text), ("id", document_id)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest(
                400, f'"{field}" has a lone surrogate at character {exc.start}; send valid Unicode text'
            ) from None
    return document_id, text
