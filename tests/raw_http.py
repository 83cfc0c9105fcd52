"""Raw HTTP/1.1 over TLS for attack tests: bytes exactly as an attacker sends them.

httpx normalises what it sends (one Content-Length, CRLF line ends, no control characters),
which is exactly what these tests must not do, so they speak to the real services through
plain sockets wrapped in TLS and read the raw answer.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    head: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def one_line_error(self) -> str:
        """The error message, asserting it is one line (the services' contract for refusals)."""
        document = self.json()
        error = document.get("error", document.get("detail"))
        message = error["message"] if isinstance(error, dict) else error
        assert isinstance(message, str) and message and "\n" not in message, document
        return message


def connect(port: int, context: ssl.SSLContext, *, timeout: float = 10.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def read_response(conn: ssl.SSLSocket) -> RawResponse:
    """One response (by Content-Length, else until close); tolerant of a reset after it arrived."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(conn)
        if not chunk:
            raise AssertionError(f"connection closed before a response head: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        (int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")), None
    )
    while length is None or len(body) < length:
        chunk = _recv(conn)
        if not chunk:
            break
        body += chunk
    return RawResponse(int(lines[0].split(" ")[1]), head.decode("latin-1"), body[:length] if length else body)


def _recv(conn: ssl.SSLSocket) -> bytes:
    try:
        return conn.recv(65536)
    except (ConnectionResetError, ssl.SSLError, ssl.SSLEOFError):
        return b""


def exchange(port: int, context: ssl.SSLContext, request: bytes, *, timeout: float = 10.0) -> RawResponse:
    """Send ``request`` on a new connection and read one response."""
    with connect(port, context, timeout=timeout) as conn:
        try:
            conn.sendall(request)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            pass  # the server may answer and close before it has read everything
        return read_response(conn)


def seconds_until_closed(conn: ssl.SSLSocket, *, limit: float) -> float:
    """How long until the server closes ``conn`` (reading and discarding any answer); ``limit`` if never."""
    start = time.monotonic()
    conn.settimeout(0.5)
    while time.monotonic() - start < limit:
        try:
            if not conn.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ConnectionResetError, ssl.SSLError, OSError):
            return time.monotonic() - start
    return limit


def hold_connections_until_refused(
    port: int, context: ssl.SSLContext, request: bytes, *, attempts: int
) -> tuple[list[ssl.SSLSocket], RawResponse | None]:
    """Open keep-alive connections, one ``request`` each, until one is answered other than 200.

    Returns the live connections held (the caller closes them) and the refusal, None if every
    attempt was served: how the tests find a service's connection cap.
    """
    held: list[ssl.SSLSocket] = []
    for _ in range(attempts):
        conn = connect(port, context)
        conn.sendall(request)
        answer = read_response(conn)
        if answer.status != 200:
            conn.close()
            return held, answer
        held.append(conn)
    return held, None
