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

Client applications (issue #16) call with tokens that carry an ``app`` claim: such a token may
call only the routes in its ``routes`` claim (403 naming the route otherwise), only while
governance's revocation feed does not name its app (``core.runtime.revocations``, polled every
second), and at most ``rate_limit_per_minute`` times a minute (``core.runtime.rate_limit``: 429
with Retry-After). Member tokens (no ``app`` claim) keep their behaviour. Every caller's
requests, rows and refusals are counted per minute (``core.runtime.usage``). ``GET
/openapi.json`` is answered by the ingress itself, without a token (``core.runtime.openapi``
says why).

Bodies are passed through by Content-Length: a chunked request, or a POST/PUT/PATCH without a
length, is refused with 411, one above ``max_body`` with 413, both before the token is looked
at; a body whose Content-Type is not JSON gets 415 (every route here is a JSON API; a body
without Content-Type is taken as JSON, as the workload's framework does). A response without
Content-Length is streamed until the workload closes, then the client connection is closed too.

Before any token is looked at, a request must be plain HTTP/1.1 the workload cannot read
differently: CRLF line ends only (a bare LF could start a header such as
``X-Cleanroom-Member`` on a lenient workload parser), no control characters in the head or
the decoded path (a decoded CR/LF would split the forwarded request line), a head within
``MAX_HEAD`` bytes (431) and ``header_timeout`` seconds (408), one Authorization header. A
connection idle for ``idle_timeout`` is closed, and at most ``max_connections`` are open.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jwt

from core.errors import AccessDeniedError, CleanroomError, InvalidInputError, ServiceUnavailableError
from core.runtime.openapi import OPENAPI_PATH, openapi_document
from core.runtime.rate_limit import CallerRateLimits, retry_after_header
from core.runtime.revocations import RevocationFeed
from core.runtime.traffic_split import VERSION_HEADER, TrafficRouter
from core.runtime.usage import INLINE_COUNT_BYTES, UNAUTHENTICATED, UsageMeter, rows_in

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
HEADER_TIMEOUT_SECONDS = 10.0  # a request head must arrive this fast (slowloris)
IDLE_TIMEOUT_SECONDS = 30.0  # a keep-alive connection may wait this long for its next request
BODY_TIMEOUT_SECONDS = 60.0  # a request body (up to MAX_BODY) must arrive this fast
MAX_CONNECTIONS = 256
JWKS_REFETCH_SECONDS = 10.0  # an unknown kid refetches governance's JWKS at most this often
_TOKEN_CHARS = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name token
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # HTAB is allowed in field values, nothing else
_PATH_SAFE = "/:@!$&'()*+,;=-._~"  # re-encoded on the way out: '%' too, so nothing is decoded twice
# never forwarded as the client sent them: credentials, framing and connection management are ours
HOP_BY_HOP = frozenset(
    {
        "authorization",
        "connection",
        "keep-alive",
        "content-length",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
        "x-cleanroom-member",
        VERSION_HEADER,  # a pin is for the ingress (core.runtime.traffic_split), not the workload
    }
)
TOKEN_ALGORITHMS = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON_MEDIA_TYPE = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")


@dataclass(frozen=True)
class RouteAllowList:
    """Routes from the network policy or an app token: ``"METHOD /path"``; a path ending in
    ``/*`` is a prefix, a ``{name}`` segment (as app registrations write them) matches one segment."""

    routes: tuple[tuple[str, str], ...]

    @classmethod
    def from_policy(cls, inbound_allow: list[str]) -> RouteAllowList:
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
            elif path == allowed_path or ("{" in allowed_path and _matches_template(allowed_path, path)):
                return True
        return False


def _matches_template(template: str, path: str) -> bool:
    """``/v2/models/{name}/infer`` matches ``/v2/models/m1/infer``: a ``{...}`` segment stands for
    exactly one non-empty segment, every other segment must be equal."""
    expected, actual = template.split("/"), path.split("/")
    if len(expected) != len(actual):
        return False
    return all(
        (want.startswith("{") and want.endswith("}") and bool(got)) or want == got
        for want, got in zip(expected, actual, strict=True)
    )


def normalised_path(target: str) -> str | None:
    """The decoded, dot-segment-free path of a request target, or None if it is not origin-form."""
    if not target.startswith("/"):
        return None
    path = unquote(target.partition("?")[0].partition("#")[0])
    if "\x00" in path or "\\" in path:
        return None
    if _CONTROL.search(path) or "\t" in path:  # a decoded CR/LF could split the forwarded request line
        return None
    normal = "/" + posixpath.normpath(path).lstrip("/")  # normpath keeps a leading '//'
    return normal + ("/" if path.endswith("/") and normal != "/" else "")


class TokenRejected(AccessDeniedError):
    """A bearer token refused by ``TokenPolicy``, with the HTTP status the ingress answers.

    401: no valid credentials (malformed, wrong algorithm, expired, or not signed by a key
    governance publishes: RFC 6750's ``invalid_token``); 403: a valid token of governance this
    clean room does not accept (another contract, a route or app it does not allow).
    """

    def __init__(self, status: int, message: str, *, hint: str = "ask governance for a new token") -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclass
class TokenPolicy:
    """Who may call: bearer JWTs from governance's JWKS that name this contract.

    Each key is used only with its own algorithm (an EC key never verifies an RS256, HS256 or
    ``none`` token). A ``kid`` governance does not publish refetches the JWKS at most once per
    ``refetch_seconds`` and is then remembered as unknown for as long, so a flood of made-up
    kids costs one fetch, not one per request. ``verify`` may block on that fetch: the ingress
    calls it off its event loop, after ``cached`` (the hot path) missed.
    """

    contract_id: str
    jwks: Callable[[], dict[str, Any]]
    issuer: str | None = None
    audience: str | None = None
    contract_claim: str = "contract_id"
    refetch_seconds: float = JWKS_REFETCH_SECONDS
    _keys: dict[str, tuple[Any, str]] = field(default_factory=dict, init=False, repr=False)
    _cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict, init=False, repr=False)
    _unknown: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _fetched_at: float = field(default=float("-inf"), init=False, repr=False)
    _fetch_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _fetch(self) -> None:
        try:
            keys = jwt.PyJWKSet.from_dict(self.jwks()).keys
        except (CleanroomError, jwt.PyJWTError, OSError, ValueError, KeyError, TypeError) as exc:
            raise ServiceUnavailableError(
                f"governance signing keys cannot be fetched ({exc})",
                hint="check that governance is reachable, then retry",
            ) from exc
        self._keys = {
            k.key_id: (k.key, k.algorithm_name)
            for k in keys
            if isinstance(k.key_id, str) and k.algorithm_name in TOKEN_ALGORITHMS
        }

    def _signing_key(self, kid: str) -> tuple[Any, str]:
        known = self._keys.get(kid)
        if known is not None:
            return known
        now = time.monotonic()
        with self._fetch_lock:  # one fetch at a time; waiters then see its result
            known = self._keys.get(kid)
            if (
                known is None
                and self._unknown.get(kid, float("-inf")) <= now
                and now - self._fetched_at >= self.refetch_seconds
            ):
                self._fetched_at = now  # governance may have rotated: refetch, at most this often
                self._fetch()
                known = self._keys.get(kid)
            if known is None:
                if len(self._unknown) > 4096:
                    self._unknown.clear()
                self._unknown[kid] = now + self.refetch_seconds
                raise TokenRejected(401, "token is signed by a key governance does not publish")
        return known

    def cached(self, token: str) -> dict[str, Any] | None:
        """Claims of a token already verified and not yet expired (never blocks)."""
        cached = self._cache.get(token)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        return None

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid token; a verified token is cached until it expires (hot path)."""
        claims = self.cached(token)
        if claims is not None:
            return claims
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(
                401, f"bearer token is not a JWT ({exc})", hint="use a token issued by governance"
            ) from None
        kid, algorithm = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise TokenRejected(401, "token has no key id (kid)", hint="use a token issued by governance")
        key, key_algorithm = self._signing_key(kid)
        if algorithm != key_algorithm:
            raise TokenRejected(
                401,
                f"token algorithm {str(algorithm)[:16]!r} is not {key_algorithm}, the algorithm of its key",
                hint="use a token issued by governance",
            )
        try:
            options: jwt.types.Options = {"require": ["exp", "iat"], "verify_aud": self.audience is not None}
            claims = jwt.decode(
                token,
                key,
                algorithms=[key_algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options=options,
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected(401, "token has expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected(401, f"token rejected ({exc})", hint="use a token issued by governance") from exc
        except jwt.InvalidAudienceError as exc:  # a valid token of governance, for another contract
            raise TokenRejected(
                403,
                f"token is not for contract '{self.contract_id}' ({exc})",
                hint="ask governance for a token for this contract",
            ) from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise TokenRejected(401, f"token rejected ({exc})", hint="use a token issued by governance") from exc
        named = claims.get(self.contract_claim)
        if named != self.contract_id and not (isinstance(named, list) and self.contract_id in named):
            raise TokenRejected(
                403,
                f"token is for contract {str(named)[:64]!r}, not '{self.contract_id}'",
                hint="ask governance for a token for this contract",
            )
        if not isinstance(claims.get("exp"), (int, float)):
            raise TokenRejected(401, "token expiry is not a number", hint="use a token issued by governance")
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[token] = (float(claims["exp"]), claims)
        return claims


def _response(status: int, reason: str, message: str, extra_headers: str = "") -> bytes:
    body = json.dumps({"error": message}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{extra_headers}"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


def _json_response(body: bytes, keep_alive: bool) -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode() + body


@dataclass(frozen=True)
class AppGrant:
    """What an app token's claims let its app do here. Built per request from the cached claims:
    parsing a handful of routes costs microseconds, and keeps no second cache to bound."""

    app: str
    routes: RouteAllowList
    rate_limit_per_minute: int

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> AppGrant | None:
        """None for a member token (no ``app`` claim); TokenRejected(403) for malformed app claims."""
        app = claims.get("app")
        if app is None:
            return None
        routes, limit = claims.get("routes"), claims.get("rate_limit_per_minute")
        if (
            not isinstance(app, str)
            or not app
            or not isinstance(routes, list)
            or not all(isinstance(route, str) for route in routes)
            or not isinstance(limit, int)
            or isinstance(limit, bool)
            or limit < 1
        ):
            raise TokenRejected(
                403,
                "app token needs an app name, a routes list and a positive rate_limit_per_minute",
                hint="get the token from governance's /oauth2/token",
            )
        try:
            return cls(app, RouteAllowList.from_policy(routes), limit)
        except InvalidInputError as exc:
            raise TokenRejected(403, f"app token has a malformed route ({exc.message})") from exc


class IngressProxy:
    """The proxy, running its own event loop in a daemon thread so callers stay synchronous.

    The limits below are class attributes so a test (or a caller) can tighten one instance.
    """

    header_timeout: float = HEADER_TIMEOUT_SECONDS
    handshake_timeout: float = HEADER_TIMEOUT_SECONDS  # a client that never finishes its TLS hello
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    body_timeout: float = BODY_TIMEOUT_SECONDS
    max_connections: int = MAX_CONNECTIONS
    max_body: int = MAX_BODY
    _connections: int = 0  # open client connections (only touched on the proxy's loop)

    def __init__(
        self,
        *,
        upstream_socket: Path,
        cert_chain: Path,
        key_file: Path,
        routes: RouteAllowList,
        tokens: TokenPolicy,
        port: int = 0,
        on_refusal: Callable[[str, str, str], None] | None = None,
        upstream_pid: int | None = None,
        revocations: RevocationFeed | None = None,
        rate_limits: CallerRateLimits | None = None,
        member_rate_limit_per_minute: int | None = None,
        usage: UsageMeter | None = None,
        token_url: str | None = None,
        traffic: TrafficRouter | None = None,
    ) -> None:
        self.upstream_socket = upstream_socket
        # blue/green: several serving applications, each with its socket beside upstream_socket
        self.traffic = traffic
        self._version_paths: dict[str, str] = {}
        # the pid that listen()ed on the upstream socket: the runtime binds it itself and hands
        # the workload only the fd, so every connection's SO_PEERCRED must name the runtime or a
        # process of the workload's own sandbox (a server calls listen() again on the fd it was
        # handed, and the kernel then names it); the runtime adds each sandbox with allow_workload
        self.upstream_pid = upstream_pid
        self.workload_roots: set[int] = set()
        self.routes = routes
        self.tokens = tokens
        self.on_refusal = on_refusal
        # app tokens need the revocation feed: without one, no app token is let through; the
        # proxy starts and stops the feed and the usage meter with itself
        self.revocations = revocations
        self.rate_limits = rate_limits if rate_limits is not None else CallerRateLimits()
        self.member_rate_limit_per_minute = member_rate_limit_per_minute  # None: members are not limited
        self.usage = usage
        # the OpenAPI document of the allowed routes, with governance's token URL when known
        self._openapi_body = json.dumps(
            openapi_document(routes, contract_id=tokens.contract_id, token_url=token_url)
        ).encode()
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

    def allow_workload(self, pid: int) -> None:
        """Accept an upstream socket last listen()ed by ``pid`` (a sandbox the runtime started)
        or by one of its descendants."""
        self.workload_roots.add(pid)

    def start(self) -> IngressProxy:
        # AF_UNIX paths are limited to 108 bytes and run directories can be deep: connect through
        # a short /proc/self/fd path to the socket's directory instead. That directory must be
        # private to the runtime (a real directory, ours, 0700): in a folder a workload can write,
        # the socket's name could be a symlink to any host socket (governance's, another room's).
        self._socket_dir_fd = os.open(self.upstream_socket.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        info = os.fstat(self._socket_dir_fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            os.close(self._socket_dir_fd)
            self._socket_dir_fd = None
            raise AccessDeniedError(
                f"the workload socket's directory {self.upstream_socket.parent} is not private to the runtime",
                hint="the runtime binds the socket in a 0700 directory of its own",
            )
        self._upstream_path = f"/proc/self/fd/{self._socket_dir_fd}/{self.upstream_socket.name}"
        for version, socket_file in (self.traffic.upstreams if self.traffic is not None else {}).items():
            if socket_file.parent != self.upstream_socket.parent:
                raise InvalidInputError(
                    f"socket of '{version}' is not in {self.upstream_socket.parent}",
                    hint="bind every serving application's socket in the runtime's private socket directory",
                )
            self._version_paths[version] = f"/proc/self/fd/{self._socket_dir_fd}/{socket_file.name}"
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(
                self._serve,
                "127.0.0.1",
                self._requested_port,
                ssl=self._context,
                ssl_handshake_timeout=self.handshake_timeout,
            ),
            self._loop,
        )
        try:
            self._server = future.result(timeout=10)
        except OSError as exc:
            raise ServiceUnavailableError(
                f"ingress cannot listen on 127.0.0.1:{self._requested_port} ({exc})",
                hint="choose another --ingress-port",
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        if self.revocations is not None:
            self.revocations.start()
        if self.usage is not None:
            self.usage.start()
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
        if self.revocations is not None:
            self.revocations.stop()
        if self.usage is not None:
            self.usage.stop()  # hands over the minute in progress: requests of the last minute count too

    # -- one client connection ---------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= self.max_connections:
            self._refuse(writer, 503, "Service Unavailable", "too many open connections; retry shortly")
            writer.close()
            return
        self._connections += 1
        upstream = _Upstream(self._upstream_path, self.upstream_pid, self.workload_roots)
        try:
            first = True
            while await self._one_request(reader, writer, upstream, first=first):
                first = False
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        finally:
            self._connections -= 1
            upstream.close()
            writer.close()

    def _refuse(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        reason: str,
        message: str,
        method: str = "",
        path: str = "",
        *,
        caller: str = UNAUTHENTICATED,
        extra_headers: str = "",
    ) -> bool:
        if self.on_refusal is not None:
            self.on_refusal(f"{method} {path}".strip(), str(status), message)
        if self.usage is not None:
            self.usage.refused(caller, status)
        if status == 401 and "www-authenticate" not in extra_headers:  # RFC 6750: the token is invalid
            extra_headers += 'www-authenticate: Bearer realm="cleanroom", error="invalid_token"\r\n'
        writer.write(_response(status, reason, message, extra_headers))
        return False

    async def _refuse_unread(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int, reason: str, message: str
    ) -> bool:
        """Refuse while the client may still be sending: answer, then read and drop what it sends
        for a moment (bounded), so closing does not reset the connection before it reads why."""
        self._refuse(writer, status, reason, message)
        try:
            await asyncio.wait_for(writer.drain(), timeout=1.0)
            loop = asyncio.get_running_loop()
            deadline, dropped = loop.time() + 1.0, 0
            while dropped < 4 * MAX_HEAD and (remaining := deadline - loop.time()) > 0:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=remaining)
                if not chunk:
                    break
                dropped += len(chunk)
        except (TimeoutError, ConnectionError, ssl.SSLError, asyncio.LimitOverrunError):
            pass
        return False

    async def _read_head(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bool) -> bytes | None:
        """The next request head (ending CRLF CRLF), or None after refusing it or on a quiet close.

        An idle keep-alive connection gets ``idle_timeout`` for its next first byte (a new one
        ``header_timeout``); from that byte the whole head must arrive within ``header_timeout``.
        """
        try:
            start = await asyncio.wait_for(reader.readexactly(1), self.header_timeout if first else self.idle_timeout)
        except (TimeoutError, asyncio.IncompleteReadError):
            return None  # idle or closed: nothing to answer
        try:
            return start + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.header_timeout)
        except TimeoutError:
            await self._refuse_unread(
                reader, writer, 408, "Request Timeout", f"request head did not arrive within {self.header_timeout:g} s"
            )
        except asyncio.LimitOverrunError:
            await self._refuse_unread(
                reader,
                writer,
                431,
                "Request Header Fields Too Large",
                f"request head is over {MAX_HEAD} bytes; send fewer or shorter headers",
            )
        except asyncio.IncompleteReadError:
            self._refuse(writer, 400, "Bad Request", "incomplete request head")
        return None

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: _Upstream, *, first: bool = True
    ) -> bool:
        head = await self._read_head(reader, writer, first)
        if head is None:
            return False
        if len(head) > MAX_HEAD:
            return await self._refuse_unread(
                reader,
                writer,
                431,
                "Request Header Fields Too Large",
                f"request head is over {MAX_HEAD} bytes; send fewer or shorter headers",
            )
        text = head[:-4].decode("latin-1")
        if text.count("\n") != text.count("\r\n") or text.count("\r") != text.count("\r\n"):
            # a bare LF ends a line for lenient parsers: it could start a header only the workload sees
            return self._refuse(writer, 400, "Bad Request", "request head has a bare CR or LF; end lines with CRLF")
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or _CONTROL.search(lines[0]) or "\t" in lines[0]:
            return self._refuse(writer, 400, "Bad Request", "not an HTTP/1.x request line")
        method, target, version = parts
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN_CHARS.match(name):
                return self._refuse(writer, 400, "Bad Request", "malformed header line")
            if _CONTROL.search(value):
                return self._refuse(writer, 400, "Bad Request", f"header {name[:40]} has a control character")
            headers.append((name.lower(), value.strip(" \t")))
        fields = dict(headers)
        decoded = unquote(target.partition("?")[0])
        if _CONTROL.search(decoded) or "\t" in decoded:
            return self._refuse(
                writer,
                400,
                "Bad Request",
                "request path has an encoded control character (such as %0d%0a); remove it",
                method,
                target[:200],
            )
        path = normalised_path(target)
        if method == "GET" and path == OPENAPI_PATH:
            # answered here, without a token (core.runtime.openapi says why); a request with a
            # body is answered and closed so its body is never read as a next request
            keep_alive = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
            keep_alive = keep_alive and "content-length" not in fields and "transfer-encoding" not in fields
            writer.write(_json_response(self._openapi_body, keep_alive))
            await writer.drain()
            return keep_alive
        if path is None or not self.routes.allows(method, path):
            return self._refuse(
                writer,
                404,
                "Not Found",
                f"route {method} {target[:200]} is not allowed by the contract's network policy",
                method,
                target[:200],
            )
        if sum(1 for name, _ in headers if name == "authorization") > 1:
            return self._refuse(writer, 400, "Bad Request", "send one Authorization header, not several", method, path)
        # body framing and size are capped before any token is looked at
        if "transfer-encoding" in fields:
            return await self._refuse_unread(
                reader, writer, 411, "Length Required", "chunked request bodies are not accepted; send a Content-Length"
            )
        # exactly one plain decimal length: anything else could frame the body differently for
        # the workload and smuggle a second request past the route check
        lengths = [value for name, value in headers if name == "content-length"]
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()) or (lengths and not lengths[0].isascii()):
            return self._refuse(writer, 400, "Bad Request", "content-length must be given once, as a number")
        if not lengths and method in BODY_METHODS:
            return await self._refuse_unread(
                reader, writer, 411, "Length Required", f"a {method} request needs a Content-Length header"
            )
        length = int(lengths[0]) if lengths else 0
        if length > self.max_body:
            return await self._refuse_unread(
                reader,
                writer,
                413,
                "Payload Too Large",
                f"request body of {length} bytes is over the ingress limit of {self.max_body}; send less per request",
            )
        authorization = fields.get("authorization", "")
        if not authorization.lower().startswith("bearer "):
            return self._refuse(
                writer,
                401,
                "Unauthorized",
                "a bearer token from governance is required",
                method,
                path,
                extra_headers='www-authenticate: Bearer realm="cleanroom"\r\n',  # RFC 6750 3.1: no error code
            )
        token = authorization[7:].strip()
        try:
            claims = self.tokens.cached(token)
            if claims is None:  # verifying may fetch governance's JWKS: never on the event loop
                claims = await asyncio.get_running_loop().run_in_executor(None, self.tokens.verify, token)
            grant = AppGrant.from_claims(claims)
        except ServiceUnavailableError as exc:
            return self._refuse(writer, 503, "Service Unavailable", exc.one_line(), method, path)
        except AccessDeniedError as exc:
            status = exc.status if isinstance(exc, TokenRejected) else (401 if "expired" in exc.message else 403)
            return self._refuse(
                writer, status, "Unauthorized" if status == 401 else "Forbidden", exc.one_line(), method, path
            )
        member = str(claims.get("sub", ""))
        if _CONTROL.search(member) or "\t" in member:
            return self._refuse(writer, 403, "Forbidden", "token subject has a control character", method, path)
        caller = member if grant is None else f"app:{grant.app}"
        if grant is not None:
            refused = self._app_refusal(grant, method, path)
            if refused is not None:
                status, message = refused
                reason = "Forbidden" if status == 403 else "Service Unavailable"
                return self._refuse(writer, status, reason, message, method, path, caller=caller)
        media_type = fields.get("content-type")
        if length and media_type is not None and not _JSON_MEDIA_TYPE.match(media_type.split(";")[0].strip().lower()):
            return self._refuse(
                writer,
                415,
                "Unsupported Media Type",
                f"content-type {media_type[:60]!r} is not application/json; send the body as JSON",
                method,
                path,
                caller=caller,
            )
        limit = self.member_rate_limit_per_minute if grant is None else grant.rate_limit_per_minute
        wait = self.rate_limits.take(caller, limit) if limit is not None else None
        if wait is not None:
            retry = retry_after_header(wait)
            return self._refuse(
                writer,
                429,
                "Too Many Requests",
                f"caller '{caller[:80]}' is over its limit of {limit} requests a minute; retry after {retry} s",
                method,
                path,
                caller=caller,
                extra_headers=f"retry-after: {retry}\r\n",
            )
        try:
            body = await asyncio.wait_for(reader.readexactly(length), self.body_timeout) if length else b""
        except TimeoutError:
            return self._refuse(
                writer,
                408,
                "Request Timeout",
                f"request body did not arrive within {self.body_timeout:g} s",
                method,
                path,
                caller=caller,
            )
        self._count_usage(caller, body)
        application = None
        if self.traffic is not None:  # blue/green: this request's application, chosen once
            if sum(1 for name, _ in headers if name == VERSION_HEADER) > 1:
                return self._refuse(writer, 400, "Bad Request", "send one X-Cleanroom-Version header", method, path)
            try:
                application = self.traffic.choose(fields.get(VERSION_HEADER))
            except InvalidInputError as exc:
                return self._refuse(writer, 400, "Bad Request", exc.one_line(), method, path)
            upstream = upstream.sibling(self._version_paths[application])
        keep_alive = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        query = target.partition("?")[2].partition("#")[0]
        forwarded = [f"{method} {quote(path, safe=_PATH_SAFE)}{'?' + query if query else ''} HTTP/1.1"]
        forwarded += [f"{n}: {v}" for n, v in headers if n not in HOP_BY_HOP]
        forwarded += [f"content-length: {length}", f"x-cleanroom-member: {member}"]
        return await self._forward(
            ("\r\n".join(forwarded) + "\r\n\r\n").encode("latin-1") + body, writer, keep_alive, upstream, application
        )

    def _app_refusal(self, grant: AppGrant, method: str, path: str) -> tuple[int, str] | None:
        """Why an app token may not make this request (a route its registration does not list,
        a revoked app, no fresh revocation list), as (status, message), or None."""
        if not grant.routes.allows(method, path):
            allowed = ", ".join(f"{m} {p}" for m, p in grant.routes.routes) or "no route"
            return 403, f"app '{grant.app}' may not call {method} {path[:200]}; its registration allows {allowed[:300]}"
        if self.revocations is None:
            return 503, "this ingress has no revocation feed, so it takes no app tokens"
        return self.revocations.refusal(grant.app)

    def _count_usage(self, caller: str, body: bytes) -> None:
        """Count a forwarded request; a large body's rows are counted off the event loop."""
        usage = self.usage
        if usage is None:
            return
        if len(body) <= INLINE_COUNT_BYTES:
            usage.forwarded(caller, rows_in(body) if body else 1)
            return
        counting = asyncio.get_running_loop().run_in_executor(None, rows_in, body)
        counting.add_done_callback(lambda done: usage.forwarded(caller, done.result()))

    async def _forward(
        self,
        request: bytes,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
        upstream: _Upstream,
        application: str | None = None,
    ) -> bool:
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
                if lower not in ("connection", "keep-alive", VERSION_HEADER):
                    kept.append(line)
            if application is not None:  # who answered, named by the ingress, never by the workload
                kept.append(f"{VERSION_HEADER}: {application}")
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
    """One client connection's connection to the workload socket, opened on first use.

    With ``expected_pid`` the connection is dropped (an OSError, so a 502) unless the listening
    end was last listen()ed by that pid or by a process of one of the ``workload_roots`` trees (a
    server such as uvicorn calls listen() again on the socket it was handed, and the kernel then
    reports the workload's pid): a socket anyone else made, reached however, is never used."""

    def __init__(self, path: str, expected_pid: int | None = None, workload_roots: set[int] | None = None) -> None:
        self.path = path
        self.expected_pid = expected_pid
        self.workload_roots = workload_roots if workload_roots is not None else set()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._siblings: dict[str, _Upstream] = {}

    def sibling(self, path: str) -> _Upstream:
        """This client connection's connection to another serving application's socket (blue/green),
        kept open for its later requests like this one and closed with it."""
        if path == self.path:
            return self
        if path not in self._siblings:
            self._siblings[path] = _Upstream(path, self.expected_pid, self.workload_roots)
        return self._siblings[path]

    @property
    def connected(self) -> bool:
        return self._streams is not None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            streams = await asyncio.open_unix_connection(self.path)
            if self.expected_pid is not None:
                peer = streams[1].get_extra_info("socket")
                pid = struct.unpack(
                    "3i", peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                )[0]
                if pid != self.expected_pid and not any(_descends_from(pid, root) for root in self.workload_roots):
                    streams[1].close()
                    raise ConnectionRefusedError(f"upstream socket listened on by pid {pid}, outside the runtime")
            self._streams = streams
        return self._streams

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None
        for sibling in self._siblings.values():
            sibling.close()


def _descends_from(pid: int, ancestor: int) -> bool:
    """True if ``pid`` is ``ancestor`` or below it in the process tree (walks /proc parents)."""
    for _ in range(64):  # a sandbox is a few levels deep; a cycle or a very deep chain is refused
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False
