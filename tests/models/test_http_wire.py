"""The HTTP/1.1 client's wire handling: framing, keep-alive, bad responses, TLS, tunnels.

Each case is a real loopback server writing scripted bytes; the property test feeds the
reader arbitrary splits of a chunked response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from tanglebrain import models
from tanglebrain.models import _http, _http1, _openai
from tanglebrain.models._types import Outgoing
from tanglebrain.roster import parse
from tanglebrain.trace import Call

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and body, or b"" when the client went away."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return b""
    fields = dict(ln.lower().split(b":", 1) for ln in head.split(b"\r\n")[1:] if b":" in ln)
    return head + await reader.readexactly(int(fields.get(b"content-length", b"0")))


async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)


def answer_once(reply: bytes) -> Handler:
    """A handler that reads one request, writes ``reply`` and closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    return handle


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def post(url: str, headers: list[tuple[str, str]] | None = None) -> tuple[int, bytes]:
    async with _http.pool().post(url, b'{"x":1}', headers or []) as resp:
        return resp.status, await resp.aread()


OK = b"HTTP/1.1 200 OK\r\n"
FRAMINGS = [
    # name, the server's reply, the body read, connections two requests take
    ("content-length", OK + b"Content-Length: 5\r\n\r\nhello", b"hello", 1),
    ("chunked, extension, trailer",
     OK + b"Transfer-Encoding: chunked\r\n\r\n2;x=y\r\nhe\r\n3\r\nllo\r\n0\r\nX-T: 1\r\n\r\n",
     b"hello", 1),
    ("100 Continue first",
     b"HTTP/1.1 100 Continue\r\n\r\n" + OK + b"Content-Length: 5\r\n\r\nhello", b"hello", 1),
    ("connection: close", OK + b"Connection: close\r\nContent-Length: 5\r\n\r\nhello", b"hello", 2),
    ("no framing: to the close", OK + b"\r\nhello", b"hello", 2),
    ("HTTP/1.0", b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", 2),
    ("204: no body", b"HTTP/1.1 204 No Content\r\n\r\n", b"", 1),
    ("bare line feeds", b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", b"hello", 1),
    ("an empty chunked body", OK + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"", 1),
]  # fmt: skip


@pytest.mark.parametrize(("reply", "body", "connections"), [c[1:] for c in FRAMINGS],
                         ids=[c[0] for c in FRAMINGS])  # fmt: skip
async def test_bodies_are_framed_and_connections_kept_only_when_both_sides_agree(
    reply: bytes, body: bytes, connections: int
) -> None:
    opened: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(1)
        while await read_request(reader):
            writer.write(reply)
            await writer.drain()
            if connections == 2:
                break  # the reply says the connection ends here
        writer.close()

    async with await serve(handle) as server:
        url = f"http://127.0.0.1:{port_of(server)}/v1/chat/completions"
        status = int(reply[reply.rfind(b"HTTP/1.") + 9 :][:3])  # the final response's
        assert await post(url) == (status, body)
        assert await post(url) == (status, body)
    assert len(opened) == connections


BROKEN = [
    # name, the server's reply (then it closes), what the error says
    ("not HTTP", b"SSH-2.0-OpenSSH\r\n\r\n", "invalid HTTP"),
    ("conflicting lengths", OK + b"Content-Length: 5, 6\r\n\r\nhello", "Content-Length"),
    ("bad chunk size", OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    ("chunk overrun", OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n", "overran"),
    ("cut mid-body", OK + b"Content-Length: 10\r\n\r\nhello", "mid-response"),
    ("cut mid-headers", OK + b"Content-Len", "mid-response"),
    ("nothing at all", b"", "without a response"),
    ("a header without a colon", OK + b"Oops\r\n\r\n", "header"),
    ("a Python-style chunk size", OK + b"Transfer-Encoding: chunked\r\n\r\n1_0\r\n", "chunk size"),
    ("a non-ASCII length", OK + "Content-Length: ²\r\n\r\n".encode(), "Content-Length"),
    ("endless headers", OK + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(700)),
     "over 64 KB"),
    ("endless 100 Continue", b"HTTP/1.1 100 Continue\r\n\r\n" * 3000, "over 64 KB"),
]  # fmt: skip


@pytest.mark.parametrize(("reply", "message"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
async def test_a_broken_or_foreign_reply_is_a_broken_connection(reply: bytes, message: str) -> None:
    async with await serve(answer_once(reply)) as server:
        with pytest.raises(_http.ConnectionBroken, match=message):
            await post(f"http://127.0.0.1:{port_of(server)}/")


async def test_headers_are_lower_case_with_repeats_joined_and_folds_unfolded() -> None:
    reply = OK + b"X-A: 1\r\nx-a: 2\r\nX-Long: one\r\n two\r\nContent-Length: 0\r\n\r\n"
    async with await serve(answer_once(reply)) as server:
        url = f"http://127.0.0.1:{port_of(server)}/"
        async with _http.pool().post(url, b"", []) as resp:
            await resp.aread()
    assert resp.headers["x-a"] == "1, 2"
    assert resp.headers["x-long"] == "one two"


async def test_a_header_with_a_line_break_is_refused_without_echoing_its_value() -> None:
    with pytest.raises(ValueError, match="Authorization") as caught:
        await post("http://127.0.0.1:9/", [("Authorization", "Bearer sk-secret\r\nX-Evil: 1")])
    assert "sk-secret" not in str(caught.value)


def wire(body: bytes, sizes: list[int]) -> bytes:
    """``body`` as a chunked response, in chunks of ``sizes`` (cycled)."""
    out, at, i = [OK + b"Transfer-Encoding: chunked\r\n\r\n"], 0, 0
    while at < len(body):
        piece = body[at : at + sizes[i % len(sizes)]]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        at, i = at + len(piece), i + 1
    return b"".join(out) + b"0\r\n\r\n"


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=300),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    cuts=st.lists(st.integers(1, 50), max_size=30),
)
def test_any_split_of_a_chunked_reply_reads_back_the_body(
    body: bytes, sizes: list[int], cuts: list[int]
) -> None:
    data = wire(body, sizes)

    async def scenario() -> bytes:
        sock = _http1.Socket()
        conn = _http1.Connection(None, sock)  # type: ignore[arg-type]  # never written to

        async def feed() -> None:
            at = 0
            for cut in [*cuts, len(data)]:
                sock.data_received(data[at : at + cut])
                at += cut
                await asyncio.sleep(0)  # let the reader take what arrived so far
            sock.eof_received()

        feeder = asyncio.create_task(feed())
        status, headers, keep = await _http1.read_head(sock)
        got = await _http1.Response(conn, status, headers, keep).aread()
        await feeder
        return got

    assert asyncio.run(scenario()) == body


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusting(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts the test CA (and nothing else)."""
    context = ssl.create_default_context(cafile=None, cadata=ca.cert_pem.bytes().decode())
    monkeypatch.setattr(_http, "_TLS", context)


def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await read_request(reader):
        writer.write(OK + b"Content-Length: 6\r\n\r\nsecure")
        await writer.drain()
    writer.close()


@pytest.mark.usefixtures("trusting")
async def test_https_is_verified_and_its_connections_kept(ca: trustme.CA) -> None:
    async with await serve(answer, tls_server_context(ca)) as server:
        url = f"https://127.0.0.1:{port_of(server)}/v1"
        assert await post(url) == (200, b"secure")
        assert await post(url) == (200, b"secure")
        assert len(_http.pool()._idle[_http.Origin("https", "127.0.0.1", port_of(server))]) == 1


async def test_an_untrusted_certificate_fails_the_handshake(
    ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_http, "_TLS", ssl.create_default_context(cadata=trustme.CA().cert_pem
                                                                  .bytes().decode()))  # fmt: skip
    async with await serve(answer, tls_server_context(ca)) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await post(f"https://127.0.0.1:{port_of(server)}/v1")


@pytest.fixture
async def tunnel_proxy() -> AsyncIterator[tuple[int, list[bytes], list[bytes]]]:
    """An HTTP proxy that answers CONNECT (or refuses it, when told) and relays bytes."""
    seen: list[bytes] = []
    refuse: list[bytes] = []

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        dst.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        if refuse:
            writer.write(refuse[0])
            await writer.drain()
            writer.close()
            return
        host, port = head.split(b" ")[1].split(b":")
        up_r, up_w = await asyncio.open_connection(host.decode(), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        # Cancelled when the test ends while the client still holds its pooled connection.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)

    async with await serve(handle) as server:
        yield port_of(server), seen, refuse


@pytest.mark.usefixtures("trusting")
async def test_https_through_a_proxy_goes_through_a_connect_tunnel(
    ca: trustme.CA,
    tunnel_proxy: tuple[int, list[bytes], list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy_port, seen, _ = tunnel_proxy
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy_port}")
    for name in ("https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with await serve(answer, tls_server_context(ca)) as server:
        port = port_of(server)
        assert await post(f"https://127.0.0.1:{port}/v1") == (200, b"secure")
    request_line, *fields = seen[0].split(b"\r\n")
    assert request_line == f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz" in fields  # user:p@ss


async def test_a_proxy_refusing_the_tunnel_is_a_refused_connection(
    tunnel_proxy: tuple[int, list[bytes], list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_port, _, refuse = tunnel_proxy
    refuse.append(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
    for name in ("https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConnectionRefusedError, match="407"):
        await post("https://127.0.0.1:1/v1")


def sse_reply(text: str, *, end: bool) -> bytes:
    """A streamed completion as a chunked body; ``end``: the body ends after "[DONE]"."""
    events = [
        {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
    ]  # fmt: skip
    body = b"".join(b"data: %s\n\n" % json.dumps(e).encode() for e in events)
    body += b"data: [DONE]\n\n"
    head = OK + b"Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"%x\r\n%s\r\n" % (len(body), body) + (b"0\r\n\r\n" if end else b"")


async def stream_twice(port: int) -> list[str]:
    b = parse(
        f'[[backend]]\nid = "b"\nmodel = "openai/m"\napi_base = "http://127.0.0.1:{port}/v1"\n'
        'good_at = ["x"]\ncost = 0\n'
    ).backends[0]
    texts = []
    for _ in range(2):
        pieces: list[str] = []
        reply = await models.complete(
            b, [{"role": "user", "content": "hi"}], call=Call("subtask", "b", b.model), env={},
            timeout=30, retry=models.RetryPolicy(max_attempts=1), on_text=pieces.append,
        )  # fmt: skip
        assert "".join(pieces) == reply.text
        texts.append(reply.text)
    return texts


@pytest.mark.parametrize(("ends", "connections"), [(True, 1), (False, 2)])
async def test_a_stream_keeps_its_connection_when_the_body_ends_after_done(
    ends: bool, connections: int
) -> None:
    # A server that holds the body open after "[DONE]" still answers: its connection is
    # dropped after a short grace instead of being reused.
    opened: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(1)
        while await read_request(reader):
            writer.write(sse_reply("streamed", end=ends))
            await writer.drain()
        writer.close()

    async with await serve(handle) as server:
        assert await stream_twice(port_of(server)) == ["streamed", "streamed"]
    assert len(opened) == connections


async def test_a_stream_that_falls_silent_times_out() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK + b"Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await reader.read()  # silent until the client gives up

    server = await serve(handle)
    url = f"http://127.0.0.1:{port_of(server)}/"
    async with server, _http.pool().post(url, b"", []) as resp:
        resp.timeout = 0.2
        with pytest.raises(TimeoutError):
            await resp.aread()


async def test_a_timeout_on_a_pooled_connection_does_not_send_the_request_again() -> None:
    # A slow server is not a dead connection: the POST must reach it once, not once per
    # idle connection in the pool.
    received: list[int] = []
    slow = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            received.append(1)
            if slow.is_set():
                await reader.read()  # never answers
                break
            writer.write(OK + b"Content-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    async with await serve(handle) as server:
        url = f"http://127.0.0.1:{port_of(server)}/"
        async with anyio.create_task_group() as tg:  # three pooled connections
            for _ in range(3):
                tg.start_soon(post, url)
        assert len(_http.pool()._idle[_http.Origin("http", "127.0.0.1", port_of(server))]) == 3
        slow.set()
        received.clear()
        with pytest.raises(TimeoutError):
            async with _http.pool().post(url, b"{}", [], timeout=0.2) as resp:
                await resp.aread()
    assert len(received) == 1


async def test_a_reply_that_cannot_be_framed_closes_its_connection() -> None:
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK + b"Content-Length: 5, 6\r\n\r\nhello")
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()  # returns when the client lets go of the connection
        closed.set()
        writer.close()

    async with await serve(handle) as server:
        with pytest.raises(_http.ConnectionBroken):
            await post(f"http://127.0.0.1:{port_of(server)}/")
        await closed.wait()  # a leaked connection would keep this waiting


async def test_connections_to_an_address_send_without_delay() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK + b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    async with await serve(handle) as server:
        url = f"http://127.0.0.1:{port_of(server)}/"
        async with _http.pool().post(url, b"", []) as resp:
            raw = resp._conn.transport.get_extra_info("socket")
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            await resp.aread()


class _Pieces:
    """A response body arriving in the given pieces (what ``_events`` reads)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def _gen(self) -> Any:
        for piece in self._pieces:
            yield piece

    def aiter(self) -> Any:
        return self._gen()

    async def discard_rest(self, wait: float) -> None:
        pass


FRAMES = [  # how a server may write one event's JSON (``%s``) as SSE
    b"data: %s\n\n", b"data:%s\n\n", b"data: %s\r\n\r\n", b": ping\ndata: %s\n\n",
    b"event: chunk\ndata: %s\n\n", b"data:   %s\n\n",
]  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(
    texts=st.lists(st.text(max_size=12), min_size=1, max_size=6),
    frames=st.lists(st.sampled_from(FRAMES), min_size=1, max_size=6),
    cuts=st.lists(st.integers(1, 60), max_size=20),
    whole=st.booleans(),
)
def test_sse_events_read_the_same_however_they_arrive(
    texts: list[str], frames: list[bytes], cuts: list[int], whole: bool
) -> None:
    events = [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
              for t in texts]  # fmt: skip
    events.append({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}})
    framed = [frames[i % len(frames)] % json.dumps(e).encode() for i, e in enumerate(events)]
    framed.append(b"data: [DONE]\n\n")
    if whole:  # each event its own piece (the fast path's case)
        pieces = framed
    else:
        data, pieces, at = b"".join(framed), [], 0
        for cut in [*cuts, len(b"".join(framed))]:
            pieces.append(data[at : at + cut])
            at += cut
        pieces = [p for p in pieces if p]
    backend = parse('[[backend]]\nid = "b"\nmodel = "openai/m"\napi_base = "http://h/v1"\n'
                    'good_at = ["x"]\ncost = 0\n').backends[0]  # fmt: skip
    out = Outgoing(backend, [], None, 5.0)

    async def read() -> list[Any]:
        return [c async for c in _openai._events(out, _Pieces(pieces))]  # type: ignore[arg-type]

    chunks = asyncio.run(read())
    assert [c.text for c in chunks[:-1]] == texts
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2
