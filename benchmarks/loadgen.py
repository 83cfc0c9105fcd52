"""Load-generator precision: does `cleanroom model loadtest --mode per-rps` send at the rate it claims?

A fast local TLS server (a separate process, uvloop, keep-alive, a fixed small JSON answer) is
driven by the same open-loop generator the load test uses (``core.onboarding.loadtest``) with
the task's largest payload (1,000 characters), at each target rate for a few seconds. Per rate:
requests sent and answered; the rate the generator sent at (its own precision); the achieved
rate (answers / elapsed, where elapsed is the scheduled span or longer if answers come late)
and its error against the target; latency p50/p99 from the intended send times; and how late
the generator itself sent (p99 send lag).

Target: the sent and the achieved rate within 3 % of the target at every rate up to 500 rps,
with no failed request. Generator and server share this machine's cores: on a machine busy with
other work the server falls behind first (the achieved rate drops, the sent rate holds), so run
it on an otherwise idle machine.

    python benchmarks/loadgen.py [--quick] [--duration S]

The last line is one JSON object with the figures, the targets and ``targets_met``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATES = (50, 100, 200, 300, 400, 500)
QUICK_RATES = (100, 500)
TARGET_RATE_ERROR = 0.03
ANSWER = b'{"label": "pos", "label_id": 1, "score": 0.9, "truncated": false}'


async def serve(cert: str, key: str) -> None:
    """The fast server: answers every request at once; prints its port, runs until stdin closes."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(ANSWER),
        ANSWER,
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                writer.write(response)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # the parent closes stdin to stop us


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"rates {QUICK_RATES} for 2 s each")
    parser.add_argument("--duration", type=float, default=None, help="seconds per rate (default 5, quick 2)")
    parser.add_argument("--serve", nargs=2, metavar=("CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        import uvloop

        uvloop.run(serve(*args.serve))
        return 0

    from core.keys.loopback_tls import loopback_tls
    from core.onboarding.loadtest import PER_RPS, LoadTarget, run_load_test

    rates = QUICK_RATES if args.quick else RATES
    duration = args.duration or (2.0 if args.quick else 5.0)
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        identity = loopback_tls(Path(tmp), "loadgen")
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(identity.cert_path), str(identity.key_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            target = LoadTarget(f"https://127.0.0.1:{port}", identity.cert_path.read_text(), lambda: "benchmark")
            report = run_load_test(target, PER_RPS, list(rates), duration_s=duration, slo_ms=1000.0)
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(timeout=10)

    print(
        f"{'target rps':>10} {'sent':>6} {'ok':>6} {'failed':>6} {'send rps':>9} {'actual rps':>10} {'error':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'lag p99 ms':>10}"
    )
    figures = []
    for step in report.steps:
        error = (step.actual_rps - step.target) / step.target
        figures.append(
            {
                "target_rps": step.target,
                "sent": step.sent,
                "ok": step.ok,
                "failed": step.failed,
                "actual_rps": round(step.actual_rps, 2),
                "rate_error": round(error, 4),
                "send_rps": round(step.send_rps, 2),
                "send_rate_error": round((step.send_rps - step.target) / step.target, 4),
                "p50_ms": round(step.latency_ms["p50"], 2),
                "p99_ms": round(step.latency_ms["p99"], 2),
                "send_lag_p99_ms": round(step.send_lag_p99_ms, 2),
            }
        )
        print(
            f"{step.target:>10} {step.sent:>6} {step.ok:>6} {step.failed:>6} {step.send_rps:>9.1f} "
            f"{step.actual_rps:>10.1f} {error:>+7.2%} {step.latency_ms['p50']:>7.2f} {step.latency_ms['p99']:>7.2f} "
            f"{step.send_lag_p99_ms:>10.2f}"
        )
    met = all(
        max(abs(f["rate_error"]), abs(f["send_rate_error"])) <= TARGET_RATE_ERROR and f["failed"] == 0 for f in figures
    )
    targets = {"max_rate_error": TARGET_RATE_ERROR, "up_to_rps": max(rates), "failed": 0}
    print(
        json.dumps(
            {"benchmark": "loadgen", "duration_s": duration, "figures": figures, "targets": targets, "targets_met": met}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
