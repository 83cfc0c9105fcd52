"""The TLS ingress: the only way into a running clean room.

A small asyncio HTTP/1.1 reverse proxy on 127.0.0.1 that

* speaks TLS only, with a certificate endorsed by the contract's CA (plain HTTP fails the
  handshake and never reaches the workload);
* forwards only the routes the accepted network policy allows (``"POST /infer"``), after
  normalising the path so ``/infer/../admin`` or ``%2e%2e`` tricks do not slip through;
* requires ``Authorization: Bearer <JWT>`` issued by governance, verified against the
  governance JWKS, unexpired, and naming this contract; the token is stripped before the
  request reaches the (untrusted) workload, which instead sees ``X-Cleanroom-Member``;
* forwards to the workload's unix socket (the workload has no network of its own).

Bodies are passed through by Content-Length (chunked requests are refused with 411); a
response without Content-Length is streamed until the workload closes, then the client
connection is closed too.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt

from core.errors import AccessDeniedError, InvalidInputError, ServiceUnavailableError

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
# never forwarded as the client sent them: credentials, framing and connection management are ours
HOP_BY_HOP = frozenset({"authorization", "connection", "keep-alive", "content-length", "te", "trailer", "upgrade",
                        "proxy-connection", "proxy-authorization", "x-cleanroom-member"})
TOKEN_ALGORITHMS = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]


@dataclass(frozen=True)
class RouteAllowList:
    """Routes from the network policy: ``"METHOD /path"``; a path ending in ``/*`` is a prefix."""

    routes: tuple[tuple[str, str], ...]

    @classmethod
    def from_policy(cls, inbound_allow: list[str]) -> "RouteAllowList":
        parsed = []
        for route in inbound_allow:
            method, _, path = route.partition(" ")
            if not method.isalpha() or not path.startswith("/"):
                raise InvalidInputError(f"route {route!r} is not 'METHOD /path'", hint="fix the network policy")
            parsed.append((method.upper(), path))
        return cls(tuple(parsed))

    def allows(self, method: str, path: str) -> bool:
        for allowed_method, allowed_path in self.routes:
            if allowed_method != method:
                continue
            if allowed_path.endswith("/*"):
                if path == allowed_path[:-2] or path.startswith(allowed_path[:-1]):
                    return True
            elif path == allowed_path:
                return True
        return False


def normalised_path(target: str) -> str | None:
    """The decoded, dot-segment-free path of a request target, or None if it is not origin-form."""
    if not target.startswith("/"):
        return None
    path = unquote(target.partition("?")[0].partition("#")[0])
    if "\x00" in path or "\\" in path:
        return None
    normal = "/" + posixpath.normpath(path).lstrip("/")  # normpath keeps a leading '//'
    return normal + ("/" if path.endswith("/") and normal != "/" else "")


@dataclass
class TokenPolicy:
    """Who may call: bearer JWTs from governance's JWKS that name this contract."""

    contract_id: str
    jwks: Callable[[], dict[str, Any]]
    issuer: str | None = None
    audience: str | None = None
    contract_claim: str = "contract_id"
    _keys: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)

    def _signing_key(self, kid: str | None) -> Any:
        if kid not in self._keys:  # unknown kid: governance may have rotated, so refetch once
            self._keys = {k.key_id: k.key for k in jwt.PyJWKSet.from_dict(self.jwks()).keys}
        if kid not in self._keys:
            raise AccessDeniedError("token is signed by a key governance does not publish",
                                    hint="ask governance for a new token")
        return self._keys[kid]

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid token; a verified token is cached until it expires (hot path)."""
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            options = {"require": ["exp", "iat"], "verify_aud": self.audience is not None}
            claims = jwt.decode(token, self._signing_key(kid), algorithms=TOKEN_ALGORITHMS,
                                audience=self.audience, issuer=self.issuer, options=options, leeway=5)
        except jwt.ExpiredSignatureError as exc:
            raise AccessDeniedError("token has expired", hint="ask governance for a new token") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise AccessDeniedError(f"token rejected ({exc})", hint="use a token issued by governance") from exc
        named = claims.get(self.contract_claim)
        if named != self.contract_id and not (isinstance(named, list) and self.contract_id in named):
            raise AccessDeniedError(f"token is for contract {named!r}, not '{self.contract_id}'",
                                    hint="ask governance for a token for this contract")
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[token] = (float(claims["exp"]), claims)
        return claims


def _response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class IngressProxy:
    """The proxy, running its own event loop in a daemon thread so callers stay synchronous."""

    def __init__(self, *, upstream_socket: Path, cert_chain: Path, key_file: Path,
                 routes: RouteAllowList, tokens: TokenPolicy, port: int = 0,
                 on_refusal: Callable[[str, str, str], None] | None = None) -> None:
        self.upstream_socket = upstream_socket
        self.routes = routes
        self.tokens = tokens
        self.on_refusal = on_refusal
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(str(cert_chain), str(key_file))
        self._requested_port = port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="ingress", daemon=True)
        self.port = 0
        self._socket_dir_fd: int | None = None
        self._upstream_path = str(upstream_socket)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> "IngressProxy":
        # AF_UNIX paths are limited to 108 bytes and run directories can be deep: connect through
        # a short /proc/self/fd path to the socket's directory instead.
        self._socket_dir_fd = os.open(self.upstream_socket.parent, os.O_RDONLY | os.O_DIRECTORY)
        self._upstream_path = f"/proc/self/fd/{self._socket_dir_fd}/{self.upstream_socket.name}"
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self._requested_port, ssl=self._context,
                                 ssl_handshake_timeout=10), self._loop)
        try:
            self._server = future.result(timeout=10)
        except OSError as exc:
            raise ServiceUnavailableError(f"ingress cannot listen on 127.0.0.1:{self._requested_port} ({exc})",
                                          hint="choose another --ingress-port") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop listening, end every open client connection, then the loop (nothing left dangling)."""
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()
        if self._socket_dir_fd is not None:
            os.close(self._socket_dir_fd)
            self._socket_dir_fd = None

    # -- one client connection ---------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = _Upstream(self._upstream_path)
        try:
            while await self._one_request(reader, writer, upstream):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        finally:
            upstream.close()
            writer.close()

    def _refuse(self, writer: asyncio.StreamWriter, status: int, reason: str, message: str,
                method: str = "", path: str = "") -> bool:
        if self.on_refusal is not None:
            self.on_refusal(f"{method} {path}".strip(), str(status), message)
        writer.write(_response(status, reason, message))
        return False

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           upstream: "_Upstream") -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                return self._refuse(writer, 400, "Bad Request", "incomplete request head")
            return False
        if len(head) > MAX_HEAD:
            return self._refuse(writer, 431, "Request Header Fields Too Large", "request head too large")
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return self._refuse(writer, 400, "Bad Request", "not an HTTP/1.x request line")
        method, target, version = parts
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                return self._refuse(writer, 400, "Bad Request", "malformed header line")
            headers.append((name.lower(), value.strip()))
        fields = dict(headers)
        path = normalised_path(target)
        if path is None or not self.routes.allows(method, path):
            return self._refuse(writer, 404, "Not Found", f"route {method} {target} is not allowed by the "
                                "contract's network policy", method, target)
        authorization = fields.get("authorization", "")
        if not authorization.lower().startswith("bearer "):
            return self._refuse(writer, 401, "Unauthorized", "a bearer token from governance is required",
                                method, path)
        try:
            claims = self.tokens.verify(authorization[7:].strip())
        except AccessDeniedError as exc:
            return self._refuse(writer, 401 if "expired" in exc.message else 403,
                                "Unauthorized" if "expired" in exc.message else "Forbidden", exc.one_line(),
                                method, path)
        if "transfer-encoding" in fields:
            return self._refuse(writer, 411, "Length Required", "chunked request bodies are not accepted")
        # exactly one plain decimal length: anything else could frame the body differently for
        # the workload and smuggle a second request past the route check
        lengths = [value for name, value in headers if name == "content-length"]
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()) or (lengths and not lengths[0].isascii()):
            return self._refuse(writer, 400, "Bad Request", "content-length must be given once, as a number")
        length = int(lengths[0]) if lengths else 0
        if not 0 <= length <= MAX_BODY:
            return self._refuse(writer, 413, "Payload Too Large", f"body above {MAX_BODY} bytes")
        body = await reader.readexactly(length) if length else b""
        keep_alive = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        query = target.partition("?")[2].partition("#")[0]
        forwarded = [f"{method} {path}{'?' + query if query else ''} HTTP/1.1"]
        forwarded += [f"{n}: {v}" for n, v in headers if n not in HOP_BY_HOP]
        forwarded += [f"content-length: {length}", f"x-cleanroom-member: {claims.get('sub', '')}"]
        return await self._forward(("\r\n".join(forwarded) + "\r\n\r\n").encode("latin-1") + body,
                                   writer, keep_alive, upstream)

    async def _forward(self, request: bytes, writer: asyncio.StreamWriter, keep_alive: bool,
                       upstream: "_Upstream") -> bool:
        """Send to the workload over this client's upstream connection (reused while both sides
        keep alive: a new unix connection per request would cost the workload a new handler)."""
        for attempt in (1, 2):
            reused = upstream.connected
            try:
                up_reader, up_writer = await upstream.connect()
            except OSError:
                return self._refuse(writer, 502, "Bad Gateway", "the workload is not listening")
            try:
                up_writer.write(request)
                head = await up_reader.readuntil(b"\r\n\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                upstream.close()
                partial = getattr(exc, "partial", b"")
                if not (reused and not partial and attempt == 1):  # only an idle-closed connection is retried
                    return self._refuse(writer, 502, "Bad Gateway", "the workload closed the connection")
            except (asyncio.LimitOverrunError, ValueError):
                upstream.close()
                return self._refuse(writer, 502, "Bad Gateway", "the workload sent a malformed response")
        try:
            lines = head[:-4].decode("latin-1").split("\r\n")
            kept = [lines[0]]
            length: int | None = None
            upstream_close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                lower = name.strip().lower()
                if lower == "content-length":
                    length = int(value.strip())
                elif lower == "connection" and value.strip().lower() == "close":
                    upstream_close = True
                if lower not in ("connection", "keep-alive"):
                    kept.append(line)
            keep_alive = keep_alive and length is not None
            kept.append("connection: keep-alive" if keep_alive else "connection: close")
            writer.write(("\r\n".join(kept) + "\r\n\r\n").encode("latin-1"))
            if length is not None:
                writer.write(await up_reader.readexactly(length))
            else:
                upstream_close = True
                while chunk := await up_reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
            if upstream_close or not keep_alive:
                upstream.close()
            return keep_alive
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
            upstream.close()
            return self._refuse(writer, 502, "Bad Gateway", "the workload sent a malformed response")


class _Upstream:
    """One client connection's connection to the workload socket, opened on first use."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    @property
    def connected(self) -> bool:
        return self._streams is not None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            self._streams = await asyncio.open_unix_connection(self.path)
        return self._streams

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None
