"""The OpenAPI 3.1 document the ingress answers at ``GET /openapi.json``.

It lists only the routes the contract's network policy lets through (a route the contract
does not allow is not advertised), with the bearer scheme and governance's OAuth2 token URL
(client credentials), so a stock client can find how to get a token and what it may call.
The ingress serves it without a token: it holds nothing the accepted contract does not already
show every party, and a client needs the token URL before it has a token (as with OAuth2
server metadata). Prefix routes of the known protocols (``POST /v2/models/*``) are expanded to
their Open Inference Protocol v2 paths; any other prefix route is listed with a ``{path}``
parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the ingress imports this module to build the document it serves
    from core.runtime.ingress import RouteAllowList

OPENAPI_PATH = "/openapi.json"

_JSON_OBJECT: dict[str, Any] = {"type": "object"}
_ROWS = {"type": "array", "items": {}}
_V2_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "examples": ["BYTES", "FP32", "INT64"]},
        "data": {"type": "array"},
    },
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "model name"}

# known operations: (method, path) -> summary, request body schema (None: no body), path parameters
_OPERATIONS: dict[tuple[str, str], tuple[str, dict[str, Any] | None, list[dict[str, Any]]]] = {
    ("POST", "/infer"): (
        "Classify texts",
        {
            "type": "object",
            "properties": {"inputs": {"type": "array", "items": {"type": "string"}}, "data": {"type": "string"}},
        },
        [],
    ),
    ("POST", "/score"): (
        "Score records (Azure ML style)",
        {"type": "object", "required": ["data"], "properties": {"data": _ROWS}},
        [],
    ),
    ("POST", "/summarize"): ("Summarise documents", _JSON_OBJECT, []),
    ("GET", "/metadata"): ("Describe the served model", None, []),
    ("GET", "/v2/health/ready"): ("Open Inference Protocol v2: server readiness", None, []),
    ("GET", "/v2/health/live"): ("Open Inference Protocol v2: server liveness", None, []),
    ("GET", "/v2/models/{name}"): ("Open Inference Protocol v2: model metadata", None, [_NAME]),
    ("GET", "/v2/models/{name}/ready"): ("Open Inference Protocol v2: model readiness", None, [_NAME]),
    ("POST", "/v2/models/{name}/infer"): (
        "Open Inference Protocol v2: inference",
        {
            "type": "object",
            "required": ["inputs"],
            "properties": {"id": {"type": "string"}, "inputs": {"type": "array", "items": _V2_TENSOR}},
        },
        [_NAME],
    ),
}


def _paths_for(method: str, pattern: str) -> list[tuple[str, str]]:
    """The concrete (templated) paths a policy entry allows: a prefix entry stands for every
    known operation under it, or for ``<prefix>/{path}`` when none is known."""
    if not pattern.endswith("/*"):
        return [(method, pattern)]
    prefix = pattern[:-1]
    known = [key for key in _OPERATIONS if key[0] == method and key[1].startswith(prefix)]
    return known or [(method, prefix + "{path}")]


def openapi_document(routes: RouteAllowList, *, contract_id: str, token_url: str | None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the routes ``routes`` allows (see the module docstring)."""
    paths: dict[str, dict[str, Any]] = {}
    for method, pattern in routes.routes:
        for _, path in _paths_for(method, pattern):
            summary, body, parameters = _OPERATIONS.get(
                (method, path),
                (
                    f"{method} {path}",
                    _JSON_OBJECT if method in ("POST", "PUT", "PATCH") else None,
                    [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}]
                    if "{path}" in path
                    else [],
                ),
            )
            operation: dict[str, Any] = {
                "summary": summary,
                "responses": {
                    "200": {"description": "the workload's answer", "content": {"application/json": {}}},
                    "401": {"description": "no token, or an expired or foreign one"},
                    "403": {"description": "token for another contract or route, or a revoked application"},
                    "429": {"description": "over the caller's rate limit; see Retry-After"},
                },
            }
            if parameters:
                operation["parameters"] = parameters
            if body is not None:
                operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
                operation["responses"] |= {
                    "411": {"description": "the body has no Content-Length"},
                    "413": {"description": "the body is over the ingress limit"},
                    "415": {"description": "the body is not application/json"},
                }
            paths.setdefault(path, {})[method.lower()] = operation
    schemes: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    security: list[dict[str, list[str]]] = [{"bearer": []}]
    if token_url is not None:
        schemes["governance"] = {
            "type": "oauth2",
            "description": "client credentials with a signed client assertion (private_key_jwt)",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": token_url,
                    "scopes": {f"contract:{contract_id}": f"call clean room '{contract_id}'"},
                }
            },
        }
        security.append({"governance": [f"contract:{contract_id}"]})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"clean room '{contract_id}'",
            "version": "1",
            "description": "Routes the contract's network policy lets through the clean room's TLS ingress.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"securitySchemes": schemes},
        "security": security,
    }
