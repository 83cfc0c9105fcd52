"""Secured scoring endpoints at the ingress (issue #16), measured over real sockets.

(1) Overhead: the same JSON workload on a unix socket, called directly and through the TLS ingress
    with an app token (TLS, route checks, JWT, revocation list, token bucket, usage meter), both
    with keep-alive clients, in rotating blocks with member-token calls (the ingress without the
    app checks, so their own cost shows apart). Target: median added latency < 1 ms.
    The figure needs a quiet machine: on 2 cores shared with other busy processes the TLS and
    event-loop hops queue behind them (benchmarks/runtime_overhead.py shows the same).
(2) Revocation: an app scores, governance's feed revokes it, the app retries every 10 ms until
    refused. Target: every revocation-to-403 time <= 2 s.
(3) Refusal matrix: every row of tests/test_ingress_refusal_matrix.py (401, 403, 404, 411, 413,
    415, 429) sent over raw TLS; a row counts when its status and one-line error are as
    expected and the workload saw nothing. Target: 100 %.
(4) 429 correctness: an app with a limit of 600 a minute (a bucket of 100, 10 a second) sends
    150 requests back to back: it must get between 100 and 100 + what refilled meanwhile, every
    429 must carry an integer Retry-After and a one-line error, and the request after waiting
    the last Retry-After must pass.

Governance's side is a loopback JWKS + revocations server (tests/ingress_endpoint_support.py),
so this measures the ingress alone.

    python benchmarks/endpoints.py [--quick]

The last line of output is one JSON object with the figures, the targets and ``targets_met``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from tests.ingress_endpoint_support import Endpoint, bearer
from tests.raw_http import exchange
from tests.test_ingress_refusal_matrix import MAX_BODY, REVOKED, ROWS

OVERHEAD_TARGET_MS = 1.0
REVOCATION_TARGET_SECONDS = 2.0
MATRIX_TARGET_PERCENT = 100.0
BLOCK = 25
PAYLOAD = {"data": [{"text": "a short sentence to score"}]}


def _timed(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    begin = time.perf_counter()
    response = client.post(url, json=PAYLOAD, headers=headers)
    elapsed = time.perf_counter() - begin
    assert response.status_code == 200, response.text
    return elapsed


def measure_overhead(endpoint: Endpoint, count: int) -> dict[str, float]:
    """Direct calls, member-token calls (the ingress as it was) and app-token calls, in rotating
    blocks of ``BLOCK`` so a busy machine's bursts fall on all three alike."""
    app = bearer(endpoint.issuer.app_token("bench-overhead", rate_limit=1_000_000))
    member = bearer(endpoint.issuer.member_token())
    sock = endpoint.proxy.upstream_socket
    samples: dict[str, list[float]] = {"direct": [], "member": [], "app": []}
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=10) as direct:
        paths = {
            "direct": (direct, "http://workload/score", {}),
            "member": (endpoint.client, "/score", member),
            "app": (endpoint.client, "/score", app),
        }
        for client, url, headers in paths.values():  # warm up connections and caches
            for _ in range(20):
                _timed(client, url, headers)
        while len(samples["app"]) < count:
            for name, (client, url, headers) in paths.items():
                samples[name] += [_timed(client, url, headers) for _ in range(BLOCK)]
    direct_ms, member_ms, app_ms = (statistics.median(samples[name]) * 1e3 for name in ("direct", "member", "app"))
    return {
        "direct_median_ms": direct_ms,
        "member_token_median_ms": member_ms,
        "proxy_median_ms": app_ms,
        "added_median_ms": app_ms - direct_ms,
        "app_checks_added_median_ms": app_ms - member_ms,
    }


def measure_revocation(endpoint: Endpoint, repeat: int) -> list[float]:
    times = []
    for index in range(repeat):
        app = f"bench-revoked-{index}"
        headers = bearer(endpoint.issuer.app_token(app))
        assert endpoint.client.post("/score", json=PAYLOAD, headers=headers).status_code == 200
        time.sleep(0.3 * index)  # revoke at different points of the 1 s poll cycle
        revoked_at = endpoint.issuer.revoke(app)
        while (answer := endpoint.client.post("/score", json=PAYLOAD, headers=headers)).status_code == 200:
            if time.monotonic() - revoked_at > 30:
                break
            time.sleep(0.01)
        times.append(time.monotonic() - revoked_at if answer.status_code == 403 else float("inf"))
    return times


def measure_matrix(endpoint: Endpoint) -> tuple[int, list[str]]:
    """Rows as expected, and the ids of those that were not."""
    endpoint.issuer.revoke(REVOKED)
    deadline = time.monotonic() + 10
    while endpoint.revocations.refusal(REVOKED) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    failed = []
    for row_id, builder, status, words in ROWS:
        before = len(endpoint.workload.seen)
        answer = exchange(endpoint.port, endpoint.context, builder(endpoint))
        try:
            message = answer.one_line_error()
        except (AssertionError, ValueError):
            message = ""
        if answer.status != status or words not in message or len(endpoint.workload.seen) != before:
            failed.append(row_id)
    return len(ROWS) - len(failed), failed


def measure_429(endpoint: Endpoint, sent: int) -> dict[str, object]:
    limit = 600
    capacity = endpoint.rate_limits.capacity(limit)
    headers = bearer(endpoint.issuer.app_token("bench-limited", rate_limit=limit))
    accepted, refused, retry_afters, well_formed = 0, 0, [], True
    begin = time.monotonic()
    for _ in range(sent):
        answer = endpoint.client.post("/score", json=PAYLOAD, headers=headers)
        if answer.status_code == 200:
            accepted += 1
            continue
        refused += 1
        retry = answer.headers.get("retry-after", "")
        message = answer.json().get("error", "")
        well_formed &= answer.status_code == 429 and retry.isdigit() and int(retry) >= 1 and "\n" not in message
        retry_afters.append(int(retry) if retry.isdigit() else -1)
    elapsed = time.monotonic() - begin
    most = capacity + elapsed * limit / 60.0 + 1
    time.sleep(max(retry_afters, default=0))
    after_wait = endpoint.client.post("/score", json=PAYLOAD, headers=headers).status_code
    correct = well_formed and refused > 0 and capacity <= accepted <= most and after_wait == 200
    return {
        "sent": sent,
        "accepted": accepted,
        "refused": refused,
        "accepted_bounds": [capacity, round(most, 1)],
        "retry_after_s": sorted(set(retry_afters)),
        "after_waiting_retry_after": after_wait,
        "correct": correct,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and revocations")
    args = parser.parse_args()
    count, repeat = (300, 3) if args.quick else (2000, 8)
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = Endpoint(Path(tmp), max_body=MAX_BODY)
        try:
            overhead = measure_overhead(endpoint, count)
            revocation = measure_revocation(endpoint, repeat)
            matrix_ok, matrix_failed = measure_matrix(endpoint)
            limited = measure_429(endpoint, 150)
        finally:
            endpoint.close()
    matrix_percent = 100.0 * matrix_ok / len(ROWS)
    rows = [
        ("direct unix socket, median", f"{overhead['direct_median_ms']:.3f} ms"),
        ("via TLS ingress with a member token, median", f"{overhead['member_token_median_ms']:.3f} ms"),
        ("via TLS ingress with an app token, median", f"{overhead['proxy_median_ms']:.3f} ms"),
        ("app checks over a member token, median", f"{overhead['app_checks_added_median_ms']:.3f} ms"),
        ("added by the ingress, median", f"{overhead['added_median_ms']:.3f} ms (target < {OVERHEAD_TARGET_MS} ms)"),
        (
            "revocation to 403, median / max",
            f"{statistics.median(revocation):.2f} s / {max(revocation):.2f} s"
            f" (target <= {REVOCATION_TARGET_SECONDS} s)",
        ),
        ("refusal matrix as expected", f"{matrix_ok}/{len(ROWS)} = {matrix_percent:.0f} % (target 100 %)"),
        (
            "429: accepted of sent (bounds)",
            f"{limited['accepted']}/{limited['sent']} {limited['accepted_bounds']}, correct: {limited['correct']}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if matrix_failed:
        print(f"refusal rows not as expected: {', '.join(matrix_failed)}")
    met = {
        "overhead": overhead["added_median_ms"] < OVERHEAD_TARGET_MS,
        "revocation": max(revocation) <= REVOCATION_TARGET_SECONDS,
        "refusal_matrix": matrix_percent >= MATRIX_TARGET_PERCENT,
        "rate_limit": bool(limited["correct"]),
    }
    print(
        json.dumps(
            {
                "benchmark": "endpoints",
                "quick": args.quick,
                **{key: round(value, 4) for key, value in overhead.items()},
                "requests": count,
                "revocation_s": [round(value, 3) for value in revocation],
                "refusal_matrix_percent": matrix_percent,
                "refusal_rows_failed": matrix_failed,
                "rate_limit": limited,
                "targets": {
                    "added_median_ms": OVERHEAD_TARGET_MS,
                    "revocation_s": REVOCATION_TARGET_SECONDS,
                    "refusal_matrix_percent": MATRIX_TARGET_PERCENT,
                },
                "targets_met_each": met,
                "targets_met": all(met.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
