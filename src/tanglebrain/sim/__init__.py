"""A loopback OpenAI-compatible simulator with scripted models (tests, benchmarks, demo).

A real HTTP server (starlette on uvicorn) on 127.0.0.1 that speaks the OpenAI
chat-completions protocol: plain replies, tool calls and SSE streaming. The request's
``model`` string picks a scripted behaviour (see :mod:`tanglebrain.sim._spec` for the
grammar), e.g. ``worker:latency=0.3``, ``fail:status=429,retry_after=1``,
``orchestrator:fanout=8``. Every response carries ``system_fingerprint:
"tanglebrain-sim"``; nothing it returns is a model's output.

Use ``async with Simulator() as sim`` inside an event loop, or
``Simulator().start_in_thread()`` from synchronous code, and point litellm at
``openai/<spec>`` with ``api_base=sim.base_url``.

This module is the public API: the :class:`Simulator` (lifecycle and records of what it
received) and :func:`main`. The pieces: :mod:`~tanglebrain.sim._http` (routes, server, raw
writes), :mod:`~tanglebrain.sim._respond` (answering one request per its spec),
:mod:`~tanglebrain.sim._protocol` (response JSON), :mod:`~tanglebrain.sim._spec` (the spec
grammar), :mod:`~tanglebrain.sim._scripts` (scripted texts and failures) and
:mod:`~tanglebrain.sim._orchestrator` (the scripted orchestrator).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
from collections import Counter, deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send

from tanglebrain.sim._http import (
    Server,
    build_app,
    error_response,
    install_log_filter,
    server_config,
)
from tanglebrain.sim._protocol import FINGERPRINT
from tanglebrain.sim._respond import Exchange, respond
from tanglebrain.sim._scripts import SimError, SimReply, parse_spec
from tanglebrain.sockets import bind_socket, listen_error

__all__ = ["FINGERPRINT", "RecordedRequest", "SimReply", "Simulator", "main"]


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
        self._app = build_app(self._handle)
        self._server: Server | None = None
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
        install_log_filter()
        sock = bind_socket(self._host, self._requested_port)
        self._sock, self._port = sock, sock.getsockname()[1]
        config = server_config(self._app)
        started = asyncio.Event()
        self._closing = anyio.Event()
        self._server = server = Server(config, started)
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

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> str:
        """Record the request and count it; return its model string."""
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
        return model

    async def _handle(
        self,
        body: dict[str, Any],
        headers: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        model = self._record(body, headers)
        nth, cid = self._counts[model], f"chatcmpl-sim-{self._seq}"
        self._in_flight[model] += 1
        self._in_flight_total += 1
        try:
            self._in_flight_max[model] = max(self._in_flight_max[model], self._in_flight[model])
            self._in_flight_total_max = max(self._in_flight_total_max, self._in_flight_total)
            self._notify()
            exchange = Exchange(body, nth, cid, scope, receive, send)
            await respond(model, exchange, self._pop_script, self._closing)
        except SimError as err:
            await error_response(err)(scope, receive, send)
        finally:
            self._in_flight[model] -= 1
            self._in_flight_total -= 1


def _spec_key(model: str) -> str:
    return model.removeprefix("openai/")


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
        raise listen_error(host, port, exc) from exc
