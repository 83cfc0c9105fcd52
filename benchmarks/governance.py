"""Governance service performance: signed ballot round trip, sustained ballots/s, ledger verification.

Three members on loopback against a real service process (TLS, COSE-signed writes, SQLite WAL
with synchronous=FULL). Each figure is shown next to a baseline measured in the same run:

* ballot round trip (sign + HTTPS + verify + durable commit) vs an unsigned ``GET /health``
  round trip on the same connection (the transport floor);
* sustained ballots/s with concurrent voters (one process per member, several connections each)
  vs one voter sending ballots one after another;
* ledger verification entries/s (chain, digests, signed checkpoints) vs re-checking every
  member's ECDSA signature (``--full``).

``service_cpu_ms_per_ballot`` is the service process's CPU during the sustained phase; it rises
with the machine's load (less group commit, more wake-ups, cache misses). ``ballot_path_cpu_ms``
is the CPU of the checks and the write alone (``verify_request`` + ``GovernanceState.ballot``,
in this process, one at a time), so a rise in the first with none in the second points at the
transport or the load, not at the ballot's checks.

Usage: python benchmarks/governance.py [--quick]. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.crypto.identity import MemberIdentity
from core.governance import launcher, ledger
from core.governance.client import GovernanceClient
from core.governance.models import Action
from core.governance.service_identity import ServiceIdentity
from core.governance.signing import VerifiedRequest, sign_request, verify_request
from core.governance.state import GovernanceState

TARGETS = {"ballot_p50_ms": 10.0, "ballots_per_second": 500.0, "verify_entries_per_second": 20_000.0}


def _open_proposals(client: GovernanceClient, count: int, prefix: str) -> list[str]:
    ids = []
    for index in range(count):
        created = client.create_contract(f"{prefix}-{index}", {"index": index, "parties": ["h", "p", "c"]})
        ids.append(client.propose_contract(f"{prefix}-{index}", created["version"])["proposalId"])
    return ids


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to report the service's cost per ballot."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ballot_path_cpu_ms(root: Path, members: list[MemberIdentity], count: int) -> float:
    """CPU ms per ballot of ``verify_request`` + ``GovernanceState.ballot`` on a state of its own."""
    launcher.create(root, [m.cert_pem for m in members])
    state = GovernanceState(root, ServiceIdentity.load(root / launcher.IDENTITY_DIR))
    hoster, voter = members[0], members[1]

    def verified(member: MemberIdentity, path: str, body: dict[str, object]) -> VerifiedRequest:
        raw = sign_request(member, path, body)
        return verify_request(raw, path=path, window_seconds=state.window_seconds, member_key=state.member_key)

    try:
        ballots = []
        for index in range(count):
            contract = state.put_contract(verified(hoster, f"/contracts/p{index}", {"data": {"i": index}}), f"p{index}")
            proposal = state.create_proposal(
                verified(
                    hoster,
                    "/proposals",
                    {
                        "action": Action.SET_CONTRACT,
                        "args": {"contract_id": f"p{index}", "version": contract["version"]},
                    },
                )
            )
            path = f"/proposals/{proposal['proposalId']}/ballots"
            ballots.append((proposal["proposalId"], path, sign_request(voter, path, {"ballot": "accept"})))
        started = time.process_time()
        for proposal_id, path, raw in ballots:
            request = verify_request(raw, path=path, window_seconds=state.window_seconds, member_key=state.member_key)
            state.ballot(request, proposal_id)
        return (time.process_time() - started) * 1000 / count
    finally:
        state.close()


def _voter_process(
    endpoint: str,
    cert_pem: str,
    key_dir: str,
    proposal_ids: list[str],
    connections: int,
    start_at: float,
    results: multiprocessing.Queue[tuple[int, float]],
) -> None:
    """One member: ``connections`` threads, each with its own keep-alive connection, vote on a share."""
    identity = MemberIdentity.load(Path(key_dir))
    shares = [proposal_ids[i::connections] for i in range(connections)]
    done = [0]
    lock = threading.Lock()

    def run(share: list[str]) -> None:
        with GovernanceClient(endpoint, cert_pem, identity) as client:
            client.health()
            while time.time() < start_at:
                time.sleep(0.001)
            for proposal_id in share:
                client.vote(proposal_id, "accept")
                with lock:
                    done[0] += 1

    threads = [threading.Thread(target=run, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((done[0], time.time()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer ballots (a smoke run).")
    args = parser.parse_args()
    latency_n, sequential_n, sustained_n = (100, 100, 300) if args.quick else (300, 300, 1200)

    with tempfile.TemporaryDirectory(prefix="gov-bench-") as tmp:
        root = Path(tmp)
        members = [MemberIdentity.generate(name) for name in ("hoster", "provider", "consumer")]
        for member in members:
            member.save(root / member.name)
        launcher.create(root / "service", [m.cert_pem for m in members])
        info = launcher.start(root / "service")
        service_pid = info.pid
        if service_pid is None:
            raise SystemExit("the governance service started but reported no pid: check launcher.info")
        try:
            clients = [GovernanceClient(info.endpoint, info.service_cert_pem, m) for m in members]
            hoster = clients[0]
            print(f"setting up {latency_n + sequential_n + sustained_n} proposals…", file=sys.stderr)
            latency_ids = _open_proposals(hoster, latency_n, "lat")
            sequential_ids = _open_proposals(hoster, sequential_n, "seq")
            sustained_ids = _open_proposals(hoster, sustained_n, "sus")

            # 1. round trip: one ballot at a time, vs an unsigned GET on the same connection
            voter = clients[1]
            ballot_ms, health_ms = [], []
            for proposal_id in latency_ids:
                started = time.perf_counter()
                voter.vote(proposal_id, "accept")
                ballot_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                voter.health()
                health_ms.append((time.perf_counter() - started) * 1000)

            # 2. throughput: one voter one after another, vs three member processes concurrently
            started = time.perf_counter()
            for proposal_id in sequential_ids:
                clients[2].vote(proposal_id, "accept")
            sequential_rate = sequential_n / (time.perf_counter() - started)

            cpu_before = _cpu_seconds(service_pid)
            results: multiprocessing.Queue = multiprocessing.Queue()
            start_at = time.time() + 1.5
            processes = [
                multiprocessing.Process(
                    target=_voter_process,
                    args=(
                        info.endpoint,
                        info.service_cert_pem,
                        str(root / m.name),
                        sustained_ids,
                        4,
                        start_at,
                        results,
                    ),
                )
                for m in members
            ]
            for process in processes:
                process.start()
            finished = [results.get(timeout=600) for _ in processes]
            for process in processes:
                process.join()
            total = sum(count for count, _ in finished)
            service_cpu_ms = (_cpu_seconds(service_pid) - cpu_before) * 1000 / total
            sustained_rate = total / (max(end for _, end in finished) - start_at)
            accepted = sum(1 for p in sustained_ids if hoster.proposal(p)["proposalState"] == "Accepted")

            # 3. ledger verification
            export = root / "ledger.jsonl"
            hoster.export_ledger(export)
            lines = export.read_text().splitlines()
            started = time.perf_counter()
            report = ledger.verify_export(lines, expected_service_cert_pem=info.service_cert_pem)
            verify_rate = report.entries / (time.perf_counter() - started)
            started = time.perf_counter()
            ledger.verify_export(lines, expected_service_cert_pem=info.service_cert_pem, full=True)
            full_rate = report.entries / (time.perf_counter() - started)
            for client in clients:
                client.close()
            path_cpu_ms = _ballot_path_cpu_ms(root / "in-process", members, sequential_n)
        finally:
            launcher.stop(root / "service")

    p50 = statistics.median(ballot_ms)
    figures = {
        "ballot_p50_ms": round(p50, 2),
        "ballot_p95_ms": round(statistics.quantiles(ballot_ms, n=20)[18], 2),
        "baseline_unsigned_get_p50_ms": round(statistics.median(health_ms), 2),
        "ballots_per_second": round(sustained_rate, 1),
        "baseline_sequential_ballots_per_second": round(sequential_rate, 1),
        "sustained_ballots": total,
        "service_cpu_ms_per_ballot": round(service_cpu_ms, 2),
        "ballot_path_cpu_ms": round(path_cpu_ms, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "sustained_proposals_accepted": accepted,
        "verify_entries_per_second": round(verify_rate),
        "baseline_full_signature_verify_entries_per_second": round(full_rate),
        "ledger_entries": report.entries,
    }
    rows = [
        (
            "signed ballot round trip p50",
            f"{figures['ballot_p50_ms']} ms",
            f"unsigned GET p50 {figures['baseline_unsigned_get_p50_ms']} ms",
            "< 10 ms",
        ),
        (
            "sustained signed ballots",
            f"{figures['ballots_per_second']}/s",
            f"sequential {figures['baseline_sequential_ballots_per_second']}/s",
            ">= 500/s",
        ),
        (
            "ledger verification",
            f"{figures['verify_entries_per_second']} entries/s",
            f"every signature {figures['baseline_full_signature_verify_entries_per_second']} entries/s",
            ">= 20,000/s",
        ),
    ]
    print(f"{'measure':<30} {'ours':>20}   {'baseline':<36} target")
    for name, ours, baseline, target in rows:
        print(f"{name:<30} {ours:>20}   {baseline:<36} {target}")
    met = (
        figures["ballot_p50_ms"] < TARGETS["ballot_p50_ms"]
        and figures["ballots_per_second"] >= TARGETS["ballots_per_second"]
        and figures["verify_entries_per_second"] >= TARGETS["verify_entries_per_second"]
        and accepted == len(sustained_ids)
    )
    print(
        json.dumps({"benchmark": "governance", "quick": args.quick, **figures, "targets": TARGETS, "targets_met": met})
    )


if __name__ == "__main__":
    main()
