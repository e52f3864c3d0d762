"""``tanglebrain wrap -- CMD``: run a command, print its output or a faithful digest of it.

The command runs in the user's shell (``$SHELL -c`` when that is a POSIX-style shell, else
``bash -c``), so compound commands, pipes, redirections, heredocs and ``cd`` work as they
would unwrapped. Stdout and stderr share one pipe, as the agents merge them, so their
interleaving is kept. Nothing is printed until the command ends. An output of at most the
threshold is printed byte for byte; a bigger one becomes the faithful digest of
:mod:`tanglebrain.compress` (binary data: a one-line note) followed by a line naming the
raw output's id, unless the digest would not be smaller. The raw output is kept in the
state directory for ``tanglebrain raw ID``. The exit status is the command's own; a
command killed by signal N exits ``128+N``, as a shell reports it. The same output always
gives the same bytes, so agents' prompt caches keep working.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

from tanglebrain.hooks._config import RAW_KEEP, listed, state_dir
from tanglebrain.hooks._log import make_state_dir
from tanglebrain.hooks._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Mapping
    from types import FrameType
    from typing import Any
else:
    import _signal  # ``signal`` without the ``enum`` wrappers (``enum`` costs ~7 ms)

POSIX_SHELLS = frozenset({"bash", "zsh", "sh", "dash", "ksh", "mksh", "ash"})
DRAIN_S = 2.0  # how long output is still read after the shell ended (background children)
AGENT_BUDGET = 8000  # bytes of a digest an agent gets whole (see ``budget_for``)
SMALL_BUDGET = 2000  # Claude Code's preview of a successful output it spills to a file
CLAUDE_SPILL = 30_000
_ATTACHMENT = "; the full text is available as an attachment …]"


class Result(Record):
    """What ``wrap`` printed, and what it measured.

    Attributes:
        output: the bytes printed.
        raw: the command's output.
        status: the exit status (``128+N`` for signal N).
        raw_id: the id of the kept raw output, when a digest was printed.
        command_ms: the command's wall time.
        handler_ms: wrap's own time on top of it (start, digest, keeping the raw output).
    """

    output: bytes
    raw: bytes
    status: int
    raw_id: str | None
    command_ms: float
    handler_ms: float


def shell_for(env: Mapping[str, str]) -> str:
    """The shell that runs wrapped commands: ``$SHELL`` when POSIX-like, else bash, else sh."""
    user = env.get("SHELL", "")
    if os.path.basename(user) in POSIX_SHELLS and os.access(user, os.X_OK):
        return user
    for candidate in ("/bin/bash", "/usr/bin/bash", "/bin/sh"):
        if os.access(candidate, os.X_OK):
            return candidate
    return "sh"


def run_command(command: str, env: Mapping[str, str]) -> tuple[bytes, int, float]:
    """Run ``command`` in the shell; return (output, exit status, wall ms).

    The shell is started as ``subprocess.Popen`` would start it (descriptors other than the
    standard ones closed, SIGPIPE and SIGXFSZ back to their defaults, stdout and stderr on
    one pipe), with ``os.posix_spawn``: ``subprocess`` and ``signal`` import ``enum``,
    ``re``, ``locale`` and ``selectors``, ~20 ms on every wrapped command.
    """
    start = time.perf_counter()
    read_end, write_end = os.pipe()
    actions: list[tuple[int, ...]] = [
        (os.POSIX_SPAWN_DUP2, write_end, 1),
        (os.POSIX_SPAWN_DUP2, write_end, 2),
    ]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited()]
    try:
        pid = os.posix_spawnp(
            shell_for(env),
            [shell_for(env), "-c", command],
            os.environ,
            file_actions=actions,
            setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ),
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    chunks: list[bytes] = []
    drained = _thread.allocate_lock()
    drained.acquire()

    def drain() -> None:
        try:
            while chunk := os.read(read_end, 1 << 16):
                chunks.append(chunk)
        finally:
            drained.release()

    _thread.start_new_thread(drain, ())
    previous = _forward_signals(pid)
    try:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        for sig, handler in previous.items():
            _signal.signal(sig, handler)
    # A background child may hold the pipe open: do not wait for it (the pipe stays open).
    if drained.acquire(timeout=DRAIN_S):
        os.close(read_end)
    elapsed = (time.perf_counter() - start) * 1000
    return b"".join(chunks), (128 - code if code < 0 else code), elapsed


def _inherited() -> list[int]:
    """This process's inheritable descriptors above 2 (``close_fds`` closes them in the child)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return []
    found = []
    for fd in fds:
        try:
            if fd > 2 and os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            continue  # the descriptor listdir itself used
    return found


def _forward_signals(pid: int) -> dict[int, Any]:
    """Pass SIGTERM and SIGHUP on to the command; ignore SIGINT, which its group gets too."""

    def forward(sig: int, _frame: FrameType | None) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return

    previous: dict[int, Any] = {}
    try:
        for sig in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGINT):
            handler = forward if sig != _signal.SIGINT else _signal.SIG_IGN
            previous[sig] = _signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals stay as they are
        for number, old in previous.items():
            _signal.signal(number, old)
        return {}
    return previous


def budget_for(agent: str, raw_size: int, status: int) -> int | None:
    """The byte budget of a digest for ``agent``, or None for the faithful digest.

    An agent keeps only part of a big output (Claude Code: ~10,000 characters of a failure,
    a 2 KB preview of a success over 30,000; Codex: 10,000; Gemini: 40,000). A digest cut
    to fit by :func:`tanglebrain.compress.budgeted` (failures and errors first) beats an
    arbitrary head and tail, and the model then sees all of it, last line included.
    """
    if agent == "claude" and status == 0 and raw_size > CLAUDE_SPILL:
        return SMALL_BUDGET
    return AGENT_BUDGET if agent in ("claude", "codex", "gemini") else None


def render(
    raw: bytes, status: int, threshold: int, budget: int | None = None
) -> tuple[bytes, str | None]:
    """What to print for ``raw``, and the raw output's id when that is a digest (pure)."""
    if len(raw) <= threshold:
        return raw, None
    from tanglebrain.compress import binary_note, budgeted, decode, faithful

    text = decode(raw)
    raw_id = _sha256(raw)[:12]
    trailer = (
        f"[… tanglebrain wrap: digest of {len(raw):,} bytes of output, exit status {status}; "
        f"all of it: tanglebrain raw {raw_id} …]"
    )
    note = binary_note(text, len(raw))
    if note is not None:
        body = note
    elif budget is None:
        body = faithful(text)
    else:
        body = budgeted(text, max(0, budget - len(trailer.encode()) - 1))
        body = body.replace(_ATTACHMENT, " …]")  # the trailer says where the rest is
    out = f"{body.rstrip()}\n{trailer}\n".encode()
    return (raw, None) if len(out) >= len(raw) else (out, raw_id)


def _sha256(data: bytes) -> str:
    """The SHA-256 hex digest of ``data``: the built-in module, not OpenSSL's (~5 ms to load)."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # a Python that has only ``hashlib``'s
        from hashlib import sha256
    return str(sha256(data).hexdigest())


def raw_dir(env: Mapping[str, str]) -> str:
    """Where raw outputs are kept."""
    return os.path.join(state_dir(env), "raw")


def keep_raw(env: Mapping[str, str], raw_id: str, raw: bytes) -> None:
    """Store ``raw`` as ``raw_id`` (private, atomic) and drop all but the newest ``RAW_KEEP``."""
    make_state_dir(state_dir(env))
    folder = raw_dir(env)
    make_state_dir(folder)
    path = os.path.join(folder, f"{raw_id}.log")
    tmp = os.path.join(folder, f".{raw_id}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    os.replace(tmp, path)
    kept = sorted(listed(folder, ".log"), key=os.path.getmtime, reverse=True)
    for old in kept[RAW_KEEP:]:
        try:
            os.unlink(old)
        except FileNotFoundError:
            continue


def load_raw(env: Mapping[str, str], raw_id: str) -> bytes:
    """The raw output kept as ``raw_id`` (or a unique prefix of it).

    Raises:
        UsageError: no such output is kept, or the prefix is ambiguous.
    """
    from tanglebrain.errors import UsageError

    ref = raw_id.strip().lower()
    folder = raw_dir(env)
    is_id = 6 <= len(ref) <= 64 and not ref.strip("0123456789abcdef")
    found = [p for p in listed(folder, ".log") if os.path.basename(p).startswith(ref)]
    found = found if is_id else []
    if len(found) > 1:
        raise UsageError(f"raw output id {raw_id!r} is ambiguous", fix="give more characters")
    if not found:
        raise UsageError(
            f"no raw output {raw_id!r} is kept", fix=f"see the ids in {folder} (newest {RAW_KEEP})"
        )
    with open(found[0], "rb") as fh:
        return fh.read()


def wrap(command: str, threshold: int, env: Mapping[str, str], agent: str = "cli") -> Result:
    """Run ``command``, print what ``agent`` should see, and return what happened."""
    start = time.perf_counter()
    raw, status, command_ms = run_command(command, env)
    output, raw_id = render(raw, status, threshold, budget_for(agent, len(raw), status))
    if raw_id is not None:
        try:
            keep_raw(env, raw_id, raw)
        except OSError:
            output, raw_id = raw, None  # a digest must always lead to its raw output
    try:
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    handler_ms = (time.perf_counter() - start) * 1000 - command_ms
    return Result(output, raw, status, raw_id, command_ms, max(handler_ms, 0.0))
