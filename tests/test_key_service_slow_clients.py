"""Slow and idle clients against the REAL key service (and the ingress's TLS handshake) on loopback.

The key service answers unauthenticated clients through the same ``http_guard.GuardedHttpProtocol``
as governance, so the same attacks are made on it here, as raw bytes over TLS: a connection
past the cap, an idle keep-alive connection, a client that never finishes its TLS hello, a head
over 64 KiB. The limits are set small (half a second, a handful of connections) so each attack
shows its refusal at once; what is asserted is the refusal (the status, the closed connection),
never how long it took.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import http_guard
from core.keys.attestation import AttestationKey, AttestationVerifier
from core.keys.service import KeyServiceServer
from core.runtime.ingress import IngressProxy, RouteAllowList, TokenPolicy
from core.runtime.ingress_cert import endorsed_ingress_identity
from tests.raw_http import connect, exchange, hold_connections_until_refused, read_response
from tests.test_runtime_ingress import _make_ca
from tests.test_service_bad_input import _Authority

SHORT = 0.5  # header, idle and handshake limits in these tests
GIVE_UP = 8.0  # still open this long after a 0.5 s limit (shorter than every default): not closed by it
MAX_CONNECTIONS = 8
HEALTH = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
# the start of a ClientHello, never the rest
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def _closed_by_server(conn: socket.socket) -> bool:
    """True once the server closes ``conn`` (an answer before the close is read and dropped);
    False if it is still open after ``GIVE_UP`` seconds."""
    conn.settimeout(0.5)
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:  # a reset, or the TLS layer's view of the same close
            return True
    return False


@contextlib.contextmanager
def _key_service(root: Path, *, header_timeout: float) -> Iterator[tuple[int, ssl.SSLContext]]:
    """The real key service with these limits. Its TLS handshake limit is the process-wide one
    its own process sets (``limit_tls_handshakes``), read when the server starts listening."""
    attestation_key = AttestationKey.load_or_create(root / "runtime")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http_guard, "_tls_handshake_seconds", SHORT)
        server = KeyServiceServer(
            root / "keys",
            verifier=AttestationVerifier(attestation_key.public_pem),
            authority=_Authority(),
            header_timeout=header_timeout,
            max_connections=MAX_CONNECTIONS,
        ).start()
    try:
        yield int(server.url.rsplit(":", 1)[1]), ssl.create_default_context(cafile=str(server.tls.cert_path))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ssl.SSLContext]]:
    with _key_service(tmp_path_factory.mktemp("keys"), header_timeout=SHORT) as service:
        yield service


def _healthy(port: int, context: ssl.SSLContext) -> bool:
    answer = exchange(port, context, HEALTH)
    return answer.status == 200 and json.loads(answer.body) == {"status": "ok"}


def test_key_service_closes_idle_keep_alive_connections(keys) -> None:
    port, context = keys
    served = [connect(port, context) for _ in range(3)]
    never_asked = [connect(port, context) for _ in range(3)]
    try:
        for conn in served:  # one request answered, then the keep-alive connection sits idle
            conn.sendall(HEALTH)
            assert read_response(conn).status == 200
        assert all(_closed_by_server(conn) for conn in served + never_asked)
    finally:
        for conn in served + never_asked:
            conn.close()
    assert _healthy(port, context)


def _assert_unfinished_handshakes_are_dropped(port: int) -> None:
    """Five clients that never speak and one that stops mid ClientHello are all closed by the server."""
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
    half = socket.create_connection(("127.0.0.1", port), timeout=10)
    half.sendall(PARTIAL_CLIENT_HELLO)
    try:
        assert all(_closed_by_server(conn) for conn in [*silent, half])
    finally:
        for conn in [*silent, half]:
            conn.close()


def test_key_service_drops_clients_that_never_finish_the_tls_handshake(keys) -> None:
    port, context = keys
    _assert_unfinished_handshakes_are_dropped(port)
    assert _healthy(port, context)


def test_key_service_answers_431_to_an_oversized_head(keys) -> None:
    port, context = keys
    pad = b"x-pad: " + b"a" * (http_guard.MAX_HEAD_BYTES + 1024) + b"\r\n"
    for request in (  # the head in one piece
        b"POST /keks HTTP/1.1\r\nhost: 127.0.0.1\r\n" + pad + b"\r\n",
        b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n" + pad + b"\r\n",
    ):
        answer = exchange(port, context, request)
        assert answer.status == 431, answer
        assert f"request head is over the limit of {http_guard.MAX_HEAD_BYTES} bytes" in answer.one_line_error()
    with connect(port, context) as conn:  # the same head trickled in small writes, never finished
        try:
            conn.sendall(b"GET /healthz HTTP/1.1\r\n")
            for start in range(0, len(pad), 4096):
                conn.sendall(pad[start : start + 4096])
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # refused before the whole head was sent
        answer = read_response(conn)
    assert answer.status == 431 and "request head is over the limit" in answer.one_line_error()
    assert _healthy(port, context)


def test_key_service_caps_open_connections(tmp_path: Path) -> None:
    with _key_service(tmp_path, header_timeout=60.0) as (port, context):  # held connections stay open
        _fill_to_the_cap_and_be_refused(port, context)


def _fill_to_the_cap_and_be_refused(port: int, context: ssl.SSLContext) -> None:
    held, refused = hold_connections_until_refused(port, context, HEALTH, attempts=MAX_CONNECTIONS + 3)
    try:
        assert refused is not None, f"{len(held)} connections held and none refused"
        assert len(held) == MAX_CONNECTIONS
        assert refused.status == 503 and "too many open connections" in refused.one_line_error()
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + GIVE_UP
    while not _healthy(port, context):  # the service notices the closes and takes new connections again
        assert time.monotonic() < deadline, "the key service never took connections again"
        time.sleep(0.1)


def test_key_service_keeps_its_threads_bounded_under_slow_clients(keys) -> None:
    """The guard works on the service's event loop: holding connections costs it no thread."""
    port, context = keys
    before = threading.active_count()
    slow = [connect(port, context) for _ in range(5)]
    for conn in slow:
        conn.sendall(b"POST /keks HTTP/1.1\r\n")  # and never the rest of the head
    try:
        assert threading.active_count() <= before + 1
        assert all(_closed_by_server(conn) for conn in slow)
    finally:
        for conn in slow:
            conn.close()


# -- the ingress: the same TLS handshake limit ---------------------------------------------------------
@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngressProxy]:
    """A real ingress with a short handshake limit; nothing ever gets past TLS in these tests, so
    no workload or governance answers behind it."""
    tmp_path: Path = tmp_path_factory.mktemp("ingress-handshake")
    identity = endorsed_ingress_identity(tmp_path, "collab1", _make_ca(tmp_path))
    proxy = IngressProxy(
        upstream_socket=tmp_path / "app.sock",
        cert_chain=identity.cert_chain,
        key_file=identity.key_file,
        routes=RouteAllowList.from_policy(["POST /infer"]),
        tokens=TokenPolicy(contract_id="collab1", jwks=lambda: {"keys": []}),
    )
    proxy.handshake_timeout = SHORT
    proxy.start()
    yield proxy
    proxy.stop()


def test_the_ingress_drops_clients_that_never_finish_the_tls_handshake(ingress: IngressProxy) -> None:
    _assert_unfinished_handshakes_are_dropped(ingress.port)
