"""The ingress's refusal matrix end to end (issue #16): one row per case, over raw TLS sockets
(bytes exactly as a client sends them), each asserting the status, the one-line JSON error and
that the workload saw nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.ingress_endpoint_support import CONTRACT, Endpoint
from tests.raw_http import exchange

MAX_BODY = 4096
LIMITED = "limited"  # an app whose bucket the row empties first
REVOKED = "revoked"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory):
    endpoint = Endpoint(tmp_path_factory.mktemp("refusal-matrix"), max_body=MAX_BODY)
    endpoint.issuer.revoke(REVOKED)
    deadline = time.monotonic() + 10
    while endpoint.revocations.refusal(REVOKED) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    yield endpoint
    endpoint.close()


def request(
    token: str | None,
    *,
    method: str = "POST",
    path: str = "/score",
    body: bytes = b'{"data": [1]}',
    content_type: str | None = "application/json",
    length: str | None = "auto",
    extra: tuple[str, ...] = (),
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", "connection: close"]
    if token is not None:
        lines.append(f"authorization: Bearer {token}")
    if content_type is not None:
        lines.append(f"content-type: {content_type}")
    if length is not None:
        lines.append(f"content-length: {len(body) if length == 'auto' else length}")
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode("latin-1") + body


def _limited(endpoint: Endpoint) -> bytes:
    token = endpoint.issuer.app_token(LIMITED, rate_limit=6)
    while endpoint.rate_limits.take(f"app:{LIMITED}", 6) is None:  # spend its bucket without the workload
        pass
    return request(token)


ROWS: list[tuple[str, Callable[[Endpoint], bytes], int, str]] = [
    ("no-token", lambda e: request(None), 401, "a bearer token from governance is required"),
    ("not-bearer", lambda e: request(None, extra=("authorization: Basic dTpw",)), 401, "bearer token"),
    ("expired", lambda e: request(e.issuer.app_token("scorer", exp_in=-60)), 401, "token has expired"),
    (
        "foreign-signed",
        lambda e: request(e.issuer.app_token("scorer", key=ec.generate_private_key(ec.SECP384R1()))),
        401,
        "Signature verification failed",
    ),
    (
        "expired-member",
        lambda e: request(e.issuer.member_token(exp_in=-60), path="/infer"),
        401,
        "token has expired",
    ),
    ("revoked", lambda e: request(e.issuer.app_token(REVOKED)), 403, f"'{REVOKED}' has been revoked"),
    (
        "wrong-contract",
        lambda e: request(e.issuer.app_token("scorer", contract="another")),
        403,
        f"not for contract '{CONTRACT}'",
    ),
    (
        "route-not-allowed",
        lambda e: request(e.issuer.app_token("scorer", routes=("POST /score",)), path="/infer"),
        403,
        "app 'scorer' may not call POST /infer",
    ),
    (
        "route-outside-the-policy",
        lambda e: request(e.issuer.app_token("scorer"), path="/admin"),
        404,
        "not allowed by the contract's network policy",
    ),
    (
        "body-over-the-limit",
        lambda e: request(e.issuer.app_token("scorer"), body=b"", length=str(MAX_BODY + 1)),
        413,
        f"over the ingress limit of {MAX_BODY}",
    ),
    (
        "chunked",
        lambda e: request(
            e.issuer.app_token("scorer"),
            body=b'd\r\n{"data": [1]}\r\n0\r\n\r\n',
            length=None,
            extra=("transfer-encoding: chunked",),
        ),
        411,
        "chunked request bodies are not accepted",
    ),
    (
        "no-length",
        lambda e: request(e.issuer.app_token("scorer"), body=b"", length=None),
        411,
        "a POST request needs a Content-Length header",
    ),
    (
        "text-plain",
        lambda e: request(e.issuer.app_token("scorer"), content_type="text/plain"),
        415,
        "content-type 'text/plain' is not application/json",
    ),
    (
        "form",
        lambda e: request(e.issuer.app_token("scorer"), content_type="application/x-www-form-urlencoded"),
        415,
        "is not application/json",
    ),
    ("over-the-rate-limit", _limited, 429, f"caller 'app:{LIMITED}' is over its limit of 6 requests a minute"),
]


@pytest.mark.parametrize(("builder", "status", "words"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_refusal(endpoint: Endpoint, builder: Callable[[Endpoint], bytes], status: int, words: str) -> None:
    before = len(endpoint.workload.seen)
    answer = exchange(endpoint.port, endpoint.context, builder(endpoint))
    assert answer.status == status, answer
    assert words in answer.one_line_error()
    assert list(answer.json()) == ["error"], "the error body is one JSON object: {error: one line}"
    assert len(endpoint.workload.seen) == before, "the refused request reached the workload"
    headers = answer.head.lower()
    if status == 429:
        retry = next(line.split(":", 1)[1].strip() for line in headers.split("\r\n") if line.startswith("retry-after:"))
        assert retry.isdigit() and int(retry) >= 1
    if status == 401:
        assert 'www-authenticate: bearer realm="cleanroom"' in headers


def test_json_with_a_charset_or_a_json_suffix_is_accepted(endpoint: Endpoint) -> None:
    token = endpoint.issuer.app_token("scorer")
    for content_type in ("application/json; charset=utf-8", "application/vnd.score+json", None):
        answer = exchange(endpoint.port, endpoint.context, request(token, content_type=content_type))
        assert answer.status == 200, (content_type, answer)


def test_a_valid_request_of_every_kind_still_passes(endpoint: Endpoint) -> None:
    app = endpoint.issuer.app_token("scorer", routes=("POST /score", "GET /v2/health/ready"))
    assert exchange(endpoint.port, endpoint.context, request(app)).status == 200
    ready = request(app, method="GET", path="/v2/health/ready", body=b"", content_type=None, length=None)
    assert exchange(endpoint.port, endpoint.context, ready).status == 200
    member = request(endpoint.issuer.member_token(), path="/infer", body=b'{"inputs": ["a"]}')
    assert exchange(endpoint.port, endpoint.context, member).status == 200
