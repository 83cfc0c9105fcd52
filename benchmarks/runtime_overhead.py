"""Runtime overhead: deployment start -> first workload line, and the TLS ingress per request.

(1) Start: a real embedded world (governance + key service on loopback, three parties, an
    accepted contract with a datasource) and a trivial workload that prints one line. Measured
    to the first output line (attest, key release, secrets, decrypt, bubblewrap launch, Python
    start) from ``LocalRuntime.run`` in process and from ``start_background`` (the detached
    runtime process `cleanroom deployment start` launches), next to the decrypt alone of the
    same datasource in the same run. Target: detached start - decrypt < 2 s.
(2) Ingress: the same HTTP/1.1 server on a unix socket, called directly over the socket and
    through ``core.runtime.ingress`` (TLS + route check + JWT), both with keep-alive clients.
    Target: median added latency < 1 ms per request.

    python benchmarks/runtime_overhead.py [--quick]

The last line of output is one JSON object with the figures, the targets and ``targets_met``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import socketserver
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from core.config.party import party_fragment
from core.crypto.kek import dek_for
from core.governance.ca import endorse_csr, generate_ca
from core.runtime import process
from core.runtime.ingress import IngressProxy, RouteAllowList, TokenPolicy
from core.runtime.ingress_cert import endorsed_ingress_identity
from core.runtime.local import read_status
from core.runtime.process import RuntimeEnvironment
from core.storage.locator import open_store
from core.storage.transfer import download_folder
from tests.runtime_world import World

START_TARGET_SECONDS = 2.0
INGRESS_TARGET_MS = 1.0


# -- (1) start -> first line ------------------------------------------------------------------------
def measure_start(work: Path, repeat: int, datasource_mib: int) -> dict[str, float]:
    world = World.create(work)
    try:
        world.setup_assets({"weights.bin": "x" * (datasource_mib << 20)})
        world.add_app(["python", "-c", "print('first line', flush=True)"])
        world.accept_contract("bench")
        provider = world.parties["provider"]
        asset = party_fragment(provider).datasource("model")
        dek = dek_for(provider.keys_dir, "model")
        decrypts, starts = [], []
        for index in range(repeat):
            target = work / f"decrypt-{index}"
            begin = time.perf_counter()
            download_folder(open_store(asset.store), asset.container, dek, target, label="model")
            decrypts.append(time.perf_counter() - begin)
            first: list[float] = []
            runtime = world.runtime(
                listener=lambda kind, _d, first=first: (
                    first.append(time.perf_counter()) if kind == "first_output" and not first else None
                )
            )
            begin = time.perf_counter()
            runtime.run("bench")
            starts.append(first[0] - begin)
        env = RuntimeEnvironment(world.runtime_state, world.governance_state, world.key_state)
        detached = []
        for _ in range(repeat):  # what `cleanroom deployment start` does: a detached runtime process
            begin = time.time()
            process.start_background(env, "bench")
            deadline = time.monotonic() + 60
            while read_status(world.runtime_state, "bench").get("state") not in ("exited", "failed"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the benchmark deployment did not finish")
                time.sleep(0.02)
            detached.append(read_status(world.runtime_state, "bench")["first_output_at"] - begin)
        return {
            "start_to_first_line_s": statistics.median(starts),
            "decrypt_s": statistics.median(decrypts),
            "detached_start_to_first_line_s": statistics.median(detached),
            "datasource_mib": datasource_mib,
        }
    finally:
        world.close()


# -- (2) ingress vs direct unix socket --------------------------------------------------------------
class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _latencies(client: httpx.Client, url: str, headers: dict[str, str], count: int) -> list[float]:
    payload = b'{"texts": ["a short sentence to classify"]}'
    for _ in range(20):  # warm up connections and caches
        client.post(url, content=payload, headers=headers)
    samples = []
    for _ in range(count):
        begin = time.perf_counter()
        response = client.post(url, content=payload, headers=headers)
        samples.append(time.perf_counter() - begin)
        assert response.status_code == 200, response.text
    return samples


def measure_ingress(work: Path, count: int) -> dict[str, float]:
    sock = work / "app.sock"
    server = _UnixServer(str(sock), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ca_key, ca_cert = generate_ca("bench")  # the governance CA code, as the runtime gets endorsed
    identity = endorsed_ingress_identity(
        work, "bench", lambda csr: endorse_csr(ca_key, ca_cert, csr.decode()) + ca_cert
    )
    ca_pem = ca_cert.decode()
    issuer = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(issuer.public_key()))
    jwks = {"keys": [{**jwk, "kid": "gov", "alg": "ES384"}]}
    now = int(time.time())
    token = jwt.encode(
        {"sub": "consumer", "contract_id": "bench", "aud": "cleanroom:bench", "iat": now, "exp": now + 3600},
        issuer,
        algorithm="ES384",
        headers={"kid": "gov"},
    )
    proxy = IngressProxy(
        upstream_socket=sock,
        cert_chain=identity.cert_chain,
        key_file=identity.key_file,
        routes=RouteAllowList.from_policy(["POST /infer"]),
        tokens=TokenPolicy(contract_id="bench", jwks=lambda: jwks, audience="cleanroom:bench"),
    ).start()
    try:
        direct = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=10)
        proxied = httpx.Client(verify=ssl.create_default_context(cadata=ca_pem), timeout=10)
        direct_samples = _latencies(direct, "http://workload/infer", {}, count)
        proxy_samples = _latencies(proxied, f"{proxy.url}/infer", {"authorization": f"Bearer {token}"}, count)
        direct.close()
        proxied.close()
    finally:
        proxy.stop()
        server.shutdown()
    direct_ms, proxy_ms = statistics.median(direct_samples) * 1e3, statistics.median(proxy_samples) * 1e3
    return {
        "direct_median_ms": direct_ms,
        "proxy_median_ms": proxy_ms,
        "added_median_ms": proxy_ms - direct_ms,
        "requests": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and requests")
    args = parser.parse_args()
    repeat, count, mib = (2, 300, 4) if args.quick else (5, 2000, 32)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "ingress").mkdir(mode=0o700)  # the ingress refuses a socket folder others can enter
        ingress = measure_ingress(work / "ingress", count)
        start = measure_start(work / "start", repeat, mib)
    start_overhead = start["detached_start_to_first_line_s"] - start["decrypt_s"]
    rows = [
        ("decrypt datasource alone (baseline)", f"{start['decrypt_s']:.3f} s ({mib} MiB)"),
        ("runtime.run -> first line (in process)", f"{start['start_to_first_line_s']:.3f} s"),
        ("deployment start -> first line (detached)", f"{start['detached_start_to_first_line_s']:.3f} s"),
        ("start overhead beyond decrypt", f"{start_overhead:.3f} s (target < {START_TARGET_SECONDS} s)"),
        ("direct unix socket, median", f"{ingress['direct_median_ms']:.3f} ms"),
        ("via TLS ingress, median", f"{ingress['proxy_median_ms']:.3f} ms"),
        ("added by the ingress, median", f"{ingress['added_median_ms']:.3f} ms (target < {INGRESS_TARGET_MS} ms)"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    met = start_overhead < START_TARGET_SECONDS and ingress["added_median_ms"] < INGRESS_TARGET_MS
    print(
        json.dumps(
            {
                "benchmark": "runtime_overhead",
                "quick": args.quick,
                **start,
                "start_overhead_s": start_overhead,
                **ingress,
                "targets": {"start_overhead_s": START_TARGET_SECONDS, "added_median_ms": INGRESS_TARGET_MS},
                "targets_met": met,
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
