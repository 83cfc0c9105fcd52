"""Load tests: open-loop schedule math, percentiles and the knee, the contract-only endpoint rule,
the probe's refusals, and real runs against a local TLS server (counts, never wall-clock times)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.errors import AccessDeniedError, InvalidInputError, ServiceUnavailableError
from core.keys.loopback_tls import loopback_tls
from core.onboarding.loadtest import (
    PER_CONCURRENCY,
    PER_RPS,
    LoadTarget,
    StepResult,
    _UsageSampler,
    contract_endpoint,
    knee,
    max_payload_text,
    open_loop_schedule,
    percentile,
    run_load_test,
    workload_pids,
)


@dataclass
class FixedServer:
    """A TLS server answering every POST with a small JSON body (keep-alive), serially if asked:
    ``delay`` seconds per request under one lock, so its capacity is known exactly."""

    delay: float = 0.0
    serial: bool = False
    status_after: tuple[int, int] | None = None  # (n, status): answer `status` after n requests
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)  # (path, authorization, body)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    ca_pem: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lock: asyncio.Lock) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                fields = dict(line.split(": ", 1) for line in head[1:] if line)
                body = await reader.readexactly(int(fields.get("Content-Length", "0")))
                self.requests.append((head[0].split(" ")[1], fields.get("Authorization", ""), body))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                if self.serial:
                    async with lock:
                        await asyncio.sleep(self.delay)
                elif self.delay:
                    await asyncio.sleep(self.delay)
                self.in_flight -= 1
                status = 200
                if self.status_after and len(self.requests) > self.status_after[0]:
                    status = self.status_after[1]
                answer = b'{"label_id": 1}'
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(answer), answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    identity = loopback_tls(tmp_path_factory.mktemp("tls"), "loadtest")
    return identity.cert_path, identity.key_path


def _serve(server: FixedServer, tls: tuple[Path, Path]) -> Iterator[FixedServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls[0]), str(tls[1]))
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stopped = asyncio.Event()

    async def main() -> None:
        lock = asyncio.Lock()
        listening = await asyncio.start_server(lambda r, w: server.handle(r, w, lock), "127.0.0.1", 0, ssl=context)
        server.url = f"https://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
        ready.set()
        async with listening:
            await stopped.wait()
        handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    ready.wait(10)
    server.ca_pem = tls[0].read_text()
    yield server
    loop.call_soon_threadsafe(stopped.set)
    thread.join(10)
    loop.close()


@pytest.fixture
def fast(tls: tuple[Path, Path]) -> Iterator[FixedServer]:
    yield from _serve(FixedServer(), tls)


def _target(server: FixedServer, tokens: list[str] | None = None) -> LoadTarget:
    issued = tokens if tokens is not None else []

    def token() -> str:
        issued.append(f"token-{len(issued)}")
        return issued[-1]

    return LoadTarget(server.url, server.ca_pem, token)


# -- plan, schedule, statistics ----------------------------------------------------------------------
def test_the_payload_is_the_tasks_largest_input() -> None:
    text = max_payload_text()
    assert len(text) == 1000 and text.strip() == text[: len(text.rstrip())] and " " in text
    assert json.loads(LoadTarget("https://127.0.0.1:1", "", lambda: "t").body) == {"data": text}


def test_open_loop_schedule_spaces_requests_by_the_rate_not_by_the_answers() -> None:
    schedule = open_loop_schedule(500, 2.0)
    assert len(schedule) == 1000
    assert schedule[0] == 0.0 and schedule[-1] == pytest.approx(999 / 500)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(schedule)}
    assert gaps == {0.002}
    assert len(open_loop_schedule(7, 0.1)) == 1  # a step always sends at least one request


def test_percentiles_are_nearest_rank_observed_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0, 9.0], 50) == 3.0 and percentile([3.0, 9.0], 99) == 9.0
    assert percentile([5.0], 1) == 5.0


def _step(target: int, p99: float, failed: int = 0) -> StepResult:
    latency = {"mean": p99 / 2, "p50": p99 / 2, "p90": p99 * 0.8, "p99": p99, "max": p99}
    rate = float(target)
    return StepResult(PER_RPS, target, 1.0, target, target - failed, failed, rate, rate, latency, 0.0, {}, None, 100)


def test_the_knee_is_the_highest_step_within_the_slo() -> None:
    steps = [_step(10, 20), _step(50, 40), _step(100, 90), _step(150, 400), _step(200, 80, failed=3)]
    best = knee(steps)
    assert best is not None and best.target == 100
    assert knee([_step(10, 101)]) is None
    assert [s.within_slo for s in steps] == [True, True, True, False, False]


def test_only_the_contracts_own_ingress_is_a_target() -> None:
    assert contract_endpoint("https://127.0.0.1:8443") == "https://127.0.0.1:8443"
    assert contract_endpoint("https://127.0.0.1:8443", "https://127.0.0.1:8443/") == "https://127.0.0.1:8443"
    with pytest.raises(AccessDeniedError, match="load tests go only to the contract's own ingress https://127.0.0.1"):
        contract_endpoint("https://127.0.0.1:8443", "https://example.com:443")
    with pytest.raises(InvalidInputError, match="is not an https://HOST:PORT URL"):
        contract_endpoint("http://127.0.0.1:8443")


@pytest.mark.parametrize(
    ("mode", "steps", "duration", "slo", "message"),
    [
        ("per-second", [10], 1.0, 100.0, "load-test mode 'per-second' is unknown"),
        (PER_RPS, [], 1.0, 100.0, "the load test has no steps"),
        (PER_RPS, [10, 5000], 1.0, 100.0, "load-test step 5000 is outside 1..2000 rps"),
        (PER_CONCURRENCY, [0], 1.0, 100.0, "load-test step 0 is outside 1..200 concurrent requests"),
        (PER_RPS, [50, 10], 1.0, 100.0, "are not strictly increasing"),
        (PER_RPS, [10], 0.0, 100.0, "step duration 0.0s is outside"),
        (PER_RPS, [10], 1.0, 0.0, "latency SLO 0.0 ms is not positive"),
    ],
)
def test_bad_plans_are_refused_before_anything_is_sent(
    mode: str, steps: list[int], duration: float, slo: float, message: str, fast: FixedServer
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        run_load_test(_target(fast), mode, steps, duration_s=duration, slo_ms=slo)
    assert fast.requests == []


# -- real runs against a TLS server --------------------------------------------------------------------
def test_per_rps_sends_exactly_the_schedule_with_a_fresh_token_per_step(fast: FixedServer) -> None:
    tokens: list[str] = []
    seen: list[StepResult] = []
    report = run_load_test(_target(fast, tokens), PER_RPS, [20, 40], duration_s=0.5, slo_ms=10_000, on_step=seen.append)
    assert [s.target for s in report.steps] == [20, 40] and seen == report.steps
    assert [(s.sent, s.ok, s.failed) for s in report.steps] == [(10, 10, 0), (20, 20, 0)]
    assert len(fast.requests) == 1 + 10 + 20  # the probe, then the two steps
    assert tokens == ["token-0", "token-1", "token-2"]
    assert [auth for _, auth, _ in fast.requests] == ["Bearer token-0"] + ["Bearer token-1"] * 10 + [
        "Bearer token-2"
    ] * 20
    assert {path for path, _, _ in fast.requests} == {"/infer"}
    assert all(len(json.loads(body)["data"]) == 1000 for _, _, body in fast.requests)
    document = report.as_dict()
    assert document["knee"]["target"] == 40 and document["payloadChars"] == 1000
    assert set(document["steps"][0]["latencyMs"]) == {"mean", "p50", "p90", "p99", "max"}
    assert document["workloadMeasured"] == "not measured: the clean room does not run on this machine"


def test_open_loop_latency_includes_the_queue_a_slow_server_builds(tls: tuple[Path, Path]) -> None:
    """A serial server with 50 ms per request serves at most 20 rps. Sent at 40 rps for 0.5 s,
    the 20 requests need at least 1 s of service, so the last answer comes at least 1 - 0.475 s
    after its intended time: an open-loop p99 can only be at or above that (a closed loop would
    have shown ~50 ms). Bounds from the server's capacity, not timings of this machine."""
    for server in _serve(FixedServer(delay=0.05, serial=True), tls):
        report = run_load_test(_target(server), PER_RPS, [40], duration_s=0.5, slo_ms=100)
        (step,) = report.steps
        assert (step.sent, step.ok) == (20, 20)
        assert step.latency_ms["p99"] >= 1000 * (20 * 0.05 - 19 / 40)
        assert step.actual_rps <= 20.0
        assert not step.within_slo and knee(report.steps) is None


def test_per_concurrency_keeps_at_most_n_requests_in_flight(tls: tuple[Path, Path]) -> None:
    for server in _serve(FixedServer(delay=0.02), tls):
        report = run_load_test(_target(server), PER_CONCURRENCY, [1, 3], duration_s=0.3, slo_ms=10_000)
        assert server.max_in_flight <= 3
        for step in report.steps:
            assert step.sent == step.ok + step.failed and step.ok >= step.target
        assert len(server.requests) == 1 + sum(step.sent for step in report.steps)


def test_failed_answers_are_counted_by_reason_and_break_the_slo(tls: tuple[Path, Path]) -> None:
    for server in _serve(FixedServer(status_after=(6, 503)), tls):
        report = run_load_test(_target(server), PER_RPS, [20], duration_s=0.5, slo_ms=10_000)
        (step,) = report.steps
        assert (step.sent, step.ok, step.failed) == (10, 5, 5)
        assert step.errors == {"HTTP 503": 5}
        assert not step.within_slo and report.as_dict()["knee"] is None


def test_a_refused_token_ends_the_test_at_the_probe(tls: tuple[Path, Path]) -> None:
    for server in _serve(FixedServer(status_after=(0, 401)), tls):
        with pytest.raises(AccessDeniedError, match=r"refused the token on POST /infer \(401\)"):
            run_load_test(_target(server), PER_RPS, [100, 200], duration_s=5, slo_ms=100)
        assert len(server.requests) == 1  # the probe only: no step ran


def test_an_endpoint_not_certified_by_the_contract_ca_never_sees_a_token(fast: FixedServer, tmp_path: Path) -> None:
    other_ca = loopback_tls(tmp_path, "other").cert_path.read_text()
    tokens: list[str] = []
    target = LoadTarget(fast.url, other_ca, lambda: tokens.append("secret") or "secret")
    with pytest.raises(AccessDeniedError, match="not signed by the contract's CA"):
        run_load_test(target, PER_RPS, [10], duration_s=1, slo_ms=100)
    assert fast.requests == []


def test_a_dead_endpoint_is_reported_at_the_probe(tls: tuple[Path, Path]) -> None:
    target = LoadTarget("https://127.0.0.1:1", tls[0].read_text(), lambda: "t")
    with pytest.raises(ServiceUnavailableError, match="did not answer the probe request"):
        run_load_test(target, PER_RPS, [10], duration_s=1, slo_ms=100)


# -- the workload's CPU and memory -------------------------------------------------------------------
def test_usage_counts_the_processes_below_the_runtime_not_the_runtime_itself() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        assert busy.pid in workload_pids(os.getpid()) and os.getpid() not in workload_pids(os.getpid())
        sampler = _UsageSampler(os.getpid())
        sampler.start()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.05)  # this process idles; only the child burns CPU
        usage = sampler.result()
    finally:
        busy.kill()
        busy.wait()
    assert usage.processes >= 1
    assert usage.peak_rss_bytes is not None and usage.peak_rss_bytes > 1 << 20
    assert usage.cpu_percent is not None and usage.cpu_percent > 0


def test_a_runtime_without_children_reports_no_usage() -> None:
    lone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    try:
        sampler = _UsageSampler(lone.pid)
        sampler.start()
        usage = sampler.result()
    finally:
        lone.kill()
        lone.wait()
    assert (usage.cpu_percent, usage.peak_rss_bytes, usage.processes) == (None, None, 0)


# -- `cleanroom model loadtest` against a real clean room ------------------------------------------
SERVE = ["python", "-m", "containers.inference_server", "--model-dir", "/mnt/remote/model"]
SERVE += ["--uds", "/run/cleanroom/app.sock", "--threads", "1", "--max-batch", "8"]


@pytest.fixture()
def serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The tiny model served by the real inference server in a sandbox behind the TLS ingress,
    its runtime recorded as this process (as `deployment start` records its runtime's pid)."""
    from core.ml.model_preparation import prepare
    from tests.ml_tiny_model import build_tiny_base
    from tests.runtime_world import World

    world = World.create(tmp_path)
    monkeypatch.setenv("CLEANROOM_HOME", str(world.home))
    build_tiny_base(tmp_path / "base")
    world.setup_assets(source_folder=prepare(tmp_path / "base", tmp_path / "prepared", max_length=32).output)
    world.add_app(SERVE, ports=[8000], routes=["POST /infer"])
    world.accept_contract("inference1", enable_ca=True)
    try:
        with world.serving("inference1", "x"):
            yield world
    finally:
        world.close()


def test_cli_load_test_of_a_served_model_reports_steps_usage_and_knee(serving: object) -> None:
    from tests.cli_runner import cleanroom

    consumer = serving.parties["consumer"].root  # type: ignore[attr-defined]
    args = ["-w", consumer, "model", "loadtest", "--contract", "inference1", "--mode", "per-rps"]
    outcome = cleanroom(*args, "--steps", "4,8", "--duration", "1", "--slo-ms", "60000", "-o", "json")
    assert outcome.code == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    assert [(s["target"], s["sent"], s["ok"], s["failed"]) for s in document["steps"]] == [(4, 4, 4, 0), (8, 8, 8, 0)]
    assert document["payloadChars"] == 1000 and document["knee"]["target"] == 8
    assert document["endpoint"].startswith("https://127.0.0.1:")
    assert f"runtime pid {os.getpid()}" in document["workloadMeasured"]
    assert all(s["peakRssMb"] > 0 and s["cpuPercent"] is not None for s in document["steps"])
    assert "4 rps:" in outcome.stderr and "8 rps:" in outcome.stderr  # progress per step on stderr

    other = cleanroom(*args, "--steps", "4", "--duration", "1", "--endpoint", "https://127.0.0.1:1")
    assert other.code == 6 and "load tests go only to the contract's own ingress" in other.stderr
    assert other.stdout == ""
    bad = cleanroom(*args, "--steps", "4,x")
    assert bad.code == 2 and "--steps '4,x' is not a list of whole numbers" in bad.stderr
