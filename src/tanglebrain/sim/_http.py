"""HTTP plumbing of the simulator: routes, a fast-stopping uvicorn server and raw ASGI writes.

:func:`build_app` routes ``POST /v1/chat/completions`` to a handler and ``GET /v1/models``
to the list of kinds; :func:`server_config` and :class:`Server` run it
on loopback. The writers (:func:`raw`, :func:`send_events`, :func:`drop`) send responses one
ASGI message at a time, so a response can be cut or the connection dropped on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tanglebrain._uvicorn import quiet_config
from tanglebrain.sim._protocol import FINGERPRINT, sse
from tanglebrain.sim._scripts import KINDS, SimError

_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})

ChatHandler = Callable[[dict[str, Any], dict[str, str], Scope, Receive, Send], Awaitable[None]]
"""Answers one chat request: JSON body, headers without credentials, then the ASGI triple."""


class JSON(JSONResponse):
    """A JSON response with a lone surrogate (half an emoji) as its escape, as servers send it.

    Starlette's own encoding to UTF-8 would fail on one.
    """

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


class Dropped(Exception):
    """Raised inside the app to make uvicorn close the connection mid-response."""


class _QuietDrops(logging.Filter):
    """Hides uvicorn's error log for the connections we drop on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Dropped))


def install_log_filter() -> None:
    """Silence uvicorn's error log for deliberately dropped connections (once per process)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


class Server(uvicorn.Server):
    """uvicorn server that reports startup, leaves signals to its owner and stops fast.

    uvicorn polls for exit every 0.1 s and sleeps 0.1 s while shutting down; test suites
    start hundreds of simulators, so this one waits on an event and polls briefly.
    """

    def __init__(self, config: uvicorn.Config, started: asyncio.Event) -> None:
        super().__init__(config)
        self._started_event = started
        self.exit_event = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then signal ``started`` (also when startup fails)."""
        try:
            await super().startup(sockets)
        finally:
            self._started_event.set()

    async def main_loop(self) -> None:
        """Wait for ``exit_event`` instead of polling."""
        await self.exit_event.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close listeners and idle connections now; cancel what is still running after 2 s."""
        for server in self.servers:
            server.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()  # closes idle keep-alive connections now
        with anyio.move_on_after(self.config.timeout_graceful_shutdown or 2):
            while state.connections or state.tasks:
                await asyncio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Leave signal handling to the owner of the event loop."""
        yield


def server_config(app: ASGIApp) -> uvicorn.Config:
    """The uvicorn settings of the simulator: the shared quiet ones, unlimited concurrency."""
    return quiet_config(app, limit_concurrency=None, date_header=False, timeout_graceful_shutdown=2)


# --- routes ------------------------------------------------------------------------------


class _ChatEndpoint:
    """The raw ASGI endpoint for chat completions (it must be able to drop connections)."""

    def __init__(self, handle: ChatHandler) -> None:
        self._handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):  # deep nesting exhausts the decoder's stack
            body = None
        if not isinstance(body, dict):
            err = SimError(400, "simulator: the request body must be a JSON object")
            await error_response(err)(scope, receive, send)
            return
        headers = {k: v for k, v in request.headers.items() if k not in _HIDDEN_HEADERS}
        await self._handle(body, headers, scope, receive, send)


def error_response(err: SimError) -> Response:
    """The JSON response of an OpenAI-shaped error."""
    return JSON(err.body(), status_code=err.status, headers=err.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = f"simulator: no route for {request.method} {request.url.path}"
    return error_response(SimError(status, message, code="unknown_url" if status == 404 else None))


async def _models(request: Request) -> Response:
    data = [{"id": k, "object": "model", "created": 0, "owned_by": FINGERPRINT} for k in KINDS]
    return JSON({"object": "list", "data": data})


def build_app(handle: ChatHandler) -> Starlette:
    """The simulator's ASGI app: chat completions go to ``handle``, models list the kinds."""
    return Starlette(
        routes=[
            Route(path, _ChatEndpoint(handle), methods=["POST"])
            for path in ("/v1/chat/completions", "/chat/completions")
        ]
        + [Route(path, _models, methods=["GET"]) for path in ("/v1/models", "/models")],
        exception_handlers={HTTPException: _http_error},
    )


# --- raw writes --------------------------------------------------------------------------


async def _start(send: Send, status: int, content_type: str, length: int | None = None) -> None:
    headers = [(b"content-type", content_type.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    else:
        headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def raw(send: Send, status: int, content_type: str, body: bytes) -> None:
    """Send a whole response with this status, content type and body."""
    await _start(send, status, content_type, len(body))
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_events(
    send: Send, events: list[dict[str, Any] | str], cut: bool = False, gap: float = 0.0
) -> None:
    """Send SSE events one write each, ``gap`` seconds apart; ``cut`` breaks the connection."""
    await _start(send, 200, "text/event-stream")
    for i, event in enumerate(events):
        if gap and i:
            await anyio.sleep(gap)
        await send({"type": "http.response.body", "body": sse(event), "more_body": True})
    if cut:
        raise Dropped
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def drop(send: Send) -> None:
    """Promise a body longer than what is sent, then make uvicorn close the socket."""
    await _start(send, 200, "application/json", 4096)
    body = b'{"id": "chatcmpl-sim-drop", "object": "chat.comp'
    await send({"type": "http.response.body", "body": body, "more_body": True})
    raise Dropped
