"""Load tests of a model in its clean room: per requests-per-second (open loop) and per concurrency.

Per-RPS is *open loop*: every request has an intended send time fixed before the step starts
(``i / rate``), and its latency is measured from that intended time, not from when it finally
went out. A closed-loop tool waits for an answer before sending the next request, so when the
server falls behind it simply sends less, and the queueing a real client population would feel
never shows up in its latencies (coordinated omission). Here a server that cannot keep up shows
it twice: the achieved rate drops below the target and p99 climbs with the queue.

Per-concurrency runs N workers back to back, each on its own keep-alive connection, which
answers "how many clients at once before latency breaks the SLO".

The client is a minimal HTTP/1.1 client on asyncio TLS streams under uvloop, rather than a
general HTTP library: a request is fixed bytes (the task's largest payload), so the generator
spends its CPU (about 0.25 ms a request here) on the TLS records alone and holds its target
rate within 3 % up to 500 rps (benchmarks/loadgen.py measures this). Times are taken with
``perf_counter``: uvloop's loop clock ticks in whole milliseconds. TLS is pinned to the clean
room's CA, as every client of an ingress is.

The workload's CPU and memory come from /proc: the processes *below* the runtime process (the
bubblewrap sandboxes and the workload in them), sampled every ``USAGE_SAMPLE_S``: CPU as a
percentage of one core over the step, memory as the peak of the summed resident sets. The
runtime's own process (it hosts the TLS ingress) is not counted, so the figure is the model's
cost alone. A process first seen mid-step counts from that sample on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import ssl
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import uvloop

from core.errors import AccessDeniedError, InvalidInputError, ServiceUnavailableError
from core.onboarding.wrappers.text_classification import MAX_TEXT_CHARS

PER_RPS = "per-rps"
PER_CONCURRENCY = "per-concurrency"
MODES = (PER_RPS, PER_CONCURRENCY)
DEFAULT_STEPS = {PER_RPS: (10, 25, 50, 75, 100), PER_CONCURRENCY: (1, 2, 4, 8, 16)}
DEFAULT_ROUTE = "/infer"
MAX_RATE = 2000  # what the generator can schedule honestly on one core
MAX_CONNECTIONS = 200  # under the ingress's own cap of 256 open connections
MAX_DURATION_S = 600.0
REQUEST_TIMEOUT_S = 10.0  # a request unanswered this long counts as failed ("timeout")
USAGE_SAMPLE_S = 0.25
T = TypeVar("T")
# Connections opened before a step (a TLS handshake costs the generator far more than a request):
# enough for WARM_SECONDS of the target rate in flight at once, at least 2.
WARM_SECONDS = 0.02
_SAMPLE_SENTENCE = (
    "The film opens slowly, but the cast carries a story about family, memory and second chances "
    "with warmth and wit; the script is uneven, yet the ending lands. "
)


def max_payload_text(chars: int = MAX_TEXT_CHARS) -> str:
    """The task's largest input: review-like text of exactly ``chars`` characters.

    A load test with short inputs measures a model that users will not see: a transformer's cost
    grows with the tokens, so the largest request the task accepts is what the SLO must hold for."""
    repeated = _SAMPLE_SENTENCE * (chars // len(_SAMPLE_SENTENCE) + 1)
    return repeated[:chars]


def request_body(text: str, *, package: bool = False) -> bytes:
    """The inference server's single-text request shape; for a model package, its single record
    (``{"text": ...}``: the text-classification wrapper's input schema, which the server checks)."""
    return json.dumps({"data": {"text": text} if package else text}).encode()


def contract_endpoint(announced: str, requested: str | None = None) -> str:
    """The URL a load test may go to: the contract's own ingress and nothing else.

    A load generator is a denial-of-service tool with a token attached; pointing it at any URL
    the caller types would let a member aim governance-issued load at a third party."""
    parts = urlsplit(announced)
    if parts.scheme != "https" or not parts.hostname or parts.port is None:
        raise InvalidInputError(
            f"the contract's ingress '{announced}' is not an https://HOST:PORT URL",
            hint="see `cleanroom deployment show` for the running clean room",
        )
    if requested is not None and requested.rstrip("/") != announced.rstrip("/"):
        raise AccessDeniedError(
            f"load tests go only to the contract's own ingress {announced}, not {requested}",
            hint="drop --endpoint (the ingress is looked up from the deployment)",
        )
    return f"https://{parts.hostname}:{parts.port}"


def check_plan(mode: str, steps: Sequence[int], duration_s: float, slo_ms: float) -> None:
    """Refuse a plan the generator cannot run honestly, before any request is sent."""
    if mode not in MODES:
        raise InvalidInputError(f"load-test mode '{mode}' is unknown", hint=f"use one of {', '.join(MODES)}")
    if not steps:
        raise InvalidInputError("the load test has no steps", hint="give --steps 10,50,100")
    limit = MAX_RATE if mode == PER_RPS else MAX_CONNECTIONS
    unit = "rps" if mode == PER_RPS else "concurrent requests"
    for step in steps:
        if step < 1 or step > limit:
            raise InvalidInputError(f"load-test step {step} is outside 1..{limit} {unit}", hint="change --steps")
    if list(steps) != sorted(set(steps)):
        raise InvalidInputError(f"load-test steps {list(steps)} are not strictly increasing", hint="sort --steps")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise InvalidInputError(f"step duration {duration_s}s is outside (0, {MAX_DURATION_S:.0f}]", hint="--duration")
    if not slo_ms > 0:
        raise InvalidInputError(f"latency SLO {slo_ms} ms is not positive", hint="give --slo-ms 200")


def open_loop_schedule(rate: float, duration_s: float) -> list[float]:
    """Intended send offsets (seconds from the step start) for ``rate`` requests a second."""
    count = max(1, round(rate * duration_s))
    return [i / rate for i in range(count)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (a value that was observed, never interpolated)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LoadTarget:
    """Where and what to send: ``token`` is asked for a fresh bearer token before each step."""

    endpoint: str
    ca_pem: str
    token: Callable[[], str]
    route: str = DEFAULT_ROUTE
    body: bytes = field(default_factory=lambda: request_body(max_payload_text()))

    def request(self, token: str) -> bytes:
        parts = urlsplit(self.endpoint)
        head = (
            f"POST {self.route} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode("latin-1") + self.body


@dataclass(frozen=True)
class WorkloadUsage:
    """CPU and memory of the processes below ``runtime_pid`` (the sandboxes and their workloads)."""

    cpu_percent: float | None  # of one core, averaged over the step
    peak_rss_bytes: int | None
    processes: int


@dataclass(frozen=True)
class StepResult:
    mode: str
    target: int  # requests per second, or concurrent workers
    duration_s: float
    sent: int
    ok: int
    failed: int
    actual_rps: float  # answers (ok or failed) / the step's elapsed time
    send_rps: float  # requests / the span the generator took to send them (its own precision)
    latency_ms: dict[str, float]  # mean, p50, p90, p99, max over the requests answered 200
    send_lag_p99_ms: float  # how late the generator itself sent (0 for per-concurrency)
    errors: dict[str, int]
    workload: WorkloadUsage | None
    slo_ms: float

    @property
    def within_slo(self) -> bool:
        return self.ok > 0 and self.failed == 0 and self.latency_ms["p99"] <= self.slo_ms

    def as_dict(self) -> dict[str, Any]:
        """camelCase, as `model loadtest -o json` prints a step and the registry stores it."""
        return {
            "mode": self.mode,
            "target": self.target,
            "durationS": round(self.duration_s, 3),
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "actualRps": round(self.actual_rps, 2),
            "sendRps": round(self.send_rps, 2),
            "latencyMs": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "sendLagP99Ms": round(self.send_lag_p99_ms, 3),
            "errors": dict(self.errors),
            "cpuPercent": None if self.workload is None else self.workload.cpu_percent,
            "peakRssMb": None
            if self.workload is None or self.workload.peak_rss_bytes is None
            else round(self.workload.peak_rss_bytes / 2**20, 1),
            "withinSlo": self.within_slo,
        }


def knee(steps: Sequence[StepResult]) -> StepResult | None:
    """The highest step that held the SLO (no failures, p99 within it); None if none did."""
    held = [step for step in steps if step.within_slo]
    return max(held, key=lambda step: step.target) if held else None


@dataclass(frozen=True)
class LoadTestReport:
    mode: str
    endpoint: str
    route: str
    payload_chars: int
    slo_ms: float
    steps: list[StepResult]
    workload_measured: str

    def as_dict(self) -> dict[str, Any]:
        """camelCase, as `model loadtest -o json` prints the report and the registry stores it
        (core.governance.model_loadtest checks these keys)."""
        best = knee(self.steps)
        return {
            "mode": self.mode,
            "endpoint": self.endpoint,
            "route": self.route,
            "payloadChars": self.payload_chars,
            "sloMs": self.slo_ms,
            "steps": [step.as_dict() for step in self.steps],
            "knee": None if best is None else {"target": best.target, "actualRps": round(best.actual_rps, 2)},
            "workloadMeasured": self.workload_measured,
        }


# -- the workload's processes ------------------------------------------------------------------------
def workload_pids(runtime_pid: int) -> list[int]:
    """Every process below ``runtime_pid`` (not itself), through /proc/<pid>/task/<tid>/children."""
    found: list[int] = []
    queue = [runtime_pid]
    while queue:
        pid = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as handle:
                    children = [int(child) for child in handle.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(children)
            queue.extend(children)
    return found


def process_usage(pid: int) -> tuple[float, int] | None:
    """CPU seconds used so far (user + system) and resident bytes of ``pid``; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as handle:
            resident = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None  # the process ended between listing and reading
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15 of stat
    return cpu, resident * os.sysconf("SC_PAGE_SIZE")


class _UsageSampler:
    """Samples the workload's processes while a step runs; a process tree that vanished reads 0."""

    def __init__(self, runtime_pid: int) -> None:
        self.runtime_pid = runtime_pid
        self._cpu: dict[int, float] = {}
        self._first: dict[int, float] = {}
        self._peak_rss = 0
        self._started = 0.0
        self._processes: set[int] = set()

    def sample(self) -> None:
        pids = workload_pids(self.runtime_pid)
        total_rss = 0
        for pid in pids:
            usage = process_usage(pid)
            if usage is None:
                continue
            cpu, rss = usage
            self._first.setdefault(pid, cpu)
            self._cpu[pid] = cpu
            total_rss += rss
        self._processes.update(pids)
        self._peak_rss = max(self._peak_rss, total_rss)

    def start(self) -> None:
        self._started = time.monotonic()
        self.sample()

    def result(self) -> WorkloadUsage:
        self.sample()
        elapsed = time.monotonic() - self._started
        used = sum(self._cpu[pid] - self._first[pid] for pid in self._cpu)
        if not self._processes:
            return WorkloadUsage(None, None, 0)
        return WorkloadUsage(
            round(100 * used / elapsed, 1) if elapsed > 0 else None, self._peak_rss, len(self._processes)
        )


# -- the HTTP/1.1 client -----------------------------------------------------------------------------
class _Connection:
    """One keep-alive TLS connection that sends prepared request bytes and reads one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int, context: ssl.SSLContext) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            await self._read_chunked()
        else:
            await self.reader.read()  # the body runs to the end of the connection
            self.reusable = False
        if headers.get("connection") == "close":
            self.reusable = False
        return status

    async def _read_chunked(self) -> None:
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """Keep-alive connections shared by the requests of a run; at most ``limit`` in use at once."""

    def __init__(self, endpoint: str, ca_pem: str, limit: int) -> None:
        parts = urlsplit(endpoint)
        self.host, self.port = str(parts.hostname), int(parts.port or 443)
        self.context = ssl.create_default_context(cadata=ca_pem)
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[_Connection] = []

    async def warm(self, count: int) -> None:
        opened = await asyncio.gather(
            *(_Connection.open(self.host, self.port, self.context) for _ in range(count)), return_exceptions=True
        )
        self.idle.extend(c for c in opened if isinstance(c, _Connection))

    async def send(self, request: bytes) -> int:
        """One request on an idle (or new) connection; the connection is kept only if it is clean."""
        async with self.slots:
            connection = self.idle.pop() if self.idle else await _Connection.open(self.host, self.port, self.context)
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):  # no extra task per request, unlike wait_for
                    status = await connection.exchange(request)
            except BaseException:
                connection.close()
                raise
            if connection.reusable:
                self.idle.append(connection)
            else:
                connection.close()
            return status

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate not from the contract's CA"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (asyncio.IncompleteReadError, ConnectionError)):
        return "connection closed"
    return type(exc).__name__


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.errors: dict[str, int] = {}
        self.sent = 0
        self.send_span = 0.0
        self.last_answer = 0.0

    def record(self, status: int | BaseException, latency: float, answered_at: float) -> None:
        self.last_answer = max(self.last_answer, answered_at)
        if isinstance(status, BaseException):
            reason = _error_name(status)
        elif status != 200:
            reason = f"HTTP {status}"
        else:
            self.latencies.append(latency)
            return
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def result(
        self, mode: str, target: int, duration: float, elapsed: float, usage: WorkloadUsage | None, slo: float
    ) -> StepResult:
        ordered = sorted(self.latencies)
        failed = sum(self.errors.values())
        latency = {
            "mean": 1000 * sum(ordered) / len(ordered) if ordered else math.nan,
            "p50": 1000 * percentile(ordered, 50),
            "p90": 1000 * percentile(ordered, 90),
            "p99": 1000 * percentile(ordered, 99),
            "max": 1000 * ordered[-1] if ordered else math.nan,
        }
        lag = 1000 * percentile(sorted(self.lags), 99) if self.lags else 0.0
        return StepResult(
            mode=mode,
            target=target,
            duration_s=duration,
            sent=self.sent,
            ok=len(ordered),
            failed=failed,
            actual_rps=(len(ordered) + failed) / elapsed if elapsed > 0 else 0.0,
            send_rps=self.sent / self.send_span if self.send_span > 0 else 0.0,
            latency_ms=latency,
            send_lag_p99_ms=lag,
            errors=dict(sorted(self.errors.items())),
            workload=usage,
            slo_ms=slo,
        )


async def _sample_usage(sampler: _UsageSampler | None, stop: asyncio.Event) -> None:
    if sampler is None:
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), USAGE_SAMPLE_S)
        sampler.sample()


async def _open_loop_step(pool: _Pool, request: bytes, rate: int, duration: float, tally: _Tally) -> float:
    """Send at the intended times whatever the answers do; returns the step's elapsed time."""
    loop, clock = asyncio.get_running_loop(), time.perf_counter  # uvloop's loop.time() ticks in whole ms
    schedule = open_loop_schedule(rate, duration)
    start = clock() + 0.01
    in_flight: set[asyncio.Task[None]] = set()

    async def one(intended: float) -> None:
        try:
            status: int | BaseException = await pool.send(request)
        except Exception as exc:  # every failure is a counted result of the step, never the run's end
            status = exc
        now = clock()
        tally.record(status, now - intended, now)

    for offset in schedule:
        intended = start + offset
        delay = intended - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tally.lags.append(max(0.0, clock() - intended))
        tally.sent += 1
        task = loop.create_task(one(intended))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    # n requests at a rate take n intervals: the last one's own interval counts, as the first's does
    tally.send_span = clock() - start + 1 / rate
    if in_flight:
        await asyncio.gather(*in_flight)
    # The scheduled span, or longer when answers came late: a saturated server shows a lower rate.
    return max(len(schedule) / rate, tally.last_answer - start)


async def _closed_loop_step(pool: _Pool, request: bytes, workers: int, duration: float, tally: _Tally) -> float:
    clock = time.perf_counter
    start = clock()
    deadline = start + duration

    async def worker() -> None:
        while clock() < deadline:
            began = clock()
            tally.sent += 1
            try:
                status: int | BaseException = await pool.send(request)
            except Exception as exc:
                status = exc
            now = clock()
            tally.record(status, now - began, now)

    await asyncio.gather(*(worker() for _ in range(workers)))
    tally.send_span = clock() - start
    return tally.send_span


async def _run(
    target: LoadTarget,
    mode: str,
    steps: Sequence[int],
    duration_s: float,
    slo_ms: float,
    runtime_pid: int | None,
    on_step: Callable[[StepResult], None],
) -> list[StepResult]:
    pool = _Pool(target.endpoint, target.ca_pem, MAX_CONNECTIONS)
    results: list[StepResult] = []
    try:
        for step in steps:
            request = target.request(target.token())
            wanted = step if mode == PER_CONCURRENCY else max(2, math.ceil(step * WARM_SECONDS))
            await pool.warm(max(0, min(wanted, MAX_CONNECTIONS) - len(pool.idle)))
            sampler = _UsageSampler(runtime_pid) if runtime_pid else None
            if sampler is not None:
                sampler.start()
            stop = asyncio.Event()
            sampling = asyncio.create_task(_sample_usage(sampler, stop))
            tally = _Tally()
            run_step = _open_loop_step if mode == PER_RPS else _closed_loop_step
            elapsed = await run_step(pool, request, step, duration_s, tally)
            stop.set()
            await sampling
            usage = sampler.result() if sampler is not None else None
            result = tally.result(mode, step, duration_s, elapsed, usage, slo_ms)
            results.append(result)
            on_step(result)
    finally:
        pool.close()
    return results


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """uvloop's event loop: its TLS transport costs the generator about half of asyncio's per request."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _probe(target: LoadTarget) -> int:
    pool = _Pool(target.endpoint, target.ca_pem, 1)
    try:
        return await pool.send(target.request(target.token()))
    finally:
        pool.close()


def probe(target: LoadTarget) -> None:
    """One request before any step: a refused token, a route the contract does not allow or a
    clean room that does not answer ends the test here, with its reason, instead of as a table
    of failed steps."""
    try:
        status = _run_loop(_probe(target))
    except ssl.SSLCertVerificationError:
        raise AccessDeniedError(
            f"endpoint {target.endpoint} presented a TLS certificate not signed by the contract's CA",
            hint="the ingress is not the clean room's; do not send it a token",
        ) from None
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        raise ServiceUnavailableError(
            f"endpoint {target.endpoint} did not answer the probe request ({_error_name(exc)})",
            hint="check the deployment is running (`cleanroom deployment show`)",
        ) from None
    if status in (401, 403):
        raise AccessDeniedError(
            f"endpoint {target.endpoint} refused the token on POST {target.route} ({status})",
            hint="check the contract allows this route and your token is for this contract",
        )
    if status != 200:
        raise ServiceUnavailableError(
            f"endpoint {target.endpoint} answered {status} to POST {target.route}",
            hint="check the model serves (`cleanroom deployment logs`) and --route",
        )


def run_load_test(
    target: LoadTarget,
    mode: str,
    steps: Sequence[int],
    *,
    duration_s: float,
    slo_ms: float,
    runtime_pid: int | None = None,
    on_step: Callable[[StepResult], None] = lambda step: None,
) -> LoadTestReport:
    """Probe once, then run each step in order; ``runtime_pid`` (the clean room's runtime process on
    this machine, if any) lets the report carry the workload's CPU and memory."""
    check_plan(mode, steps, duration_s, slo_ms)
    probe(target)
    results = _run_loop(_run(target, mode, steps, duration_s, slo_ms, runtime_pid, on_step))
    measured = (
        f"CPU (% of one core) and peak RSS of the processes below runtime pid {runtime_pid} "
        "(the sandboxes and their workload, not the runtime's own ingress), from /proc"
        if runtime_pid
        else "not measured: the clean room does not run on this machine"
    )
    return LoadTestReport(
        mode, target.endpoint, target.route, len(json.loads(target.body).get("data", "")), slo_ms, results, measured
    )
