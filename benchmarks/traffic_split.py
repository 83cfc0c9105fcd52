"""Blue/green traffic split: how closely requests follow a voted split, and whether shifting it
under load fails any request.

A real governance service (three members, an accepted contract with two serving applications
``base`` and ``tuned``) and the real TLS ingress in front of two upstream HTTP servers on unix
sockets (``tests/traffic_room.py``); the ingress polls governance's split every second.

* split accuracy: 10,000 requests through the ingress at a voted 90/10; the error is the
  distance of ``tuned``'s share from 10 %, in points and in binomial standard deviations
  (0.3 points at 10,000: the baseline any fair weighted draw has). Target: within 1 point.
* shift under load: clients send at 40 requests a second (half keep-alive, half a new
  connection each) while the members vote a new split every 2 s and one member finally rolls
  back; the baseline is the same load with the split left alone. Target: no failed request.
  The time from a split being accepted to the ingress applying it is reported too (one poll).

    python benchmarks/traffic_split.py [--quick]

The last line of output is one JSON object with the figures, the targets and ``targets_met``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.governance_support import Consortium, start_consortium
from tests.traffic_room import SteadyLoad, TrafficRoom, Version, serving_contract, set_split

CONTRACT = "bench-traffic"
REQUESTS = 10_000
TARGET_SPLIT_ERROR_POINTS = 1.0
TARGET_FAILED_REQUESTS = 0
RPS = 40.0
SHIFTS = ({"base": 50, "tuned": 50}, {"base": 10, "tuned": 90}, {"base": 0, "tuned": 100}, {"base": 90, "tuned": 10})


def split_accuracy(consortium: Consortium, room: TrafficRoom, clients: int = 4) -> dict[str, Any]:
    room.wait_for_split(set_split(consortium, CONTRACT, {"base": 90, "tuned": 10})["version"])
    Version.think_seconds = 0.0
    answered: Counter[str] = Counter()
    mismatched: list[int] = []
    lock = threading.Lock()

    def send(count: int) -> None:
        local: Counter[str] = Counter()
        with room.client() as client:
            for _ in range(count):
                answer = client.post("/score", json={"data": [1]})
                version = answer.headers.get("x-cleanroom-version", "")
                local[version] += 1
                if answer.json().get("app") != version:
                    mismatched.append(1)
        with lock:
            answered.update(local)

    started = time.perf_counter()
    threads = [threading.Thread(target=send, args=(REQUESTS // clients,)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    Version.think_seconds = 0.01
    total = sum(answered.values())
    share = 100.0 * answered["tuned"] / total
    sd_points = 100.0 * math.sqrt(0.1 * 0.9 / total)
    return {
        "requests": total,
        "tuned_share_pct": round(share, 3),
        "split_error_points": round(abs(share - 10.0), 3),
        "split_error_sd": round(abs(share - 10.0) / sd_points, 2),
        "binomial_sd_points": round(sd_points, 3),
        "header_mismatches": len(mismatched),
        "requests_per_s": round(total / seconds, 1),
    }


def shift_under_load(consortium: Consortium, room: TrafficRoom, seconds: float, *, shift: bool) -> dict[str, Any]:
    room.wait_for_split(set_split(consortium, CONTRACT, {"base": 90, "tuned": 10})["version"])
    delays: list[float] = []
    with SteadyLoad(room, rps=RPS) as load:
        started = time.monotonic()
        rounds = max(1, int(seconds // 2))
        for index in range(rounds):
            time.sleep(max(0.0, started + 2 * index + 1 - time.monotonic()))
            if not shift:
                continue
            if index == rounds - 1:
                version = consortium.clients[1].rollback_traffic(CONTRACT, "base")["version"]
            else:
                version = set_split(consortium, CONTRACT, SHIFTS[index % len(SHIFTS)])["version"]
            delays.append(room.wait_for_split(version))
        time.sleep(max(0.0, started + seconds - time.monotonic()))
    elapsed = time.monotonic() - started
    return {
        "requests": len(load.results),
        "rps": round(len(load.results) / elapsed, 1),
        "failed": len(load.failures),
        "failures": load.failures[:5],
        "shifts": len(delays),
        "apply_median_s": round(statistics.median(delays), 3) if delays else None,
        "apply_max_s": round(max(delays), 3) if delays else None,
        "answered_by": dict(Counter(version for _, _, version in load.results)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter shift run (the 10,000 requests stay)")
    args = parser.parse_args()
    seconds = 8.0 if args.quick else 30.0
    with tempfile.TemporaryDirectory() as tmp:
        consortium = start_consortium(Path(tmp) / "governance")
        try:
            consortium.accepted_contract(CONTRACT, serving_contract(consortium, ("base", "tuned")))
            room = TrafficRoom(consortium, Path(tmp), CONTRACT)
            try:
                accuracy = split_accuracy(consortium, room)
                baseline = shift_under_load(consortium, room, seconds / 2, shift=False)
                shifted = shift_under_load(consortium, room, seconds, shift=True)
            finally:
                room.close()
        finally:
            consortium.close()
    rows = [
        (
            "split 90/10, 10,000 requests",
            f"tuned {accuracy['tuned_share_pct']:.2f} % (error {accuracy['split_error_points']:.2f} points, "
            f"{accuracy['split_error_sd']:.1f} sd; target <= {TARGET_SPLIT_ERROR_POINTS} point)",
        ),
        ("  throughput", f"{accuracy['requests_per_s']:.0f} requests/s over 4 keep-alive clients"),
        (
            f"steady {RPS:.0f} rps, no shift (baseline)",
            f"{baseline['failed']} failed of {baseline['requests']} ({baseline['rps']} rps)",
        ),
        (
            f"{RPS:.0f} rps, {shifted['shifts']} changes (last a rollback)",
            f"{shifted['failed']} failed of {shifted['requests']} "
            f"({shifted['rps']} rps; target {TARGET_FAILED_REQUESTS})",
        ),
        (
            "  accepted -> ingress applied",
            f"median {shifted['apply_median_s']} s, max {shifted['apply_max_s']} s (polled every 1 s)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print("blue/green traffic split through the ingress")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    met = (
        accuracy["split_error_points"] <= TARGET_SPLIT_ERROR_POINTS
        and accuracy["header_mismatches"] == 0
        and shifted["failed"] == TARGET_FAILED_REQUESTS
        and baseline["failed"] == 0
    )
    result: dict[str, Any] = {
        "benchmark": "traffic_split",
        "quick": args.quick,
        **{f"accuracy_{key}": value for key, value in accuracy.items()},
        **{f"baseline_{key}": value for key, value in baseline.items() if key != "failures"},
        **{f"shift_{key}": value for key, value in shifted.items()},
        "targets": {"accuracy_split_error_points": TARGET_SPLIT_ERROR_POINTS, "shift_failed": TARGET_FAILED_REQUESTS},
        "targets_met": met,
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
