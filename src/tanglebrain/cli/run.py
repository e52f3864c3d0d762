"""``tanglebrain run`` (the default command): one request, one answer on stdout."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from tanglebrain.errors import OutputClosed, Terminated, UsageError

SIGTERM_EXIT = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class SigtermStop:
    """SIGTERM handling for ``run``: stop the way Ctrl-C does, and still record the run.

    Installed with ``with SigtermStop() as stop:`` around the command and removed after
    it, so ``serve``, ``mcp`` and ``sim`` keep their own handling. Before the run's event
    loop starts, the signal raises :class:`Terminated` at once (nothing was paid yet).
    From then on it only sets :attr:`received`, and while :meth:`cancelling` is active it
    also cancels the run, which cancels every in-flight call; the caller raises
    :class:`Terminated` once the run is back in its hands, so that it can record it.
    """

    def __init__(self) -> None:
        self.received = False
        self._deferred = False
        self._cancel: Callable[[], None] | None = None
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> SigtermStop:
        # Signal handlers can only be set from the main thread (an embedding may differ).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def defer(self) -> None:
        """From now on a SIGTERM is only noted (the run is about to start)."""
        self._deferred = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        if self._cancel is not None:
            self._cancel()
        elif not self._deferred:
            raise Terminated()

    @contextmanager
    def cancelling(self) -> Iterator[None]:
        """While inside (in the run's main task), a SIGTERM cancels that task.

        As asyncio does for Ctrl-C: the task is cancelled once, and the cancellation
        reaches every call it awaits. Cancelling with a cancel scope instead, which
        cancels again until everything has stopped, leaves litellm's half-started calls
        to warn about coroutines that were never awaited.

        Raises:
            Terminated: on the way out, when the task was cancelled for a SIGTERM.
        """
        import asyncio

        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def cancel() -> None:
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)  # wake a loop waiting in select()

        self._cancel = cancel
        if self.received:  # arrived while the loop was starting
            task.cancel()
        try:
            yield
        except asyncio.CancelledError:
            # A litellm call cancelled while starting drops a coroutine it made in a worker
            # thread; the RuntimeWarning about it at shutdown is noise after an interrupt.
            warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
            if not self.received:
                raise  # Ctrl-C: asyncio turns it into KeyboardInterrupt
            raise Terminated() from None
        finally:
            self._cancel = None


class StdoutSink:
    """Writes the answer as it streams; stdout carries the answer and nothing else."""

    def __init__(self) -> None:
        self.last = ""

    def write(self, text: str) -> None:
        """Write one delta and flush, so pipes see it at once.

        Raises:
            OutputClosed: the reader closed the pipe (``| head``); the run should stop.
        """
        if text:
            try:
                _write_all(text)
            except BrokenPipeError:
                # Point stdout at /dev/null so the interpreter's final flush stays quiet.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise OutputClosed() from None
            self.last = text

    def finish(self) -> None:
        """End the answer with exactly one newline."""
        if self.last and not self.last.endswith("\n"):
            self.write("\n")


def _write_all(text: str) -> None:
    """Write ``text`` to stdout in full, then flush.

    Through the binary layer, so that a short write is finished or fails: with
    ``PYTHONUNBUFFERED=1`` (common in containers) the text layer writes straight to the
    file and drops what a short write left over, e.g. when the reader of a pipe goes
    away mid-write, so the run would neither deliver the answer nor notice the reader
    leave.
    """
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # not a file (an embedding's StringIO): it takes text whole
        out.write(text)
        out.flush()
        return
    data = memoryview(text.encode(out.encoding or "utf-8", out.errors or "strict"))
    out.flush()  # whatever the text layer still holds goes first
    while data:
        written = buffer.write(data)
        data = data[written if written is not None else 0 :]
    buffer.flush()


def read_input(prompt: str | None) -> tuple[str, str | None]:
    """Return (prompt, piped stdin or None): ``-`` or no prompt reads the prompt from stdin."""
    piped = None
    if not sys.stdin.isatty():
        data = sys.stdin.buffer.read()
        piped = data.decode("utf-8", errors="replace") if data else None
    if prompt is None or prompt == "-":
        if not piped or not piped.strip():
            raise UsageError("no prompt given", fix='run tanglebrain "PROMPT" or pipe one in')
        return piped.strip(), None
    if not prompt.strip():
        raise UsageError("the prompt is empty", fix='run tanglebrain "PROMPT"')
    return prompt, piped


def state_dir(env: dict[str, str] | os._Environ[str]) -> Path:
    """``$TANGLEBRAIN_HOME``, else ``$XDG_DATA_HOME/tanglebrain`` (``~/.local/share``)."""
    home = env.get("TANGLEBRAIN_HOME")
    if home:
        return Path(home)
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tanglebrain"


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""
    app.command(
        "run",
        help='Answer PROMPT (the default command: `tanglebrain "PROMPT"`). Piped stdin '
        "becomes the attachment `stdin`; a PROMPT of `-` (or none) reads the prompt itself "
        "from stdin. The answer goes to stdout, everything else to stderr.",
    )(run_command)


def run_command(
    ctx: typer.Context,
    prompt: Annotated[str | None, typer.Argument(help="The request; `-` reads stdin.")] = None,
    roster: Annotated[Path | None, typer.Option("--roster", help="Roster file.")] = None,
    backend: Annotated[
        str | None, typer.Option("-b", "--backend", help="Pin this backend id.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("-t", "--task", help="Task-fit hint: a good_at tag.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of the answer.")
    ] = False,
    no_delegate: Annotated[
        bool, typer.Option("--no-delegate", help="The orchestrator alone, no tools (baseline).")
    ] = False,
    ab: Annotated[
        bool,
        typer.Option(
            "--ab",
            help="Also run the request solo (--no-delegate) at the same time and record both "
            "as a pair; prints the delegated answer and the measured ratios (see `stats`).",
        ),
    ] = False,
    no_gate: Annotated[
        bool,
        typer.Option(
            "--no-gate", help="Orchestrate even a request the roster's gate finds trivial."
        ),
    ] = False,
    budget: Annotated[
        float | None, typer.Option("--budget", help="Hard cap for this run, USD.")
    ] = None,
    max_subtasks: Annotated[
        int | None, typer.Option("--max-subtasks", help="Sub-tasks allowed in this run.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Nothing on stderr but errors.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show the orchestrator's notes on stderr.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Live tree of the sub-tasks on stderr (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
    no_log: Annotated[
        bool,
        typer.Option(
            "--no-log", help="Do not record this run in the ledger (also TANGLEBRAIN_NO_LOG=1)."
        ),
    ] = False,
    review: Annotated[
        bool | None,
        typer.Option(
            "--review/--no-review",
            help="Have backends good at 'review' critique the draft before the final answer "
            "(default: the roster's settings.review).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run one request."""
    if budget is not None and (not math.isfinite(budget) or budget <= 0):
        raise UsageError("--budget must be a positive number of USD", fix="e.g. --budget 0.50")
    if max_subtasks is not None and max_subtasks < 1:
        raise UsageError("--max-subtasks must be at least 1")
    if ab and no_delegate:
        raise UsageError(
            "--ab already runs the request solo beside the delegated run",
            fix="drop --no-delegate",
        )
    with SigtermStop() as stop:  # first: importing the run's modules takes a while
        from tanglebrain.cli.execute import Output, execute_run
        from tanglebrain.orchestrator import Request
        from tanglebrain.runtime import Attachment

        text, piped = read_input(prompt)
        request = Request(
            prompt=text,
            attachments=(Attachment("stdin", piped),) if piped else (),
            backend=backend,
            task=task,
            no_delegate=no_delegate,
            budget_usd=budget,
            max_subtasks=max_subtasks,
            review=review,
            gate=not (no_gate or ab),  # an A/B pair measures delegation: never gated
        )
        code = execute_run(
            request,
            roster_path=roster or (ctx.obj or {}).get("roster"),
            output=Output(json_out=json_out, quiet=quiet, verbose=verbose, progress=progress),
            state=state_dir(os.environ),
            no_log=no_log,
            stop=stop,
            ab=ab,
        )
    raise typer.Exit(code)
