"""App tokens at the ingress (issue #16): routes, revocation within 2 s, per-caller rate limits,
usage per minute and the OpenAPI document, over real TLS sockets with a real workload behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.runtime.rate_limit import CallerRateLimits, retry_after_header
from core.runtime.revocations import RevocationFeed
from core.runtime.usage import OTHER_CALLERS, UNAUTHENTICATED, UsageMeter, rows_in
from tests.ingress_endpoint_support import MEMBER, Endpoint, bearer

# A liveness bound, not the figure: the 2 s target is measured by benchmarks/endpoints.py (tests
# never assert wall-clock times; the ingress polls the feed every second).
REVOCATION_BOUND_SECONDS = 60.0


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory):
    endpoint = Endpoint(tmp_path_factory.mktemp("app-tokens"))
    yield endpoint
    endpoint.close()


def _error(answer) -> str:
    message = answer.json()["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


# -- routes ------------------------------------------------------------------------------------------
def test_an_app_token_reaches_its_route_as_its_app(endpoint: Endpoint) -> None:
    token = endpoint.issuer.app_token("scorer", routes=("POST /score",))
    answer = endpoint.client.post("/score", json={"data": [{"text": "a"}]}, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["member"] == "app:scorer" and seen["authorization"] is None and seen["path"] == "/score"


def test_an_app_token_is_refused_a_route_its_registration_does_not_list(endpoint: Endpoint) -> None:
    token = endpoint.issuer.app_token("scorer-only", routes=("POST /score",))
    before = len(endpoint.workload.seen)
    answer = endpoint.client.post("/infer", json={"inputs": ["x"]}, headers=bearer(token))
    assert answer.status_code == 403
    assert "app 'scorer-only' may not call POST /infer" in _error(answer)
    assert "POST /score" in _error(answer)
    assert len(endpoint.workload.seen) == before


def test_an_app_route_template_matches_one_segment(endpoint: Endpoint) -> None:
    token = endpoint.issuer.app_token("oip", routes=("POST /v2/models/{name}/infer", "GET /v2/health/ready"))
    tensor = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
    assert endpoint.client.post("/v2/models/m1/infer", json=tensor, headers=bearer(token)).status_code == 200
    assert endpoint.client.get("/v2/health/ready", headers=bearer(token)).status_code == 200
    before = len(endpoint.workload.seen)
    for path in ("/v2/models/m1/x/infer", "/v2/models//infer", "/v2/models/m1"):
        method = "GET" if path == "/v2/models/m1" else "POST"
        answer = endpoint.client.request(method, path, json=tensor, headers=bearer(token))
        assert answer.status_code == 403 and "may not call" in _error(answer), path
    assert len(endpoint.workload.seen) == before


@pytest.mark.parametrize(
    "claims",
    [{"routes": "POST /score"}, {"rate_limit_per_minute": 0}, {"rate_limit_per_minute": "600"}, {"app": ""}],
    ids=["routes-not-a-list", "limit-zero", "limit-a-string", "empty-app"],
)
def test_an_app_token_with_malformed_app_claims_is_refused(endpoint: Endpoint, claims: dict) -> None:
    import jwt

    token = endpoint.issuer.app_token("odd")
    payload = jwt.decode(token, options={"verify_signature": False}) | claims
    forged_by_governance = jwt.encode(payload, endpoint.issuer.key, algorithm="ES384", headers={"kid": "gov-1"})
    before = len(endpoint.workload.seen)
    answer = endpoint.client.post("/score", json={"data": []}, headers=bearer(forged_by_governance))
    assert answer.status_code == 403 and "app token needs" in _error(answer)
    assert len(endpoint.workload.seen) == before


def test_member_tokens_keep_every_network_policy_route(endpoint: Endpoint) -> None:
    token = endpoint.issuer.member_token()
    for _ in range(30):  # members have no rate limit unless the runtime sets one
        answer = endpoint.client.post("/infer", json={"inputs": ["x"]}, headers=bearer(token))
        assert answer.status_code == 200 and answer.json()["member"] == MEMBER
    assert endpoint.client.post("/score", json={"data": []}, headers=bearer(token)).status_code == 200


# -- revocation ------------------------------------------------------------------------------------------
def test_a_revoked_app_is_refused_once_the_feed_names_it(endpoint: Endpoint) -> None:
    token = endpoint.issuer.app_token("to-revoke")
    other = endpoint.issuer.app_token("stays")
    member = endpoint.issuer.member_token()
    assert endpoint.client.post("/score", json={"data": [1]}, headers=bearer(token)).status_code == 200
    revoked_at = endpoint.issuer.revoke("to-revoke")
    while True:
        answer = endpoint.client.post("/score", json={"data": [1]}, headers=bearer(token))
        elapsed = time.monotonic() - revoked_at
        if answer.status_code != 200:
            break
        assert elapsed <= REVOCATION_BOUND_SECONDS, "revocation did not reach the ingress in time"
        time.sleep(0.02)
    assert answer.status_code == 403 and "'to-revoke' has been revoked" in _error(answer)
    assert elapsed <= REVOCATION_BOUND_SECONDS, elapsed
    before = len(endpoint.workload.seen)
    assert endpoint.client.post("/score", json={"data": [1]}, headers=bearer(token)).status_code == 403
    assert len(endpoint.workload.seen) == before, "a revoked app's request reached the workload"
    assert endpoint.client.post("/score", json={"data": [1]}, headers=bearer(other)).status_code == 200
    assert endpoint.client.post("/score", json={"data": [1]}, headers=bearer(member)).status_code == 200


def test_a_stale_revocation_list_refuses_app_tokens_but_not_members(tmp_path: Path) -> None:
    endpoint = Endpoint(tmp_path)
    try:
        token, member = endpoint.issuer.app_token("app1"), endpoint.issuer.member_token()
        assert endpoint.client.post("/score", json={"data": []}, headers=bearer(token)).status_code == 200
        endpoint.revocations.stale_after_seconds = 1.0
        endpoint.issuer.server.shutdown()  # governance goes away: polls fail from now on
        endpoint.issuer.server.server_close()
        deadline = time.monotonic() + 10
        answer = endpoint.client.post("/score", json={"data": []}, headers=bearer(token))
        while answer.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            answer = endpoint.client.post("/score", json={"data": []}, headers=bearer(token))
        assert answer.status_code == 503 and "revocation list cannot be fetched" in _error(answer)
        assert endpoint.client.post("/score", json={"data": []}, headers=bearer(member)).status_code == 200
    finally:
        endpoint.client.close()
        endpoint.proxy.stop()
        endpoint.workload.close()
        endpoint.issuer.http.close()


def test_a_malformed_revocation_feed_is_not_taken() -> None:
    answers = iter([{"version": 1, "revoked": [{"app": "a", "revokedAt": 1}]}, {"version": 2, "revoked": "a"}])
    feed = RevocationFeed(lambda: next(answers), stale_after_seconds=60)
    feed.poll()
    assert feed.refusal("a") == (403, "client application 'a' has been revoked by governance")
    feed.poll()  # malformed: the last good list stays
    assert feed.version == 1 and feed.refusal("b") is None
    assert "cannot be fetched" in feed.last_error


def test_an_ingress_without_a_revocation_feed_takes_no_app_tokens(endpoint: Endpoint) -> None:
    token = endpoint.issuer.app_token("feedless")
    feed, endpoint.proxy.revocations = endpoint.proxy.revocations, None
    try:
        answer = endpoint.client.post("/score", json={"data": []}, headers=bearer(token))
    finally:
        endpoint.proxy.revocations = feed
    assert answer.status_code == 503 and "no revocation feed" in _error(answer)


# -- rate limits ---------------------------------------------------------------------------------------------
def test_an_app_over_its_limit_gets_429_with_retry_after(endpoint: Endpoint) -> None:
    token = endpoint.issuer.app_token("slow", rate_limit=6)  # a bucket of one request, one per 10 s
    other = endpoint.issuer.app_token("neighbour", rate_limit=6)
    assert endpoint.client.post("/score", json={"data": [1]}, headers=bearer(token)).status_code == 200
    before = len(endpoint.workload.seen)
    answer = endpoint.client.post("/score", json={"data": [1]}, headers=bearer(token))
    assert answer.status_code == 429
    retry = answer.headers["retry-after"]
    assert retry.isdigit() and 1 <= int(retry) <= 10, retry
    assert _error(answer) == f"caller 'app:slow' is over its limit of 6 requests a minute; retry after {retry} s"
    assert len(endpoint.workload.seen) == before
    # limits are per caller: another app with the same limit is not held back
    assert endpoint.client.post("/score", json={"data": [1]}, headers=bearer(other)).status_code == 200


def test_a_member_limit_applies_when_the_runtime_sets_one(tmp_path: Path) -> None:
    endpoint = Endpoint(tmp_path, member_rate_limit=6)
    try:
        token = endpoint.issuer.member_token()
        assert endpoint.client.post("/infer", json={"inputs": []}, headers=bearer(token)).status_code == 200
        answer = endpoint.client.post("/infer", json={"inputs": []}, headers=bearer(token))
        assert answer.status_code == 429 and f"caller '{MEMBER}'" in _error(answer)
    finally:
        endpoint.close()


def test_a_bucket_refills_after_retry_after() -> None:
    limits = CallerRateLimits()
    assert limits.capacity(120) == 20  # ten seconds' worth
    for _ in range(20):
        assert limits.take("app:a", 120, now=100.0) is None
    wait = limits.take("app:a", 120, now=100.0)
    assert wait == pytest.approx(0.5) and retry_after_header(wait) == "1"
    assert limits.take("app:a", 120, now=100.0 + int(retry_after_header(wait))) is None
    assert limits.take("app:a", 120, now=101.0) is None  # one second refilled two: one is left
    assert limits.take("app:a", 120, now=101.0) is not None
    assert limits.take("app:b", 120, now=101.0) is None  # another caller has its own bucket


def test_a_new_voted_limit_starts_a_fresh_bucket() -> None:
    limits = CallerRateLimits()
    assert limits.take("app:a", 6, now=0.0) is None
    assert limits.take("app:a", 6, now=0.0) is not None
    assert limits.take("app:a", 60, now=0.0) is None  # a token with the new limit


def test_rate_limit_state_is_bounded() -> None:
    limits = CallerRateLimits(max_callers=100)
    for index in range(10_000):
        limits.take(f"member-{index}", 60, now=float(index))
    assert len(limits) == 100
    assert limits.take("member-9999", 60, now=9999.0) is None  # the most recent callers are kept


# -- usage -------------------------------------------------------------------------------------------------
def test_usage_counts_requests_rows_and_refusals_per_caller(tmp_path: Path) -> None:
    endpoint = Endpoint(tmp_path)
    try:
        token = endpoint.issuer.app_token("metered", routes=("POST /score",), rate_limit=6)
        member = endpoint.issuer.member_token()
        assert endpoint.client.post("/score", json={"data": [1, 2, 3]}, headers=bearer(token)).status_code == 200
        assert endpoint.client.post("/score", json={"data": [1]}, headers=bearer(token)).status_code == 429
        assert endpoint.client.post("/infer", json={"inputs": ["a"]}, headers=bearer(token)).status_code == 403
        assert endpoint.client.post("/infer", json={"inputs": ["a", "b"]}, headers=bearer(member)).status_code == 200
        assert endpoint.client.post("/infer", json={"data": "one text"}, headers=bearer(member)).status_code == 200
        assert endpoint.client.post("/infer", json={}).status_code == 401
        endpoint.usage.flush()
    finally:
        endpoint.close()
    (minute,) = endpoint.minutes
    assert minute["callers"] == {
        "app:metered": {"requests": 1, "rows": 3, "refusals": {"403": 1, "429": 1}},
        MEMBER: {"requests": 2, "rows": 3, "refusals": {}},
        UNAUTHENTICATED: {"requests": 0, "rows": 0, "refusals": {"401": 1}},
    }
    assert isinstance(minute["minute"], int) and minute["seconds"] >= 0


def test_usage_is_reported_each_period_by_itself() -> None:
    minutes: list[dict] = []
    meter = UsageMeter(minutes.append, period_seconds=0.3).start()
    try:
        meter.forwarded("app:a", 2)
        deadline = time.monotonic() + 5
        while not minutes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert minutes and minutes[0]["callers"]["app:a"] == {"requests": 1, "rows": 2, "refusals": {}}
        meter.refused("app:a", 429)
    finally:
        meter.stop()  # hands over the period in progress
    assert minutes[-1]["callers"]["app:a"]["refusals"] == {"429": 1}


def test_usage_callers_are_bounded_per_minute() -> None:
    minutes: list[dict] = []
    meter = UsageMeter(minutes.append, max_callers=3)
    for index in range(10):
        meter.forwarded(f"member-{index}", 1)
    meter.flush()
    callers = minutes[0]["callers"]
    assert len(callers) == 4 and callers[OTHER_CALLERS] == {"requests": 7, "rows": 7, "refusals": {}}


@pytest.mark.parametrize(
    ("body", "rows"),
    [
        (b'{"data": [1, 2, 3]}', 3),
        (b'{"inputs": ["a", "b"]}', 2),
        (b'{"inputs": [{"name": "t", "data": ["a"]}]}', 1),
        (b'{"data": "one text"}', 1),
        (b"[1, 2]", 1),
        (b"not json", 1),
        (b"\xff", 1),
    ],
)
def test_rows_in_a_body(body: bytes, rows: int) -> None:
    assert rows_in(body) == rows


def test_rows_of_a_large_body_are_counted_off_the_event_loop(tmp_path: Path) -> None:
    endpoint = Endpoint(tmp_path)
    try:
        token = endpoint.issuer.member_token()
        answer = endpoint.client.post(
            "/infer", json={"inputs": [f"row {i}" for i in range(20_000)]}, headers=bearer(token)
        )
        assert answer.status_code == 200
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # counted in a worker thread, after forwarding
            endpoint.usage.flush()
            if endpoint.minutes:
                break
            time.sleep(0.05)
    finally:
        endpoint.close()
    assert endpoint.minutes[0]["callers"][MEMBER] == {"requests": 1, "rows": 20_000, "refusals": {}}


# -- OpenAPI ---------------------------------------------------------------------------------------------------
def test_openapi_lists_the_allowed_routes_without_a_token(endpoint: Endpoint) -> None:
    before = len(endpoint.workload.seen)
    answer = endpoint.client.get("/openapi.json")
    again = endpoint.client.get("/openapi.json")  # the same keep-alive connection
    assert answer.status_code == again.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert document["openapi"] == "3.1.0"
    assert sorted(document["paths"]) == [
        "/infer",
        "/score",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/ready",
    ]
    assert set(document["paths"]["/v2/models/{name}/infer"]) == {"post"}
    assert document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "data"
    ]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    flow = schemes["governance"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "https://127.0.0.1:1/oauth2/token" and "contract:scoring1" in flow["scopes"]
    assert {"bearer": []} in document["security"]
    assert len(endpoint.workload.seen) == before, "the ingress answers /openapi.json itself"


def test_openapi_lists_nothing_the_contract_does_not_allow(tmp_path: Path) -> None:
    endpoint = Endpoint(tmp_path, routes=("POST /infer",), token_url=None)
    try:
        document = endpoint.client.get("/openapi.json").json()
        assert list(document["paths"]) == ["/infer"]
        assert list(document["components"]["securitySchemes"]) == ["bearer"]
        # the document is the ingress's: POST to it is not a route
        assert endpoint.client.post("/openapi.json", json={}).status_code == 404
    finally:
        endpoint.close()
