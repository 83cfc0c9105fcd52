"""Bad input and slow clients against the real governance and key services on loopback.

Every request here is unauthenticated or malformed and sent as raw bytes over TLS; each must
get a 4xx with a one-line error (never a 500 or a dropped connection), before authentication,
and clients that trickle their head or sit idle must be disconnected.
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from core.config.fragment import Application, Fragment, LocalStoreSpec, Mount
from core.config.merge import merge_fragments
from core.errors import CleanroomError, InvalidInputError
from core.http_guard import MAX_BODY_BYTES, MAX_HEAD_BYTES
from core.keys.attestation import AttestationKey, AttestationVerifier
from core.keys.service import KeyServiceServer
from tests.governance_support import Consortium, start_consortium
from tests.raw_http import connect, exchange, hold_connections_until_refused, read_response, seconds_until_closed

HEADER_TIMEOUT = 1.5  # short in tests; the requirement checked is "closed within timeout + margin"
CLOSE_BOUND = HEADER_TIMEOUT + 5.0
MAX_CONNECTIONS = 24


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory):
    consortium = start_consortium(
        tmp_path_factory.mktemp("gov") / "service",
        window_seconds=60,
        header_timeout_seconds=HEADER_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
    )
    yield consortium
    consortium.close()


def _gov_tls(gov: Consortium) -> tuple[int, ssl.SSLContext]:
    return int(gov.info.endpoint.rsplit(":", 1)[1]), ssl.create_default_context(cadata=gov.info.service_cert_pem)


def _request(method: str, path: str, body: bytes = b"", *, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# -- governance: malformed bodies and parameters are 400s, not 500s ----------------------------------
@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"token": "\xff\xfe"}', "not UTF-8"),
        (_deep(10_000), "nests deeper than"),
        (_deep(100), "nests deeper than"),
        (b'{"token": NaN}', "not JSON"),
        (b'{"token": ', "not JSON"),
    ],
    ids=["invalid-utf8", "nested-10000", "nested-100", "nan", "truncated"],
)
def test_governance_refuses_malformed_json_bodies_with_400(gov: Consortium, body: bytes, words: str) -> None:
    port, context = _gov_tls(gov)
    for path in ("/contracts/c1/events", "/contracts/c1/secrets/s/get", "/contracts/c1/ca/endorse"):
        answer = exchange(port, context, _request("POST", path, body, headers={"content-type": "application/json"}))
        assert answer.status == 400, (path, answer)
        assert words in answer.one_line_error()
    assert gov.clients[0].health()["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/contracts/c1/events?from_seqno=18446744073709551617", "from_seqno"),
        ("/contracts/c1/events?from_seqno=-1", "from_seqno"),
        ("/contracts/c1/events?wait=nan", "wait"),
        ("/contracts/c1/events?wait=inf", "wait"),
        ("/contracts/c1/events?wait=1e400", "wait"),
        ("/contracts/c1/events/stream?from_seqno=99999999999999999999999", "from_seqno"),
        ("/ledger/receipt/99999999999999999999999", "seqno"),
    ],
)
def test_governance_refuses_out_of_range_parameters_with_400(gov: Consortium, path: str, words: str) -> None:
    port, context = _gov_tls(gov)
    answer = exchange(port, context, _request("GET", path))
    assert answer.status == 400, answer
    message = answer.one_line_error()
    assert words in message and "not valid" in message


def test_governance_refuses_a_declared_huge_body_before_reading_it(gov: Consortium) -> None:
    port, context = _gov_tls(gov)
    head = (
        f"PUT /contracts/big HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/cose\r\n"
        f"content-length: {300 * 1024 * 1024}\r\n\r\n"
    ).encode()
    with connect(port, context) as conn:
        conn.sendall(head + b"x" * 1024)  # 300 MiB announced, 1 KiB sent: the answer must not wait for more
        answer = read_response(conn)
    assert answer.status == 413 and "over the limit" in answer.one_line_error()


@pytest.mark.parametrize("path", ["/proposals/p1/ballots", "/contracts/big"])
def test_governance_stops_reading_a_chunked_body_at_the_cap(gov: Consortium, path: str) -> None:
    port, context = _gov_tls(gov)
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/cose\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    ).encode()
    with connect(port, context) as conn:
        conn.sendall(head)
        sent = 0
        while sent <= MAX_BODY_BYTES:  # just over the cap, no final chunk: the service must not wait for it
            conn.sendall(framed)
            sent += len(chunk)
        answer = read_response(conn)
    assert answer.status == 413 and "over the limit" in answer.one_line_error()
    assert gov.clients[0].health()["status"] == "ok"


# -- governance: slow and idle clients, the connection cap -------------------------------------------
def test_governance_disconnects_slow_header_and_idle_clients(gov: Consortium) -> None:
    port, context = _gov_tls(gov)
    slow = [connect(port, context) for _ in range(10)]
    idle = [connect(port, context) for _ in range(5)]
    for conn in slow:
        conn.sendall(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n")  # and never the blank line
    try:
        waited = [seconds_until_closed(conn, limit=CLOSE_BOUND + 5) for conn in slow + idle]
        assert max(waited) < CLOSE_BOUND, waited
    finally:
        for conn in slow + idle:
            conn.close()
    assert gov.clients[0].health()["status"] == "ok"


def test_governance_drops_clients_that_never_finish_the_tls_handshake(gov: Consortium) -> None:
    port, _ = _gov_tls(gov)
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
    half = socket.create_connection(("127.0.0.1", port), timeout=10)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello, never the rest
    try:
        waited = [_seconds_until_tcp_closed(conn, limit=CLOSE_BOUND + 5) for conn in [*silent, half]]
        assert max(waited) < CLOSE_BOUND, waited
    finally:
        for conn in [*silent, half]:
            conn.close()


def _seconds_until_tcp_closed(conn: socket.socket, *, limit: float) -> float:
    start = time.monotonic()
    conn.settimeout(0.5)
    while time.monotonic() - start < limit:
        try:
            if not conn.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return limit


def test_governance_answers_408_to_a_head_that_trickles_in(gov: Consortium) -> None:
    port, context = _gov_tls(gov)
    with connect(port, context) as conn:
        start = time.monotonic()
        conn.sendall(b"GET /health HTTP/1.1\r\n")
        for _ in range(20):  # a byte-sized header line every half second, never finishing
            time.sleep(0.25)
            try:
                conn.sendall(b"x-slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
        answer = read_response(conn)
    assert answer.status == 408 and "did not arrive" in answer.one_line_error()
    assert time.monotonic() - start < CLOSE_BOUND + 2


def test_governance_answers_431_to_an_oversized_head(gov: Consortium) -> None:
    port, context = _gov_tls(gov)
    request = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n" + b"x-pad: " + b"a" * (MAX_HEAD_BYTES + 1024) + b"\r\n\r\n"
    answer = exchange(port, context, request)
    assert answer.status == 431 and "request head" in answer.one_line_error()


def test_governance_caps_open_connections(gov: Consortium) -> None:
    port, context = _gov_tls(gov)
    request = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
    held, refused = hold_connections_until_refused(port, context, request, attempts=MAX_CONNECTIONS + 5)
    try:
        # the members' own client connections count too, so the cap is reached a few earlier
        assert refused is not None and MAX_CONNECTIONS - 8 <= len(held) <= MAX_CONNECTIONS, len(held)
        assert refused.status == 503 and "too many open connections" in refused.one_line_error()
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + 10
    while True:  # the service notices the closes and takes new connections again
        answer = exchange(port, context, b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        if answer.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status == 200


def test_governance_keeps_serving_ballots_after_the_attacks(gov: Consortium) -> None:
    created = gov.clients[0].create_contract("after-attacks", {"rev": 1})
    proposal = gov.clients[0].propose_contract("after-attacks", created["version"])
    assert gov.pass_proposal(proposal)["proposalState"] == "Accepted"


# -- governance: contract data is a clean-room spec, validated on create --------------------------------
def _spec(gov: Consortium, tmp_path: Path) -> dict[str, Any]:
    hoster, provider = gov.members[0], gov.members[1]
    store = LocalStoreSpec(path=str(tmp_path / "store"))
    host = Fragment.new("hoster", hoster).with_application(
        Application(
            name="inference",
            owner=hoster.member_id,
            entrypoint="containers/inference_server",
            command=["python", "-m", "containers.inference_server"],
            ports=[8000],
            mounts=[Mount(source="model", target="/mnt/remote/model")],
        )
    )
    host = host.with_network_policy(host.network_policy.model_copy(update={"inbound_allow": ["POST /infer"]}))
    provide = Fragment.new("provider", provider).with_datasource("model", store)
    return merge_fragments([host, provide]).document()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s["network_policy"].update(inbound_allow=["POST /*"]), "network_policy.inbound_allow"),
        (lambda s: s["network_policy"].update(inbound_allow=["POST /infer/x\r\nGET /admin"]), "network_policy"),
        (lambda s: s["datasources"][0].update(name="../../etc"), "datasources.0.name"),
        (
            lambda s: s["applications"][0]["mounts"][0].update(target="/mnt/../../host"),
            "applications.0.mounts.0.target",
        ),
        (lambda s: s["applications"][0].update(privileged=True), "applications.0.privileged"),
        (lambda s: s["datasources"][0].update(owner="f" * 64), "datasources.0.owner"),
        (lambda s: s["applications"][0]["mounts"][0].update(source="undeclared"), "applications.mounts"),
        (lambda s: s.update(applications=[{"name": "x"}]), "applications.0"),
    ],
    ids=[
        "prefix-route",
        "crlf-route",
        "traversal-name",
        "mount-escape",
        "unknown-field",
        "foreign-owner",
        "dangling-mount",
        "toy-application",
    ],
)
def test_contract_data_that_is_not_a_valid_spec_is_refused_naming_the_field(
    gov: Consortium, tmp_path: Path, change, field: str
) -> None:
    spec = _spec(gov, tmp_path)
    gov.clients[0].create_contract(f"valid-{abs(hash(field)) % 10**6}", spec)  # the unmodified spec is fine
    bad = copy.deepcopy(spec)
    change(bad)
    with pytest.raises(InvalidInputError) as info:
        gov.clients[0].create_contract(f"bad-{abs(hash(field)) % 10**6}", bad)
    message = str(info.value)
    assert "(400)" in message and f"contract data is not valid: {field}" in message, message
    assert "\n" not in message


# -- the key service: the same caps before its signature checks ----------------------------------------
class _Authority:
    """The key service's governance side; never reached by these requests (they fail earlier)."""

    def accepted_policy_hash(self, contract_id: str) -> str | None:
        return None

    def execution_enabled(self, contract_id: str) -> bool:
        return False

    def member_active(self, member_id: str) -> bool:
        return False

    def contract_exists(self, contract_id: str) -> bool:
        return False

    def record_event(self, contract_id: str, event: dict[str, Any]) -> None:
        raise CleanroomError("not recorded in this test")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("keys")
    attestation_key = AttestationKey.load_or_create(root / "runtime")
    server = KeyServiceServer(
        root / "keys",
        verifier=AttestationVerifier(attestation_key.public_pem),
        authority=_Authority(),
        header_timeout=HEADER_TIMEOUT,
    ).start()
    context = ssl.create_default_context(cafile=str(server.tls.cert_path))
    yield int(server.url.rsplit(":", 1)[1]), context
    server.stop()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"member_cert": "\xff", "request": "x"}', "not UTF-8"),
        (_deep(10_000), "nests deeper than"),
        (b'{"member_cert": 5}', "not valid"),
        (b"[]", "not valid"),
    ],
    ids=["invalid-utf8", "nested-10000", "wrong-type", "not-an-object"],
)
def test_key_service_refuses_malformed_bodies_with_400(keys, body: bytes, words: str) -> None:
    port, context = keys
    answer = exchange(port, context, _request("POST", "/keks", body, headers={"content-type": "application/json"}))
    assert answer.status == 400, answer
    assert words in answer.one_line_error()


def test_key_service_caps_bodies_before_authentication(keys) -> None:
    port, context = keys
    declared = (
        f"POST /keks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {300 * 1024 * 1024}\r\n\r\n"
    ).encode()
    with connect(port, context) as conn:
        conn.sendall(declared)
        answer = read_response(conn)
    assert answer.status == 413 and "over the limit" in answer.one_line_error()
    chunk = b"x" * 65536
    with connect(port, context) as conn:
        conn.sendall(
            b"POST /keks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        sent = 0
        while sent <= MAX_BODY_BYTES:
            conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
        answer = read_response(conn)
    assert answer.status == 413 and "over the limit" in answer.one_line_error()


def test_key_service_disconnects_slow_header_clients(keys) -> None:
    port, context = keys
    slow = [connect(port, context) for _ in range(10)]
    for conn in slow:
        conn.sendall(b"POST /keks HTTP/1.1\r\n")
    threads_before = threading.active_count()
    try:
        waited = [seconds_until_closed(conn, limit=CLOSE_BOUND + 5) for conn in slow]
        assert max(waited) < CLOSE_BOUND, waited
    finally:
        for conn in slow:
            conn.close()
    assert threading.active_count() <= threads_before + 1
    healthy = exchange(port, context, b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    assert healthy.status == 200 and json.loads(healthy.body) == {"status": "ok"}
