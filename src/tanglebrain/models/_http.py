"""The native transport's HTTP client: pooled keep-alive connections, TLS and proxies.

Why not httpx or aiohttp, both installed with litellm: measured here, one httpx client
with 256 requests in flight spends 2-20 ms of CPU per request in its pool, and aiohttp
costs ~0.4 s to import (it builds two TLS contexts at import time) on a command that
should answer in a fifth of that. The protocol itself is ``_http1``'s; this module opens
connections (a literal address without the resolver, TLS, CONNECT tunnels through a
proxy), keeps idle ones per origin for one event loop, and reads the standard proxy
variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).

Failures surface as the types the error mapping reads: ``OSError`` subclasses when a
connection cannot be made or breaks (``ConnectionBroken`` for a response cut short or not
HTTP), ``TimeoutError`` from the caller's deadlines, and ``HTTPStatusError`` for an error
status (with the status, headers and the body's message).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import functools
import ipaddress
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import anyio
from anyio.lowlevel import RunVar

from tanglebrain.models._http1 import (
    MAX_BODY,
    MAX_ERROR_BODY,
    Connection,
    ConnectionBroken,
    HTTPStatusError,
    Response,
    Socket,
    error_message,
    read_head,
    request_head,
)
from tanglebrain.models._types import CONNECT_TIMEOUT_S

if TYPE_CHECKING:
    import ssl

__all__ = [
    "MAX_BODY", "MAX_ERROR_BODY", "ConnectTimeout", "ConnectionBroken", "HTTPStatusError",
    "Origin", "Pool", "Response", "error_message", "pool", "tls_context",
]  # fmt: skip

IDLE_S = 60.0  # drop pooled connections idle longer than this (a stale one is retried anyway)
MAX_IDLE = 512  # per origin: enough for the widest fan-out to reuse its connections


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection goes: scheme, host and port (and the proxy it goes through)."""

    scheme: str
    host: str
    port: int
    proxy: str | None = None


class Pool:
    """Idle keep-alive connections per origin, for one event loop."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[Connection]] = {}
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
        self,
        url: str,
        body: bytes,
        headers: list[tuple[str, str]],
        timeout: float | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ) -> AsyncIterator[Response]:
        """POST ``body`` to ``url`` and yield the response once its headers are in.

        The connection returns to the pool when the body was read to its end and both
        sides agree to keep it; otherwise it is closed (that also stops a stream).
        A pooled connection the server had closed meanwhile is replaced once, before any
        byte of the response arrived. ``timeout`` bounds making a connection, and then
        each wait for more of the response (``response.timeout``): a loop timer per wait,
        cheaper than a cancel scope around the whole call. A new connection must be made
        within ``connect_timeout`` when that is shorter (``ConnectTimeout``).
        """
        origin, target, lead = self._route(url)
        request = request_head(target, [*lead, *headers], len(body)) + body
        conn, response = await self._send(origin, request, timeout, connect_timeout)
        response.timeout = timeout
        try:
            yield response
        except BaseException:
            conn.close()
            raise
        sock = conn.socket
        if response.complete and response.keep_alive and not sock.closed and not sock.buffer:
            sock.resume()  # an idle connection must still see the server close it
            conn.idle_since = time.monotonic()
            conn.reused = True
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    async def _send(
        self, origin: Origin, request: bytes, timeout: float | None, connect_timeout: float
    ) -> tuple[Connection, Response]:
        fresh = False
        while True:
            conn = None if fresh else self._checkout(origin)
            if conn is None:
                conn = await _connect_within(origin, timeout, connect_timeout)
            before = conn.socket.received
            try:
                conn.transport.write(request)
                status, headers, keep = await read_head(conn.socket, timeout)
                return conn, Response(conn, status, headers, keep)
            except TimeoutError:
                conn.close()  # a slow server, not a dead connection: never send it again
                raise
            except ConnectionError:
                conn.close()
                stale = conn.reused and conn.socket.closed and conn.socket.received == before
                if stale and not fresh:
                    fresh = True  # closed while idle, nothing reached the server: once more,
                    continue  # on a new connection (its idle siblings may be as stale)
                raise
            except BaseException:
                conn.close()
                raise

    def _checkout(self, origin: Origin) -> Connection | None:
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


class ConnectTimeout(ConnectionError):
    """No connection within the connect timeout (or the call's own, when shorter)."""


async def _connect_within(
    origin: Origin, timeout: float | None, connect_timeout: float
) -> Connection:
    """``_connect``, bounded by ``connect_timeout`` or the call's timeout if shorter."""
    limit = connect_timeout if timeout is None else min(timeout, connect_timeout)
    with anyio.move_on_after(limit):  # (a kernel's own ETIMEDOUT stays what it is)
        return await _connect(origin)
    where = f"{origin.host}:{origin.port}"
    raise ConnectTimeout(f"no connection to {where} within {limit:g}s")


async def _connect(origin: Origin) -> Connection:
    """A connected (and, for https, TLS-wrapped) connection to ``origin``."""
    loop = asyncio.get_running_loop()
    sock = Socket()
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
    conn = Connection(transport, sock)
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
        conn.transport = sock.transport = wrapped  # flow control must act on the TLS layer
    return conn


async def _tcp(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    """A TCP socket connected to a literal IP address.

    asyncio's own connect resolves even a literal address (~0.2 ms of CPU a connection,
    mostly enum conversions); a fan-out to a local server opens hundreds at once.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # asyncio sets this only on sockets it made itself (proto IPPROTO_TCP); without it
        # a body written in several pieces can wait on Nagle's algorithm.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


async def _tunnel(conn: Connection, origin: Origin) -> None:
    """Ask the proxy for a tunnel to ``origin`` (HTTP CONNECT)."""
    target = f"{origin.host}:{origin.port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    lines += [f"{k}: {v}" for k, v in _proxy_auth(origin.proxy or "")]
    conn.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    status, _, _ = await read_head(conn.socket)
    if not 200 <= status < 300:
        raise ConnectionRefusedError(f"the proxy refused the tunnel: HTTP {status}")
    if conn.socket.buffer:  # TLS starts here: nothing may come before the handshake
        raise ConnectionBroken("the proxy sent data after accepting the tunnel")


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
