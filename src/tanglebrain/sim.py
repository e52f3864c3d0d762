"""A loopback OpenAI-compatible simulator with scripted models (tests, benchmarks, demo).

A real HTTP server (starlette on uvicorn) on 127.0.0.1 that speaks the OpenAI
chat-completions protocol: plain replies, tool calls and SSE streaming. The request's
``model`` string picks a scripted behaviour (see :mod:`tanglebrain.sim_scripts` for the
grammar), e.g. ``worker:latency=0.3``, ``fail:status=429,retry_after=1``,
``orchestrator:fanout=8``. Every response carries ``system_fingerprint:
"tanglebrain-sim"``; nothing it returns is a model's output.

Use ``async with Simulator() as sim`` inside an event loop, or
``Simulator().start_in_thread()`` from synchronous code, and point litellm at
``openai/<spec>`` with ``api_base=sim.base_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import threading
from collections import Counter, deque
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tanglebrain.errors import UsageError
from tanglebrain.sim_scripts import (
    FINGERPRINT,
    KINDS,
    Reply,
    SimError,
    SimReply,
    chunks,
    completion,
    compose,
    envelope,
    failure,
    parse_spec,
    usage,
)

__all__ = ["FINGERPRINT", "RecordedRequest", "SimReply", "Simulator", "main"]

_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
_Pause = Literal["elapsed", "disconnected", "closing"]


@dataclass(frozen=True)
class RecordedRequest:
    """One chat request as the simulator received it.

    Attributes:
        model: the ``model`` string (the spec).
        messages: the ``messages`` list.
        tools: the ``tools`` list, or None.
        stream: whether ``stream`` was true.
        body: the whole JSON body.
        headers: request headers (lower-case names) without credentials.
    """

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    stream: bool
    body: dict[str, Any]
    headers: dict[str, str]


class _Dropped(Exception):
    """Raised inside the app to make uvicorn close the connection mid-response."""


class _QuietDrops(logging.Filter):
    """Hides uvicorn's error log for the connections we drop on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Dropped))


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


class _Server(uvicorn.Server):
    """uvicorn server that reports startup, leaves signals to its owner and stops fast.

    uvicorn polls for exit every 0.1 s and sleeps 0.1 s while shutting down; test suites
    start hundreds of simulators, so this one waits on an event and polls briefly.
    """

    def __init__(self, config: uvicorn.Config, started: asyncio.Event) -> None:
        super().__init__(config)
        self._started_event = started
        self.exit_event = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self._started_event.set()

    async def main_loop(self) -> None:
        await self.exit_event.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
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
        yield


class _ChatEndpoint:
    """The raw ASGI endpoint for chat completions (it must be able to drop connections)."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            err = SimError(400, "simulator: the request body must be a JSON object")
            await _error_response(err)(scope, receive, send)
            return
        headers = {k: v for k, v in request.headers.items() if k not in _HIDDEN_HEADERS}
        await self._sim._handle(body, headers, scope, receive, send)


def _error_response(err: SimError) -> Response:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = f"simulator: no route for {request.method} {request.url.path}"
    return _error_response(SimError(status, message, code="unknown_url" if status == 404 else None))


async def _models(request: Request) -> Response:
    data = [{"id": k, "object": "model", "created": 0, "owned_by": FINGERPRINT} for k in KINDS]
    return JSONResponse({"object": "list", "data": data})


class Simulator:
    """The loopback OpenAI-compatible server.

    Attributes:
        requests: every chat request received, in arrival order.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._port = port
        self._seq = 0
        self.requests: list[RecordedRequest] = []
        self._counts: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._in_flight_max: Counter[str] = Counter()
        self._in_flight_total = 0
        self._in_flight_total_max = 0
        self._scripts: dict[str, deque[SimReply]] = {}
        self._watchers: list[tuple[int, str | None, asyncio.Event]] = []
        self._app = Starlette(
            routes=[
                Route(path, _ChatEndpoint(self), methods=["POST"])
                for path in ("/v1/chat/completions", "/chat/completions")
            ]
            + [Route(path, _models, methods=["GET"]) for path in ("/v1/models", "/models")],
            exception_handlers={HTTPException: _http_error},
        )
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._closing: anyio.Event | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}/v1"

    async def __aenter__(self) -> Simulator:
        """Start serving in the running event loop; return once connections are accepted.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: the server is already running.
        """
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop promptly: hung and sleeping requests are answered 503 and closed."""
        await self._stop()

    def start_in_thread(self) -> Simulator:
        """Start serving on a private event loop in a daemon thread; return when ready.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: the server is already running or failed to start.
        """
        if self._thread is not None:
            raise RuntimeError("simulator already running in a thread")
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._thread_main(ready))
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name="tanglebrain-sim", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30) or errors:
            self._thread = None
            if errors:
                raise errors[0]
            raise RuntimeError("simulator thread did not start")
        return self

    def stop(self) -> None:
        """Stop the thread-mode server (no-op when it is not running)."""
        thread, loop, stop = self._thread, self._thread_loop, self._thread_stop
        if thread is None or loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        self._thread = self._thread_loop = self._thread_stop = None

    async def _thread_main(self, ready: threading.Event) -> None:
        await self._start()
        self._thread_loop = asyncio.get_running_loop()
        self._thread_stop = asyncio.Event()
        ready.set()
        await self._thread_stop.wait()
        await self._stop()

    async def _start(self) -> None:
        if self._server is not None:
            raise RuntimeError("simulator already running")
        _install_log_filter()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # proto must be explicit: asyncio sets TCP_NODELAY on accepted sockets only when
        # proto == IPPROTO_TCP, and without it every response stalls ~40 ms (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            if sys.platform != "win32":  # on Windows it would allow stealing the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._requested_port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        self._sock, self._port = sock, sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            backlog=2048,
            limit_concurrency=None,
            access_log=False,
            log_level="warning",
            log_config=None,
            lifespan="off",
            ws="none",
            http="auto",  # httptools when installed, else h11
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=2,
        )
        started = asyncio.Event()
        self._closing = anyio.Event()
        self._server = server = _Server(config, started)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="tanglebrain-sim")
        await started.wait()
        if self._task.done() or not server.started:
            task = self._task
            await self._stop()
            error = None if task.cancelled() or not task.done() else task.exception()
            raise RuntimeError("simulator failed to start") from error

    async def _stop(self) -> None:
        server, task, closing = self._server, self._task, self._closing
        if server is None or task is None:
            return
        if closing is not None:
            closing.set()
        server.should_exit = True
        server.exit_event.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=5)
        except Exception:  # timed out or crashed: force it
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        finally:
            if not task.done():
                server.force_exit = True
                task.cancel()
            if self._sock is not None:
                self._sock.close()
            self._server = self._task = self._sock = self._closing = None

    # --- records -----------------------------------------------------------------------

    def in_flight_max(self, model: str | None = None) -> int:
        """Return the most concurrent in-flight requests seen, per model string or overall."""
        if model is None:
            return self._in_flight_total_max
        return self._in_flight_max[_spec_key(model)]

    def in_flight(self, model: str | None = None) -> int:
        """Return the number of requests in flight now, per model string or overall."""
        return self._in_flight_total if model is None else self._in_flight[_spec_key(model)]

    async def wait_in_flight(self, n: int, model: str | None = None) -> None:
        """Return once at least ``n`` requests (of ``model``, or overall) are in flight.

        For ``async with`` mode: call it from the event loop the simulator runs in.
        """
        watcher = (n, None if model is None else _spec_key(model), asyncio.Event())
        self._watchers.append(watcher)
        try:
            self._notify()
            await watcher[2].wait()
        finally:
            self._watchers.remove(watcher)

    def _notify(self) -> None:
        for n, model, event in self._watchers:
            if self.in_flight(model) >= n:
                event.set()

    def count(self, model: str) -> int:
        """Return how many chat requests arrived for this exact model string."""
        return self._counts[_spec_key(model)]

    def script(self, model: str, replies: list[SimReply]) -> None:
        """Queue replies for a ``script`` spec (exact string, e.g. ``script:id=a``).

        Raises:
            ValueError: ``model`` is not a valid ``script`` spec.
        """
        key = _spec_key(model)
        try:
            kind = parse_spec(key).kind
        except SimError as exc:
            raise ValueError(exc.message) from exc
        if kind != "script":
            raise ValueError(f"simulator: {model!r} is not a 'script' model spec")
        self._scripts.setdefault(key, deque()).extend(replies)

    def reset(self) -> None:
        """Clear records, counters and script queues."""
        self.requests.clear()
        self._counts.clear()
        self._in_flight_max.clear()
        self._in_flight_total_max = self._in_flight_total
        self._in_flight_max.update(+self._in_flight)
        self._scripts.clear()

    def _pop_script(self, model: str) -> SimReply | None:
        queue = self._scripts.get(model)
        return queue.popleft() if queue else None

    # --- request handling --------------------------------------------------------------

    async def _handle(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        raw_model = body.get("model")
        model = raw_model if isinstance(raw_model, str) else ""
        messages, tools = body.get("messages"), body.get("tools")
        self.requests.append(
            RecordedRequest(
                model=model,
                messages=messages if isinstance(messages, list) else [],
                tools=tools if isinstance(tools, list) else None,
                stream=body.get("stream") is True,
                body=body,
                headers=headers,
            )
        )
        self._counts[model] += 1
        self._seq += 1
        nth, cid = self._counts[model], f"chatcmpl-sim-{self._seq}"
        self._in_flight[model] += 1
        self._in_flight_total += 1
        try:
            self._in_flight_max[model] = max(self._in_flight_max[model], self._in_flight[model])
            self._in_flight_total_max = max(self._in_flight_total_max, self._in_flight_total)
            self._notify()
            await self._respond(model, nth, cid, body, scope, receive, send)
        except SimError as err:
            await _error_response(err)(scope, receive, send)
        finally:
            self._in_flight[model] -= 1
            self._in_flight_total -= 1

    async def _respond(
        self,
        model: str,
        nth: int,
        cid: str,
        body: dict[str, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        spec = parse_spec(model)
        latency = spec.num("latency", 0.0)
        kind = spec.kind
        if kind == "hang" or latency > 0:
            outcome = await self._pause(receive, None if kind == "hang" else latency)
            if outcome == "disconnected":
                return
            if outcome == "closing":
                raise SimError(
                    503, "simulator: shutting down", type="server_error", code="simulator_shutdown"
                )
        stream = body.get("stream") is True
        if kind == "drop" or (kind == "cut" and not stream):
            await _drop(send)
        if kind == "fail":
            times = spec.int_opt("times")
            if times is None or nth <= times:
                raise failure(spec)
            kind = spec.str_opt("then", "worker")
        if kind == "malformed":
            junk = "<html>simulated malformed body</html>"
            if stream:
                await _send_events(send, [junk, "[DONE]"])
            else:
                await _raw(send, 200, "application/json", junk.encode())
            return
        if kind == "empty":
            payload = envelope(
                cid, spec, "chat.completion.chunk" if stream else "chat.completion", []
            )
            payload["usage"] = usage(body, spec, Reply(""))
            if stream:
                await _send_events(send, [payload, "[DONE]"])
            else:
                await JSONResponse(payload)(scope, receive, send)
            return
        reply = compose(kind, spec, body, self._pop_script)
        used = usage(body, spec, reply)
        if kind == "cut":
            await _send_events(send, list(chunks(cid, spec, reply)[:2]), cut=True)
        elif stream:
            include = _dig_bool(body, "stream_options", "include_usage")
            events: list[dict[str, Any] | str] = [
                {**chunk, "usage": None} if include else chunk for chunk in chunks(cid, spec, reply)
            ]
            if include:
                events.append({**envelope(cid, spec, "chat.completion.chunk", []), "usage": used})
            await _send_events(send, [*events, "[DONE]"])
        else:
            await JSONResponse(completion(cid, spec, reply, used))(scope, receive, send)

    async def _pause(self, receive: Receive, seconds: float | None) -> _Pause:
        """Wait ``seconds`` (None: forever) unless the client leaves or the server stops."""
        closing = self._closing
        outcome: list[_Pause] = []
        async with anyio.create_task_group() as tg:

            async def client_gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                outcome.append("disconnected")
                tg.cancel_scope.cancel()

            async def server_closing() -> None:
                if closing is not None:
                    await closing.wait()
                    outcome.append("closing")
                    tg.cancel_scope.cancel()

            tg.start_soon(client_gone)
            tg.start_soon(server_closing)
            if seconds is None:
                await anyio.sleep_forever()
            else:
                await anyio.sleep(seconds)
            tg.cancel_scope.cancel()
        return outcome[0] if outcome else "elapsed"


# --- wire format -------------------------------------------------------------------------


def _spec_key(model: str) -> str:
    return model.removeprefix("openai/")


def _dig_bool(body: Mapping[str, Any], key: str, sub: str) -> bool:
    value = body.get(key)
    return isinstance(value, dict) and value.get(sub) is True


def _sse(event: dict[str, Any] | str) -> bytes:
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\n\n".encode()


async def _start(send: Send, status: int, content_type: str, length: int | None = None) -> None:
    headers = [(b"content-type", content_type.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    else:
        headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _raw(send: Send, status: int, content_type: str, body: bytes) -> None:
    await _start(send, status, content_type, len(body))
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_events(send: Send, events: list[dict[str, Any] | str], cut: bool = False) -> None:
    """Send SSE events one write each; with ``cut``, break the connection afterwards."""
    await _start(send, 200, "text/event-stream")
    for event in events:
        await send({"type": "http.response.body", "body": _sse(event), "more_body": True})
    if cut:
        raise _Dropped
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _drop(send: Send) -> None:
    """Promise a body longer than what is sent, then make uvicorn close the socket."""
    await _start(send, 200, "application/json", 4096)
    body = b'{"id": "chatcmpl-sim-drop", "object": "chat.comp'
    await send({"type": "http.response.body", "body": body, "more_body": True})
    raise _Dropped


# --- command line ------------------------------------------------------------------------


async def _serve_until_signal(host: str, port: int) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        async with Simulator(host, port) as sim:
            line = f"tanglebrain simulator (simulated backends) listening on {sim.base_url}"
            print(line, file=sys.stderr, flush=True)
            await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def main(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the simulator until Ctrl-C (blocking; ``tanglebrain sim --port P``).

    Args:
        host: address to bind, loopback by default.
        port: TCP port to bind (0 picks a free one).

    Raises:
        UsageError: the address cannot be bound (e.g. the port is in use).
    """
    try:
        asyncio.run(_serve_until_signal(host, port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            fix="pick another --port",
        ) from exc
