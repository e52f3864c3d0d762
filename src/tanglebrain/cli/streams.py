"""The terminal side of a run, without typer: SIGTERM, stdout, stdin, the state folder.

``run`` and its typer-free fast path (``cli.fastrun``) share these.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from tanglebrain.errors import OutputClosed, OutputFailed, Terminated, UsageError
from tanglebrain.surrogates import HIGH, mend

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
        self._half = ""  # a delta's last character, when it was half of a surrogate pair

    def write(self, text: str) -> None:
        """Write one delta and flush, so pipes see it at once.

        Raises:
            OutputClosed: the reader closed the pipe (``| head``); the run should stop.
        """
        text, self._half = self._half + text, ""
        if text and ord(text[-1]) in HIGH:  # a stream that split a pair: wait for the rest
            text, self._half = text[:-1], text[-1]
        if text:
            try:
                _write_all(text)
            except BrokenPipeError:
                drop_stdout()  # so that the interpreter's final flush stays quiet
                raise OutputClosed() from None
            self.last = text

    def finish(self) -> None:
        """End the answer with exactly one newline."""
        if self._half or (self.last and not self.last.endswith("\n")):
            self.write("\n")  # after a half pair held back, which is written mended


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
    try:
        data = memoryview(text.encode(out.encoding or "utf-8", out.errors or "strict"))
    except UnicodeEncodeError:  # a lone surrogate, or a character the encoding lacks
        data = memoryview(mend(text).encode(out.encoding or "utf-8", "replace"))
    try:
        out.flush()  # whatever the text layer still holds goes first
        while data:
            written = buffer.write(data)
            data = data[written if written is not None else 0 :]
        buffer.flush()
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        drop_stdout()
        raise OutputFailed(exc.strerror or str(exc)) from None


# A write that failed for lack of room or a broken device: stdout on a full disk, mostly.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def drop_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered would fail again at exit, loudly."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


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


def collect_less() -> None:
    """Freeze the objects made so far and run the cyclic collector less often.

    A fan-out or a burst of served requests allocates fast; with the default thresholds the
    collector runs in the middle of it and rescans every start-up object each time.
    Measured: ~10% less CPU per sub-task (bench/fanout.py, N = 256) and ~7% less per
    served request (alternated A/B at C = 200; its p95 moved within the noise).
    """
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
