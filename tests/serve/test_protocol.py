"""``serve``'s HTTP protocol: every request must arrive whole in time; answering may take long.

The server runs in the test's event loop (``serve``'s uvicorn server and settings) on a
loopback socket; clients are raw sockets, since the point is clients that send too little, too
slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import pytest
from anyio.abc import SocketStream
from starlette.types import Receive, Scope, Send

from tanglebrain.serve import uvicorn_config
from tanglebrain.serve._server import _Server
from tanglebrain.sockets import bind_socket

LIMIT = 0.3  # the deadline under test: each test takes about this long, or twice
BODY = b'{"model": "auto"}'


def request(body: bytes = BODY, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n"
    return head.encode() + body


@dataclass
class App:
    """Answers each request with the body it read, after ``think`` seconds.

    ``early``: answers 413 at once instead, without reading the rest of the body.
    """

    think: float = 0.0
    early: bool = False
    seen: list[str] = field(default_factory=list)  # the ASGI messages it received

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.early:
            self.seen.append((await receive())["type"])
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-length", b"2")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b"no"})
            return
        body = b""
        while True:
            message = await receive()
            self.seen.append(message["type"])
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await anyio.sleep(self.think)
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[App, int]]:
    options = {"think": 0.0, "early": False, "limit": LIMIT, **getattr(request, "param", {})}
    app = App(options["think"], options["early"])
    sock = bind_socket("127.0.0.1", 0)
    ready = asyncio.Event()
    server = _Server(uvicorn_config(app, request_timeout=options["limit"]), ready.set)
    # A plain task, not a task group: the fixture's setup and teardown run in different tasks.
    task = asyncio.create_task(server.serve([sock]))
    with anyio.fail_after(30):
        await ready.wait()
    yield app, sock.getsockname()[1]
    server.should_exit = True
    await task


async def read_all(stream: SocketStream) -> bytes:
    """Everything until the server closes the connection (bounded, so a bug cannot hang)."""
    out = b""
    with anyio.fail_after(30):
        try:
            while True:
                out += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return out


async def response(stream: SocketStream) -> bytes:
    """One whole response (its head and its Content-Length body)."""
    data = b""
    with anyio.fail_after(30):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
        head, _, body = data.partition(b"\r\n\r\n")
        size = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < size:
            body += await stream.receive()
    return head + b"\r\n\r\n" + body


def timed_out(reply: bytes) -> bool:
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.startswith(b"HTTP/1.1 408 ") and json.loads(body)["error"]["code"] == (
        "request_timeout"
    )


async def test_a_connection_that_sends_nothing_is_closed(server: tuple[App, int]) -> None:
    async with await anyio.connect_tcp("127.0.0.1", server[1]) as stream:
        assert await read_all(stream) == b""  # closed, quietly: nothing was asked


@pytest.mark.parametrize(
    "sent",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n",  # a head that never ends
        b"P",  # one byte of it
        request(b'{"mod', declared=len(BODY)),  # a body that never ends
    ],
    ids=["head", "byte", "body"],
)
async def test_a_request_that_never_arrives_whole_gets_408(
    server: tuple[App, int], sent: bytes
) -> None:
    app, port = server
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(sent)
        assert timed_out(await read_all(stream))
    if app.seen:  # the body case: its app was waiting for the rest, and was told
        assert app.seen == ["http.request", "http.disconnect"]


async def test_a_trickling_client_is_cut_at_the_deadline_not_at_each_byte(
    server: tuple[App, int],
) -> None:
    # A byte every LIMIT / 3 never leaves the connection idle, yet the head is not whole
    # in time: a timer reset by every byte (like a keep-alive one) would never fire.
    async with await anyio.connect_tcp("127.0.0.1", server[1]) as stream:
        reply = b""
        with anyio.fail_after(30):
            for byte in request():
                try:
                    await stream.send(bytes([byte]))
                except (anyio.BrokenResourceError, OSError):
                    break
                with anyio.move_on_after(LIMIT / 3):
                    reply += await stream.receive()
                    break
        reply += await read_all(stream)
    assert timed_out(reply)


@pytest.mark.parametrize("server", [{"think": 2 * LIMIT}], indirect=True)
@pytest.mark.parametrize("pipelined", [False, True], ids=["one", "pipelined"])
async def test_answering_may_take_longer_than_the_deadline(
    server: tuple[App, int], pipelined: bool
) -> None:
    # Each answer takes twice the deadline. Pipelined (two requests in one write): the
    # second waits in line, unread, and is timed from the end of the first one's answer.
    # Then the idle connection closes.
    async with await anyio.connect_tcp("127.0.0.1", server[1]) as stream:
        await stream.send(request() + request(b"again") if pipelined else request())
        reply = await response(stream)
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(BODY)
        if pipelined:
            assert (await response(stream)).endswith(b"again")
        assert await read_all(stream) == b""


@pytest.mark.parametrize("server", [{"think": 2 * LIMIT}], indirect=True)
@pytest.mark.parametrize("ahead", [1, 2])
@pytest.mark.parametrize(
    "late", [b"P", request(b'{"mod', declared=len(BODY))], ids=["head", "body"]
)
async def test_a_late_pipelined_request_never_cuts_the_answers_before_it(
    server: tuple[App, int], ahead: int, late: bytes
) -> None:
    # Whole requests, then the start of one more in the same write, and nothing else: the
    # whole ones are answered in full, each in its time; the late one, timed from the end
    # of the answer before it, gets its 408.
    app, port = server
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request() * ahead + late)
        for _ in range(ahead):
            assert (await response(stream)).endswith(BODY)
        assert timed_out(await read_all(stream))
    # The whole requests' apps were never told their client left; the late body's app was.
    told = ["http.request", "http.disconnect"] if late != b"P" else []
    assert app.seen == ["http.request"] * ahead + told


@pytest.mark.parametrize("server", [{"early": True}], indirect=True)
@pytest.mark.parametrize("rest", [b"", b"x" * 97], ids=["never", "after-the-answer"])
async def test_a_request_answered_early_gets_no_408_and_its_connection_ends(
    server: tuple[App, int], rest: bytes
) -> None:
    # Answered (413) before its body came. The rest of the body never comes: it is late,
    # and the connection closes, but no second response follows the first. Or it comes
    # after the answer: the connection is then idle, and closes at the deadline.
    async with await anyio.connect_tcp("127.0.0.1", server[1]) as stream:
        await stream.send(request(b"abc", declared=100))
        reply = await response(stream)
        with contextlib.suppress(anyio.BrokenResourceError, OSError):
            await stream.send(rest)  # (on a stalled machine the deadline may be past)
        reply += await read_all(stream)
    assert reply.startswith(b"HTTP/1.1 413 ") and reply.count(b"HTTP/1.1") == 1


@pytest.mark.parametrize("server", [{"limit": 0}], indirect=True)
async def test_zero_means_no_deadline(server: tuple[App, int]) -> None:
    async with await anyio.connect_tcp("127.0.0.1", server[1]) as stream:
        whole = request()
        await stream.send(whole[:20])
        await anyio.sleep(2 * LIMIT)  # a slow client: more than the deadline would allow
        await stream.send(whole[20:])
        assert (await response(stream)).endswith(BODY)
