"""A small HTTP/1.1 client for JSON POSTs and server-sent events, on asyncio protocols.

Why not httpx or aiohttp, both installed with litellm: measured here, one httpx client
with 256 requests in flight spends 2-20 ms of CPU per request in its pool, and aiohttp
costs ~0.4 s to import (it builds two TLS contexts at import time) on a command that
should answer in a fifth of that. Why not h11 over anyio streams, which this module
used before: per request that pair cost ~0.4 ms of CPU in event objects, header
validation, state machines and stream wrappers (a third of a delegated sub-task's
CPU, bench/fanout.py). The client's part of HTTP/1.1 that a JSON POST needs is small:
write one request, read a status line and headers, then a body framed by
``Content-Length``, chunked transfer coding or the end of the connection.

This module holds that, a per-event-loop pool of idle keep-alive connections, TLS, and
the standard proxy variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
``NO_PROXY``). Failures surface as the types the error mapping reads: ``OSError``
subclasses when a connection cannot be made or breaks (``ConnectionBroken`` for a
response cut short or not HTTP), ``TimeoutError`` from the caller's deadlines, and
``HTTPStatusError`` for an error status (with the status, headers and the body's
message).
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote, urlsplit

from anyio.lowlevel import RunVar

if TYPE_CHECKING:
    import ssl

MAX_ERROR_BODY = 65536  # enough for any error message; a proxy's HTML page is cut here
MAX_BODY = 64 * 1024 * 1024  # a completion is bounded by max_tokens; this is a sanity cap
MAX_HEAD = 65536  # a status line and headers longer than this are not a model server's
IDLE_S = 60.0  # drop pooled connections idle longer than this (a stale one is retried anyway)
MAX_IDLE = 512  # per origin: enough for the widest fan-out to reuse its connections
_HIGH_WATER = 1 << 20  # stop reading the socket while this much is buffered and unread


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
    """The connection closed or broke before the response was complete, or spoke no HTTP."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection goes: scheme, host and port (and the proxy it goes through)."""

    scheme: str
    host: str
    port: int
    proxy: str | None = None


class _Socket(asyncio.Protocol):
    """The bytes one connection received, buffered until a reader takes them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.received = 0  # bytes ever received: tells "no reply at all" from "cut short"
        self.closed = False  # the server sent EOF or the connection is gone
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.received += len(data)
        if len(self.buffer) > _HIGH_WATER and not self._paused and self.transport:
            self.transport.pause_reading()  # a reader far behind: let TCP push back
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # nothing more to send either: let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self, timeout: float | None = None) -> None:
        """Wait until more bytes arrive or the connection ends; ``TimeoutError`` after ``timeout``.

        A timer, not a cancel scope: a stream waits once per chunk, and a scope costs
        more CPU than the chunk.
        """
        if self._paused and self.transport:
            self._paused = False
            self.transport.resume_reading()
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def line(self, timeout: float | None = None) -> bytes:
        """The next line of the buffer (without its line break)."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end]).rstrip(b"\r")
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > MAX_HEAD:
                raise ConnectionBroken("invalid HTTP from the server: a line over 64 KB")
            if self.closed:
                raise ConnectionBroken("the server closed the connection mid-response")
            await self.more(timeout)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Conn:
    """One connection: its transport, what it received, and its pool bookkeeping."""

    __slots__ = ("idle_since", "reused", "socket", "transport")

    def __init__(self, transport: asyncio.Transport, socket: _Socket) -> None:
        self.transport = transport
        self.socket = socket
        self.idle_since = 0.0
        self.reused = False

    def close(self) -> None:
        """Drop the connection at once (for a stream: that stops the server generating)."""
        self.transport.abort()


class Response:
    """A response whose headers have arrived; the body is read from ``aread`` or ``aiter``.

    Attributes:
        timeout: how long each wait for more of the body may last (``TimeoutError``
            after it); None: no limit but the caller's.
    """

    def __init__(self, conn: _Conn, status: int, headers: dict[str, str], keep: bool) -> None:
        self._conn = conn
        self._body: AsyncIterator[bytes] | None = None
        self.timeout: float | None = None
        self.status = status
        self.headers = headers
        self.complete = False
        te = headers.get("transfer-encoding")
        length = headers.get("content-length")
        self._chunked = te is not None and te.rsplit(",", 1)[-1].strip().lower() == "chunked"
        self._length: int | None = None
        if status in (204, 304):
            self._length = 0
        elif te:
            keep = keep and self._chunked  # any other coding: the body runs to the close
        elif length is not None:
            self._length = _content_length(length)
        else:
            keep = False  # no framing: the body ends when the server closes
        self.keep_alive = keep

    def aiter(self) -> AsyncIterator[bytes]:
        """The body, piece by piece as it arrives (one iterator: later calls continue it)."""
        if self._body is None:
            self._body = self._pieces()
        return self._body

    async def discard_rest(self, wait: float) -> None:
        """Read and drop what is left of the body if it ends within ``wait`` seconds.

        A stream's reader stops at its last event; the few bytes that end the body
        (a chunked body's terminator) decide whether the connection can be reused.
        """
        self.timeout = wait
        with suppress(TimeoutError, OSError):
            async for _ in self.aiter():
                pass

    async def _pieces(self) -> AsyncIterator[bytes]:
        sock = self._conn.socket
        if self._chunked:
            while size := _chunk_size(await sock.line(self.timeout)):
                async for piece in _exactly(self, size):
                    yield piece
                if await sock.line(self.timeout):
                    raise ConnectionBroken("invalid HTTP from the server: a chunk overran")
            while await sock.line(self.timeout):  # trailer fields, up to the blank line
                pass
        elif self._length is not None:
            async for piece in _exactly(self, self._length):
                yield piece
        else:
            while True:
                if sock.buffer:
                    piece = bytes(sock.buffer)
                    sock.buffer.clear()
                    yield piece
                elif sock.closed:
                    break
                else:
                    await sock.more(self.timeout)
        self.complete = True

    async def aread(self, limit: int = MAX_BODY) -> bytes:
        """The whole body; ``ValueError`` past ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        async for part in self.aiter():
            size += len(part)
            if size > limit:
                raise ValueError(f"the response body is over {limit} bytes")
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)


async def _exactly(resp: Response, size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of the body, yielded as they arrive."""
    sock = resp._conn.socket
    buffer = sock.buffer
    while size:
        if buffer:
            take = min(size, len(buffer))
            piece = bytes(buffer[:take])
            del buffer[:take]
            size -= take
            yield piece
        elif sock.closed:
            raise ConnectionBroken("the server closed the connection mid-response")
        else:
            await sock.more(resp.timeout)


def _content_length(value: str) -> int:
    values = {v.strip() for v in value.split(",")}  # "5, 5" is allowed; "5, 6" is not
    if len(values) != 1 or not (text := values.pop()).isdigit():
        raise ConnectionBroken(f"invalid HTTP from the server: Content-Length {value!r}")
    return int(text)


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    try:
        if not text or text.startswith((b"-", b"+", b"0x", b"0X")):
            raise ValueError
        return int(text, 16)
    except ValueError:
        raise ConnectionBroken(f"invalid HTTP from the server: chunk size {line[:40]!r}") from None


async def _read_head(sock: _Socket) -> tuple[int, dict[str, str], bool]:
    """(status, headers, keep-alive) of the next final response; 1xx ones are skipped."""
    while True:
        try:
            line = await sock.line()
        except ConnectionBroken:
            if sock.buffer:
                raise
            raise ConnectionBroken("the server closed the connection without a response") from None
        if not line:
            continue  # a stray blank line before a status line is tolerated (RFC 9112 2.2)
        version, _, rest = line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit() or rest[3:4] not in b" ":
            raise ConnectionBroken(f"invalid HTTP from the server: {line[:60]!r}")
        headers: dict[str, str] = {}
        name = ""
        while field := await sock.line():
            if field[:1] in b" \t" and name:  # obsolete line folding: a continuation
                headers[name] += " " + field.strip().decode("latin-1")
                continue
            key, colon, value = field.partition(b":")
            if not colon or not key or key != key.strip():
                raise ConnectionBroken(f"invalid HTTP from the server: header {field[:60]!r}")
            name = key.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
        status = int(code)
        if 100 <= status < 200:
            continue  # 100 Continue and friends
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = version == b"HTTP/1.1" and "close" not in tokens
        return status, headers, keep


def _request_head(target: str, headers: list[tuple[str, str]], length: int) -> bytes:
    lines = [f"POST {target} HTTP/1.1"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            # Never echo the value: it may be an API key.
            raise ValueError(f"the {name.strip()!r} header holds a line break or colon")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1")


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
        request = _request_head(target, [*lead, *headers], len(body)) + body
        conn, response = await self._send(origin, request)
        try:
            yield response
        except BaseException:
            conn.close()
            raise
        sock = conn.socket
        if response.complete and response.keep_alive and not sock.closed and not sock.buffer:
            conn.idle_since = time.monotonic()
            conn.reused = True
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    async def _send(self, origin: Origin, request: bytes) -> tuple[_Conn, Response]:
        while True:
            conn = self._checkout(origin) or await _connect(origin)
            before = conn.socket.received
            try:
                conn.transport.write(request)
                status, headers, keep = await _read_head(conn.socket)
            except OSError:
                conn.close()
                if conn.reused and conn.socket.received == before:
                    continue  # closed while idle: nothing reached the server
                raise
            except BaseException:
                conn.close()
                raise
            return conn, Response(conn, status, headers, keep)

    def _checkout(self, origin: Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            sock = conn.socket
            if now - conn.idle_since < IDLE_S and not sock.closed and not sock.buffer:
                return conn
            conn.close()  # too old (the server has likely dropped it), closed, or spoke out of turn
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


async def _connect(origin: Origin) -> _Conn:
    """A connected (and, for https, TLS-wrapped) connection to ``origin``."""
    loop = asyncio.get_running_loop()
    sock = _Socket()
    https = origin.scheme == "https"
    if origin.proxy is None:
        host, port = origin.host, origin.port
    else:
        proxy = urlsplit(origin.proxy)
        host, port = proxy.hostname or "", proxy.port or 80
    direct = https and origin.proxy is None
    context, name = (tls_context(), host) if direct else (None, None)
    family = _family(host)
    if family is None:  # a name: asyncio resolves it and races its addresses
        transport, _ = await loop.create_connection(
            lambda: sock, host, port, happy_eyeballs_delay=0.25, ssl=context, server_hostname=name
        )
    else:
        raw = await _tcp(family, host, port)
        transport, _ = await loop.create_connection(
            lambda: sock, sock=raw, ssl=context, server_hostname=name
        )
    conn = _Conn(transport, sock)
    if origin.proxy is not None and https:
        try:
            await _tunnel(conn, origin)
            wrapped = await loop.start_tls(
                transport, sock, tls_context(), server_hostname=origin.host
            )
        except BaseException:
            conn.close()
            raise
        if wrapped is None:  # only when the transport closed meanwhile
            raise ConnectionBroken("the proxy closed the connection during the TLS handshake")
        conn.transport = wrapped
    return conn


async def _tcp(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    """A TCP socket connected to a literal IP address.

    asyncio's own connect resolves even a literal address (~0.2 ms of CPU a connection,
    mostly enum conversions); a fan-out to a local server opens hundreds at once.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        code = sock.connect_ex((host, port))
        if code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            loop.add_writer(sock.fileno(), ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_writer(sock.fileno())
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"{os.strerror(code)} ({host}:{port})")
        return sock
    except BaseException:
        sock.close()
        raise


@functools.lru_cache(maxsize=256)
def _family(host: str) -> socket.AddressFamily | None:
    """The address family of a literal IP address; ``None`` for a name."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return None
    return socket.AF_INET6 if version == 6 else socket.AF_INET


async def _tunnel(conn: _Conn, origin: Origin) -> None:
    """Ask the proxy for a tunnel to ``origin`` (HTTP CONNECT)."""
    target = f"{origin.host}:{origin.port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    lines += [f"{k}: {v}" for k, v in _proxy_auth(origin.proxy or "")]
    conn.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    status, _, _ = await _read_head(conn.socket)
    if not 200 <= status < 300:
        raise ConnectionRefusedError(f"the proxy refused the tunnel: HTTP {status}")


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
