"""Pre-forked worker processes for ``tanglebrain serve --workers N``.

One process runs one event loop on one core, and a streamed litellm call costs several
ms of CPU, so one process tops out at ~100-150 requests/s however fast the backends
are. ``--workers N`` runs N copies of the server:

* The parent binds the sockets and has imported litellm before it forks, so the
  workers start in milliseconds and share those pages copy-on-write (``gc.freeze``
  keeps the collector from touching them).
* On Linux every worker gets its own ``SO_REUSEPORT`` socket on the same port, so the
  kernel spreads connections evenly; with one shared socket, the worker that wakes
  first accepts a whole burst. Elsewhere they share one socket. A port that is served
  already is refused, as without workers (``SO_REUSEPORT`` alone would share it).
* Workers run in their own process group, so a terminal's Ctrl-C reaches only the
  parent, which relays it: the first SIGINT/SIGTERM becomes SIGTERM to every worker
  (graceful: in-flight requests finish), a SIGINT after it forces them. A worker starts
  with both signals blocked and takes them once its server handles them, so a stop
  during startup is not lost. Each worker also holds a lifeline, a pipe whose only
  write end is the parent's: the parent closes it to stop them, and if the parent dies
  the workers stop gracefully rather than serve on as orphans.
* A worker that dies unexpectedly is replaced on its socket. If a worker fails to
  start, or a replacement dies within a second, it would only die again: everything
  stops, exit 1.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from tanglebrain.sockets import bind_socket

CRASH_LOOP_S = 1.0  # a replacement dying this soon after its fork is not replaced

# child(sock, index, ready, lifeline) serves until stopped; ready() once it accepts.
Child = Callable[[socket.socket, int, Callable[[], None], int], None]


def listen(host: str, port: int, workers: int) -> list[socket.socket]:
    """Listening sockets for ``workers`` processes: one each on Linux, else one shared.

    Raises:
        OSError: the address cannot be bound.
    """
    if workers == 1 or not sys.platform.startswith("linux"):
        return [bind_socket(host, port)]
    if port:  # SO_REUSEPORT would join a server already on the port: refuse it instead
        bind_socket(host, port).close()
    socks = [bind_socket(host, port, reuse_port=True)]
    try:
        actual = socks[0].getsockname()[1]  # port 0: the rest join the port it picked
        socks += [bind_socket(host, actual, reuse_port=True) for _ in range(workers - 1)]
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


@dataclass
class Supervisor:
    """Forks the workers, relays stop signals, replaces dead workers, reaps them all.

    Args:
        socks: from :func:`listen`; worker ``i`` serves ``socks[i % len(socks)]``.
        workers: how many worker processes.
        child: what a worker runs: ``child(sock, index, ready, lifeline)`` serves until
            stopped and calls ``ready()`` once it accepts connections. It starts with
            SIGINT and SIGTERM blocked and unblocks them once it handles them; EOF on
            the ``lifeline`` fd means stop.
        note: one line to the user (stderr).
    """

    socks: list[socket.socket]
    workers: int
    child: Child
    note: Callable[[str], None]
    _pids: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid -> (index, start)
    _stopping: bool = False
    _failed: bool = False
    _fds: dict[str, int] = field(default_factory=dict)  # the pipes' ends still open here

    def run(self, on_ready: Callable[[], None]) -> int:
        """Serve until stopped; the exit code for the parent (0 after a clean stop)."""
        self._fds["lifeline_r"], self._fds["lifeline_w"] = os.pipe()
        self._fds["ready_r"], self._fds["ready_w"] = os.pipe()
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in stops}
        try:
            gc.freeze()  # keep the shared pages shared: the collector would write to them
            for index in range(self.workers):
                self._fork(index)
            self._close("ready_w")
            ready = _count_bytes(self._fds["ready_r"])  # EOF: every worker ready or dead
            self._close("ready_r")
            if not self._stopping and ready < self.workers:
                self.note(f"{self.workers - ready} of {self.workers} workers failed to start")
                self._stop_all(failed=True)
            elif not self._stopping:
                # They all started: a later death is a crash to recover from, however soon.
                self._pids = {pid: (index, -math.inf) for pid, (index, _) in self._pids.items()}
                try:
                    on_ready()
                except BaseException:
                    self._stop_all(failed=True)
                    self._reap()
                    raise
            self._reap()
            return 1 if self._failed else 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for name in list(self._fds):
                self._close(name)

    def _close(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            self._stop_all(failed=False)
        elif signum == signal.SIGINT:  # Ctrl-C again: stop now, cancelling in-flight runs
            self._kill_all(signal.SIGINT)

    def _stop_all(self, *, failed: bool) -> None:
        self._stopping = True
        self._failed = self._failed or failed
        # Our copies of the sockets would keep accepting into backlogs nobody serves
        # once the workers close theirs; without them new connections are refused.
        for sock in self.socks:
            sock.close()
        self._close("lifeline_w")  # EOF: stop, even for a worker that missed the signal
        self._kill_all(signal.SIGTERM)

    def _kill_all(self, sig: int) -> None:
        for pid in list(self._pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _fork(self, index: int) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        # Block the stop signals across the fork: a signal in between would reach a
        # worker with the parent's handlers, or the parent before it knows the pid.
        # The worker keeps them blocked until its server handles them.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            if self._stopping:  # a stop arrived while earlier workers were forked
                return
            pid = os.fork()
            if pid == 0:
                _worker(self, self.socks[index % len(self.socks)], index)  # never returns
            self._pids[pid] = (index, time.monotonic())
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _reap(self) -> None:
        while self._pids:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                return
            if pid not in self._pids:
                continue
            index, started = self._pids.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                if code != 0:
                    self.note(f"worker {index + 1} {_describe(code)}")
                    self._failed = True
            elif time.monotonic() - started < CRASH_LOOP_S:
                self.note(f"worker {index + 1} {_describe(code)} right after it started; "
                          "stopping all workers")  # fmt: skip
                self._stop_all(failed=True)
            else:
                self.note(f"worker {index + 1} (pid {pid}) {_describe(code)}; starting another")
                self._fork(index)


def _worker(sup: Supervisor, sock: socket.socket, index: int) -> None:
    """The forked worker: serve ``sock``, then exit; never returns into the parent's code."""
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):  # blocked; the server installs its own
            signal.signal(sig, signal.SIG_DFL)
        os.setpgid(0, 0)  # a terminal's Ctrl-C is for the parent to relay
        ready_w = sup._fds.get("ready_w", -1)  # a replacement has none: nobody waits
        for name, fd in sup._fds.items():
            if name not in ("lifeline_r", "ready_w"):
                os.close(fd)
        for other in sup.socks:
            if other is not sock:
                other.close()

        def ready() -> None:
            nonlocal ready_w
            if ready_w >= 0:
                os.write(ready_w, b".")
                os.close(ready_w)
                ready_w = -1

        sup.child(sock, index, ready, sup._fds["lifeline_r"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:  # a bug: one line, and never the parent's code path
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # a task group's wrapping says nothing
        with contextlib.suppress(Exception):
            sup.note(f"worker {index + 1} failed: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _count_bytes(fd: int) -> int:
    total = 0
    while chunk := os.read(fd, 64):
        total += len(chunk)
    return total


def _describe(exit_code: int) -> str:
    if exit_code < 0:
        return f"was killed by {signal.Signals(-exit_code).name}"
    return f"exited with code {exit_code}"
