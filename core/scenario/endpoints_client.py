"""`python -m core.scenario.endpoints_client CALL ...`: what the scoring application of the endpoints
scenario sends to the clean room's ingress, with the bearer token in ``$APP_TOKEN``.

No `cleanroom` verb calls a contract's routes as an application does (`cleanroom infer` is a
member's evaluation client), so the scenario narrates these lines and its steps perform exactly
them, in process (``core.scenario.endpoints_operations``). Run by hand against a clean room left
running (`cleanroom demo --scenario endpoints --stop-after rollback --keep-running`), after
``export APP_TOKEN=$(cleanroom -w W/consumer governance app token scorer --key ... --contract ...)``,
each call prints what it saw as JSON. The calls count what the ingress answered and which
version served (the ``X-Cleanroom-Version`` answer header); none judges the answers, the
scenario's summary reports them.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.errors import AccessDeniedError, CleanroomError, InvalidInputError, ServiceUnavailableError

TOKEN_ENV = "APP_TOKEN"
VERSION_HEADER = "X-Cleanroom-Version"
REVIEW = "a moving, funny film with a clever script"
READY_ROUTE = "/v2/health/ready"
READY_WITHIN_S = 120.0  # a clean room that just started loads both models first
REFUSED_WITHIN_S = 60.0  # liveness only: the 2 s figure is benchmarks/endpoints.py's
NOT_SERVING = (502, 503)  # the workload is still binding its socket


@dataclass(frozen=True)
class Endpoint:
    """The contract's ingress as the application calls it: TLS pinned to the contract's CA."""

    ingress: str
    ca_file: Path
    token: str

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.ingress,
            verify=ssl.create_default_context(cafile=str(self.ca_file)),
            headers={"authorization": f"Bearer {self.token}"},
            timeout=30,
        )


def _served_by(answer: httpx.Response) -> str:
    return str(answer.headers.get(VERSION_HEADER.lower(), "(none)"))


def _error(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("error", ""))[:300]
    except ValueError:
        return answer.text[:300]


def wait_ready(endpoint: Endpoint, versions: list[str], *, within: float = READY_WITHIN_S) -> dict[str, Any]:
    """``GET /v2/health/ready`` pinned to each version until it answers 200: the seconds each took."""
    seconds: dict[str, float] = {}
    started = time.monotonic()
    with endpoint.client() as client:
        for version in versions:
            last = "no answer"
            while True:
                try:
                    answer = client.get(READY_ROUTE, headers={VERSION_HEADER: version})
                    if answer.status_code == 200:
                        break
                    if answer.status_code not in NOT_SERVING:
                        raise AccessDeniedError(
                            f"{READY_ROUTE} of '{version}' answered {answer.status_code}: {_error(answer)}",
                            hint="check the application's registration and token",
                        )
                    last = f"{answer.status_code} {_error(answer)}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                if time.monotonic() - started > within:
                    raise ServiceUnavailableError(
                        f"version '{version}' was not ready within {within:.0f} s ({last})",
                        hint="see `cleanroom deployment logs`",
                    )
                time.sleep(0.25)
            seconds[version] = round(time.monotonic() - started, 3)
    return {"versions": versions, "readySeconds": seconds}


def open_inference(endpoint: Endpoint, model: str) -> dict[str, Any]:
    """The Open Inference Protocol v2 surface: health, the model's metadata, one inference."""
    request = {"id": "scenario-1", "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [REVIEW]}]}
    with endpoint.client() as client:
        ready = client.get(READY_ROUTE)
        metadata = client.get(f"/v2/models/{model}")
        infer = client.post(f"/v2/models/{model}/infer", json=request)
    answer: dict[str, Any] = infer.json() if infer.status_code == 200 else {"error": _error(infer)}
    return {
        "ready": {"status": ready.status_code, "body": ready.json() if ready.status_code == 200 else _error(ready)},
        "metadata": {
            "status": metadata.status_code,
            "body": metadata.json() if metadata.status_code == 200 else _error(metadata),
            "servedBy": _served_by(metadata),
        },
        "infer": {"status": infer.status_code, "body": answer, "servedBy": _served_by(infer)},
    }


def score(endpoint: Endpoint, requests: int, *, pin: str | None = None) -> dict[str, Any]:
    """``requests`` calls of ``POST /score`` with one record each (pinned to ``pin`` if given):
    the answers' statuses and which version served each."""
    statuses: Counter[str] = Counter()
    served: Counter[str] = Counter()
    headers = {VERSION_HEADER: pin} if pin else {}
    with endpoint.client() as client:
        for _ in range(requests):
            answer = client.post("/score", json={"data": [{"text": REVIEW}]}, headers=headers)
            statuses[str(answer.status_code)] += 1
            if answer.status_code == 200:
                served[_served_by(answer)] += 1
    return {"requests": requests, "pin": pin, "statuses": dict(statuses), "servedBy": dict(sorted(served.items()))}


def burst(endpoint: Endpoint, requests: int, concurrency: int) -> dict[str, Any]:
    """``requests`` calls of ``GET /v2/health/ready`` at once over ``concurrency`` connections:
    past the voted rate limit the ingress answers 429 with Retry-After."""
    if requests < 1 or concurrency < 1:
        raise InvalidInputError("--requests and --concurrency must be positive", hint="e.g. --requests 600")
    statuses: Counter[str] = Counter()
    retry_after: list[int] = []
    refusal: list[str] = []
    lock = threading.Lock()

    def send(count: int) -> None:
        with endpoint.client() as client:
            for _ in range(count):
                answer = client.get(READY_ROUTE)
                with lock:
                    statuses[str(answer.status_code)] += 1
                    if answer.status_code == 429:
                        retry_after.append(int(answer.headers.get("retry-after", "-1")))
                        if not refusal:
                            refusal.append(_error(answer))

    shares = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
    senders = [threading.Thread(target=send, args=(share,)) for share in shares if share]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    return {
        "requests": requests,
        "concurrency": concurrency,
        "statuses": dict(sorted(statuses.items())),
        "retryAfterSeconds": sorted(set(retry_after)),
        "refusal": refusal[0] if refusal else None,
    }


def until_refused(
    endpoint: Endpoint, *, since: float | None = None, within: float = REFUSED_WITHIN_S
) -> dict[str, Any]:
    """``POST /score`` every 50 ms until the ingress answers 403: how long after ``since`` (a
    ``time.monotonic()``, default now) the refusal came, and what was answered before it."""
    began = time.monotonic() if since is None else since
    before: Counter[str] = Counter()
    with endpoint.client() as client:
        while True:
            answer = client.post("/score", json={"data": [{"text": REVIEW}]})
            if answer.status_code == 403:
                return {
                    "status": 403,
                    "seconds": round(time.monotonic() - began, 3),
                    "refusal": _error(answer),
                    "answeredBefore": dict(sorted(before.items())),
                }
            before[str(answer.status_code)] += 1
            if time.monotonic() - began > within:
                raise ServiceUnavailableError(
                    f"the ingress still answered {answer.status_code} {within:.0f} s after the revocation",
                    hint="check that the runtime polls governance's revocation feed",
                )
            time.sleep(0.05)


def parser() -> argparse.ArgumentParser:
    """The command lines the endpoints scenario narrates (its tests parse every one with it)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ingress", required=True, help="the clean room's ingress URL (https://HOST:PORT)")
    common.add_argument("--ingress-ca", required=True, type=Path, help="the contract's CA certificate (PEM)")
    top = argparse.ArgumentParser(prog="python -m core.scenario.endpoints_client", description=__doc__.splitlines()[0])
    calls = top.add_subparsers(dest="call", required=True)
    ready = calls.add_parser("ready", parents=[common], help=f"wait until each version answers {READY_ROUTE}")
    ready.add_argument("--version", action="append", required=True, help="a serving application (repeatable)")
    oip = calls.add_parser("oip-v2", parents=[common], help="health, model metadata and one inference (OIP v2)")
    oip.add_argument("--model", required=True, help="the model name /v2/models/{name} answers to")
    scoring = calls.add_parser("score", parents=[common], help="POST /score N times; count who served")
    scoring.add_argument("--requests", type=int, required=True)
    scoring.add_argument("--pin", default=None, help=f"send {VERSION_HEADER}: NAME with each request")
    many = calls.add_parser("burst", parents=[common], help="many requests at once, past the rate limit")
    many.add_argument("--requests", type=int, required=True)
    many.add_argument("--concurrency", type=int, required=True)
    calls.add_parser("until-refused", parents=[common], help="call until the ingress answers 403 (revoked)")
    return top


def run(arguments: argparse.Namespace, token: str, *, since: float | None = None) -> dict[str, Any]:
    """Perform one parsed call with ``token``; ``since`` times ``until-refused`` from an earlier act."""
    endpoint = Endpoint(arguments.ingress, arguments.ingress_ca, token)
    if arguments.call == "ready":
        return wait_ready(endpoint, list(arguments.version))
    if arguments.call == "oip-v2":
        return open_inference(endpoint, arguments.model)
    if arguments.call == "score":
        return score(endpoint, arguments.requests, pin=arguments.pin)
    if arguments.call == "burst":
        return burst(endpoint, arguments.requests, arguments.concurrency)
    return until_refused(endpoint, since=since)


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "")
    try:
        if not token:
            raise InvalidInputError(
                f"${TOKEN_ENV} is empty",
                hint=f"export {TOKEN_ENV}=$(cleanroom -w W/consumer governance app token NAME --key K --contract C)",
            )
        print(json.dumps(run(arguments, token), indent=2, sort_keys=True))
    except CleanroomError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except httpx.HTTPError as exc:
        print(f"error: the ingress {arguments.ingress} did not answer ({exc!r})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
