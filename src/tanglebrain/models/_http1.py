"""HTTP/1.1 on one connection: the bytes of a request, and a response read as it arrives.

The client's part of HTTP/1.1 that a JSON POST needs is small: write one request, read a
status line and headers (1xx responses skipped), then a body framed by ``Content-Length``,
chunked transfer coding or the end of the connection, and decide whether the connection
can carry another request. ``Socket`` is the asyncio protocol that buffers what arrives;
``Response`` reads the body from it, each wait bounded by a timer. Connections, pooling,
TLS and proxies are ``_http``'s.

Why not h11 (over anyio streams, as this client once was): per request that pair cost
~0.4 ms of CPU in event objects, header validation, state machines and stream wrappers,
a third of a delegated sub-task's CPU (bench/fanout.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import cast

MAX_ERROR_BODY = 65536  # enough for any error message; a proxy's HTML page is cut here
MAX_BODY = 64 * 1024 * 1024  # a completion is bounded by max_tokens; this is a sanity cap
MAX_HEAD = 65536  # a status line and headers longer than this are not a model server's
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


class Socket(asyncio.Protocol):
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

    def resume(self) -> None:
        """Read from the socket again if a reader far behind had paused it."""
        if self._paused and self.transport:
            self._paused = False
            self.transport.resume_reading()

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


class Connection:
    """One connection: its transport, what it received, and its pool bookkeeping."""

    __slots__ = ("idle_since", "reused", "socket", "transport")

    def __init__(self, transport: asyncio.Transport, socket: Socket) -> None:
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

    def __init__(self, conn: Connection, status: int, headers: dict[str, str], keep: bool) -> None:
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
        if not self.keep_alive:
            return  # the connection closes anyway: nothing to wait for
        self.timeout = wait
        with suppress(TimeoutError, OSError):
            async for _ in self.aiter():
                pass

    async def _pieces(self) -> AsyncIterator[bytes]:
        # One generator per body: a nested one per chunk (a stream has one per event) cost
        # asyncio's generator bookkeeping each time.
        sock = self._conn.socket
        if self._chunked or self._length is not None:
            size = self._length if self._length is not None else -1
            while size:
                if size < 0 and (piece := _whole_chunk(sock.buffer)) is not None:
                    yield piece  # the common case: a stream event arrived as one chunk
                    continue
                # chunked: read the next chunk's size first; 0 is the last
                if size < 0 and not (size := _chunk_size(await sock.line(self.timeout))):
                    break
                if piece := _take(sock.buffer, size):
                    size -= len(piece)
                    yield piece
                    if not size and self._chunked:
                        if await sock.line(self.timeout):
                            raise ConnectionBroken("invalid HTTP from the server: a chunk overran")
                        size = -1
                elif sock.closed:
                    raise ConnectionBroken("the server closed the connection mid-response")
                else:
                    await sock.more(self.timeout)
            while self._chunked and await sock.line(self.timeout):  # trailers, to the blank line
                pass
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


def _whole_chunk(buffer: bytearray) -> bytes | None:
    """The data of a whole chunk at the front of ``buffer``, taken from it.

    None when the chunk is not all there yet, is the last one, or ends oddly: then the
    line-by-line path reads it (and judges it).
    """
    end = buffer.find(b"\n")
    if end < 0:
        return None
    size = _chunk_size(bytes(buffer[:end]).rstrip(b"\r"))
    start = end + 1
    stop = start + size
    if not size or buffer[stop : stop + 2] != b"\r\n":
        return None
    piece = bytes(buffer[start:stop])
    del buffer[: stop + 2]
    return piece


def _take(buffer: bytearray, size: int) -> bytes:
    """Up to ``size`` bytes from the front of ``buffer`` (b"" when it is empty)."""
    piece = bytes(buffer[:size])
    del buffer[:size]
    return piece


def _content_length(value: str) -> int:
    values = {v.strip() for v in value.split(",")}  # "5, 5" is allowed; "5, 6" is not
    if len(values) != 1 or not ((text := values.pop()).isascii() and text.isdigit()):
        raise ConnectionBroken(f"invalid HTTP from the server: Content-Length {value!r}")
    return int(text)


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    if not text or text.lstrip(_HEX) or len(text) > 16:  # hex digits only (no "0x", "1_0")
        raise ConnectionBroken(f"invalid HTTP from the server: chunk size {line[:40]!r}")
    return int(text, 16)


_HEX = b"0123456789abcdefABCDEF"


async def read_head(sock: Socket, timeout: float | None = None) -> tuple[int, dict[str, str], bool]:
    """(status, headers, keep-alive) of the next final response; 1xx ones are skipped.

    Each wait for more bytes lasts at most ``timeout`` (``TimeoutError``); the heads
    together may take ``MAX_HEAD`` bytes.
    """
    size = 0
    while True:
        try:
            line = await sock.line(timeout)
        except ConnectionBroken:
            if sock.buffer:
                raise
            raise ConnectionBroken("the server closed the connection without a response") from None
        size += len(line) + 2
        if size > MAX_HEAD:
            raise ConnectionBroken("invalid HTTP from the server: headers over 64 KB")
        if not line:
            continue  # a stray blank line before a status line is tolerated (RFC 9112 2.2)
        version, _, rest = line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit() or rest[3:4] not in b" ":
            raise ConnectionBroken(f"invalid HTTP from the server: {line[:60]!r}")
        headers: dict[str, str] = {}
        name = ""
        while field := await sock.line(timeout):
            size += len(field) + 2
            if size > MAX_HEAD:
                raise ConnectionBroken("invalid HTTP from the server: headers over 64 KB")
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


def request_head(target: str, headers: list[tuple[str, str]], length: int) -> bytes:
    lines = [f"POST {target} HTTP/1.1"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            # Never echo the value: it may be an API key.
            raise ValueError(f"the {name.strip()!r} header holds a line break or colon")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {length}\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1")
