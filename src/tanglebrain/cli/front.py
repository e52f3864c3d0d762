"""The other front doors: ``serve`` (OpenAI-compatible HTTP) and ``mcp`` (MCP over stdio).

Both load and validate the roster before they start (a bad roster exits 2) and record
every run in the ledger unless ``--no-log``/``TANGLEBRAIN_NO_LOG=1``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tanglebrain.errors import TanglebrainError, UsageError

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Sequence

    from tanglebrain.roster import LoadedRoster
    from tanglebrain.serve import ServeConfig
    from tanglebrain.trace import Run

    # Serves one socket: (socket, on ready, lifeline fd, worker index).
    ServeOn = Callable[[socket.socket, Callable[[], None], int | None, int | None], None]


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``mcp`` to ``app``."""
    app.command(
        "serve",
        help="Serve an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models[/ID]). "
        "The request's model is `auto` (the router) or a backend id (pin). Binds "
        "127.0.0.1; any other address needs --token. Ctrl-C or SIGTERM stops it gracefully.",
    )(serve_command)
    app.command(
        "mcp",
        help="Serve MCP over stdio: the tools delegate, delegate_many and backends, so that "
        "an agent (Claude Code, Codex, …) orchestrates tanglebrain's roster. "
        "Register it with: claude mcp add tanglebrain -- tanglebrain mcp",
    )(mcp_command)


# A DNS label; underscores too, as container and service names have them.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def is_host(host: str) -> bool:
    """Whether ``host`` can name an address: an IP address, a host name, or "" (every one).

    The host name's syntax is checked (RFC 1123 labels), not whether it resolves.
    """
    if not host:
        return True  # the sockets API's "any address", like 0.0.0.0
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    name = host.removesuffix(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.lower().removesuffix(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _stderr_logging(names: tuple[str, ...], level: int, label: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"tanglebrain: {label}: %(message)s"))
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def _quick_exit() -> None:
    """Exit 0 without the ~1.5 s the interpreter spends collecting litellm's objects.

    ``gc.freeze`` leaves them out of the final collections (cleanup still runs); MCP
    clients give a server 2 s to exit after closing its stdin.
    """
    import gc

    gc.freeze()
    raise typer.Exit(0)


def _recorder(state: Path, no_log: bool) -> Callable[[Sequence[Run], LoadedRoster], None] | None:
    """Writes runs to the ledger, with the roster they ran on; None under ``--no-log``.

    One ledger, its write connection kept open for the server's life.
    """
    from tanglebrain.ledger import Ledger, default_path
    from tanglebrain.session import ledger_recorder, logging_disabled

    if logging_disabled(no_log, os.environ):
        return None
    ledger = Ledger(default_path(state), keep_open=True)
    return lambda traces, loaded: ledger_recorder(loaded.roster, os.environ, state, ledger=ledger)(
        traces
    )


def _event_loop_options() -> dict[str, bool]:
    """The event loop options of a server: uvloop where installed (not on Windows).

    Measured with bench/serve.py (200 concurrent streamed requests, 2 cores): the
    server's CPU per request 1.8 -> 1.4 ms, p95 added 246 -> 116 ms in one process.
    """
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="TANGLEBRAIN_SERVE_TOKEN",
            help="Require `Authorization: Bearer TOKEN` (required off loopback).",
            show_default=False,
        ),
    ] = None,
    roster: Annotated[Path | None, typer.Option("--roster", help="Roster file.")] = None,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", help="Largest request body accepted (413 above).")
    ] = 1 << 20,
    shutdown_timeout: Annotated[
        int,
        typer.Option("--shutdown-timeout", help="Seconds in-flight runs get to finish on stop."),
    ] = 30,
    request_timeout: Annotated[
        float,
        typer.Option(
            "--request-timeout",
            help="Seconds a client has to send a whole request (408 after; 0: no limit).",
        ),
    ] = 30.0,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Server processes on the one port, each using up to a core (not on Windows).",
        ),
    ] = 1,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Do not record runs (also TANGLEBRAIN_NO_LOG=1).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="One line per request on stderr.")
    ] = False,
) -> None:
    """Serve the OpenAI-compatible API until SIGINT/SIGTERM."""
    if token is not None and not token.strip():
        raise UsageError("--token must not be empty")
    if not is_host(host):  # before asking for a token it would not need
        raise UsageError(
            f"--host {host!r} is not an IP address or host name",
            fix="pass an address of this machine, e.g. --host 127.0.0.1",
        )
    if not is_loopback(host) and not token:
        raise UsageError(
            f"binding {host} exposes the server beyond this machine, so --token is required",
            fix="pass --token TOKEN (or set TANGLEBRAIN_SERVE_TOKEN), or bind 127.0.0.1",
        )
    if not 0 <= port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    if max_body_bytes < 1024 or shutdown_timeout < 0:
        raise UsageError("--max-body-bytes must be >= 1024 and --shutdown-timeout >= 0")
    if not 0 <= request_timeout < 1e9:  # also NaN; a timer cannot be armed further out
        raise UsageError("--request-timeout must be between 0 (no limit) and 1e9 seconds")
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}")
    if workers > 1 and not hasattr(os, "fork"):
        raise UsageError("--workers above 1 needs fork(), which this platform lacks")
    _serve(ctx, _ServeOptions(host, port, token, roster, max_body_bytes, shutdown_timeout,
                              request_timeout, workers, no_log, verbose))  # fmt: skip


MAX_WORKERS = 64


@dataclass(frozen=True)
class _ServeOptions:
    host: str
    port: int
    token: str | None
    roster: Path | None
    max_body_bytes: int
    shutdown_timeout: int
    request_timeout: float
    workers: int
    no_log: bool
    verbose: bool


def _serve(ctx: typer.Context, opts: _ServeOptions) -> None:
    from tanglebrain import models, serve
    from tanglebrain.cli.run import state_dir
    from tanglebrain.roster import load
    from tanglebrain.views import render

    loaded = load(opts.roster or (ctx.obj or {}).get("roster"), os.environ, Path.cwd())
    state = state_dir(os.environ)
    recorder = _recorder(state, opts.no_log)
    socks = _listen(opts.host, opts.port, opts.workers)
    # A roster with translated backends imports litellm now (connections wait in the
    # backlog), not in a request; with --workers, before the fork, so the workers share it.
    if any(models.transport_name(b) == "litellm" for b in loaded.roster.enabled()):
        models.load_litellm()
    _stderr_logging(("tanglebrain.serve", "uvicorn.error"), logging.WARNING, "serve")
    ready = _ready_note(socks[0], loaded, opts)

    def done(trace: Run, worker: int | None = None) -> None:
        if opts.verbose:
            where = f" (worker {worker + 1})" if worker is not None else ""
            line = render.summary_line(trace, recorded=recorder is not None)
            render.note(f"{trace.status}: {line}{where}", prefix=trace.id)

    config = serve.ServeConfig(
        roster=loaded.roster,
        env=os.environ,
        state_dir=state,
        roster_dir=loaded.path.parent,
        token=opts.token,
        max_body_bytes=opts.max_body_bytes,
        record=(lambda traces: recorder(traces, loaded)) if recorder else None,
        on_done=done,
    )
    code = _serve_on_all(socks, opts.workers, _server(config, done, opts), ready)
    render.note("stopped", prefix="serve")
    raise typer.Exit(code)


def _ready_note(
    sock: socket.socket, loaded: LoadedRoster, opts: _ServeOptions
) -> Callable[[], None]:
    """The note that the server is up: its URL, its models, and whether it wants a token."""
    from tanglebrain.views import render

    bound = sock.getsockname()
    url_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    names = ", ".join(["auto", *(b.id for b in loaded.roster.enabled())])
    token, workers = opts.token, opts.workers

    def ready() -> None:
        render.note(
            f"serving on http://{url_host}:{bound[1]}/v1 (models: {names}; "
            f"{'bearer token required' if token else 'no token'}; "
            f"{f'{workers} workers; ' if workers > 1 else ''}Ctrl-C stops)",
            prefix="serve",
        )

    return ready


def _server(
    config: ServeConfig, done: Callable[[Run, int | None], None], opts: _ServeOptions
) -> ServeOn:
    """Serves one socket with ``config``; a worker's finished runs are reported as its own."""
    import dataclasses

    import anyio

    from tanglebrain import serve

    def serve_on(
        sock: socket.socket, on_ready: Callable[[], None], lifeline: int | None, worker: int | None
    ) -> None:
        mine = (
            config
            if worker is None
            else dataclasses.replace(config, on_done=lambda trace: done(trace, worker))
        )

        async def main() -> None:
            await serve.serve(mine, sock, shutdown_timeout=opts.shutdown_timeout,
                              request_timeout=opts.request_timeout, on_ready=on_ready,
                              lifeline=lifeline)  # fmt: skip

        from tanglebrain.cli.streams import collect_less

        collect_less()
        anyio.run(main, backend_options=_event_loop_options())

    return serve_on


def _listen(host: str, port: int, workers: int) -> list[socket.socket]:
    """The listening sockets (one per worker where the platform shares a port)."""
    from tanglebrain.serve import _workers as serve_workers
    from tanglebrain.sockets import listen_error

    try:
        return serve_workers.listen(host, port, workers)
    except OSError as exc:
        raise listen_error(host, port, exc) from None


def _serve_on_all(
    socks: list[socket.socket], workers: int, serve_on: ServeOn, ready: Callable[[], None]
) -> int:
    """Serve in this process, or in ``workers`` supervised ones; the exit code."""
    from tanglebrain.serve import _workers as serve_workers
    from tanglebrain.views import render

    try:
        if workers == 1:
            serve_on(socks[0], ready, None, None)
            return 0
        note = functools.partial(render.note, prefix="serve")
        supervisor = serve_workers.Supervisor(
            socks, workers, lambda sock, i, up, line: serve_on(sock, up, line, i), note
        )
        return supervisor.run(ready)
    finally:
        for sock in socks:
            sock.close()


def mcp_command(
    ctx: typer.Context,
    roster: Annotated[Path | None, typer.Option("--roster", help="Roster file.")] = None,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Do not record calls (also TANGLEBRAIN_NO_LOG=1).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Log each tool call to stderr.")
    ] = False,
) -> None:
    """Serve MCP on stdin/stdout until the client closes the connection."""
    import anyio

    from tanglebrain import models
    from tanglebrain.cli.run import state_dir
    from tanglebrain.mcp import Bridge, serve_stdio

    # stdout is the protocol channel; stderr stays quiet unless asked.
    level = logging.INFO if verbose else logging.CRITICAL + 1
    _stderr_logging(("tanglebrain.mcp", "mcp", "uvicorn"), level, "mcp")
    if not verbose:
        logging.getLogger().addHandler(logging.NullHandler())
        warnings.simplefilter("ignore")
    explicit = roster or (ctx.obj or {}).get("roster")
    bridge = Bridge(explicit, os.environ, Path.cwd(), _recorder(state_dir(os.environ), no_log))
    try:
        if any(models.transport_name(b) == "litellm" for b in bridge.roster().roster.enabled()):
            models.preload_litellm()  # overlaps the client's handshake
    except TanglebrainError as exc:  # the caller gets it with every call until it is fixed
        sys.stderr.write(f"tanglebrain: mcp: roster error: {exc}\n")
    anyio.run(serve_stdio, bridge)
    _quick_exit()
