"""The ASGI side of one ``serve`` request: bodies in, responses out, its tasks' ends.

Written against raw ASGI messages (no framework) because a streamed answer sends one
message per delta: each layer around ``send`` costs CPU on every one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

from tanglebrain.serve._wire import ApiError, ClientGone, json_bytes, sse
from tanglebrain.trace import Run

DRAIN_CAP = 64 << 20  # an oversized body is read (and dropped) up to this, then cut
STOPPED = "the server stopped before this run finished"


async def start(send: Send, status: int, ctype: str, extra: list[tuple[bytes, bytes]]) -> None:
    """Start the response: its status and headers (``content-type`` first)."""
    headers = [(b"content-type", ctype.encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def send_json(send: Send, status: int, obj: Any, headers: Mapping[str, str] = {}) -> None:
    """Send a whole JSON response."""
    body = json_bytes(obj)
    extra = [(b"content-length", str(len(body)).encode())]
    extra += [(k.encode(), v.encode()) for k, v in headers.items()]
    await start(send, status, "application/json", extra)
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, err: ApiError) -> None:
    """Send ``err`` as a whole JSON response, with its headers."""
    await send_json(send, err.status, err.body(), err.headers)


async def stopped(send: Send, started: bool) -> None:
    """Tell the client the server stopped its run: a 503, or an error event mid-stream."""
    err = ApiError(503, STOPPED, "server_shutting_down", "server_error")
    if not started:
        await send_error(send, err)
        return
    event = sse(err.body())  # and no [DONE]
    await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refusing (with 413) more than ``limit`` bytes while reading.

    An oversized body is drained, not stored, so the client reads the 413 instead of
    a reset connection.

    Raises:
        ApiError: 413 when the body is too large.
        ClientGone: the client went away.
    """
    headers = dict(scope["headers"])
    declared = headers.get(b"content-length", b"0")
    too_big = not declared.isdigit() or int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        size += len(message.get("body", b""))
        too_big = too_big or size > limit
        if not too_big:
            chunks.append(message.get("body", b""))
        if not message.get("more_body") or size > DRAIN_CAP:
            break
    if too_big:
        raise ApiError(413, f"request body too large: the limit is {limit} bytes "
                       "(--max-body-bytes)", "request_too_large")  # fmt: skip
    ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if ctype != b"application/json":
        raise ApiError(415, "Content-Type must be application/json", "unsupported_media_type")
    return b"".join(chunks)


async def until_done(task: asyncio.Task[Any]) -> None:
    """Wait for ``task`` to end, even when the wait is cancelled (then re-raise that after).

    A stopping server may cancel a request twice (uvicorn at its shutdown timeout, then
    ``serve`` as it settles): the run must still finish its trace before the request
    records it.
    """
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
            task.cancel()
    if cancelled:
        raise asyncio.CancelledError


async def until_disconnect(receive: Receive, trace: Run, run: asyncio.Task[Any]) -> None:
    """Cancel ``run`` when the client goes away (unless it is over already)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    if not run.done():
        trace.error = "client disconnected"
        run.cancel()
