"""OpenAI-compatible HTTP front door: ``tanglebrain serve``.

``POST /v1/chat/completions`` runs one request through the router and answers in the
chat-completions format; ``GET /v1/models`` lists ``auto`` and the enabled backend ids
(``GET /v1/models/{id}`` gives one).
The mapping (model, messages, usage, the ``tanglebrain`` field, error codes) lives in
:mod:`tanglebrain.serve._wire`; this module does the HTTP:

* **bodies** are read up to ``max_body_bytes`` (413 as soon as more arrives; the rest
  is drained, not stored, so the client reads the 413 rather than a reset), must be
  ``application/json`` (415) and valid JSON (400, also for JSON nested too deeply to
  decode). No bad request stops the server.
* **stream**: the answer streams as ``chat.completion.chunk`` events, then a chunk
  with ``finish_reason`` and the ``tanglebrain`` field, a usage chunk when
  ``stream_options.include_usage``, and ``[DONE]``. The response starts with the
  answer's first delta (or after 15 s of quiet, with an SSE comment that repeats every
  15 s to keep the stream alive), so a failure before that is a plain HTTP error;
  after it, an ``{"error": …}`` event and no ``[DONE]``.
* **auth**: with a token, every request needs ``Authorization: Bearer TOKEN``
  (compared with ``hmac.compare_digest``); without one, any header is accepted.
* A client that disconnects cancels its run. Every run (ok, failed or interrupted) is
  handed to ``record`` after its response, on a worker thread; runs that finish while
  it writes are written together next, in one transaction.
* A request must arrive whole within ``request_timeout`` seconds of the connection
  opening or its previous response ending (408 after; see ``serve._protocol``).
* SIGINT/SIGTERM: stop accepting, let in-flight requests finish for up to the
  shutdown timeout, then cancel them (they are recorded as interrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tanglebrain.errors import TanglebrainError
from tanglebrain.orchestrator import Hooks, Request
from tanglebrain.roster import Roster
from tanglebrain.runtime import Limits
from tanglebrain.serve._asgi import (
    STOPPED,
    read_body,
    send_error,
    send_json,
    start,
    stopped,
    until_disconnect,
    until_done,
)
from tanglebrain.serve._protocol import DEFAULT_REQUEST_TIMEOUT_S
from tanglebrain.serve._server import run_server, uvicorn_config
from tanglebrain.serve._wire import (
    DONE,
    ApiError,
    Chat,
    ClientGone,
    Deltas,
    Pipe,
    chunk,
    completion,
    error_for,
    extension,
    finish_reason,
    load_json,
    parse_chat,
    sse,
    unknown_model,
    usage,
)
from tanglebrain.session import Session, finish, server_limits
from tanglebrain.trace import Run

DEFAULT_MAX_BODY_BYTES = 1 << 20
KEEPALIVE_S = 15.0
log = logging.getLogger("tanglebrain.serve")
__all__ = ["DEFAULT_MAX_BODY_BYTES", "ServeConfig", "create_app", "serve", "uvicorn_config"]


@dataclass(frozen=True)
class ServeConfig:
    """What the server needs; side effects (ledger) are passed in."""

    roster: Roster
    env: Mapping[str, str]
    state_dir: Path | None = None
    roster_dir: Path | None = None
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    record: Callable[[Sequence[Run]], None] | None = None
    on_done: Callable[[Run], None] | None = None


@dataclass
class _Completions:
    """The raw ASGI endpoint for ``POST /v1/chat/completions``."""

    config: ServeConfig
    # Shared by every request: a backend's max_concurrency holds for the whole server.
    limits: Limits = field(default_factory=server_limits)
    session: Session = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.config
        self.session = Session(
            cfg.roster, cfg.env, roster_dir=cfg.roster_dir, state_dir=cfg.state_dir,
            record=cfg.record, limits=self.limits, note=_log_note,
        )  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            raw = await read_body(scope, receive, self.config.max_body_bytes)
            chat = parse_chat(load_json(raw), self.config.roster)
        except ApiError as err:
            await send_error(send, err)
            return
        except ClientGone:
            return
        trace = Run(prompt=chat.request.prompt, origin="serve")
        started = delivered = False

        async def tracked(message: Message) -> None:
            nonlocal started, delivered
            started = started or message["type"] == "http.response.start"
            await send(message)
            # The last byte is out: only now does the run count as delivered (as on stdout).
            delivered = message["type"] == "http.response.body" and not message.get("more_body")

        try:
            if chat.stream:
                await self._stream(chat, trace, receive, tracked)
            else:
                await self._complete(chat, trace, receive, tracked)
        except anyio.get_cancelled_exc_class():
            # Only a stopping server cancels a request from outside (a forced stop, or the
            # shutdown timeout ran out). Tell the client so, rather than let uvicorn log a
            # traceback and send a bare 500; the run is recorded as interrupted below.
            if trace.error in (None, "cancelled"):
                trace.error = STOPPED
            try:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await stopped(send, started)
            except asyncio.CancelledError:
                # Cancelled again while saying so (a reader that stopped reading holds the
                # send): the forced stop goes on; there is nothing left to tell that client.
                pass
        finally:
            if trace.status == "running":
                trace.finish("interrupted")
            elif trace.status == "ok" and not delivered:  # the answer never reached the client
                trace.status, trace.error = "interrupted", trace.error or STOPPED
            with anyio.CancelScope(shield=True):
                await self._record(trace)

    async def _execute(self, request: Request, trace: Run, hooks: Hooks) -> BaseException | None:
        """Run the request; return the failure (None on success). Cancellation propagates."""
        try:
            await self.session.run(request, trace, hooks)
        except Exception as exc:  # the session finished the trace with its status
            if not isinstance(exc, TanglebrainError):
                log.exception("run %s failed", trace.id)
            return exc
        finish(trace)
        return None

    @contextlib.asynccontextmanager
    async def _running(
        self, chat: Chat, trace: Run, hooks: Hooks, receive: Receive
    ) -> AsyncIterator[asyncio.Task[BaseException | None]]:
        """The run as a task of its own, cancelled if the client goes away; over on exit.

        Plain asyncio tasks, not an anyio task group (``serve`` always runs on asyncio):
        a group with its two tasks cost ~0.25 ms of CPU per request, an eighth of a
        streamed one. Leaving the block early (the writer failed, the server stops)
        cancels the run; either way it has finished its trace when the block exits.
        """
        loop = asyncio.get_running_loop()
        run = loop.create_task(self._execute(chat.request, trace, hooks))
        watcher = loop.create_task(until_disconnect(receive, trace, run))
        try:
            yield run
        finally:
            if not watcher.done():
                watcher.cancel()
            elif not watcher.cancelled() and (failure := watcher.exception()) is not None:
                log.error("watching run %s for a disconnect failed", trace.id, exc_info=failure)
            if not run.done():
                run.cancel()
            await until_done(run)

    async def _complete(self, chat: Chat, trace: Run, receive: Receive, send: Send) -> None:
        async with self._running(chat, trace, Hooks(), receive) as run:
            await asyncio.wait([run])
        if run.cancelled():
            return  # the client went away
        if failure := run.result():
            err = error_for(failure)
            await send_error(send, err)
        else:
            await send_json(send, 200, completion(trace))

    async def _stream(self, chat: Chat, trace: Run, receive: Receive, send: Send) -> None:
        pipe = Pipe()
        started = False

        async def write(body: bytes, *, more: bool = True) -> None:
            nonlocal started
            if not started:
                started = True
                await start(send, 200, "text/event-stream", [(b"cache-control", b"no-cache")])
            await send({"type": "http.response.body", "body": body, "more_body": more})

        events = Deltas(trace)
        async with self._running(chat, trace, Hooks(pipe.put), receive) as run:
            run.add_done_callback(lambda _: pipe.close())
            first = True
            while (deltas := await pipe.take(KEEPALIVE_S)) is not None:
                if not deltas:
                    await write(b": keep-alive\n\n")
                    continue
                await write(events.events(deltas, first))
                first = False
        if run.cancelled():
            return  # the client went away
        failure = run.result()
        if failure is not None and not started:
            err = error_for(failure)
            await send_error(send, err)
            return
        await write(self._stream_tail(chat, trace, failure), more=False)

    def _stream_tail(self, chat: Chat, trace: Run, failure: BaseException | None) -> bytes:
        """What ends a stream that started: the error event, or the last chunks and [DONE]."""
        if failure is not None:
            return sse(error_for(failure).body())
        stop = [{"index": 0, "delta": {}, "finish_reason": finish_reason(trace)}]
        figures = trace.figures()
        body = chunk(trace, stop, tanglebrain=extension(trace, figures))
        if chat.include_usage:
            body += chunk(trace, [], usage=usage(figures))
        return body + DONE

    async def _record(self, trace: Run) -> None:
        if self.config.on_done is not None:
            self.config.on_done(trace)
        await self.session.keep(trace)


def _log_note(message: str, prefix: str) -> None:
    log.warning("%s: %s", prefix, message)


class _Auth:
    """Bearer-token check in front of every route."""

    def __init__(self, app: ASGIApp, token: str, limit: int) -> None:
        self.app, self.token, self.limit = app, token.encode(), limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                err = ApiError(401, "missing or wrong bearer token (Authorization: Bearer …)",
                               "invalid_api_key", "authentication_error",
                               headers={"www-authenticate": "Bearer"})  # fmt: skip
                with contextlib.suppress(ApiError, ClientGone):  # drained: no reset
                    await read_body(scope, receive, self.limit)
                await send_error(send, err)
                return
        await self.app(scope, receive, send)


_CHAT = "/v1/chat/completions"


def create_app(config: ServeConfig) -> ASGIApp:
    """The ASGI application for ``config``."""
    ids = ["auto", *(b.id for b in config.roster.enabled())]
    created = int(time.time())

    def entry(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": created, "owned_by": "tanglebrain"}

    async def models(request: HttpRequest) -> Response:
        return JSONResponse({"object": "list", "data": [entry(i) for i in ids]})

    async def model(request: HttpRequest) -> Response:
        model_id = request.path_params["model_id"]
        if model_id in ids:
            return JSONResponse(entry(model_id))
        return JSONResponse(unknown_model(model_id, ids).body(), status_code=404)

    async def http_error(request: HttpRequest, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "unknown_url", 405: "method_not_allowed"}.get(status, "internal_error")
        message = f"no route for {request.method} {request.url.path}"
        return JSONResponse(ApiError(status, message, code).body(), status_code=status)

    completions = _Completions(config)
    router = Starlette(
        routes=[
            Route(_CHAT, completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", model, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # Completions go straight to their endpoint: through Starlette's middleware and
        # router, every message of a stream passes two send wrappers (~5% of its CPU).
        # Anything else (other routes, wrong methods, lifespan) is Starlette's.
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == _CHAT:
            await completions(scope, receive, send)
        else:
            await router(scope, receive, send)

    if config.token:
        return _Auth(app, config.token, config.max_body_bytes)
    return app


async def serve(
    config: ServeConfig,
    sock: socket.socket,
    *,
    shutdown_timeout: int = 30,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    on_ready: Callable[[], None] = lambda: None,
    lifeline: int | None = None,
) -> None:
    """Serve ``config`` on the bound ``sock`` until SIGINT/SIGTERM (or cancellation).

    Args:
        config: what to serve.
        sock: a bound, listening socket.
        shutdown_timeout: seconds in-flight requests get to finish once stopping.
        request_timeout: seconds a client has to send a whole request (0: no limit; see
            ``serve._protocol``).
        on_ready: called once the server accepts connections.
        lifeline: a worker's end of its supervisor's pipe: EOF on it stops the server
            gracefully, and a second stop signal forces the stop (see ``serve._workers``).
    """
    await run_server(
        create_app(config), sock, shutdown_timeout=shutdown_timeout,
        request_timeout=request_timeout, on_ready=on_ready, lifeline=lifeline,
    )  # fmt: skip
