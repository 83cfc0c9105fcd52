"""Limits every loopback HTTP service enforces before it authenticates anyone.

Governance and the key service answer unauthenticated clients, so anything a client can make
them hold (memory for a body, a socket for a slow head, a stack frame per nesting level) is
capped here, ahead of the application:

* ``GuardedHttpProtocol`` (a uvicorn httptools protocol): a request head must arrive within
  ``header_timeout`` seconds and fit in ``max_head_bytes`` (else 408 / 431 and the connection
  is closed), an idle connection is closed after ``header_timeout`` too, and connections above
  ``max_connections`` get a 503 and are closed at once. uvicorn itself has no head timeout
  (its keep-alive timer stops at the first byte), which is what let slowloris clients stay.
* ``read_body``: a body is read with a size cap (``Content-Length`` refused up front, chunked
  bodies counted as they stream) and a time limit, then handed to the application whole.
* ``loads_json``: strict UTF-8, a JSON document, and at most ``MAX_JSON_DEPTH`` levels, each
  failure an ``InvalidInputError`` naming what was wrong.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.errors import InvalidInputError

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
MAX_JSON_DEPTH = 64
HEADER_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 30.0
KEEP_ALIVE_SECONDS = 5
MAX_CONNECTIONS = 512

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class HttpRefusal(Exception):
    """A request refused before the application sees it: an HTTP status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def governance_error(status: int, message: str) -> dict[str, Any]:
    """Governance's error body shape (``{"error": {"code", "message"}}``)."""
    return {"error": {"code": "HttpRefusal", "message": message}}


async def send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    """Send a whole JSON response (used for refusals made outside the application)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(
    scope: dict[str, Any], receive: Receive, *, limit: int = MAX_BODY_BYTES, timeout: float = BODY_TIMEOUT_SECONDS
) -> bytes | None:
    """The whole request body, or None if the client went away.

    Raises ``HttpRefusal`` 413 when ``Content-Length`` announces more than ``limit`` bytes
    (nothing is read) or a chunked body grows past it (reading stops there), and 408 when the
    body does not arrive within ``timeout`` seconds: memory and time per request stay bounded
    whoever the client is.
    """
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise HttpRefusal(400, "Content-Length must be a decimal number")
            if int(value) > limit:
                raise HttpRefusal(
                    413,
                    f"request body of {int(value)} bytes is over the limit of {limit} bytes; send a smaller request",
                )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):  # one timer for the whole body, no task per read
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise HttpRefusal(413, f"request body is over the limit of {limit} bytes; send a smaller request")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except TimeoutError:
        raise HttpRefusal(408, f"request body did not arrive within {timeout:g} s; send it at once") from None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then defers to the real one (for disconnects)."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class BodyLimit:
    """ASGI front that reads each request body under ``read_body``'s caps before ``app`` runs.

    ``error`` shapes the refusal body so each service keeps its own error format. With
    ``json_bodies`` every non-empty body must also pass ``loads_json`` (for services whose
    bodies are all JSON: the refusal then says what is wrong, not just that parsing failed).
    """

    def __init__(
        self,
        app: Any,
        *,
        limit: int = MAX_BODY_BYTES,
        timeout: float = BODY_TIMEOUT_SECONDS,
        error: Callable[[int, str], dict[str, Any]] = lambda status, message: {"detail": message},
        json_bodies: bool = False,
    ) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self.error = error
        self.json_bodies = json_bodies

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, limit=self.limit, timeout=self.timeout)
            if body and self.json_bodies:
                try:
                    loads_json(body)
                except InvalidInputError as exc:
                    raise HttpRefusal(400, exc.one_line()) from None
        except HttpRefusal as refusal:
            await send_json(send, refusal.status, self.error(refusal.status, refusal.message))
            return
        if body is not None:
            await self.app(scope, replay(body, receive), send)


def _depth_at_most(value: Any, limit: int) -> bool:
    """True if ``value`` nests at most ``limit`` containers deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def loads_json(raw: bytes, *, what: str = "request body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``raw`` as strict UTF-8 JSON nested at most ``max_depth`` deep.

    Every failure is an ``InvalidInputError`` (a 400), never an exception the service would
    turn into a 500: invalid UTF-8, non-JSON, NaN/Infinity, nesting beyond the stack.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{what} is not UTF-8 (bad byte at offset {exc.start})", hint="send UTF-8 encoded JSON"
        ) from None

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except RecursionError:
        raise InvalidInputError(
            f"{what} nests deeper than {max_depth} levels", hint="send a flatter JSON document"
        ) from None
    except ValueError as exc:  # JSONDecodeError and the constants above
        raise InvalidInputError(
            f"{what} is not JSON ({' '.join(str(exc).split())})", hint="send a JSON object"
        ) from None
    if not _depth_at_most(value, max_depth):
        raise InvalidInputError(f"{what} nests deeper than {max_depth} levels", hint="send a flatter JSON document")
    return value


class _HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing an oversized head."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head timeout, a head size cap and a connection cap.

    Subclass and set the class attributes (``guarded_protocol`` does) to configure it: uvicorn
    instantiates the protocol class itself, so per-service settings live on the class.
    """

    header_timeout: float = HEADER_TIMEOUT_SECONDS
    max_head_bytes: int = MAX_HEAD_BYTES
    max_connections: int = MAX_CONNECTIONS

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._in_head = True
        self._head_bytes = 0  # bytes received while a head is incomplete (a head trickled in parts)
        self._head_size = 0  # bytes of the head parsed so far (a head arriving in one piece)
        self._head_too_large = False
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            self._refuse(503, "Service Unavailable", "too many open connections; retry shortly")
            return
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:  # a pipelined head waits its turn
            self._arm_head_timer()
            return
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes:
                self._refuse(408, "Request Timeout", f"request head did not arrive within {self.header_timeout:g} s")
            else:  # idle: nothing to answer
                self.transport.close()

    def _refuse(self, status: int, reason: str, message: str) -> None:
        body = json.dumps({"error": {"code": "HttpRefusal", "message": message}, "detail": message}).encode()
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_timer is None:  # the first byte after an idle keep-alive: time the head
                self._arm_head_timer()
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._cancel_head_timer()
            self._refuse(
                431, "Request Header Fields Too Large", f"request head is over the limit of {self.max_head_bytes} bytes"
            )

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.max_head_bytes:
            # raising stops the parser; uvicorn then calls send_400_response, answered with 431 below
            self._head_too_large = True
            raise _HeadTooLarge()

    def on_message_begin(self) -> None:
        self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._cancel_head_timer()
            self._refuse(
                431, "Request Header Fields Too Large", f"request head is over the limit of {self.max_head_bytes} bytes"
            )
            return
        super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def guarded_protocol(
    base: type[HttpToolsProtocol] = GuardedHttpProtocol,
    *,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    max_head_bytes: int = MAX_HEAD_BYTES,
    max_connections: int = MAX_CONNECTIONS,
) -> type[HttpToolsProtocol]:
    """A subclass of ``base`` (a ``GuardedHttpProtocol``) with these limits."""
    return type(
        base.__name__,
        (base,),
        {"header_timeout": header_timeout, "max_head_bytes": max_head_bytes, "max_connections": max_connections},
    )


_tls_handshake_seconds = HEADER_TIMEOUT_SECONDS


def limit_tls_handshakes(seconds: float) -> None:
    """TLS handshakes on servers this process starts with ``tls_limited_loop`` time out
    after ``seconds``. Call it in a service's own process (``serve``) before the server starts."""
    global _tls_handshake_seconds
    _tls_handshake_seconds = seconds


def _handshake_limited(loop_class: type[asyncio.AbstractEventLoop]) -> type[asyncio.AbstractEventLoop]:
    class HandshakeLimitedLoop(loop_class):  # type: ignore[valid-type, misc]
        async def create_server(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("ssl") is not None and kwargs.get("ssl_handshake_timeout") is None:
                kwargs["ssl_handshake_timeout"] = _tls_handshake_seconds
            return await super().create_server(*args, **kwargs)

    return HandshakeLimitedLoop


def tls_limited_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's ``loop`` setting (``"core.http_guard:tls_limited_loop"``, a loop factory): the
    loop uvicorn would pick (uvloop if installed) with a TLS handshake timeout on its servers.

    Why: uvicorn creates its server without ``ssl_handshake_timeout``, so the loop's default
    of 60 s applies, and a client that connects and never finishes its hello holds a socket
    that long before any protocol (and so any head timeout or connection cap) sees it.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return _handshake_limited(asyncio.SelectorEventLoop)()
    return _handshake_limited(uvloop.Loop)()


def uvicorn_limits(
    *, header_timeout: float = HEADER_TIMEOUT_SECONDS, max_connections: int = MAX_CONNECTIONS
) -> dict[str, Any]:
    """The uvicorn.Config settings that go with ``GuardedHttpProtocol``.

    ``limit_concurrency`` answers 503 when in-flight requests exceed the connection cap
    (pipelining), ``timeout_keep_alive`` closes idle keep-alive connections,
    ``h11_max_incomplete_event_size`` caps the head should the h11 protocol ever be used,
    and ``loop`` adds a TLS handshake timeout (``tls_limited_loop``).
    """
    return {
        "loop": "core.http_guard:tls_limited_loop",
        "timeout_keep_alive": min(KEEP_ALIVE_SECONDS, max(1, int(header_timeout))),
        "limit_concurrency": max_connections + 1,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }
