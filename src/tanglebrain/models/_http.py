"""A small HTTP/1.1 client for JSON POSTs and server-sent events: h11 over anyio sockets.

Why not httpx or aiohttp, both installed with litellm: measured here, one httpx client
with 256 requests in flight spends 2-20 ms of CPU per request in its pool, and aiohttp
costs ~0.4 s to import (it builds two TLS contexts at import time) on a command that
should answer in a fifth of that. h11 (the sans-I/O HTTP/1.1 parser under httpcore and
uvicorn) does the protocol: framing, chunked bodies, keep-alive rules. This module only
adds sockets, a per-event-loop pool of idle connections, TLS, and the standard proxy
variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).

Failures surface as the types the error mapping reads: ``OSError`` subclasses when a
connection cannot be made or breaks, ``TimeoutError`` from the caller's deadlines, and
``HTTPStatusError`` for an error status (with the status, headers and the body's
message).
"""

from __future__ import annotations

import base64
import errno
import functools
import ipaddress
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc
import h11
from anyio.lowlevel import RunVar

if TYPE_CHECKING:
    import ssl

READ_SIZE = 65536
MAX_ERROR_BODY = 65536  # enough for any error message; a proxy's HTML page is cut here
MAX_BODY = 64 * 1024 * 1024  # a completion is bounded by max_tokens; this is a sanity cap
IDLE_S = 60.0  # drop pooled connections idle longer than this (a stale one is retried anyway)
MAX_IDLE = 512  # per origin: enough for the widest fan-out to reuse its connections


class HTTPStatusError(Exception):
    """The server answered with an error status (4xx or 5xx).

    Attributes:
        status_code: the HTTP status.
        headers: the response headers, names in lower case.
        body: the start of the response body.
    """

    def __init__(self, status_code: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.body = body
        super().__init__(error_message(body) or f"HTTP {status_code}")


def error_message(body: bytes) -> str:
    """The message of an error body: OpenAI's ``{"error": {"message": …}}`` and its variants."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        for key in ("message", "detail", "error"):
            if isinstance(err.get(key), str):
                return str(err[key])
    return text if isinstance(err, dict | list) else str(err)


class ConnectionBroken(ConnectionError):
    """The connection closed or broke before the response was complete."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection goes: scheme, host and port (and the proxy it goes through)."""

    scheme: str
    host: str
    port: int
    proxy: str | None = None


@dataclass(slots=True)
class _Conn:
    stream: anyio.abc.ByteStream
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_since: float = 0.0
    reused: bool = False


class Response:
    """A response whose headers have arrived; the body is read from ``aread`` or ``aiter``."""

    def __init__(self, conn: _Conn, event: h11.Response) -> None:
        self._conn = conn
        self.status = event.status_code
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        self.complete = False

    async def aiter(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives."""
        while True:
            event = await _next_event(self._conn)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                return

    async def aread(self, limit: int = MAX_BODY) -> bytes:
        """The whole body; ``ValueError`` past ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        async for part in self.aiter():
            size += len(part)
            if size > limit:
                raise ValueError(f"the response body is over {limit} bytes")
            parts.append(part)
        return b"".join(parts)


class Pool:
    """Idle keep-alive connections per origin, for one event loop."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[_Conn]] = {}
        # Where each URL goes and how its request line and headers start: worked out once
        # (a fan-out posts to the same few URLs hundreds of times). The proxy variables
        # are read when the pool is made: one per event loop, i.e. per run or server.
        self._proxies = tuple(os.environ.get(n) or os.environ.get(n.upper()) for n in _PROXY_VARS)
        self._routes: dict[str, tuple[Origin, str, list[tuple[str, str]]]] = {}

    def _route(self, url: str) -> tuple[Origin, str, list[tuple[str, str]]]:
        """(origin, request target, leading headers) of ``url``."""
        route = self._routes.get(url)
        if route is None:
            parts = urlsplit(url)
            scheme, host = parts.scheme, parts.hostname or ""
            port = parts.port or (443 if scheme == "https" else 80)
            proxy = _decide_proxy(scheme, host, self._proxies) if any(self._proxies[:3]) else None
            origin = Origin(scheme, host, port, proxy)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            lead = [("Host", parts.netloc.rpartition("@")[2])]
            if proxy and scheme == "http":
                target = url  # a plain-HTTP proxy takes the absolute URL
                lead += _proxy_auth(proxy)
            route = self._routes[url] = (origin, target, lead)
        return route

    @asynccontextmanager
    async def post(
        self, url: str, body: bytes, headers: list[tuple[str, str]]
    ) -> AsyncIterator[Response]:
        """POST ``body`` to ``url`` and yield the response once its headers are in.

        The connection returns to the pool when the body was read to its end and both
        sides agree to keep it; otherwise it is closed (that also stops a stream).
        A pooled connection the server had closed meanwhile is replaced once, before any
        byte of the response arrived.
        """
        origin, target, lead = self._route(url)
        all_headers = [*lead, *headers, ("Content-Length", str(len(body)))]
        request = h11.Request(method="POST", target=target, headers=all_headers)
        conn, response = await self._send(origin, request, body)
        try:
            yield response
        except BaseException:
            await _close(conn)
            raise
        if response.complete and _reusable(conn):
            conn.h11.start_next_cycle()
            conn.idle_since = time.monotonic()
            conn.reused = True
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        await _close(conn)

    async def _send(
        self, origin: Origin, request: h11.Request, body: bytes
    ) -> tuple[_Conn, Response]:
        while True:
            conn = await self._checkout(origin) or _Conn(await _connect(origin))
            try:
                await conn.stream.send(conn.h11.send(request) + conn.h11.send(h11.Data(body)))
                await conn.stream.send(conn.h11.send(h11.EndOfMessage()))
                event = await _next_event(conn)
            except (ConnectionBroken, OSError, anyio.BrokenResourceError):
                await _close(conn)
                if conn.reused and conn.h11.their_state is h11.SEND_RESPONSE:
                    continue  # closed while idle: nothing reached the server
                raise
            except BaseException:
                await _close(conn)
                raise
            assert isinstance(event, h11.Response)
            return conn, Response(conn, event)

    async def _checkout(self, origin: Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_S:
                return conn
            await _close(conn)  # idle too long: the server has likely dropped it
        return None


_POOL: RunVar[Pool] = RunVar("tanglebrain_http_pool")


def pool() -> Pool:
    """The pool of the running event loop (a socket cannot move between loops)."""
    try:
        return _POOL.get()
    except LookupError:
        new = Pool()
        _POOL.set(new)
        return new


async def _next_event(conn: _Conn) -> h11.Event:
    """The next response event (headers, data, end), reading from the socket as needed."""
    while True:
        try:
            event = conn.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise ConnectionBroken(f"invalid HTTP from the server: {exc}") from exc
        if event is h11.NEED_DATA:
            try:
                data = await conn.stream.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            if not data and conn.h11.their_state is h11.SEND_RESPONSE:
                raise ConnectionBroken("the server closed the connection without a response")
            try:
                conn.h11.receive_data(data)
            except h11.RemoteProtocolError as exc:
                raise ConnectionBroken(f"invalid HTTP from the server: {exc}") from exc
            continue
        if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            raise ConnectionBroken("the server closed the connection mid-response")
        if isinstance(event, h11.InformationalResponse):
            continue  # 100 Continue and friends
        assert isinstance(event, h11.Response | h11.Data | h11.EndOfMessage)
        return event


def _reusable(conn: _Conn) -> bool:
    return conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE


async def _close(conn: _Conn) -> None:
    with anyio.CancelScope(shield=True):
        with suppress(OSError, anyio.BrokenResourceError):  # ssl.SSLError is an OSError
            await conn.stream.aclose()


async def _connect(origin: Origin) -> anyio.abc.ByteStream:
    """A connected (and, for https, TLS-wrapped) stream to ``origin``."""
    if origin.proxy is None:
        stream: anyio.abc.ByteStream = await _tcp(origin.host, origin.port)
    else:
        proxy = urlsplit(origin.proxy)
        stream = await anyio.connect_tcp(proxy.hostname or "", proxy.port or 80)
        if origin.scheme == "https":
            await _tunnel(stream, origin)
    if origin.scheme == "https":
        from anyio.streams.tls import TLSStream  # ssl costs plain-http runs ~5 ms to import

        stream = await TLSStream.wrap(
            stream, hostname=origin.host, ssl_context=tls_context(), standard_compatible=False
        )
    return stream


async def _tcp(host: str, port: int) -> anyio.abc.ByteStream:
    """A TCP connection; an IP address skips name resolution and happy eyeballs.

    ``anyio.connect_tcp`` resolves in a worker thread and races addresses, ~0.5 ms of CPU
    a connection; a fan-out to a local server opens hundreds of them at once.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return await anyio.connect_tcp(host, port)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((str(address), port))
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            raise OSError(code, os.strerror(code))
        if code:
            await anyio.wait_writable(sock)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
        return await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


async def _tunnel(stream: anyio.abc.ByteStream, origin: Origin) -> None:
    """Ask the proxy for a tunnel to ``origin`` (HTTP CONNECT)."""
    target = f"{origin.host}:{origin.port}"
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", target), *_proxy_auth(origin.proxy or "")]
    await stream.send(conn.send(h11.Request(method="CONNECT", target=target, headers=headers)))
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive(READ_SIZE))
            continue
        if isinstance(event, h11.Response):
            if 200 <= event.status_code < 300:
                return
            await stream.aclose()
            raise ConnectionRefusedError(f"the proxy refused the tunnel: HTTP {event.status_code}")


def _proxy_auth(proxy: str) -> list[tuple[str, str]]:
    parts = urlsplit(proxy)
    if not parts.username:
        return []
    user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return [("Proxy-Authorization", "Basic " + base64.b64encode(user.encode()).decode())]


# Lower case wins, as in curl and urllib.
_PROXY_VARS = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")


@functools.lru_cache(maxsize=64)
def _decide_proxy(scheme: str, host: str, values: tuple[str | None, ...]) -> str | None:
    proxies = dict(zip(_PROXY_VARS, values, strict=True))
    proxy = proxies.get(f"{scheme}_proxy") or proxies["all_proxy"]
    if not proxy:
        return None
    if _bypassed(host, proxies["no_proxy"] or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host``: ``*``, or a name it equals or ends with."""
    host = host.lower().strip("[]")
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


_TLS: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The process's TLS context, made on the first https connection (it costs ~80 ms).

    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` win (OpenSSL reads them); else certifi's bundle when
    installed, as httpx and the OpenAI SDK do; else the system's store.
    """
    global _TLS
    if _TLS is None:
        import ssl

        cafile = None
        if not (os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")):
            try:
                import certifi

                cafile = certifi.where()
            except ImportError:
                cafile = None
        _TLS = ssl.create_default_context(cafile=cafile)
    return _TLS
