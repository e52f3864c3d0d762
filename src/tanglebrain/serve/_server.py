"""The uvicorn side of ``serve``: readiness, signals, graceful and forced stops.

A plain uvicorn re-raises the stop signal and abandons in-flight requests on a forced
stop; here a stop by signal exits 0, a ``--workers`` worker takes its signals from its
supervisor, and requests left running are cancelled so that they answer 503 and are
recorded before the event loop ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import FrameType

import anyio
import uvicorn
from starlette.types import ASGIApp

from tanglebrain._uvicorn import quiet_config
from tanglebrain.serve._protocol import DEFAULT_REQUEST_TIMEOUT_S, protocol

SETTLE_S = 10.0  # for runs cut by a stop to answer 503 and be recorded


class _Server(uvicorn.Server):
    """uvicorn that reports readiness and ends quietly on SIGINT/SIGTERM.

    The first signal starts the graceful shutdown (in-flight requests finish, up to
    the timeout, then are cancelled); a second SIGINT forces it. Unlike plain uvicorn
    the signal is not re-raised afterwards, so a stop by signal exits 0.

    ``relayed``: a ``--workers`` worker, whose signals come from its supervisor: a stop
    as SIGTERM and a force as SIGINT, in either order, and possibly a service manager's
    own SIGTERM to every process. It forces only when a SIGINT comes with another signal.
    The worker starts with both signals blocked; they are unblocked while they are
    handled here, and blocked again after (a late one must not kill the worker while it
    records its last runs).
    """

    def __init__(
        self, config: uvicorn.Config, on_ready: Callable[[], None], *, relayed: bool = False
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._relayed = relayed
        self._stops: list[int] = []

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._relayed:
            super().handle_exit(sig, frame)
            return
        self._stops.append(sig)
        self.should_exit = True
        if len(self._stops) > 1 and signal.SIGINT in self._stops:
            self.force_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        sigs = {signal.SIGINT, signal.SIGTERM}
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
        if self._relayed:  # a stop that came during startup is delivered now
            signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
        try:
            yield
        finally:
            if self._relayed:
                signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def run_server(
    app: ASGIApp,
    sock: socket.socket,
    *,
    shutdown_timeout: int = 30,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    on_ready: Callable[[], None] = lambda: None,
    lifeline: int | None = None,
) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGINT/SIGTERM (see ``serve.serve``)."""
    uv = uvicorn_config(app, shutdown_timeout=shutdown_timeout, request_timeout=request_timeout)
    server = _Server(uv, on_ready, relayed=lifeline is not None)
    async with anyio.create_task_group() as tg:
        if lifeline is not None:
            tg.start_soon(_watch_lifeline, lifeline, server)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()
    await _settle(server)


async def _settle(server: uvicorn.Server) -> None:
    """Cancel the requests uvicorn left running and let them answer 503 and be recorded.

    On a forced stop uvicorn abandons in-flight requests, and past the shutdown timeout
    it cancels them; either way it returns without waiting, and the event loop's
    teardown would cancel them again in the middle of recording their runs.
    """
    tasks = [task for task in server.server_state.tasks if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=SETTLE_S)


async def _watch_lifeline(fd: int, server: uvicorn.Server) -> None:
    await anyio.wait_readable(fd)  # only ever EOF: nobody writes to it
    server.should_exit = True  # graceful, like the supervisor's SIGTERM


def uvicorn_config(
    app: ASGIApp,
    *,
    shutdown_timeout: int = 30,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
) -> uvicorn.Config:
    """The uvicorn settings of ``serve``: the shared quiet ones, ASGI 3, our timeouts.

    The protocol is uvicorn's httptools one with a deadline for each request to arrive
    (``serve._protocol``). No proxy-headers middleware: nothing here reads the client's
    address, and it would parse ``X-Forwarded-*`` on every request.
    """
    return quiet_config(
        app, interface="asgi3", proxy_headers=False, timeout_graceful_shutdown=shutdown_timeout,
        http=protocol(request_timeout),
    )  # fmt: skip
